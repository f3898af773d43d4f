"""Heatmaps, overlays and figure grids (needs the ``viz`` extra: Pillow, matplotlib).

Arrays (uint8 RGB (B, H, W, 3) or opacities (B, H, W)) for people who compose their own:
:func:`heatmap`, :func:`to_rgb`, :func:`overlay`, :func:`opacity`, :func:`upscale`,
:func:`normalise`, :func:`relevance_scale`. Figures (``matplotlib.figure.Figure``, no
pyplot): :func:`plot` (one explanation), :func:`compare` (methods side by side),
:func:`grid` (any columns of pictures).

>>> import torch
>>> from pellucid.viz import heatmap, overlay, to_rgb
>>> x = torch.rand(2, 3, 8, 8)
>>> heat = heatmap(torch.randn(2, 3, 8, 8), cmap="bwr", reduce="sum")
>>> heat.shape, overlay(x, heat, alpha=0.5).shape
((2, 8, 8, 3), (2, 8, 8, 3))
"""

from .colormaps import COLORMAPS, Colormap, get_colormap
from .display import compare, plot
from .figure import grid
from .heatmap import REDUCTIONS, SCALES, heatmap, normalise, reduce_channels, relevance_scale
from .images import opacity, overlay, to_rgb, upscale
from .io import IMAGE_SUFFIXES, png_bytes, read_image, save_png

__all__ = [
    "COLORMAPS",
    "IMAGE_SUFFIXES",
    "REDUCTIONS",
    "SCALES",
    "Colormap",
    "compare",
    "get_colormap",
    "grid",
    "heatmap",
    "normalise",
    "opacity",
    "overlay",
    "plot",
    "png_bytes",
    "read_image",
    "reduce_channels",
    "relevance_scale",
    "save_png",
    "to_rgb",
    "upscale",
]
