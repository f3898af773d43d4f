"""Chunking of expanded batches, so that memory stays bounded whatever the expansion.

Methods that evaluate the model on many variants of each sample (integration steps,
noisy copies, perturbations) flatten the (variant, sample) grid into rows and evaluate
at most ``batch_size`` rows per forward pass.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from .checks import check_count

DEFAULT_BATCH_SIZE = 64


def row_chunks(
    total: int, batch_size: int | None, device: torch.device | None = None
) -> Iterator[Tensor]:
    """Yield LongTensors of consecutive row indices 0..total-1, at most ``batch_size`` each."""
    for start, stop in chunk_bounds(total, batch_size):
        yield torch.arange(start, stop, device=device)


def chunk_bounds(total: int, batch_size: int | None) -> Iterator[tuple[int, int]]:
    """Yield the (start, stop) of the chunks of :func:`row_chunks` as Python ints, for
    decisions that must not read a device tensor (one host sync per chunk on a GPU).

    >>> list(chunk_bounds(5, 2))
    [(0, 2), (2, 4), (4, 5)]
    """
    size = check_batch_size(batch_size)
    for start in range(0, total, size):
        yield start, min(start + size, total)


def expanded_rows(
    n_samples: int, n_variants: int, batch_size: int | None, device: torch.device | None = None
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield (sample index, variant index) LongTensors for chunks of the flattened grid.

    Rows are ordered variant-major, so row r is sample ``r % n_samples`` of variant
    ``r // n_samples``; each chunk has at most ``batch_size`` rows.
    """
    for rows in row_chunks(n_samples * n_variants, batch_size, device):
        yield rows % n_samples, rows // n_samples


def check_batch_size(batch_size: int | None) -> int:
    """The rows per forward pass; ``None`` means the default."""
    if batch_size is None:
        return DEFAULT_BATCH_SIZE
    return check_count(batch_size, "batch_size", "rows per forward pass")


def broadcast_like(values: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-row vector (R,) to broadcast against rows of ``x`` (R, ...)."""
    return values.reshape(-1, *([1] * (x.ndim - 1)))
