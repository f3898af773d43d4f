"""Localisation against ground-truth masks (nonzero marks the object), per location.

- ``localisation.pointing_game`` (Zhang et al. 2018; used in Arras et al. 2022): 1 when the
  location of maximal relevance lies in the mask (within ``tolerance`` locations), else 0.
- ``localisation.relevance_mass`` (Arras et al. 2022, CLEVR-XAI): R_within / R_total, the
  share of the (positive) relevance that falls inside the mask.
- ``localisation.relevance_rank`` (Arras et al. 2022): with K = |mask|, the fraction of the
  K most relevant locations that lie inside the mask, |top-K ∩ mask| / K.

Relevance is summed over channels first; masks of the inputs' shape are reduced with
"any channel".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Case, Metric, Scores, register_metric
from .maps import flat_map, location_map


def location_masks(case: Case) -> Tensor:
    """The ground-truth masks as booleans with the location map's shape (B, *spatial)."""
    if case.masks is None:
        raise ValueError(
            "localisation metrics need ground-truth masks: pass masks=<(B, *spatial) tensor>"
        )
    masks = case.masks
    x = case.forward.inputs
    if x.ndim > 2 and masks.shape == x.shape:
        masks = masks.ne(0).any(1)
    expected = location_map(x).shape
    if masks.shape != expected:
        raise ValueError(
            f"masks have shape {tuple(masks.shape)}; give one mask per sample of shape "
            f"{tuple(expected)} (the inputs' spatial shape) or the inputs' shape"
        )
    empty = ~masks.ne(0).flatten(1).any(1)
    if empty.any():
        raise ValueError(f"the masks of samples {empty.nonzero().flatten().tolist()} are empty")
    return masks.ne(0)


def relevance_mass(attribution: Tensor, masks: Tensor, positive_only: bool = True) -> Tensor:
    """Σ_{p∈mask} R_p / Σ_p R_p per sample, R summed over channels (and clamped at 0 when
    ``positive_only``); NaN for a sample without (positive) relevance. ``masks``: (B, *spatial).
    """
    relevance = flat_map(attribution)
    if positive_only:
        relevance = relevance.clamp(min=0)
    inside = (relevance * masks.flatten(1).to(relevance.dtype)).sum(1)
    return inside / relevance.sum(1)


@register_metric("localisation.pointing_game")
@dataclass(frozen=True, eq=False)
class PointingGame(Metric):
    """Pointing game (Zhang et al. 2018): 1 if argmax relevance hits the mask, else 0."""

    tolerance: int = 0

    def compute(self, case: Case) -> Scores:
        masks = location_masks(case)
        if self.tolerance > 0 and masks.ndim > 2:
            size = 2 * self.tolerance + 1
            pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[masks.ndim - 2]
            masks = pool(masks.float().unsqueeze(1), size, 1, self.tolerance).squeeze(1).bool()
        best = flat_map(case.attribution).argmax(1, keepdim=True)
        return Scores(masks.flatten(1).gather(1, best).squeeze(1).to(case.forward.inputs.dtype))


@register_metric("localisation.relevance_mass")
@dataclass(frozen=True, eq=False)
class RelevanceMass(Metric):
    """Relevance mass accuracy (Arras et al. 2022): Σ_{p∈mask} R_p / Σ_p R_p over R > 0."""

    positive_only: bool = True

    def compute(self, case: Case) -> Scores:
        return Scores(relevance_mass(case.attribution, location_masks(case), self.positive_only))


@register_metric("localisation.relevance_rank")
@dataclass(frozen=True, eq=False)
class RelevanceRank(Metric):
    """Relevance rank accuracy (Arras et al. 2022): |top-K relevant ∩ mask| / K, K = |mask|."""

    def compute(self, case: Case) -> Scores:
        masks = location_masks(case).flatten(1)
        relevance = flat_map(case.attribution)
        size = masks.sum(1)
        order = relevance.argsort(dim=1, descending=True, stable=True)
        in_top = torch.arange(masks.shape[1], device=masks.device) < size.unsqueeze(1)
        hits = (masks.gather(1, order) & in_top).sum(1)
        return Scores(hits.to(case.forward.inputs.dtype) / size)
