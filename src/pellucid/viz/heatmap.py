"""Relevance to colour: channel reduction, symmetric normalisation, colour lookup.

A heatmap shows one relevance map R (H, W) per image. Channels are reduced first
(:data:`REDUCTIONS`). Signed maps are normalised symmetrically, v = R / max|R| per image, so
that v ∈ [−1, 1] and R = 0 lands on the centre of the colour map (white for ``bwr``, black
for ``coldnhot``); with the LRP convention, red is positive relevance and blue negative
(Montavon et al. 2018, "Methods for interpreting and understanding deep neural networks").
Positive maps (for CAMs) show max(R, 0) / max R. Everything is batched: no loop over images
or pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .colormaps import Colormap, get_colormap

#: channel reductions (B, C, H, W) → (B, H, W); only ``sum`` keeps the sign
REDUCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "sum": lambda r: r.sum(1),
    "abs_sum": lambda r: r.abs().sum(1),
    "max_abs": lambda r: r.abs().amax(1),
    "l2": lambda r: r.square().sum(1).sqrt(),
}


def as_tensor(relevance: Any) -> Tensor:
    """The attribution of an :class:`~pellucid.Explanation`, or ``relevance`` as a tensor."""
    relevance = getattr(relevance, "attribution", relevance)
    return torch.as_tensor(relevance).detach().cpu()


def reduce_channels(relevance: Any, reduce: str = "sum") -> Tensor:
    """Relevance maps (B, H, W) from a batch (B, C, H, W); (B, H, W) passes through.

    ``reduce`` is one of ``sum`` (Σ_c R_c, signed), ``abs_sum`` (Σ_c |R_c|), ``max_abs``
    (max_c |R_c|) or ``l2`` ((Σ_c R_c²)^½).
    """
    r = as_tensor(relevance).double()
    if r.ndim == 3:
        return r
    if r.ndim != 4:
        raise ValueError(
            f"relevance has shape {tuple(r.shape)}; heatmaps need images (B, C, H, W) or maps "
            "(B, H, W) (a single image x becomes x.unsqueeze(0))"
        )
    if reduce not in REDUCTIONS:
        from ..registry import suggest

        raise KeyError(
            f"unknown channel reduction {reduce!r}.{suggest(reduce, list(REDUCTIONS))} "
            f"Use one of {', '.join(REDUCTIONS)}"
        )
    return REDUCTIONS[reduce](r)


def normalise(maps: Tensor, signed: bool = True, clip_quantile: float = 1.0) -> Tensor:
    """Maps (B, H, W) scaled per image to [−1, 1] (signed) or [0, 1] (positive part).

    The scale is the ``clip_quantile`` quantile of |R| (signed) or of max(R, 0) per image:
    1.0 is the maximum; 0.99 lets the top 1 % saturate. An all-zero map stays zero.
    """
    if not 0.0 < clip_quantile <= 1.0:
        raise ValueError(f"clip_quantile must be in (0, 1], got {clip_quantile}")
    values = maps if signed else maps.clamp(min=0)
    flat = values.abs().flatten(1)
    scale = flat.amax(1) if clip_quantile == 1.0 else torch.quantile(flat, clip_quantile, dim=1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale)).view(-1, 1, 1)
    return (values / scale).clamp(-1.0 if signed else 0.0, 1.0)


def colorize(normalised: Tensor, cmap: Colormap) -> np.ndarray:
    """uint8 RGB (B, H, W, 3) for values in [−1, 1] (signed map) or [0, 1] (positive map)."""
    position = (normalised + 1) / 2 if cmap.signed else normalised
    top = len(cmap.table) - 1
    index = (position * top).round().long().clamp(0, top).numpy()
    return cmap.table[index]


def heatmap(
    relevance: Any,
    cmap: str | Colormap = "bwr",
    reduce: str = "sum",
    *,
    signed: bool | None = None,
    clip_quantile: float = 1.0,
) -> np.ndarray:
    """Heatmaps as uint8 RGB arrays (B, H, W, 3), or (H, W, 3) for one map (H, W).

    Args:
        relevance: an :class:`~pellucid.Explanation`, or relevance (B, C, H, W), (B, H, W)
            or (H, W) as a tensor or array.
        cmap: a name from :data:`~pellucid.viz.colormaps.COLORMAPS` (``bwr``, ``seismic``,
            ``coldnhot``, ``gray``; positive: ``hot``, ``inferno``, ``jet``, ``gray_r``), a
            matplotlib name, or a :class:`Colormap`.
        reduce: channel reduction, see :func:`reduce_channels`.
        signed: override the colour map's kind (signed: 0 at the centre; positive: 0 at
            the bottom and negative values clipped).
        clip_quantile: per-image quantile of |R| that maps to the ends of the colour map.

    Example:
        >>> import torch
        >>> from pellucid.viz import heatmap
        >>> heatmap(torch.tensor([[1.0, 0.0, -1.0]]), "bwr")[0].tolist()
        [[255, 0, 0], [255, 255, 255], [0, 0, 255]]
    """
    r = as_tensor(relevance)
    single = r.ndim == 2
    maps = reduce_channels(r[None] if single else r, reduce)
    colours = get_colormap(cmap, signed)
    rgb = colorize(normalise(maps, colours.signed, clip_quantile), colours)
    return rgb[0] if single else rgb


__all__ = ["REDUCTIONS", "as_tensor", "colorize", "heatmap", "normalise", "reduce_channels"]
