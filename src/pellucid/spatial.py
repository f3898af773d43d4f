"""Spatial dimensions: which they are, sizes given per dimension, reading layer outputs
as maps, and resizing maps.

Inputs and feature maps are N×C×S with S zero (tabular N×D), one (N×C×L), two (N×C×H×W)
or three (N×C×D×H×W) spatial dimensions. Layer outputs in other layouts (transformer
tokens N×T×D, channels-last N×H×W×C) are read as N×C×S by :func:`as_feature_map`. Maps
are resized with ``torch.nn.functional.interpolate``; ``"auto"`` picks the linear mode
of the map's dimension (linear, bilinear or trilinear).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .checks import check_count
from .errors import ArgumentError, ArgumentTypeError

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


# --- layer outputs as maps -------------------------------------------------------------

#: the named readings ``reshape=`` accepts (``"tokens=K"`` with K a number), or a callable
RESHAPES = ("channels_first", "channels_last", "vit", "tokens=K")
#: the most leading tokens the automatic reading drops: a class token and up to 16
#: registers (Darcet et al. 2024, "Vision Transformers Need Registers")
MAX_LEADING_TOKENS = 17

Reshape = str | Callable[[Tensor], Tensor] | None


def check_reshape(reshape: object, argument: str = "reshape") -> None:
    """``reshape`` is None (automatic), a callable or one of :data:`RESHAPES`."""
    if reshape is None or (callable(reshape) and not isinstance(reshape, type)):
        return
    if not isinstance(reshape, str):
        raise ArgumentTypeError(
            argument,
            f"{argument} must be None (automatic), one of {', '.join(map(repr, RESHAPES))}, or "
            f"a callable from the layer output to N×C×h×w; got {reshape!r}",
        )
    if reshape not in RESHAPES[:3] and re.fullmatch(r"tokens=\d+", reshape) is None:
        raise ArgumentError(
            argument,
            f"{argument} {reshape!r} is not a reading of a layer output; use None (automatic), "
            f"'channels_first', 'channels_last', 'vit' (a class token, then the patch "
            f"tokens), 'tokens=K' (K leading tokens to drop, e.g. 'tokens=5' for a class token "
            f"and 4 registers) or a callable from the layer output to N×C×h×w",
        )


def patch_grids(size: Sequence[int]) -> list[tuple[int, ...]]:
    """The grids (H/p, W/p, …) of a spatial ``size`` for every patch size p dividing all of it."""
    return [tuple(s // p for s in size) for p in range(1, min(size) + 1)
            if all(s % p == 0 for s in size)]


def as_feature_map(output: Tensor, x: Tensor, reshape: Reshape = None, layer: str = "") -> Tensor:
    """The output of ``layer`` read as a map N×C×S on the grid of the inputs ``x``.

    ``reshape`` (checked by :func:`check_reshape`): ``"channels_first"`` keeps ``output``;
    ``"channels_last"`` moves its last dim to dim 1 (N×H×W×C → N×C×H×W); ``"vit"`` (=
    ``"tokens=1"``) and ``"tokens=K"`` drop K leading tokens of N×T×D and lay the other
    T − K on the patch grid (H/p, W/p) of the 2-D inputs; a callable returns the map.
    None reads it automatically: tokens N×T×D on inputs N×C×H×W as ``"tokens=K"`` when
    exactly one K ≤ :data:`MAX_LEADING_TOKENS` (fewer than the patch tokens) leaves a patch
    grid; N×a×b×C as channels-last when (a, b) is a patch grid of the inputs and the last
    two dims are not; anything else as channels-first, PyTorch's layout.

    Example:
        >>> vit = torch.randn(2, 1 + 16, 8)      # class token + 4×4 patches of 16×16 inputs
        >>> as_feature_map(vit, torch.zeros(2, 3, 16, 16)).shape
        torch.Size([2, 8, 4, 4])
    """
    name = f"layer {layer!r}" if layer else "the layer"
    if callable(reshape):
        try:
            mapped = reshape(output)
        except Exception as error:  # the user's callable: name it, keep the cause
            raise ArgumentError(
                "reshape",
                f"reshape raised {error!r} on the output {tuple(output.shape)} of {name}; it "
                "must map that output to N×C×S (pick the layer it is written for with layer=)",
            ) from error
        if not isinstance(mapped, Tensor) or mapped.ndim != x.ndim or len(mapped) != len(x):
            got = tuple(mapped.shape) if isinstance(mapped, Tensor) else type(mapped).__name__
            raise ArgumentError(
                "reshape",
                f"reshape returned {got} for the output {tuple(output.shape)} of {name}; it "
                f"must return a map with the inputs' {x.ndim} dims, N×C×S with N = {len(x)}",
            )
        return mapped
    if reshape == "channels_first":
        return output
    if reshape == "channels_last":
        return output.movedim(-1, 1)
    size = tuple(x.shape[2:])
    if reshape is not None:
        return _token_map(output, size, 1 if reshape == "vit" else int(reshape[7:]), name)
    if output.ndim == x.ndim == 4:
        grids = patch_grids(size)
        if tuple(output.shape[1:3]) in grids and tuple(output.shape[2:]) not in grids:
            return output.movedim(-1, 1)
    if output.ndim == 3 and x.ndim == 4:
        return _token_map(output, size, None, name)
    return output


def _token_map(output: Tensor, size: tuple[int, ...], leading: int | None, name: str) -> Tensor:
    """Tokens N×T×D → N×D×h×w: drop ``leading`` tokens (None: the one count that fits)."""
    if output.ndim != 3 or len(size) != 2:
        raise ArgumentError(
            "reshape",
            f"a token reading ('vit', 'tokens=K') needs a layer output N×T×D on inputs N×C×H×W; "
            f"{name} outputs {tuple(output.shape)} on inputs with spatial size {size}; use "
            "reshape='channels_last', 'channels_first' or a callable",
        )
    tokens = output.shape[1]
    counts = [(tokens - math.prod(grid), grid) for grid in patch_grids(size)]
    if leading is None:  # fewer leading tokens than patches, the patches more than one
        fits = [(k, g) for k, g in counts if 0 <= k <= min(MAX_LEADING_TOKENS, math.prod(g) - 1)]
    else:
        fits = [(k, g) for k, g in counts if k == leading]
    if leading is not None and not fits:
        raise ArgumentError(
            "reshape",
            f"{name} outputs {tokens} tokens; less {leading} leading ones that is "
            f"{tokens - leading}, which is no patch grid (H/p, W/p) of inputs {size}; give "
            "the number of leading tokens as reshape='tokens=K', or a callable",
        )
    if not fits:
        raise ArgumentError(
            "layer",
            f"{name} outputs {tuple(output.shape)}: {tokens} tokens that no patch grid "
            f"(H/p, W/p) of inputs {size} fills after up to {MAX_LEADING_TOKENS} leading "
            "tokens (class token, registers); pick another layer (layer=) or say how to read "
            "it with reshape= (a callable returning N×C×h×w)",
        )
    if len(fits) > 1:
        readings = "; ".join(f"'tokens={k}' ({k} leading + {'×'.join(map(str, g))})"
                             for k, g in fits)
        raise ArgumentError(
            "reshape",
            f"{name} outputs {tokens} tokens, which fit several patch grids of inputs {size}: "
            f"{readings}; pass the one the model uses as reshape=",
        )
    ((k, grid),) = fits
    return output[:, k:].reshape(len(output), *grid, output.shape[2]).movedim(-1, 1)


__all__ = [
    "ALIGNABLE",
    "INTERPOLATIONS",
    "LINEAR_MODES",
    "MAX_LEADING_TOKENS",
    "RESHAPES",
    "Reshape",
    "as_feature_map",
    "check_alignment",
    "check_interpolation",
    "check_reshape",
    "check_spatial_input",
    "interpolations",
    "patch_grids",
    "positive_sizes",
    "sizes_per_dim",
    "spatial_dims",
    "upsample",
]
