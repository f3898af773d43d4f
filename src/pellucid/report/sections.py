"""The sections of the demo report; each builder maps a DemoContext to a Section (or None).

:data:`SECTIONS` lists them in page order. Another part of pellucid adds its own section
with ``SECTIONS.append(builder)`` (or passes ``sections=`` to ``run_demo``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ..api import describe_methods
from ..concepts.report_section import tcav_section
from ..features.report_section import prototypes_section
from ..metrics.localisation import relevance_mass
from ..metrics.report_section import evaluation_section
from ..viz import COLORMAPS, heatmap, to_rgb
from .demo import DemoContext, MethodRun
from .html import Section, bar, esc, figure, image, table

#: the colour map of every heatmap in the report (red positive, blue negative)
REPORT_CMAP = "bwr"


def header(ctx: DemoContext) -> str:
    """The page header: title, what was run, and each model's test accuracy."""
    cards = "".join(
        f'<div class="stat"><b>{100 * acc:.1f}%</b><span>{esc(model.name)} · '
        f"{esc(split.replace('_', ' '))}"
        "</span></div>"
        for model in ctx.models.values()
        for split, acc in model.accuracy.items()
    )
    mode = " (quick run)" if ctx.quick else ""
    return (
        f"<h1>pellucid demo report{mode}</h1>"
        f"<p>{len(ctx.methods)} attribution methods on {len(ctx.gallery)} test images of the "
        "generated shapes data, and a Clever-Hans model that learned a watermark shortcut.</p>"
        f'<div class="cards">{cards}</div>'
    )


def legend() -> str:
    """The colour bar of the heatmaps, from −max|R| to +max|R|."""
    strip = np.repeat(COLORMAPS[REPORT_CMAP].table[None], 12, axis=0)
    return (
        f'<div class="legend"><span>−max|R|</span>{image(strip, "colour bar")}'
        "<span>+max|R|</span><span>· relevance summed over colour channels, each map "
        "scaled by its own max|R|, so white is 0, red supports the class, blue speaks "
        "against it</span></div>"
    )


def per_image(run: MethodRun, images: int) -> str:
    ms = 1000 * run.seconds / images
    return f"{ms:.1f} ms/img" if ms < 10 else f"{ms:.0f} ms/img"


def methods_section(ctx: DemoContext) -> Section:
    """A table of the methods: description, time per image, and status or error."""
    runs = ctx.explain("main", "gallery", ctx.gallery.images)
    described = describe_methods()
    rows = [
        (
            f"<b>{esc(r.method)}</b>",
            esc(described.get(r.method, "")),
            per_image(r, len(ctx.gallery)),
            '<span class="ok">ok</span>' if r.ok else f'<span class="bad">{esc(r.error)}</span>',
        )
        for r in runs
    ]
    return Section(
        "Methods",
        "methods",
        table(["method", "what it computes", "time", "status"], rows, numeric=(2,)),
        lead=f"Every registered method, run on the batch of {len(ctx.gallery)} images with "
        f"the model <b>{esc(ctx.models['main'].name)}</b>. Failed methods are listed with "
        "their error.",
    )


def _mask_rgb(masks: Tensor, images: Tensor) -> np.ndarray:
    """The mask over a darkened copy of the image (B, H, W, 3)."""
    dim = 0.25 * images + 0.75 * masks[:, None].to(images.dtype)
    return to_rgb(dim.clamp(0, 1))


def image_cards(
    images: Tensor, masks: Tensor, titles: Sequence[str], runs: list[MethodRun], mask_caption: str
) -> str:
    """One card per image: input, mask, and every method's heatmap with its time."""
    inputs, mask_pictures = to_rgb(images), _mask_rgb(masks, images)
    heat = {r.method: heatmap(r.attribution, REPORT_CMAP) for r in runs if r.ok}
    cards = []
    for k, title in enumerate(titles):
        tiles = "".join(
            figure(
                heat[r.method][k] if r.ok else None,
                r.method,
                per_image(r, len(images)) if r.ok else r.error[:60],
            )
            for r in runs
        )
        cards.append(
            f'<div class="card"><h3>{title}</h3><div class="row"><div class="fixed">'
            f"{figure(inputs[k], 'input', large=True)}"
            f"{figure(mask_pictures[k], mask_caption, large=True)}</div>"
            f'<div class="tiles">{tiles}</div></div></div>'
        )
    return "".join(cards)


def _predictions(model: torch.nn.Module, images: Tensor) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        p = torch.softmax(model(images), dim=1)
    confidence, predicted = p.max(1)
    return predicted, confidence


def gallery_section(ctx: DemoContext) -> Section:
    """Heatmaps of every method for each test image, next to the ground-truth mask."""
    data = ctx.gallery
    runs = ctx.explain("main", "gallery", data.images)
    predicted, confidence = _predictions(ctx.models["main"].model, data.images)
    names = data.class_names
    titles = [
        f"Test image {k + 1}<small>true: {esc(names[int(data.labels[k])])} · predicted: "
        f"{esc(names[int(predicted[k])])} (p = {float(confidence[k]):.2f})</small>"
        for k in range(len(data))
    ]
    return Section(
        "Explanations",
        "explanations",
        legend() + image_cards(data.images, data.masks, titles, runs, "object mask"),
        lead="Each heatmap explains the predicted class. The object mask is the ground truth: "
        "the shape that decides the class; the smaller shapes are distractors.",
    )


def _fraction_cell(run: MethodRun, masks: Tensor, chance: float, control: bool) -> str:
    if not run.ok:
        return '<span class="bad">failed</span>'
    fraction = float(relevance_mass(run.attribution, masks).nanmean())
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
    predicted, confidence = _predictions(ctx.models["shortcut"].model, data.images[:shown])
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
        [_first(r, shown) for r in shortcut],
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


def _first(run: MethodRun, n: int) -> MethodRun:
    attribution = run.attribution[:n] if run.ok else None
    return MethodRun(run.method, attribution, run.seconds, run.error)


SECTIONS: list[Callable[[DemoContext], Section | None]] = [
    methods_section,
    gallery_section,
    clever_hans_section,
    evaluation_section,
    prototypes_section,
    tcav_section,
]

__all__ = [
    "SECTIONS",
    "clever_hans_section",
    "gallery_section",
    "header",
    "image_cards",
    "methods_section",
]
