"""Inputs as pictures: tensors to uint8 RGB, overlays, nearest-neighbour upscaling."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def to_rgb(images: Any, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """uint8 RGB arrays (B, H, W, 3) from images (B, C, H, W) with 1 or 3 channels.

    Values are mapped from ``value_range`` to 0…255; by default, images already inside
    [0, 1] are taken as they are and others are min-max scaled per image. A uint8 array
    (…, H, W, 3) passes through.
    """
    if isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.shape[-1] == 3:
        return images
    x = torch.as_tensor(images).detach().cpu().double()
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(
            f"images have shape {tuple(x.shape)}; expected (B, C, H, W) with C = 1 or 3"
        )
    if value_range is not None:
        low, high = value_range
        x = (x - low) / (high - low)
    elif x.min() < 0 or x.max() > 1:
        flat = x.flatten(1)
        low = flat.amin(1).view(-1, 1, 1, 1)
        span = (flat.amax(1).view(-1, 1, 1, 1) - low).clamp(min=1e-12)
        x = (x - low) / span
    x = x.clamp(0, 1).expand(-1, 3, -1, -1)
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def overlay(image: Any, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """(1 − alpha) · image + alpha · heatmap, as uint8 RGB with the heatmap's shape.

    ``image`` is anything :func:`to_rgb` takes (or one uint8 (H, W, 3) picture); ``heat``
    comes from :func:`~pellucid.viz.heatmap`.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    base = to_rgb(image).astype(np.float64)
    if base.shape[-3:] != heat.shape[-3:]:
        raise ValueError(
            f"image {base.shape[-3:-1]} and heatmap {heat.shape[-3:-1]} differ in size; "
            "explain the image you overlay"
        )
    return np.round((1 - alpha) * base + alpha * heat.astype(np.float64)).astype(np.uint8)


def upscale(rgb: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement of (…, H, W, 3) arrays by an integer ``factor``."""
    if factor == 1:
        return rgb
    return rgb.repeat(factor, axis=-3).repeat(factor, axis=-2)


__all__ = ["overlay", "to_rgb", "upscale"]
