"""Small per-row statistics shared by the metrics.

Statistics are computed in float32 at least (float64 for correlations), whatever the model's
dtype: float16 overflows past 65504 and holds integers exactly only up to 2048, so a sum over
a 64×64 map or the ranks of its locations would be Inf, NaN or silently wrong in it.
"""

from __future__ import annotations

import torch
from torch import Tensor


def wide(values: Tensor) -> Tensor:
    """``values`` in float32 when their dtype is narrower (float16, bfloat16, integers);
    float32 and float64 stay as they are. Convert at the statistic, not before.

    Example:
        >>> wide(torch.ones(2, dtype=torch.float16)).dtype, wide(torch.ones(2).double()).dtype
        (torch.float32, torch.float64)
    """
    return values.to(torch.promote_types(values.dtype, torch.float32))


def trapezoid(curves: Tensor, x_axis: Tensor) -> Tensor:
    """∫ curve dx by the trapezoid rule, per row, in float32 at least."""
    curves = wide(curves)
    return torch.trapezoid(curves, x_axis.to(curves), dim=1)


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation of the rows of ``a`` and ``b`` (B, n), in float64:
    r = Σ(a − ā)(b − b̄) / (‖a − ā‖ ‖b − b̄‖); NaN where one is constant.

    Example:
        >>> round(float(pearson(torch.tensor([[1.0, 2, 3]]), torch.tensor([[2.0, 4, 6]]))), 12)
        1.0
    """
    a, b = a.double(), b.double()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
