"""Complexity: how concentrated an attribution is, over all its elements.

- ``complexity.sparseness`` (Chalasani et al. 2020): the Gini index of |a| sorted ascending,
  G = Σₖ (2k − n − 1) |a|₍ₖ₎ / (n Σₖ |a|₍ₖ₎), k = 1..n; one-hot gives (n − 1)/n, uniform 0.
- ``complexity.entropy`` (Bhatt et al. 2020): H = −Σᵢ pᵢ log pᵢ with pᵢ = |aᵢ| / Σⱼ |aⱼ|.

For token ids the padding (:attr:`Case.valid`) is left out: n counts a sample's valid
tokens only. Both are computed in float32 at least (:func:`~pellucid.metrics.stats.wide`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Case, Metric, Scores, register_metric
from .stats import wide


@register_metric("complexity.sparseness")
@dataclass(frozen=True, eq=False)
class Sparseness(Metric):
    """Sparseness (Chalasani et al. 2020): the Gini index of |a|; higher is sparser."""

    def compute(self, case: Case) -> Scores:
        values = case.attribution.flatten(1).abs()
        valid = case.valid
        if valid is not None:  # padding sorts first (as −1), then counts as 0
            values = values.masked_fill(~valid, -1.0)
        values = wide(values.sort(1).values.clamp(min=0))
        size = values.shape[1]
        n = (values.new_full((len(values), 1), size) if valid is None
             else valid.sum(1, keepdim=True).to(values.dtype))
        k = torch.arange(1, size + 1, device=values.device, dtype=values.dtype) - (size - n)
        return Scores(((2 * k - n - 1) * values).sum(1) / (n.squeeze(1) * values.sum(1)))


@register_metric("complexity.entropy")
@dataclass(frozen=True, eq=False)
class Entropy(Metric):
    """Complexity (Bhatt et al. 2020): the entropy of |a| / Σ|a|; lower is simpler."""

    direction = "lower"

    def compute(self, case: Case) -> Scores:
        values = wide(case.attribution.flatten(1).abs())
        if case.valid is not None:
            values = values.masked_fill(~case.valid, 0.0)
        p = values / values.sum(1, keepdim=True)
        return Scores(-torch.special.xlogy(p, p).sum(1))
