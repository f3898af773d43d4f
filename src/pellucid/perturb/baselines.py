"""Baselines: the reference inputs x̄ of path methods and the fills of perturbations.

A baseline is ``"zero"``, a number (a constant), ``"mean"`` (the per-sample mean over the
spatial dimensions, per channel; over the features for tabular N×D), ``"blur"`` (a
Gaussian blur of the input over its spatial dimensions, :mod:`.blur`), ``"uniform"``
(uniform noise between each sample's minimum and maximum, seeded), or a tensor
broadcastable to the inputs. A *fill* is the baseline that replaces masked-out inputs,
x̃ = x ⊙ M + fill ⊙ (1 − M).

Token ids (B, L) are filled with a token (:func:`token_fill`): its role ``"pad"`` or
``"mask"`` (read from the model's config) or its id; the float baselines do not apply.
"""

from __future__ import annotations

import math
import numbers
from typing import Union

import torch
from torch import Tensor, nn

from .._seeding import generator
from ..errors import ArgumentError, ArgumentTypeError
from ..registry import suggest
from ..spatial import spatial_dims
from ..tokens import TOKEN_ROLES, ids_like, token_id
from .blur import gaussian_blur

BaselineSpec = Union[str, float, int, Tensor]
#: the named baselines; a consumer that accepts fewer derives its names from this list
BASELINES = ("zero", "mean", "blur", "uniform")
#: the fills of occlusion, RISE, LIME and KernelSHAP: no "uniform", whose output drops would
#: measure one random draw as much as the removed evidence
MASK_FILLS = tuple(name for name in BASELINES if name != "uniform")


def check_baseline(
    spec: BaselineSpec,
    argument: str = "baseline",
    names: tuple[str, ...] = BASELINES,
    tokens: bool = False,
) -> None:
    """A baseline setting is one of ``names``, a finite number or a finite tensor; with
    ``tokens`` also a token role (``"pad"``, ``"mask"``) for inputs of token ids.

    The check that needs no inputs, for a method's or metric's ``__post_init__``;
    ``argument`` names the setting in the error (``"baseline"``, ``"fill"``).
    """
    if tokens and isinstance(spec, str) and spec in TOKEN_ROLES:
        return
    listed = ", ".join(map(repr, names))
    if isinstance(spec, Tensor):
        if spec.is_complex() or not bool(spec.isfinite().all()):
            raise ArgumentError(
                argument,
                f"the {argument} tensor holds {int((~spec.isfinite()).sum())} NaN or Inf "
                f"values (or is complex); a {argument} must be finite real values, or the "
                "attribution is NaN (clean it, e.g. torch.nan_to_num)",
            )
        return
    if isinstance(spec, numbers.Real) and not isinstance(spec, bool):
        if not math.isfinite(spec):
            raise ArgumentError(argument, f"{argument} must be finite, got {spec!r}")
        return
    if not isinstance(spec, str):
        raise ArgumentTypeError(
            argument,
            f"{argument} must be one of {listed}, a number, or a tensor broadcastable to the "
            f"inputs; got a {type(spec).__name__}",
        )
    if spec not in names:
        hint = suggest(spec, list(names))
        extra = (
            f" ({spec!r} is not a fill: its output drops would measure one random draw)"
            if spec in BASELINES else ""
        )
        raise ArgumentError(
            argument,
            f"unknown {argument} {spec!r}.{hint}{extra} Use one of {listed}, a number, or a "
            "tensor broadcastable to the inputs",
        )


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
    check_baseline(spec, argument, names)
    if isinstance(spec, Tensor):
        return _broadcast(spec, x, argument)
    if not isinstance(spec, str):
        return torch.full_like(x, float(spec))
    if spec == "zero":
        return torch.zeros_like(x)
    if spec == "mean":
        dims = spatial_dims(x) or (1,)
        if math.prod(x.shape[d] for d in dims) == 1:
            raise ArgumentError(
                argument,
                f"{argument}='mean' averages each sample over its spatial dims (the features "
                f"of N×D inputs), which have a single element in inputs of shape "
                f"{tuple(x.shape)}: it would equal the inputs and every attribution would be "
                "0; use 'zero' or a number",
            )
        return x.mean(dim=dims, keepdim=True).expand_as(x).clone()
    if spec == "blur":
        if all(x.shape[d] == 1 for d in spatial_dims(x)):
            raise ArgumentError(
                argument,
                f"{argument}='blur' blurs over spatial dimensions (N×C×L, N×C×H×W, ...), but "
                f"inputs of shape {tuple(x.shape)} have none longer than 1, so it would equal "
                "the inputs; use 'mean', 'zero' or a number",
            )
        return gaussian_blur(x, sigma)
    low = x.flatten(1).amin(1).view(-1, *[1] * (x.ndim - 1))
    high = x.flatten(1).amax(1).view(-1, *[1] * (x.ndim - 1))
    # one draw shared by the batch, so a sample's baseline does not depend on the others
    noise = torch.rand(x.shape[1:], generator=generator(seed), dtype=x.dtype).to(x.device)
    return low + (high - low) * noise


def make_fill(spec: BaselineSpec, x: Tensor, blur_sigma: float) -> Tensor:
    """The fill of the perturbation methods: one of :data:`MASK_FILLS`, a finite number, or
    a finite tensor broadcastable to the inputs."""
    return make_baseline(spec, x, sigma=blur_sigma, argument="fill", names=MASK_FILLS)


def _broadcast(spec: Tensor, x: Tensor, argument: str) -> Tensor:
    try:
        shape = torch.broadcast_shapes(spec.shape, x.shape)
    except RuntimeError:
        shape = None
    if shape != x.shape:
        raise ArgumentError(
            argument,
            f"a {argument} tensor of shape {tuple(spec.shape)} does not broadcast to inputs of "
            f"shape {tuple(x.shape)}; give one sample's shape {tuple(x.shape[1:])} or a "
            "shape that broadcasts to it (e.g. one value per channel)",
        )
    return spec.to(device=x.device, dtype=x.dtype).expand_as(x).clone()


def token_fill(spec: BaselineSpec, x: Tensor, model: nn.Module, argument: str = "fill") -> Tensor:
    """The token ids (B, L) that replace removed tokens of the ids ``x``: a role ``"pad"`` or
    ``"mask"`` (``model.config.pad_token_id`` / ``mask_token_id``), an int id, or an integer
    tensor of ids broadcastable to ``x``. A float baseline is an error naming ``argument``.

    Example:
        >>> import torch
        >>> token_fill(0, torch.tensor([[5, 7, 9]]), torch.nn.Embedding(10, 1)).tolist()
        [[0, 0, 0]]
    """
    filled = ids_like(spec, x, model, argument)
    if filled is not None:
        return filled
    if isinstance(spec, Tensor | bool) or not isinstance(spec, int | str) or spec in BASELINES:
        shown = f"a {type(spec).__name__}" if isinstance(spec, Tensor) else repr(spec)
        raise ArgumentError(
            argument,
            f"{argument}={shown} is a value for real-valued inputs, but the inputs are token "
            f"ids {tuple(x.shape)}: a removed token is replaced by another token. Pass "
            f"{argument}='pad' or 'mask' (the model's config.pad_token_id / mask_token_id), "
            "a token id (an int), or an integer tensor of ids",
        )
    return torch.full_like(x, token_id(spec, model, argument))
