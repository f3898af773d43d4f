"""Attribution maps and feature groups shared by the metrics.

Images and other inputs with spatial dimensions are compared per location: the
attribution is summed over the channel dimension (B×C×H×W -> B×H×W). Tabular inputs
(B×D) are compared per feature, token ids (B×L) per token.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..checks import check_finite, check_inputs
from ..errors import ArgumentError, ArgumentTypeError
from ..perturb import Groups, feature_groups
from ..tokens import is_token_ids
from .stats import wide

Patch = int | tuple[int, ...] | None


def location_map(attribution: Tensor) -> Tensor:
    """The attribution per location: summed over channels when there are spatial dims; in
    float32 at least (:func:`~pellucid.metrics.stats.wide`), summed there without a copy.

    Example:
        >>> location_map(torch.full((1, 3, 2, 2), 3e4, dtype=torch.float16))[0, 0, 0].item()
        90000.0
    """
    dtype = torch.promote_types(attribution.dtype, torch.float32)
    return attribution.sum(1, dtype=dtype) if attribution.ndim > 2 else attribution.to(dtype)


def check_metric_inputs(inputs: Any, argument: str = "inputs") -> None:
    """The inputs of a metric: real floating inputs or token ids (B, L), integers ≥ 0
    (:func:`pellucid.checks.check_inputs` with ``token_ids``); errors name ``argument``.

    Example:
        >>> import torch
        >>> check_metric_inputs(torch.tensor([[101, 7592, 102]]))
    """
    check_inputs(inputs, argument, token_ids=True)
    if is_token_ids(inputs) and (inputs.ndim != 2 or inputs.shape[1] == 0):
        raise ArgumentError(
            argument,
            f"{argument} have the integer dtype {inputs.dtype} and shape {tuple(inputs.shape)}; "
            "integer inputs are token ids (B, L), at least one token per sample. For "
            f"real-valued inputs convert with {argument}.float()",
        )


def shapes_accepted(x: Tensor) -> str:
    """The attribution (and mask) shapes accepted for inputs ``x``, for messages."""
    if is_token_ids(x):
        return (f"one value per token, the inputs' shape {tuple(x.shape)}, or one vector per "
                f"token {(*x.shape, 'D')} (summed over D)")
    if x.ndim <= 2:
        return f"the inputs' shape {tuple(x.shape)}"
    b, c, *spatial = x.shape
    return (f"the inputs' shape {tuple(x.shape)}, or one map per sample {(b, 1, *spatial)} or "
            f"{(b, *spatial)} for all {c} channels")


def as_attribution(
    values: Any,
    x: Tensor,
    argument: str,
    what: str = "the attributions",
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Attributions for inputs ``x`` (a tensor or NumPy array) as a finite tensor of ``x``'s
    shape, dtype and device; errors name ``argument``.

    For inputs with channels, (B, C, *S), one map per sample, (B, 1, *S) or (B, *S) as
    Quantus users pass them, is the *location map* m itself: each of the C channels gets
    m / C, so that the channel sum that every per-location metric reads is exactly m.
    For token ids (B, L) the attribution is one value per token, in ``dtype`` (default:
    torch's default floating dtype; real-valued inputs keep theirs); one vector per token
    (B, L, D), the attribution of the embedding output, is summed over D.

    Example:
        >>> import torch
        >>> x = torch.zeros(2, 3, 4, 4)
        >>> a = as_attribution(torch.ones(2, 4, 4), x, "attributions")
        >>> a.shape, float(location_map(a)[0, 0, 0])
        (torch.Size([2, 3, 4, 4]), 1.0)
    """
    if isinstance(values, np.ndarray):
        if values.dtype.kind not in "iuf":
            raise ArgumentTypeError(argument, f"{what} ({argument}) must hold real numbers, got "
                                    f"a NumPy array of dtype {values.dtype}")
        values = torch.from_numpy(np.ascontiguousarray(values))
    if not isinstance(values, Tensor):
        raise ArgumentTypeError(
            argument, f"{what} ({argument}) must be a tensor or a NumPy array of "
            f"{shapes_accepted(x)}, got {type(values).__name__}")
    if values.dtype == torch.bool or values.is_complex():
        raise ArgumentTypeError(argument, f"{what} ({argument}) must hold real numbers, got "
                                f"dtype {values.dtype}")
    tokens = is_token_ids(x)
    dtype = (dtype or torch.get_default_dtype()) if tokens else x.dtype
    values = values.detach().to(device=x.device, dtype=dtype)
    if tokens and values.shape[:2] == x.shape and values.ndim == 3:
        values = values.sum(2)
    if x.ndim > 2 and values.shape in ((x.shape[0], *x.shape[2:]), (x.shape[0], 1, *x.shape[2:])):
        values = (values.reshape(x.shape[0], 1, *x.shape[2:]) / x.shape[1]).expand(x.shape)
    if values.shape != x.shape:
        raise ArgumentError(
            argument, f"{what} ({argument}) have shape {tuple(values.shape)}; give "
            f"{shapes_accepted(x)} (the attributions of these inputs)")
    check_finite(values, what, argument=argument,
                 fix="a metric cannot rank them; pass finite attributions")
    return values.contiguous()


def flat_map(attribution: Tensor) -> Tensor:
    """The location map flattened to (B, N)."""
    return location_map(attribution).flatten(1)


def patch_groups(x: Tensor, patch: Patch) -> Groups:
    """Patches of ``patch`` locations (shared by channels); one group per feature for B×D."""
    return feature_groups(x, None, patch if x.ndim > 2 else None)


def group_sums(values: Tensor, groups: Groups) -> Tensor:
    """Σ of ``values`` (B, ...) within each group: (B, G), in float32 at least."""
    labels = groups.labels.expand(values.shape[1:]).reshape(-1)
    values = wide(values.flatten(1))
    return values.new_zeros(len(values), groups.count).index_add_(1, labels, values)


def average_ranks(values: Tensor) -> Tensor:
    """Ranks for rank correlation (B, n), float64: ascending from 0, tied values share the
    mean of their positions (scipy's ``rankdata(method="average")`` minus 1). Spearman's ρ
    is the Pearson correlation of these ranks; ordinal ranks would turn ties (a map of zeros,
    a ReLU-clipped map) into an arbitrary order and an arbitrary correlation."""
    ordered, order = values.sort(dim=1, stable=True)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    group = starts.long().cumsum(1) - 1
    positions = torch.arange(values.shape[1], device=values.device, dtype=torch.float64)
    positions = positions.expand(ordered.shape)
    total = torch.zeros_like(positions).scatter_add_(1, group, positions)
    count = torch.zeros_like(positions).scatter_add_(1, group, torch.ones_like(positions))
    mean_position = (total / count.clamp(min=1)).gather(1, group)
    return torch.empty_like(mean_position).scatter_(1, order, mean_position)


def ranks(values: Tensor, descending: bool = True) -> Tensor:
    """The position of every entry of each row in an order (0 = first), (B, G) long; ties
    keep their index order. For orderings (what to remove first), not for correlations
    (:func:`average_ranks`)."""
    order = values.argsort(dim=1, descending=descending, stable=True)
    rank = torch.empty_like(order)
    positions = torch.arange(values.shape[1], device=values.device).expand_as(order)
    return rank.scatter_(1, order, positions)
