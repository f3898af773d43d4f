"""Attribution maps and feature groups shared by the metrics.

Images and other inputs with spatial dimensions are compared per location: the
attribution is summed over the channel dimension (B×C×H×W -> B×H×W). Tabular inputs
(B×D) are compared per feature.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..perturb import Groups, feature_groups

Patch = int | tuple[int, ...] | None


def location_map(attribution: Tensor) -> Tensor:
    """The attribution per location: summed over channels when there are spatial dims."""
    return attribution.sum(1) if attribution.ndim > 2 else attribution


def flat_map(attribution: Tensor) -> Tensor:
    """The location map flattened to (B, N)."""
    return location_map(attribution).flatten(1)


def patch_groups(x: Tensor, patch: Patch) -> Groups:
    """Patches of ``patch`` locations (shared by channels); one group per feature for B×D."""
    return feature_groups(x, None, patch if x.ndim > 2 else None)


def group_sums(values: Tensor, groups: Groups) -> Tensor:
    """Σ of ``values`` (B, ...) within each group: (B, G)."""
    labels = groups.labels.expand(values.shape[1:]).reshape(-1)
    out = values.new_zeros(len(values), groups.count)
    return out.index_add_(1, labels, values.flatten(1))


def ranks(values: Tensor, descending: bool = True) -> Tensor:
    """The rank of every entry of each row (0 = first in the order), (B, G) long."""
    order = values.argsort(dim=1, descending=descending, stable=True)
    rank = torch.empty_like(order)
    positions = torch.arange(values.shape[1], device=values.device).expand_as(order)
    return rank.scatter_(1, order, positions)
