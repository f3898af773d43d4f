"""Inputs as pictures: tensors to uint8 RGB, overlays (with opacity that may follow the
relevance), nearest-neighbour upscaling."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..checks import check_count, check_finite_number
from ..errors import ArgumentError, ArgumentTypeError
from .heatmap import as_tensor, normalise, reduce_channels


def to_rgb(images: Any, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """uint8 RGB arrays (B, H, W, 3) from images (B, C, H, W) with 1 or 3 channels.

    Values are mapped from ``value_range`` = (low, high) to 0…255; by default, images already
    inside [0, 1] are taken as they are and others are min-max scaled per image. A uint8
    array (…, H, W, 3) passes through. Images with NaN or Inf raise an error naming
    ``images``.
    """
    if isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.shape[-1] == 3:
        return images
    x = as_tensor(images, "images").double()
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ArgumentError(
            "images",
            f"images have shape {tuple(x.shape)}; expected (B, C, H, W) with C = 1 or 3 "
            "(one image x becomes x.unsqueeze(0))",
        )
    if value_range is not None:
        low, high = _check_range(value_range)
        x = (x - low) / (high - low)
    elif x.min() < 0 or x.max() > 1:
        flat = x.flatten(1)
        low = flat.amin(1).view(-1, 1, 1, 1)
        span = (flat.amax(1).view(-1, 1, 1, 1) - low).clamp(min=1e-12)
        x = (x - low) / span
    x = x.clamp(0, 1).expand(-1, 3, -1, -1)
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _check_range(value_range: Any) -> tuple[float, float]:
    if isinstance(value_range, (str, bytes)) or not isinstance(value_range, Sequence) or len(
        value_range
    ) != 2:
        raise ArgumentTypeError(
            "value_range", f"value_range must be a pair (low, high), got {value_range!r}"
        )
    low = check_finite_number(value_range[0], "value_range", meaning="low")
    high = check_finite_number(value_range[1], "value_range", meaning="high")
    if not low < high:
        raise ArgumentError(
            "value_range", f"value_range=(low, high) needs low < high, got {tuple(value_range)}"
        )
    return low, high


def overlay(image: Any, heat: np.ndarray, alpha: Any = 0.5) -> np.ndarray:
    """(1 − α) · image + α · heatmap, as uint8 RGB with the heatmap's shape.

    ``image`` is anything :func:`to_rgb` takes (or one uint8 (H, W, 3) picture); ``heat``
    comes from :func:`~pellucid.viz.heatmap`. ``alpha`` is one opacity in [0, 1], or one
    per pixel (B, H, W) or (H, W), e.g. :func:`opacity` of the relevance, so that pixels
    without relevance show the image unchanged.

    Example:
        >>> import numpy as np, torch
        >>> from pellucid.viz import heatmap, opacity, overlay
        >>> r = torch.tensor([[[[2.0, 0.0]]]])
        >>> image = np.full((1, 1, 2, 3), 100, dtype=np.uint8)
        >>> overlay(image, heatmap(r), alpha=opacity(r, 0.5))[0, 0].tolist()
        [[178, 50, 50], [100, 100, 100]]
    """
    weight = _check_alpha(alpha)
    _check_picture(heat, "heat")
    base = to_rgb(image).astype(np.float64)
    if base.shape[-3:] != heat.shape[-3:]:
        raise ArgumentError(
            "image",
            f"image {base.shape[-3:-1]} and heatmap {heat.shape[-3:-1]} differ in size; "
            "explain the image you overlay",
        )
    try:
        shape = np.broadcast_shapes(base.shape, heat.shape)
    except ValueError:
        raise ArgumentError(
            "heat",
            f"{base.shape[0]} images and {heat.shape[0]} heatmaps; give one heatmap per image",
        ) from None
    if not isinstance(weight, float):
        try:
            weight = np.broadcast_to(weight[..., None], shape)
        except ValueError:
            raise ArgumentError(
                "alpha",
                f"alpha of shape {weight.shape} does not fit pictures {shape[:-1]}; give one "
                "opacity per pixel (B, H, W) or (H, W), e.g. opacity(relevance)",
            ) from None
    return np.round((1 - weight) * base + weight * heat.astype(np.float64)).astype(np.uint8)


def opacity(
    relevance: Any,
    alpha_max: float = 0.8,
    reduce: str = "sum",
    *,
    signed: bool = True,
    clip_quantile: float = 1.0,
    scale: Any = "sample",
) -> np.ndarray:
    """Per-pixel opacities α(x) = α_max · |R(x)| / s (B, H, W) for :func:`overlay`.

    s is the scale of :func:`~pellucid.viz.heatmap` (max |R| per image, over the batch with
    ``scale="shared"``, or a quantile with ``clip_quantile``), so the opacity follows the
    strength of the colour drawn: where R = 0 the overlay shows the image unchanged instead
    of washing it out, and the strongest relevance is drawn with opacity α_max. With
    ``signed=False`` (positive maps, CAMs), α follows max(R, 0).

    Example:
        >>> import torch
        >>> from pellucid.viz import opacity
        >>> opacity(torch.tensor([[[4.0, -2.0, 0.0]]]), alpha_max=0.5).tolist()
        [[[0.5, 0.25, 0.0]]]
    """
    alpha_max = check_finite_number(
        alpha_max, "alpha_max", 0.0, maximum=1.0, meaning="the opacity of the strongest relevance"
    )
    r = as_tensor(relevance)
    maps = reduce_channels(r[None] if r.ndim == 2 else r, reduce)
    weight = normalise(maps, signed, clip_quantile, scale=scale).abs() * alpha_max
    weight = weight.numpy()
    return weight[0] if r.ndim == 2 else weight


def _check_alpha(alpha: Any) -> float | np.ndarray:
    """One opacity in [0, 1], or a real array of them (one per pixel)."""
    if isinstance(alpha, (np.ndarray, torch.Tensor)):
        weight = np.asarray(alpha.detach().cpu() if isinstance(alpha, torch.Tensor) else alpha)
        if weight.dtype.kind not in "fiu" or weight.ndim < 2:
            raise ArgumentError(
                "alpha",
                f"alpha must be a number in [0, 1] or real opacities per pixel (B, H, W) or "
                f"(H, W), got {weight.dtype} {weight.shape}; see opacity(relevance)",
            )
        weight = weight.astype(np.float64)
        if not np.isfinite(weight).all() or weight.min() < 0 or weight.max() > 1:
            raise ArgumentError(
                "alpha", "alpha per pixel must be finite and in [0, 1] (the heatmap's weight); "
                "see opacity(relevance)",
            )
        return weight
    return check_finite_number(alpha, "alpha", 0.0, maximum=1.0, meaning="the heatmap's weight")


def upscale(rgb: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement of (…, H, W, 3) arrays by an integer ``factor``."""
    factor = check_count(factor, "factor", "the enlargement")
    _check_picture(rgb, "rgb")
    if factor == 1:
        return rgb
    return rgb.repeat(factor, axis=-3).repeat(factor, axis=-2)


def _check_picture(picture: Any, argument: str) -> None:
    """A uint8 RGB array (…, H, W, 3), as :func:`heatmap` and :func:`to_rgb` return."""
    if not isinstance(picture, np.ndarray) or picture.dtype != np.uint8 or picture.ndim < 3 or (
        picture.shape[-1] != 3
    ):
        got = f"{picture.dtype} {picture.shape}" if isinstance(picture, np.ndarray) else type(
            picture).__name__
        raise ArgumentError(
            argument,
            f"{argument} must be a uint8 RGB array (…, H, W, 3) as heatmap() or to_rgb() "
            f"return, got {got}",
        )


__all__ = ["opacity", "overlay", "to_rgb", "upscale"]
