"""The report's Clever Hans section: relevance on the watermark, shortcut model vs. control.

For each method, the fraction of positive relevance inside the watermark's mask
(:func:`~pellucid.metrics.localisation.relevance_mass`, Σ max(R, 0)·M / Σ max(R, 0)) on
watermarked test images, for the model that learned the shortcut and for the model trained
without it, against the watermark's share of the image area (Lapuschkin et al. 2019).
"""

from __future__ import annotations

import math

from torch import Tensor

from ..metrics.localisation import relevance_mass
from .cards import image_cards, predictions
from .context import DemoContext, MethodResult
from .html import Section, bar, esc, table


def _fraction_cell(result: MethodResult, masks: Tensor, chance: float, control: bool) -> str:
    if not result.ok:
        return '<span class="bad">failed</span>'
    fraction = float(relevance_mass(result.attribution, masks).nanmean())
    if math.isnan(fraction):
        return '<span class="bad">no positive relevance</span>'
    return (
        f'<div style="display:flex;gap:8px;align-items:center">'
        f"{bar(fraction, chance, control)}<span>{100 * fraction:.0f}%</span></div>"
    )


def clever_hans_section(ctx: DemoContext) -> Section | None:
    """Relevance on the watermark: the shortcut model against the model trained without it."""
    data = ctx.clever_hans
    if data is None or "shortcut" not in ctx.models:
        return None
    masks = data.watermark_masks
    target = ctx.shortcut_class
    shortcut = ctx.explain("shortcut", "clever_hans", data.images, target)
    control = ctx.explain("main", "clever_hans", data.images, target)
    chance = float(masks.flatten(1).float().mean())
    rows = [
        (
            f"<b>{esc(s.method)}</b>",
            _fraction_cell(s, masks, chance, False),
            _fraction_cell(c, masks, chance, True),
        )
        for s, c in zip(shortcut, control)
    ]
    class_name = data.class_names[target]
    shown = min(2, len(data))
    predicted, confidence = predictions(ctx.models["shortcut"].model, data.images[:shown])
    titles = [
        f"Watermarked test image {k + 1}<small>true: "
        f"{esc(data.class_names[int(data.labels[k])])} · shortcut model predicts "
        f"{esc(data.class_names[int(predicted[k])])} (p = {float(confidence[k]):.2f})</small>"
        for k in range(shown)
    ]
    examples = image_cards(
        data.images[:shown],
        masks[:shown],
        titles,
        [_first_rows(r, shown) for r in shortcut],
        "watermark mask",
    )
    body = (
        '<div class="card">'
        + table(
            [
                "method",
                "shortcut model: relevance on the watermark",
                f"{ctx.models['main'].name}: relevance on the watermark",
            ],
            rows,
        )
        + f'<p class="lead" style="margin-top:8px">The black tick marks the watermark\'s share '
        f"of the image area ({100 * chance:.1f}%): relevance spread evenly would put that "
        "fraction on it.</p></div>" + examples
    )
    return Section(
        "Clever Hans",
        "clever-hans",
        body,
        lead=f"In the shortcut model's training data every <b>{esc(class_name)}</b> carried a "
        "small watermark in a corner (Lapuschkin et al. 2019). Explaining the score of "
        f"<b>{esc(class_name)}</b> on {len(data)} watermarked test images, the table gives "
        "the fraction of positive relevance that falls inside the watermark's mask, for "
        "the shortcut model and for the model trained without the watermark.",
    )


def _first_rows(result: MethodResult, n: int) -> MethodResult:
    attribution = result.attribution[:n] if result.ok else None
    return MethodResult(result.method, attribution, result.seconds, result.error)


__all__ = ["clever_hans_section"]
