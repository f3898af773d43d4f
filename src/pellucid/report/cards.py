"""Pieces the report's sections share: heatmap cards, their colour legend, times, predictions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..viz import COLORMAPS, heatmap, to_rgb
from .context import MethodResult
from .html import figure, image

#: the colour map of every heatmap in the report (red positive, blue negative)
REPORT_CMAP = "bwr"


def legend() -> str:
    """The colour bar of the heatmaps, from −max|R| to +max|R|."""
    strip = np.repeat(COLORMAPS[REPORT_CMAP].table[None], 12, axis=0)
    return (
        f'<div class="legend"><span>−max|R|</span>{image(strip, "colour bar")}'
        "<span>+max|R|</span><span>· relevance summed over colour channels, each map "
        "scaled by its own max|R|, so white is 0, red supports the class, blue speaks "
        "against it</span></div>"
    )


def time_per_image(result: MethodResult, images: int) -> str:
    """The method's time per image of a batch of ``images``, e.g. ``2.5 ms/img``."""
    ms = 1000 * result.seconds / images
    return f"{ms:.1f} ms/img" if ms < 10 else f"{ms:.0f} ms/img"


def _mask_rgb(masks: Tensor, images: Tensor) -> np.ndarray:
    """The mask over a darkened copy of the image (B, H, W, 3)."""
    dim = 0.25 * images + 0.75 * masks[:, None].to(images.dtype)
    return to_rgb(dim.clamp(0, 1))


def image_cards(
    images: Tensor,
    masks: Tensor,
    titles: Sequence[str],
    results: list[MethodResult],
    mask_caption: str,
) -> str:
    """One card per image: input, mask, and every method's heatmap with its time."""
    inputs, mask_pictures = to_rgb(images), _mask_rgb(masks, images)
    heat = {r.method: heatmap(r.attribution, REPORT_CMAP) for r in results if r.ok}
    cards = []
    for k, title in enumerate(titles):
        tiles = "".join(
            figure(
                heat[r.method][k] if r.ok else None,
                r.method,
                time_per_image(r, len(images)) if r.ok else r.error[:60],
            )
            for r in results
        )
        cards.append(
            f'<div class="card"><h3>{title}</h3><div class="row"><div class="fixed">'
            f"{figure(inputs[k], 'input', large=True)}"
            f"{figure(mask_pictures[k], mask_caption, large=True)}</div>"
            f'<div class="tiles">{tiles}</div></div></div>'
        )
    return "".join(cards)


def predictions(model: torch.nn.Module, images: Tensor) -> tuple[Tensor, Tensor]:
    """(predicted class, its probability) for each of ``images``."""
    with torch.no_grad():
        p = torch.softmax(model(images), dim=1)
    confidence, predicted = p.max(1)
    return predicted, confidence


__all__ = ["REPORT_CMAP", "image_cards", "legend", "predictions", "time_per_image"]
