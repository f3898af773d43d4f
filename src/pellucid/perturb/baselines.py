"""Baselines: the reference inputs x̄ of path methods and the fills of perturbations.

A baseline is ``"zero"``, a number (a constant), ``"mean"`` (the per-sample mean over the
spatial dimensions, per channel; over the features for tabular N×D), ``"blur"`` (a
Gaussian blur of the input over its spatial dimensions, :mod:`.blur`), ``"uniform"``
(uniform noise between each sample's minimum and maximum, seeded), or a tensor
broadcastable to the inputs. A *fill* is the baseline that replaces masked-out inputs,
x̃ = x ⊙ M + fill ⊙ (1 − M).
"""

from __future__ import annotations

from typing import Union

import torch
from torch import Tensor

from .._seeding import generator
from ..checks import check_finite
from ..spatial import spatial_dims
from .blur import gaussian_blur

BaselineSpec = Union[str, float, int, Tensor]
#: the named baselines; a consumer that accepts fewer derives its names from this list
BASELINES = ("zero", "mean", "blur", "uniform")
#: the fills of occlusion, RISE, LIME and KernelSHAP: no "uniform", whose output drops would
#: measure one random draw as much as the removed evidence
MASK_FILLS = tuple(name for name in BASELINES if name != "uniform")


def make_baseline(
    spec: BaselineSpec,
    x: Tensor,
    *,
    sigma: float = 5.0,
    seed: int | None = 0,
    argument: str = "baseline",
    names: tuple[str, ...] = BASELINES,
) -> Tensor:
    """The baseline for inputs ``x`` (B, ...), with ``x``'s shape, dtype and device.

    ``sigma`` is the blur's standard deviation, ``seed`` that of the uniform noise;
    ``argument`` names the setting in errors and ``names`` are the names it accepts.
    """
    if isinstance(spec, Tensor):
        return _broadcast(spec, x, argument)
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return torch.full_like(x, float(spec))
    if not isinstance(spec, str) or spec not in names:
        raise ValueError(
            f"unknown {argument} {spec!r}; use one of {', '.join(map(repr, names))}, a number, "
            "or a tensor broadcastable to the inputs"
        )
    if spec == "zero":
        return torch.zeros_like(x)
    if spec == "mean":
        dims = spatial_dims(x) or (1,)
        return x.mean(dim=dims, keepdim=True).expand_as(x).clone()
    if spec == "blur":
        return gaussian_blur(x, sigma)
    low = x.flatten(1).amin(1).view(-1, *[1] * (x.ndim - 1))
    high = x.flatten(1).amax(1).view(-1, *[1] * (x.ndim - 1))
    # one draw shared by the batch, so a sample's baseline does not depend on the others
    noise = torch.rand(x.shape[1:], generator=generator(seed), dtype=x.dtype).to(x.device)
    return low + (high - low) * noise


def make_fill(spec: BaselineSpec, x: Tensor, blur_sigma: float) -> Tensor:
    """The fill of the perturbation methods: one of :data:`MASK_FILLS`, a number, or a
    finite tensor broadcastable to the inputs."""
    if isinstance(spec, Tensor):
        fill = _broadcast(spec, x, "fill")
        check_finite(spec, "the fill tensor")
        return fill
    return make_baseline(spec, x, sigma=blur_sigma, argument="fill", names=MASK_FILLS)


def _broadcast(spec: Tensor, x: Tensor, argument: str) -> Tensor:
    try:
        shape = torch.broadcast_shapes(spec.shape, x.shape)
    except RuntimeError:
        shape = None
    if shape != x.shape:
        raise ValueError(
            f"a {argument} tensor of shape {tuple(spec.shape)} does not broadcast to inputs of "
            f"shape {tuple(x.shape)}; give one sample's shape {tuple(x.shape[1:])} or a "
            "shape that broadcasts to it (e.g. one value per channel)"
        )
    return spec.to(device=x.device, dtype=x.dtype).expand_as(x).clone()
