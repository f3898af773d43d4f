"""Small per-row statistics shared by the metrics."""

from __future__ import annotations

import torch
from torch import Tensor


def trapezoid(curves: Tensor, x_axis: Tensor) -> Tensor:
    """∫ curve dx by the trapezoid rule, per row."""
    return torch.trapezoid(curves, x_axis.to(curves), dim=1)


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation of the rows of ``a`` and ``b`` (B, n); NaN where one is constant."""
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
