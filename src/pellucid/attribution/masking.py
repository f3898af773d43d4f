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

from ..batching import broadcast_like, chunk_bounds, expanded_rows
from ..task import Task

#: variant indices (n,) -> masks (n, *mask_shape), mask_shape broadcastable to one sample
MaskSource = Callable[[Tensor], Tensor]
#: the rows the perturbation methods create, as their errors name them
MASKED = "masked copies"


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
        bounds = chunk_bounds(len(x) * n_masks, batch_size)  # the same chunks, as ints
        for (start, stop), (sample, variant) in zip(
                bounds, expanded_rows(len(x), n_masks, batch_size, x.device)):
            first = start // len(x)  # the chunk's first mask, without reading the device
            chunk = masks(torch.arange(first, (stop - 1) // len(x) + 1, device=x.device))
            mask = chunk.to(x)[variant - first]
            kept = mask if masks_keep else 1 - mask
            s = task.take(sample, MASKED).score(fill[sample] + kept * delta[sample])
            scores[sample, variant] = s
            if accumulate:
                weight = s if centre is None else s - centre[sample]
                if total is None:
                    total = x.new_zeros(len(x), *mask.shape[1:])
                total.index_add_(0, sample, broadcast_like(weight, mask) * mask)
    return scores, total
