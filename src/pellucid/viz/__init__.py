"""Heatmaps, overlays and figure grids (needs the ``viz`` extra: Pillow, matplotlib).

>>> import torch
>>> from pellucid.viz import heatmap, overlay, to_rgb
>>> x = torch.rand(2, 3, 8, 8)
>>> heat = heatmap(torch.randn(2, 3, 8, 8), cmap="bwr", reduce="sum")
>>> heat.shape, overlay(x, heat, alpha=0.5).shape
((2, 8, 8, 3), (2, 8, 8, 3))
"""

from .colormaps import COLORMAPS, Colormap, get_colormap
from .figure import grid
from .heatmap import REDUCTIONS, heatmap, normalise, reduce_channels
from .images import overlay, to_rgb, upscale
from .io import IMAGE_SUFFIXES, png_bytes, read_image, save_png

__all__ = [
    "COLORMAPS",
    "IMAGE_SUFFIXES",
    "REDUCTIONS",
    "Colormap",
    "get_colormap",
    "grid",
    "heatmap",
    "normalise",
    "overlay",
    "png_bytes",
    "read_image",
    "reduce_channels",
    "save_png",
    "to_rgb",
    "upscale",
]
