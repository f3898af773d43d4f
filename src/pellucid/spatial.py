"""Spatial dimensions: which they are, sizes given per dimension, and resizing maps.

Inputs and feature maps are N×C×S with S zero (tabular N×D), one (N×C×L), two (N×C×H×W)
or three (N×C×D×H×W) spatial dimensions. Maps are resized with
``torch.nn.functional.interpolate``; ``"auto"`` picks the linear mode of the map's
dimension (linear, bilinear or trilinear).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .checks import check_positive_int
from .errors import ArgumentError

#: the linear interpolation of maps with 1, 2 or 3 spatial dimensions
LINEAR_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}
#: every interpolation a map may be resized with; :func:`interpolations` gives those that fit
INTERPOLATIONS = ("auto", "nearest", "nearest-exact", "area", *LINEAR_MODES.values(), "bicubic")


def spatial_dims(x: Tensor) -> tuple[int, ...]:
    """The dimensions after batch and channel (N×C×L, N×C×H×W, ...); tabular N×D has none."""
    return tuple(range(2, x.ndim))


def check_spatial_input(x: Tensor, method: str) -> None:
    """Maps need inputs N×C×L, N×C×H×W or N×C×D×H×W to be drawn on."""
    if not 3 <= x.ndim <= 5:
        raise ArgumentError(
            "inputs",
            f"{method} draws a map over spatial dimensions, so it needs inputs N×C×L, N×C×H×W "
            f"or N×C×D×H×W; the inputs have shape {tuple(x.shape)}. For tabular inputs use "
            "a gradient method (e.g. method='integrated_gradients')",
        )


def positive_sizes(value: int | tuple[int, ...], count: int, argument: str) -> tuple[int, ...]:
    """A size setting as a tuple: an int repeated ``count`` times, or a tuple of ints >= 1."""
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        return (check_positive_int(value, argument, "or a tuple of them"),) * count
    if not value:
        raise ArgumentError(argument, f"{argument} must be a positive int or a tuple of them")
    return tuple(check_positive_int(s, argument, f"each entry of {value!r}") for s in value)


def sizes_per_dim(
    value: int | tuple[int, ...], dims: Sequence[int], argument: str, what: str = "spatial dim"
) -> tuple[int, ...]:
    """A size setting (``patch``, ``cells``, ``stride``) as one positive int per entry of
    ``dims`` (the sizes of the dims it applies to): an int is repeated, a tuple must match."""
    sizes = positive_sizes(value, len(dims), argument)
    if len(sizes) != len(dims):
        raise ArgumentError(
            argument, f"{argument} {value!r} needs one entry per {what}, {tuple(dims)}"
        )
    return sizes


def interpolations(dims: int) -> tuple[str, ...]:
    """The entries of :data:`INTERPOLATIONS` that fit maps with ``dims`` spatial dimensions."""
    other_linear = set(LINEAR_MODES.values()) - {LINEAR_MODES.get(dims)}
    return tuple(
        mode for mode in INTERPOLATIONS
        if mode not in other_linear and (mode != "bicubic" or dims == 2)
    )


def upsample(
    maps: Tensor, size: tuple[int, ...] | torch.Size, mode: str = "auto",
    argument: str = "interpolation",
) -> Tensor:
    """Resize maps N×C×S to the spatial ``size``; ``"auto"`` is (bi/tri)linear by dimension.

    Other modes are those of ``torch.nn.functional.interpolate`` that fit the dimension
    (``nearest``, ``nearest-exact``, ``area``, ``bicubic`` for 2-D); linear and bicubic
    modes do not align corners. ``argument`` names the setting that chose ``mode``.
    """
    dims = maps.ndim - 2
    if dims not in LINEAR_MODES:
        raise ArgumentError(
            "layer",
            f"maps can be drawn in 1 to 3 spatial dimensions, not {dims}; pick a layer (layer=) "
            "whose output is N×C×L, N×C×H×W or N×C×D×H×W",
        )
    allowed = interpolations(dims)
    if mode not in allowed:
        raise ArgumentError(
            argument,
            f"{argument} {mode!r} does not fit {dims}-D maps; "
            f"use one of {', '.join(sorted(allowed))}",
        )
    linear = LINEAR_MODES[dims]
    chosen = linear if mode == "auto" else mode
    if tuple(maps.shape[2:]) == tuple(size):
        return maps
    align = False if chosen in (linear, "bicubic") else None
    return F.interpolate(maps, size=tuple(size), mode=chosen, align_corners=align)


__all__ = [
    "INTERPOLATIONS",
    "LINEAR_MODES",
    "check_spatial_input",
    "interpolations",
    "positive_sizes",
    "sizes_per_dim",
    "spatial_dims",
    "upsample",
]
