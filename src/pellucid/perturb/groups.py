"""Feature groups: a label per input element, 0..G−1 (LIME, KernelSHAP, region metrics).

Groups come from a ``feature_mask`` (integer labels broadcastable to one sample's shape,
e.g. superpixels (1, H, W) or column groups (D,)) or from a grid of ``patch``-sized cells
over the spatial dims (shared by the channels). With neither, tabular inputs N×D get one
group per feature and inputs with spatial dims a 4 × 4 (× 4) grid of patches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..checks import as_tensor
from ..errors import ArgumentError, ArgumentTypeError
from ..spatial import sizes_per_dim

#: patches per spatial dim when neither ``feature_mask`` nor ``patch`` is given
DEFAULT_PATCHES = 4


@dataclass(frozen=True)
class Groups:
    """``labels`` (with one sample's ndim, broadcastable to it) in 0..count−1."""

    labels: Tensor
    count: int
    #: the original label of each group (for a ``feature_mask``) or its patch index
    names: Tensor


def feature_groups(
    x: Tensor, feature_mask: Tensor | None, patch: int | tuple[int, ...] | None
) -> Groups:
    """The groups of the inputs ``x`` (B, ...) from a feature mask or a patch size."""
    shape = x.shape[1:]
    check_group_settings(feature_mask, patch)
    if feature_mask is not None:
        return _from_mask(as_labels(feature_mask), shape, x.device)
    spatial = shape[1:]
    if patch is None:
        if not spatial:
            labels = torch.arange(shape.numel(), device=x.device).reshape(shape)
            return Groups(labels, shape.numel(), labels.flatten().cpu())
        patch = tuple(math.ceil(n / DEFAULT_PATCHES) for n in spatial)
    if not spatial:
        raise ArgumentError(
            "patch",
            f"patch groups cells of the spatial dims, but inputs of shape {tuple(x.shape)} have "
            "none (tabular N×D); give feature_mask=<integer labels of shape (D,)> instead",
        )
    sizes = sizes_per_dim(patch, spatial, "patch")
    cells = [torch.arange(n, device=x.device) // s for n, s in zip(spatial, sizes)]
    per_dim = [math.ceil(n / s) for n, s in zip(spatial, sizes)]
    labels = torch.zeros((), dtype=torch.long, device=x.device)
    for cell, count in zip(cells, per_dim):
        labels = labels.unsqueeze(-1) * count + cell
    count = math.prod(per_dim)
    return Groups(labels.unsqueeze(0), count, torch.arange(count))


def check_group_settings(feature_mask: Any, patch: Any) -> None:
    """The checks that need no inputs: not both, a feature mask of integer labels."""
    if feature_mask is not None and patch is not None:
        raise ArgumentError(
            "feature_mask", "give either feature_mask or patch, not both (patch=None to use "
            "the feature_mask's groups)"
        )
    if feature_mask is not None:
        as_labels(feature_mask)


def as_labels(feature_mask: Any) -> Tensor:
    """``feature_mask`` as a tensor of integer group labels (a clear error otherwise)."""
    mask = as_tensor(feature_mask, "feature_mask", "a tensor of integer group labels")
    if mask.is_floating_point() or mask.is_complex() or mask.dtype == torch.bool:
        raise ArgumentTypeError(
            "feature_mask",
            f"feature_mask must hold integer group labels, got dtype {mask.dtype}; convert "
            "with .long()",
        )
    return mask


def _from_mask(mask: Tensor, shape: torch.Size, device: torch.device) -> Groups:
    try:
        broadcast = torch.broadcast_shapes(mask.shape, shape) == shape
    except RuntimeError:
        broadcast = False
    if not broadcast:
        raise ArgumentError(
            "feature_mask",
            f"feature_mask has shape {tuple(mask.shape)}, which does not broadcast to one "
            f"sample of shape {tuple(shape)}; give labels of shape {tuple(shape)} or one that "
            "broadcasts to it (e.g. (1, H, W) for groups shared by the channels)",
        )
    names, labels = torch.unique(mask, return_inverse=True)
    labels = labels.reshape((1,) * (len(shape) - mask.ndim) + tuple(mask.shape))
    return Groups(labels.to(device), len(names), names.cpu())
