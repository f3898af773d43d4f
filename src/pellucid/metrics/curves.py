"""Removal and insertion curves: the engine of pixel flipping, region perturbation,
deletion and insertion.

The groups (pixels or patches) of each sample are ranked once by their summed attribution
(one ``argsort`` per batch). Step k of K removes the first nₖ = round(k·N/K) groups in that
order, N = round(u·G) (u = ``until``, 1 by default; G groups): x̃ₖ = x where rank ≥ nₖ and
the fill elsewhere (insertion swaps x and the fill). K is at most N, so every step removes
at least one group; ``steps=None`` takes K = min(100, N). The (sample, step) grid is
flattened into rows and evaluated ``batch_size`` rows per forward pass; a chunk's perturbed
inputs are built with one comparison and one ``where``.

Token ids (B, L) have one group per token and the fill is a token (:meth:`Case.fill`).
Padding (:attr:`Case.valid`) is ranked last and never taken: with Gₛ valid tokens in
sample s, step k takes nₛₖ = round(k·Nₛ/K) tokens, Nₛ = round(u·Gₛ), and K ≤ minₛ Nₛ.
The curve's abscissa is then nₛₖ/Gₛ per sample (``Curve.fractions``, which the areas
use), and its mean over the samples is ``Curve.fraction``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..checks import check_finite
from ..errors import ArgumentError
from ..perturb import BaselineSpec
from .base import Case
from .maps import Patch, group_sums, patch_groups, ranks

#: the number of steps of ``steps=None`` when there are more regions than this
DEFAULT_STEPS = 100


@dataclass(frozen=True)
class Curve:
    values: Tensor  # (B, K + 1)
    fraction: Tensor  # (K + 1,), fraction of groups removed (or inserted)
    fractions: Tensor  # (B, K + 1), each sample's fraction (differs under padding)


def perturbation_curve(
    case: Case,
    *,
    patch: Patch,
    steps: int | None,
    fill: BaselineSpec,
    blur_sigma: float,
    most_relevant_first: bool,
    insert: bool,
    probability: bool,
    batch_size: int | None,
    seed: int | None,
    until: float = 1.0,
) -> Curve:
    """f(x̃ₖ) for k = 0..K, groups taken in order of decreasing (or increasing) attribution;
    step K has taken the fraction ``until`` of the groups.
    """
    x = case.forward.inputs
    groups = patch_groups(x, patch)
    valid = case.valid
    counted = (torch.full((len(x),), groups.count) if valid is None  # on the CPU: float64
               else valid.sum(1).cpu())
    lasts = torch.round(until * counted.double()).long()
    last = int(lasts.min())
    if last < 1:
        raise ArgumentError(
            "until",
            f"until={until!r} of the {int(counted.min())} regions rounds to none removed; pass "
            f"until ≥ {1 / max(int(counted.min()), 1):.3g} (or a smaller patch)",
        )
    steps = min(DEFAULT_STEPS, last) if steps is None else steps
    if steps > last:
        raise ArgumentError(
            "steps",
            f"steps={steps} exceeds the {last} regions removed (until={until!r} of "
            f"{int(counted.min())} regions of patch={patch!r}), so steps would repeat; pass "
            f"steps ≤ {last} (one region per step at {last}) or None",
        )
    sums = group_sums(case.attribution, groups)
    if valid is not None:  # padding ranks last in either order
        sums = sums.masked_fill(~valid, -torch.inf if most_relevant_first else torch.inf)
    order = ranks(sums, descending=most_relevant_first)
    filled = case.fill(fill, sigma=blur_sigma, seed=seed)
    check_finite(filled, "the fill", argument="fill", fix="pass a finite fill")
    if valid is None:
        counts = torch.round(torch.linspace(0, last, steps + 1, device=x.device)).long()
        counts = counts.expand(len(x), -1)
    else:
        k = torch.arange(steps + 1, dtype=torch.float64)
        counts = torch.round(k * lasts.unsqueeze(1).double() / steps).long().to(x.device)
    labels = groups.labels.expand(x.shape[1:]).reshape(-1)
    flat_x, flat_fill = x.flatten(1), filled.flatten(1)
    new, old = (flat_x, flat_fill) if insert else (flat_fill, flat_x)

    def score_at_step(sample: Tensor, step: Tensor) -> Tensor:
        taken = (order[sample] < counts[sample, step, None])[:, labels]
        rows = torch.where(taken, new[sample], old[sample]).view(-1, *x.shape[1:])
        return case.scores(rows, sample, probability)

    values = case.grid_values(steps + 1, score_at_step, batch_size)
    dtype = torch.promote_types(values.dtype, torch.float32)  # float16 counts stop at 2048
    fractions = counts.cpu().to(dtype) / counted.to(dtype).unsqueeze(1)
    return Curve(values, fractions[0] if valid is None else fractions.mean(0), fractions)
