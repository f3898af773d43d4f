"""Localisation against ground-truth masks (nonzero marks the object), per location.

- ``localisation.pointing_game`` (Zhang et al. 2018; used in Arras et al. 2022): 1 when the
  location of maximal relevance lies in the mask (within ``tolerance`` locations), else 0.
- ``localisation.relevance_mass`` (Arras et al. 2022, CLEVR-XAI): R_within / R_total, the
  share of the (positive) relevance that falls inside the mask.
- ``localisation.relevance_rank`` (Arras et al. 2022): with K = |mask|, the fraction of the
  K most relevant locations that lie inside the mask, |top-K ∩ mask| / K.

Relevance is summed over channels first; masks of the inputs' shape are reduced with
"any channel", masks (B, 1, *spatial) and (B, *spatial) are the location masks. Every
sample needs a non-empty mask. Token ids (B, L) take masks (B, L), one flag per token;
padding (:attr:`Case.valid`) is never in the mask and never the most relevant, and its
relevance does not count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..checks import check_bool, check_count, check_finite
from ..errors import ArgumentError, ArgumentTypeError
from .base import Case, Metric, Scores, register_metric
from .maps import flat_map, location_map, shapes_accepted


def check_masks(masks: Any, x: Tensor) -> Tensor:
    """Ground-truth masks for inputs ``x`` as booleans of the location map's shape
    (B, *spatial): a tensor or array (bool, integer or finite floating; nonzero marks the
    object) of that shape, of (B, 1, *spatial), or of the inputs' shape (a location is in
    the mask when any of its channels is).
    """
    if not isinstance(masks, Tensor):
        try:
            masks = torch.as_tensor(masks)
        except (TypeError, ValueError, RuntimeError):
            raise ArgumentTypeError(
                "masks", f"masks must be a tensor (B, *spatial), got {type(masks).__name__}"
            ) from None
    if masks.is_complex():
        raise ArgumentTypeError(
            "masks", f"masks must be bool, integer or floating (nonzero marks the object), got "
            f"dtype {masks.dtype}"
        )
    check_finite(masks, "masks", fix="mark the object with 1 (or True) and the rest with 0")
    masks = masks.to(x.device)
    if x.ndim > 2 and masks.shape in (x.shape, (x.shape[0], 1, *x.shape[2:])):
        masks = masks.ne(0).any(1)
    if masks.shape != location_map(x).shape:
        raise ArgumentError(
            "masks", f"masks have shape {tuple(masks.shape)}; give {shapes_accepted(x)}",
        )
    return masks.ne(0)


def location_masks(case: Case, metric: str = "localisation metrics") -> Tensor:
    """The ground-truth masks as booleans with the location map's shape (B, *spatial); an
    error for missing masks or a sample whose mask is empty."""
    if case.masks is None:
        raise ArgumentError(
            "masks", f"{metric} need ground-truth masks: pass masks=<(B, *spatial) tensor>"
        )
    masks = check_masks(case.masks, case.forward.inputs)
    if case.valid is not None:
        masks = masks & case.valid
    empty = ~masks.flatten(1).any(1)
    if empty.any():
        raise ArgumentError(
            "masks",
            f"the masks of samples {empty.nonzero().flatten().tolist()} are empty, so {metric} "
            "is undefined for them; leave those samples out or mark their object",
        )
    return masks


def relevance(case: Case, padding: float = 0.0) -> Tensor:
    """The location map of the attribution flattened to (B, N), ``padding`` at the padding
    of token ids (:attr:`Case.valid`)."""
    values = flat_map(case.attribution)
    valid = case.valid
    return values if valid is None else values.masked_fill(~valid, padding)


def relevance_mass(attribution: Tensor, masks: Tensor, positive_only: bool = True) -> Tensor:
    """Σ_{p∈mask} R_p / Σ_p R_p per sample, R summed over channels (and clamped at 0 when
    ``positive_only``); NaN for a sample without (positive) relevance. ``masks``: (B, *spatial).
    """
    relevance = flat_map(attribution)
    if positive_only:
        relevance = relevance.clamp(min=0)
    inside = (relevance * masks.flatten(1).to(relevance.dtype)).sum(1)  # float32 at least
    return inside / relevance.sum(1)


@register_metric("localisation.pointing_game")
@dataclass(frozen=True, eq=False)
class PointingGame(Metric):
    """Pointing game (Zhang et al. 2018): 1 if argmax relevance hits the mask, else 0.

    ``tolerance`` (≥ 0, in locations) dilates the masks along the spatial dims first.
    """

    tolerance: int = 0

    def __post_init__(self) -> None:
        check_count(self.tolerance, "tolerance", "the dilation, in locations", minimum=0)

    def compute(self, case: Case) -> Scores:
        masks = location_masks(case, self.name)
        spatial = 1 if case.tokens else case.forward.inputs.ndim - 2  # tokens: the sequence
        if self.tolerance > 0:
            if not 1 <= spatial <= 3:
                raise ArgumentError(
                    "tolerance",
                    f"tolerance dilates masks along 1 to 3 spatial dims; inputs of shape "
                    f"{tuple(case.forward.inputs.shape)} have {max(spatial, 0)}: pass "
                    "tolerance=0",
                )
            size = 2 * self.tolerance + 1
            pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[spatial - 1]
            masks = pool(masks.float().unsqueeze(1), size, 1, self.tolerance).squeeze(1).bool()
        values = relevance(case, -torch.inf)  # float32 at least
        best = values.argmax(1, keepdim=True)
        return Scores(masks.flatten(1).gather(1, best).squeeze(1).to(values.dtype))


@register_metric("localisation.relevance_mass")
@dataclass(frozen=True, eq=False)
class RelevanceMass(Metric):
    """Relevance mass accuracy (Arras et al. 2022): Σ_{p∈mask} R_p / Σ_p R_p over R > 0."""

    positive_only: bool = True

    def __post_init__(self) -> None:
        check_bool(self.positive_only, "positive_only")

    def compute(self, case: Case) -> Scores:
        masks = location_masks(case, self.name)
        values = case.attribution if case.valid is None else relevance(case)  # (B, L): a map
        return Scores(relevance_mass(values, masks, self.positive_only))


@register_metric("localisation.relevance_rank")
@dataclass(frozen=True, eq=False)
class RelevanceRank(Metric):
    """Relevance rank accuracy (Arras et al. 2022): |top-K relevant ∩ mask| / K, K = |mask|."""

    def compute(self, case: Case) -> Scores:
        masks = location_masks(case, self.name).flatten(1)
        size = masks.sum(1)
        values = relevance(case, -torch.inf)  # float32 at least
        order = values.argsort(dim=1, descending=True, stable=True)
        in_top = torch.arange(masks.shape[1], device=masks.device) < size.unsqueeze(1)
        hits = (masks.gather(1, order) & in_top).sum(1)
        return Scores(hits.to(values.dtype) / size)
