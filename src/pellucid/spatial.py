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

from .checks import check_count
from .errors import ArgumentError

#: the linear interpolation of maps with 1, 2 or 3 spatial dimensions
LINEAR_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}
#: every interpolation a map may be resized with; :func:`interpolations` gives those that fit
INTERPOLATIONS = ("auto", "nearest", "nearest-exact", "area", *LINEAR_MODES.values(), "bicubic")
#: the interpolations that ``align_corners=True`` applies to
ALIGNABLE = ("auto", *LINEAR_MODES.values(), "bicubic")


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
        return (check_count(value, argument, "or a tuple of them"),) * count
    if not value:
        raise ArgumentError(argument, f"{argument} must be a positive int or a tuple of them")
    return tuple(check_count(s, argument, f"each entry of {value!r}") for s in value)


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


def check_interpolation(mode: str, dims: int, argument: str = "interpolation") -> None:
    """``mode`` (the setting ``argument``) is one of :func:`interpolations` for maps with
    ``dims`` spatial dimensions (1 to 3)."""
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
            f"{argument} {mode!r} does not fit maps with {dims} spatial dims; use one of "
            f"{', '.join(map(repr, allowed))}",
        )


def check_alignment(align_corners: bool, mode: str, argument: str = "interpolation") -> None:
    """``align_corners=True`` needs a linear or bicubic ``mode`` (:data:`ALIGNABLE`), the
    modes of ``F.interpolate`` that have corners to align."""
    if align_corners and mode not in ALIGNABLE:
        raise ArgumentError(
            "align_corners",
            f"align_corners=True applies to the linear and bicubic interpolations, not "
            f"{mode!r}; use {argument}='auto' (or {', '.join(map(repr, ALIGNABLE[1:]))}), or "
            "align_corners=False",
        )


def upsample(
    maps: Tensor, size: tuple[int, ...] | torch.Size, mode: str = "auto",
    argument: str = "interpolation", *, align_corners: bool = False,
) -> Tensor:
    """Resize maps N×C×S to the spatial ``size``; ``"auto"`` is (bi/tri)linear by dimension.

    Other modes are those of ``torch.nn.functional.interpolate`` that fit the dimension
    (``nearest``, ``nearest-exact``, ``area``, ``bicubic`` for 2-D). ``align_corners``
    (linear and bicubic modes, :data:`ALIGNABLE`) maps the corner pixels' centres onto each
    other, as ``F.interpolate(..., align_corners=True)``. ``argument`` names the setting
    that chose ``mode``.
    """
    dims = maps.ndim - 2
    check_interpolation(mode, dims, argument)
    check_alignment(align_corners, mode, argument)
    linear = LINEAR_MODES[dims]
    chosen = linear if mode == "auto" else mode
    if tuple(maps.shape[2:]) == tuple(size):
        return maps
    align = align_corners if chosen in (linear, "bicubic") else None
    return F.interpolate(maps, size=tuple(size), mode=chosen, align_corners=align)


__all__ = [
    "ALIGNABLE",
    "INTERPOLATIONS",
    "LINEAR_MODES",
    "check_alignment",
    "check_interpolation",
    "check_spatial_input",
    "interpolations",
    "positive_sizes",
    "sizes_per_dim",
    "spatial_dims",
    "upsample",
]
