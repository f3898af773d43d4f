"""Relevance to colour: channel reduction, symmetric normalisation, colour lookup.

A heatmap shows one relevance map R (H, W) per image. Channels are reduced first
(:data:`REDUCTIONS`). Signed maps are normalised symmetrically, v = R / max|R| per image, so
that v ∈ [−1, 1] and R = 0 lands on the centre of the colour map (white for ``bwr``, black
for ``coldnhot``); with the LRP convention, red is positive relevance and blue negative
(Montavon et al. 2018, "Methods for interpreting and understanding deep neural networks").
Positive maps (for CAMs) show max(R, 0) / max R. ``scale="shared"`` divides by one max |R|
over the whole batch instead, so that colours compare across images. Everything is batched:
no loop over images or pixels.

Relevance holding NaN or Inf raises :class:`~pellucid.errors.ArgumentError`: a missing
value has no colour, and drawing it as one (NaN used to become the strongest negative
colour) would show a plausible but wrong picture.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..checks import check_bool, check_choice, check_finite, check_finite_number
from ..errors import ArgumentError, ArgumentTypeError
from .colormaps import Colormap, get_colormap

#: channel reductions (B, C, H, W) → (B, H, W); only ``sum`` keeps the sign
REDUCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "sum": lambda r: r.sum(1),
    "abs_sum": lambda r: r.abs().sum(1),
    "max_abs": lambda r: r.abs().amax(1),
    "l2": lambda r: r.square().sum(1).sqrt(),
}


def as_tensor(relevance: Any, argument: str = "relevance") -> Tensor:
    """The attribution of an :class:`~pellucid.Explanation`, or ``relevance`` as a tensor.

    A real tensor on the CPU (integer and bool values become float64), not empty and
    finite; otherwise an error naming ``argument``.
    """
    relevance = getattr(relevance, "attribution", relevance)
    try:
        r = torch.as_tensor(relevance).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise ArgumentTypeError(
            argument,
            f"{argument} must be an Explanation, a tensor or a NumPy array, got "
            f"{type(relevance).__name__}",
        ) from None
    if r.is_complex():
        raise ArgumentTypeError(
            argument, f"{argument} has the complex dtype {r.dtype}; draw its .abs() or .real"
        )
    if r.numel() == 0:
        raise ArgumentError(argument, f"{argument} is empty (shape {tuple(r.shape)})")
    r = r if r.is_floating_point() else r.double()
    check_finite(
        r, argument,
        fix="NaN has no colour; find where it comes from (pellucid's methods raise instead of "
        "returning it), or draw it as no relevance with torch.nan_to_num(relevance, nan=0.0)",
    )
    return r


def reduce_channels(relevance: Any, reduce: str = "sum") -> Tensor:
    """Relevance maps (B, H, W) from a batch (B, C, H, W); (B, H, W) passes through.

    ``reduce`` is one of ``sum`` (Σ_c R_c, signed), ``abs_sum`` (Σ_c |R_c|), ``max_abs``
    (max_c |R_c|) or ``l2`` ((Σ_c R_c²)^½).
    """
    check_choice(reduce, "reduce", list(REDUCTIONS), "the channel reduction")
    r = as_tensor(relevance).double()
    if r.ndim == 3:
        return r
    if r.ndim != 4:
        raise ArgumentError(
            "relevance",
            f"relevance has shape {tuple(r.shape)}; heatmaps need images (B, C, H, W) or maps "
            "(B, H, W) (a single image x becomes x.unsqueeze(0); a volume B×C×D×H×W needs one "
            "slice, e.g. r[:, :, d])",
        )
    return REDUCTIONS[reduce](r)


#: how relevance is scaled to colours: per image, or one scale for the whole batch
SCALES = ("sample", "shared")


def normalise(
    maps: Tensor, signed: bool = True, clip_quantile: float = 1.0, *, scale: Any = "sample"
) -> Tensor:
    """Maps (B, H, W) scaled to [−1, 1] (signed) or [0, 1] (positive part): v = clamp(R / s).

    The scale s is the ``clip_quantile`` quantile of |R| (signed) or of max(R, 0): per
    image (``scale="sample"``), over the whole batch (``scale="shared"``, so that colours
    compare across images), or a given positive number (one scale across several batches
    or methods, as :func:`~pellucid.viz.compare` does). ``clip_quantile=1.0`` is the
    maximum; 0.99 lets the top 1 % saturate. See :func:`relevance_scale`.

    Example:
        >>> import torch
        >>> maps = torch.tensor([[[1.0, -2.0]], [[4.0, 0.0]]])
        >>> normalise(maps, scale="shared").tolist()
        [[[0.25, -0.5]], [[1.0, 0.0]]]
    """
    values, s = _values_and_scale(maps, signed, clip_quantile, scale)
    return (values / s.view(-1, 1, 1).to(values)).clamp(-1.0 if signed else 0.0, 1.0)


def relevance_scale(
    maps: Tensor, signed: bool = True, clip_quantile: float = 1.0, *, scale: Any = "sample"
) -> Tensor:
    """The scale s (B,) that :func:`normalise` divides each map by (float64).

    s is the ``clip_quantile`` quantile of |R| (signed) or of max(R, 0), per image or over
    the batch (``scale="shared"``; every entry is then the same), or the number ``scale``.
    Where that quantile is 0 but the map is not (a sparse map), s is the maximum, so that
    small values are not drawn as full ones; an all-zero map gets s = 1 (it stays zero).
    Colour bars use it: the ends of the colour map stand for ±s.

    Example:
        >>> import torch
        >>> relevance_scale(torch.tensor([[[1.0, -2.0]], [[4.0, 0.0]]])).tolist()
        [2.0, 4.0]
    """
    return _values_and_scale(maps, signed, clip_quantile, scale)[1]


def _values_and_scale(
    maps: Tensor, signed: bool, clip_quantile: float, scale: Any
) -> tuple[Tensor, Tensor]:
    if not isinstance(maps, Tensor) or maps.ndim != 3:
        got = f"shape {tuple(maps.shape)}" if isinstance(maps, Tensor) else type(maps).__name__
        raise ArgumentError(
            "maps", f"maps must be a tensor (B, H, W), got {got}; see reduce_channels"
        )
    check_bool(signed, "signed")
    clip_quantile = check_finite_number(
        clip_quantile, "clip_quantile", 0.0, maximum=1.0, meaning="the quantile of |R| drawn "
        "at full colour, in (0, 1]",
    )
    if clip_quantile == 0.0:
        raise ArgumentError("clip_quantile", "clip_quantile must be in (0, 1], got 0")
    fixed = check_scale(scale)
    if maps.is_complex():
        raise ArgumentTypeError("maps", f"maps have the complex dtype {maps.dtype}; pass real maps")
    maps = maps if maps.is_floating_point() else maps.double()
    check_finite(maps, "maps")
    values = maps if signed else maps.clamp(min=0)
    if fixed is not None:
        return values, torch.full((len(maps),), fixed, dtype=torch.float64)
    flat = values.abs().flatten(1).double()
    if scale == "shared":
        flat = flat.reshape(1, -1)
    top = flat.amax(1)
    if clip_quantile == 1.0:
        s = top
    else:  # NumPy: torch.quantile refuses more than 2**24 values (a large shared batch)
        s = torch.from_numpy(np.quantile(flat.numpy(), clip_quantile, axis=1))
    s = torch.where(s > 0, s, top)
    s = torch.where(s > 0, s, torch.ones_like(s))
    return values, s.expand(len(maps)).clone() if scale == "shared" else s


def check_scale(scale: Any) -> float | None:
    """``scale`` is "sample", "shared" or a positive number; returns the number or None."""
    if isinstance(scale, str):
        check_choice(scale, "scale", SCALES, "per image, or one colour scale for the batch; "
                     "or a positive number, the |R| drawn at full colour")
        return None
    return check_finite_number(
        scale, "scale", 0.0, inclusive=False,
        meaning="'sample', 'shared' or the |R| drawn at full colour",
    )


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
    scale: Any = "sample",
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
        clip_quantile: the quantile of |R| that maps to the ends of the colour map.
        scale: ``"sample"`` (each image by its own scale), ``"shared"`` (one scale for the
            batch, so colours compare across images) or a positive number (the |R| drawn
            at full colour, e.g. one scale across methods); see :func:`normalise`.

    Raises :class:`~pellucid.errors.ArgumentError` for relevance with NaN or Inf (no
    colour stands for a missing value), for an explanation whose attribution is not an
    image (B, F), and for shapes other than the ones above.

    Example:
        >>> import torch
        >>> from pellucid.viz import heatmap
        >>> heatmap(torch.tensor([[1.0, 0.0, -1.0]]), "bwr")[0].tolist()
        [[255, 0, 0], [255, 255, 255], [0, 0, 255]]
    """
    r = as_tensor(relevance)
    if hasattr(relevance, "attribution") and r.ndim == 2:
        raise ArgumentError(
            "relevance",
            f"the explanation's attribution (relevance) has shape {tuple(r.shape)}: one "
            "vector per sample, not an image; draw each sample as a strip with "
            "heatmap(e.attribution.unsqueeze(1))",
        )
    single = r.ndim == 2
    colours = get_colormap(cmap, signed)
    maps = reduce_channels(r[None] if single else r, reduce)
    rgb = colorize(normalise(maps, colours.signed, clip_quantile, scale=scale), colours)
    return rgb[0] if single else rgb


__all__ = [
    "REDUCTIONS",
    "SCALES",
    "as_tensor",
    "check_scale",
    "colorize",
    "heatmap",
    "normalise",
    "reduce_channels",
    "relevance_scale",
]
