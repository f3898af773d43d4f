"""The report's Explanations section: every method's heatmap of each gallery image."""

from __future__ import annotations

from .cards import image_cards, legend, predictions
from .context import DemoContext
from .html import Section, esc


def gallery_section(ctx: DemoContext) -> Section:
    """Heatmaps of every method for each test image, next to the ground-truth mask."""
    data = ctx.gallery
    results = ctx.explain("main", "gallery", data.images)
    predicted, confidence = predictions(ctx.models["main"].model, data.images)
    names = data.class_names
    titles = [
        f"Test image {k + 1}<small>true: {esc(names[int(data.labels[k])])} · predicted: "
        f"{esc(names[int(predicted[k])])} (p = {float(confidence[k]):.2f})</small>"
        for k in range(len(data))
    ]
    return Section(
        "Explanations",
        "explanations",
        legend() + image_cards(data.images, data.masks, titles, results, "object mask"),
        lead="Each heatmap explains the predicted class. The object mask is the ground truth: "
        "the shape that decides the class; the smaller shapes are distractors.",
    )


__all__ = ["gallery_section"]
