"""Removal and insertion curves: the engine of pixel flipping, region perturbation,
deletion and insertion.

The groups (pixels or patches) of each sample are ranked once by their summed attribution
(one ``argsort`` per batch). Step k of K removes the first nₖ = round(k·N/K) groups in that
order, N = round(u·G) (u = ``until``, 1 by default; G groups): x̃ₖ = x where rank ≥ nₖ and
the fill elsewhere (insertion swaps x and the fill). K is at most N, so every step removes
at least one group; ``steps=None`` takes K = min(100, N). The (sample, step) grid is
flattened into rows and evaluated ``batch_size`` rows per forward pass; a chunk's perturbed
inputs are built with one comparison and one ``where``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..checks import check_finite
from ..errors import ArgumentError
from ..perturb import BaselineSpec, make_baseline
from .base import Case
from .maps import Patch, group_sums, patch_groups, ranks

#: the number of steps of ``steps=None`` when there are more regions than this
DEFAULT_STEPS = 100


@dataclass(frozen=True)
class Curve:
    values: Tensor  # (B, K + 1)
    fraction: Tensor  # (K + 1,), fraction of groups removed (or inserted)


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
    last = round(until * groups.count)
    if last < 1:
        raise ArgumentError(
            "until",
            f"until={until!r} of the {groups.count} regions rounds to none removed; pass "
            f"until ≥ {1 / groups.count:.3g} (or a smaller patch)",
        )
    steps = min(DEFAULT_STEPS, last) if steps is None else steps
    if steps > last:
        raise ArgumentError(
            "steps",
            f"steps={steps} exceeds the {last} regions removed (until={until!r} of "
            f"{groups.count} regions of patch={patch!r}), so steps would repeat; pass "
            f"steps ≤ {last} (one region per step at {last}) or None",
        )
    order = ranks(group_sums(case.attribution, groups), descending=most_relevant_first)
    filled = make_baseline(fill, x, sigma=blur_sigma, seed=seed, argument="fill")
    check_finite(filled, "the fill", argument="fill", fix="pass a finite fill")
    counts = torch.round(torch.linspace(0, last, steps + 1, device=x.device)).long()
    labels = groups.labels.expand(x.shape[1:]).reshape(-1)
    flat_x, flat_fill = x.flatten(1), filled.flatten(1)
    new, old = (flat_x, flat_fill) if insert else (flat_fill, flat_x)

    def score_at_step(sample: Tensor, step: Tensor) -> Tensor:
        taken = (order[sample] < counts[step, None])[:, labels]
        rows = torch.where(taken, new[sample], old[sample]).view(-1, *x.shape[1:])
        return case.scores(rows, sample, probability)

    values = case.grid_values(steps + 1, score_at_step, batch_size)
    return Curve(values, counts.to(x.dtype).cpu() / groups.count)
