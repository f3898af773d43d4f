"""The model on masked copies of the inputs, in chunks: the engine of the perturbation methods.

A mask M (values in [0, 1], broadcastable to one sample) keeps the input where it is 1 and
puts the fill there where it is 0:  x̃ = fill + M ⊙ (x − fill) = x ⊙ M + fill ⊙ (1 − M).
Occlusion, RISE, LIME and KernelSHAP differ only in their masks and in what they make of
the scores f(x̃); :func:`masked_scores` evaluates every (sample, mask) pair in chunks of
``batch_size`` rows, generating only the masks that a chunk needs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..batching import broadcast_like, expanded_rows
from ..checks import check_finite
from ..task import Task
from .baselines import BaselineSpec, make_baseline

#: variant indices (n,) -> masks (n, *mask_shape), mask_shape broadcastable to one sample
MaskSource = Callable[[Tensor], Tensor]
FILLS = ("zero", "mean", "blur")


def make_fill(spec: BaselineSpec, x: Tensor, blur_sigma: float) -> Tensor:
    """The values that replace masked-out inputs: zero, mean, blur, a number, or a tensor."""
    if isinstance(spec, Tensor):
        try:
            shape = torch.broadcast_shapes(spec.shape, x.shape)
        except RuntimeError:
            shape = None
        if shape != x.shape:
            raise ValueError(
                f"a fill tensor of shape {tuple(spec.shape)} does not broadcast to inputs of "
                f"shape {tuple(x.shape)}; give one sample's shape {tuple(x.shape[1:])} or a "
                "shape that broadcasts to it (e.g. one value per channel)"
            )
        check_finite(spec, "the fill tensor")
    elif isinstance(spec, bool) or not (isinstance(spec, (int, float)) or spec in FILLS):
        raise ValueError(
            f"unknown fill {spec!r}; use one of {', '.join(map(repr, FILLS))}, a number, "
            "or a tensor broadcastable to the inputs"
        )
    return make_baseline(spec, x, sigma=blur_sigma)


def positive_ints(value: int | tuple[int, ...], length: int, what: str) -> tuple[int, ...]:
    """A size setting as a tuple: an int repeated ``length`` times, or a tuple of ints >= 1."""
    sizes = (value,) * length if isinstance(value, int) else tuple(value)
    if not sizes or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
        raise ValueError(f"{what} must be a positive int or a tuple of them, got {value!r}")
    return sizes


def check_count(value: int, what: str) -> None:
    """A count setting (masks, coalitions) must be a positive int."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"samples must be a positive int ({what}), got {value!r}")


def score_at_input(task: Task, x: Tensor) -> Tensor:
    """f(x) per sample, reusing the first forward pass when it was made on ``x``."""
    first = task.first_forward_at(x)
    if first is not None:
        return task.target.score(first.output).detach()
    with torch.no_grad():
        return task.score(x)


def masked_scores(
    task: Task,
    x: Tensor,
    fill: Tensor,
    masks: MaskSource,
    n_masks: int,
    batch_size: int | None,
    *,
    masks_keep: bool = True,
    accumulate: bool = False,
    centre: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Scores sₙ = f(x̃ₙ) for every sample and mask, and optionally Σₙ (sₙ − c) Mₙ.

    Args:
        masks: gives the masks for a range of mask indices; called once per chunk.
        masks_keep: the masks mark what is kept (RISE, LIME, KernelSHAP); with ``False``
            they mark what is filled (occlusion windows), x̃ = x + M ⊙ (fill − x).
        accumulate: also return Σₙ (sₙ − c_b) Mₙ per sample b, shape (B, *mask_shape),
            summed on the fly so that no (B, n_masks, ...) tensor is ever built.
        centre: c_b, one value per sample subtracted from its scores before accumulating.

    Returns:
        (scores (B, n_masks), the weighted mask sum or ``None``).
    """
    delta = x - fill
    scores = x.new_empty(len(x), n_masks)
    total: Tensor | None = None
    with torch.no_grad():
        for sample, variant in expanded_rows(len(x), n_masks, batch_size, x.device):
            first = int(variant[0])
            chunk = masks(torch.arange(first, int(variant[-1]) + 1, device=x.device))
            mask = chunk.to(x)[variant - first]
            kept = mask if masks_keep else 1 - mask
            s = task.take(sample).score(fill[sample] + kept * delta[sample])
            scores[sample, variant] = s
            if accumulate:
                weight = s if centre is None else s - centre[sample]
                if total is None:
                    total = x.new_zeros(len(x), *mask.shape[1:])
                total.index_add_(0, sample, broadcast_like(weight, mask) * mask)
    return scores, total
