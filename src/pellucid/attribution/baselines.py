"""Reference inputs x̄ for path methods and fills for perturbation methods.

A baseline is ``"zero"``, a number (a constant), ``"mean"`` (the per-sample mean over the
features, per channel for N×C×... inputs), ``"blur"`` (a Gaussian blur of the input over
its spatial dimensions), ``"uniform"`` (uniform noise between each sample's minimum and
maximum, seeded), or a tensor broadcastable to the inputs.
"""

from __future__ import annotations

import math
from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .._seeding import generator

BaselineSpec = Union[str, float, int, Tensor]
KINDS = ("zero", "mean", "blur", "uniform")


def make_baseline(
    spec: BaselineSpec, x: Tensor, *, sigma: float = 5.0, seed: int | None = 0
) -> Tensor:
    """The baseline for inputs ``x`` (B, ...), with ``x``'s shape, dtype and device."""
    if isinstance(spec, Tensor):
        try:
            return spec.to(device=x.device, dtype=x.dtype).expand_as(x).clone()
        except RuntimeError:
            raise ValueError(
                f"a baseline tensor of shape {tuple(spec.shape)} does not broadcast to inputs "
                f"of shape {tuple(x.shape)}"
            ) from None
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return torch.full_like(x, float(spec))
    if spec == "zero":
        return torch.zeros_like(x)
    if spec == "mean":
        dims = spatial_dims(x) or (1,)
        return x.mean(dim=dims, keepdim=True).expand_as(x).clone()
    if spec == "blur":
        return gaussian_blur(x, sigma)
    if spec == "uniform":
        low = x.flatten(1).amin(1).view(-1, *[1] * (x.ndim - 1))
        high = x.flatten(1).amax(1).view(-1, *[1] * (x.ndim - 1))
        # one draw shared by the batch, so a sample's baseline does not depend on the others
        noise = torch.rand(x.shape[1:], generator=generator(seed), dtype=x.dtype).to(x.device)
        return low + (high - low) * noise
    raise ValueError(
        f"unknown baseline {spec!r}; use one of {', '.join(KINDS)}, a number, or a tensor"
    )


def spatial_dims(x: Tensor) -> tuple[int, ...]:
    """The dimensions after batch and channel (N×C×L, N×C×H×W, ...); tabular N×D has none."""
    return tuple(range(2, x.ndim))


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur over the spatial dimensions, reflect-padded at the borders."""
    dims = spatial_dims(x)
    if not dims:
        raise ValueError(
            f"a blur needs spatial dimensions (N×C×L, N×C×H×W, ...); inputs of shape "
            f"{tuple(x.shape)} have none"
        )
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
