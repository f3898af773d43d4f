"""Gaussian blur over the spatial dimensions: the ``"blur"`` baseline and image priors.

A separable blur with the normalised kernel k(t) ∝ exp(−t²/2σ²), t = −r..r, r = ⌈3σ⌉
(at most the dimension's size − 1), one 1-D convolution per spatial dimension with the
borders reflect-padded.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ArgumentError
from ..spatial import spatial_dims


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur over the spatial dimensions, reflect-padded at the borders."""
    dims = spatial_dims(x)
    if not dims:
        raise ArgumentError(
            "inputs",
            f"a blur needs spatial dimensions (N×C×L, N×C×H×W, ...); inputs of shape "
            f"{tuple(x.shape)} have none",
        )
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not math.isfinite(sigma):
        raise ArgumentError("sigma", f"the blur's sigma must be a finite number, got {sigma!r}")
    if sigma <= 0:
        return x.clone()
    out = x
    for dim in dims:
        size = x.shape[dim]
        radius = min(math.ceil(3 * sigma), size - 1)
        if radius < 1:
            continue
        taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
        kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
        kernel = (kernel / kernel.sum()).view(1, 1, -1)
        moved = out.movedim(dim, -1)
        flat = moved.reshape(-1, 1, size)
        flat = F.conv1d(F.pad(flat, (radius, radius), mode="reflect"), kernel)
        out = flat.reshape(moved.shape).movedim(-1, dim)
    return out.contiguous()
