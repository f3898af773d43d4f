"""FullGrad: input gradients plus the bias gradients of every layer (Srinivas & Fleuret 2019).

For a piecewise-linear network with biases (ReLU, max/average pooling, convolutions,
linear layers, BatchNorm in eval mode) the score decomposes exactly (completeness):

    f(x) = ∇ₓf · x + Σ_l Σ (∂f/∂z_l ⊙ b_l),

z_l the output of layer l and b_l its bias, broadcast over the positions. The saliency
map aggregates both parts:

    S = ψ(∇ₓf ⊙ x) + Σ_l Σ_c ψ(∂f/∂z_l ⊙ b_l),

ψ = absolute value, then a min-max rescaling to [0, 1] per sample (the reference code
adds 1e-6 to the span: ``rescale_eps``); each layer's map is
summed over its channels and upsampled to the input size, the input term is summed over
the input channels, and S is repeated over the input channels. Layers are found by
structure: convolutions of any dimension (transposed too) and linear layers with a bias,
and normalisations with running statistics in eval mode, whose effective bias is
β − γ·μ/√(σ² + ε). Linear biases on the last dim of a map (transformer tokens N×T×D on
inputs N×C×H×W, read on the patch grid by ``spatial.as_feature_map``; channels-last
N×H×W×C) get a map too; those on N×D outputs count in the completeness check only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..batching import broadcast_like
from ..checks import check_bool, check_choice, check_eager, check_finite_number
from ..errors import ArgumentError
from ..layers import captured_forward, layer_gradients
from ..method import Method, register_method
from ..spatial import (
    INTERPOLATIONS,
    as_feature_map,
    check_alignment,
    check_interpolation,
    patch_grids,
    upsample,
)
from ..task import Forward, Task
from .rows import check_finite_values

#: the bias runs along the channel dimension (convolutions, normalisations) or the last one
CHANNEL, LAST = 1, -1


def effective_bias(module: nn.Module) -> tuple[Tensor, int] | None:
    """(the bias ``module`` adds to its output, the dimension it runs along), or None.

    Normalisations with running statistics in eval mode are affine maps
    z = γ(a − μ)/√(σ² + ε) + β, whose bias is β − γμ/√(σ² + ε).
    """
    mean, var = getattr(module, "running_mean", None), getattr(module, "running_var", None)
    if isinstance(mean, Tensor) and isinstance(var, Tensor):
        if module.training:
            return None  # batch statistics: not an affine map of each sample
        weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
        shift = mean.detach() * torch.rsqrt(var.detach() + module.eps)
        if isinstance(weight, Tensor):
            shift = shift * weight.detach()
        return (bias.detach() - shift if isinstance(bias, Tensor) else -shift), CHANNEL
    bias = getattr(module, "bias", None)
    if not isinstance(bias, Tensor):
        return None
    if isinstance(module, nn.modules.conv._ConvNd):
        return bias.detach(), CHANNEL
    if isinstance(module, nn.Linear):
        return bias.detach(), LAST
    return None


def bias_layers(model: nn.Module) -> dict[str, tuple[Tensor, int]]:
    """Dotted name → (effective bias, dimension) for every layer of ``model`` with a bias."""
    found = ((name, effective_bias(m)) for name, m in model.named_modules())
    return {name: bias for name, bias in found if bias is not None}


def rescale(maps: Tensor, eps: float = 0.0) -> Tensor:
    """ψ: |maps| min-max rescaled per sample, (|m| − min) / (max − min + eps).

    With ``eps = 0`` the values span [0, 1] exactly (all zeros for a constant map); the
    reference implementation adds ``eps = 1e-6``.
    """
    magnitude = maps.abs()
    flat = magnitude.flatten(1)
    low = flat.amin(1)
    span = flat.amax(1) - low + eps
    span = torch.where(span > 0, span, torch.ones_like(span))
    return (magnitude - broadcast_like(low, maps)) / broadcast_like(span, maps)


def _bias_map(contribution: Tensor, dim: int, x: Tensor) -> Tensor | None:
    """A layer's bias terms as a map N×C×S of the inputs ``x``, or None where there is none.

    A bias along the channels of a map with the inputs' dims is one as it is. On 2-D
    inputs, a bias along the last dim is that of a channels-last map N×h×w×C when (h, w)
    is a patch grid of the inputs, or of tokens N×T×D where one patch grid fits (class
    token and registers dropped).
    """
    if dim == CHANNEL:
        return contribution if contribution.ndim == x.ndim >= 3 else None
    if x.ndim != 4:
        return None
    if contribution.ndim == 4 and tuple(contribution.shape[1:3]) in patch_grids(x.shape[2:]):
        return contribution.movedim(-1, 1)
    if contribution.ndim == 3:
        try:
            return as_feature_map(contribution, x)
        except ArgumentError:  # no grid, or several: the terms count in completeness only
            return None
    return None


@register_method("fullgrad")
@dataclass(frozen=True, eq=False)
class FullGrad(Method):
    """FullGrad: ψ(∇ₓf ⊙ x) plus the per-layer bias-gradient maps (Srinivas & Fleuret 2019).

    Settings: ``interpolation`` for the layer maps (``"auto"``: linear, bilinear or
    trilinear); ``align_corners`` for the linear and bicubic modes (``True`` in the
    reference implementation, idiap/fullgrad-saliency); ``rescale_eps`` added to the
    span in ψ (``1e-6`` there). ``FullGrad(align_corners=True, rescale_eps=1e-6)``
    reproduces the reference on the layers it handles (Conv2d, BatchNorm2d, Linear).
    Compiled (``torch.compile``) and TorchScript models are refused: their graphs skip the
    hooks that record the bias layers. ``extras``: ``completeness_gap`` = ∇ₓf·x + Σ bias
    terms − f(x) per sample (≈ 0 for piecewise-linear networks), ``bias_layers`` (the
    layers that contributed).
    Tabular inputs N×D get ψ(∇ₓf ⊙ x) per feature (there are no maps to draw).
    """

    #: inputs with positions get one saliency per position, repeated over the channels
    per_position: ClassVar[bool] = True
    interpolation: str = "auto"
    align_corners: bool = False
    rescale_eps: float = 0.0

    def __post_init__(self) -> None:
        check_choice(self.interpolation, "interpolation", INTERPOLATIONS)
        check_bool(self.align_corners, "align_corners")
        check_alignment(self.align_corners, self.interpolation)
        check_finite_number(self.rescale_eps, "rescale_eps", 0,
                            meaning="added to the span max − min of each map in ψ")

    def first_pass(self, task: Task, x: Tensor) -> Forward:
        """The call's first forward, with every bias layer captured (reused by attribute)."""
        check_eager(task.model, f"the layer hooks of {self.name}")
        if x.ndim >= 3:
            check_interpolation(self.interpolation, x.ndim - 2)
        return captured_forward(task, x, list(bias_layers(task.model)), own_inputs=True)

    def attribute(self, task: Task, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        check_eager(task.model, f"the layer hooks of {self.name}")  # also without first_pass
        biases = bias_layers(task.model)
        recorded = task.first_forward_at(x)
        found = layer_gradients(task, x, list(biases), with_input=True, recorded=recorded)
        input_term = check_finite_values(found.input_grad * x, self.name, "gradients", "the inputs")
        total = input_term.flatten(1).sum(1)
        maps = []
        for name, (bias, dim) in biases.items():
            for grad in found.grads[name]:
                shape = [1] * grad.ndim
                shape[dim] = -1
                contribution = grad * bias.to(grad).view(shape)
                check_finite_values(contribution, self.name, "bias gradients", f"layer {name!r}")
                total = total + contribution.flatten(1).sum(1)
                layer_map = _bias_map(contribution, dim, x)
                if layer_map is not None:
                    maps.append(rescale(layer_map, self.rescale_eps).sum(1, keepdim=True))
        saliency = rescale(input_term, self.rescale_eps)
        if x.ndim >= 3:
            saliency = saliency.sum(1, keepdim=True)
            for layer_map in maps:
                saliency = saliency + upsample(
                    layer_map, x.shape[2:], self.interpolation, align_corners=self.align_corners
                )
            saliency = saliency.expand_as(x).contiguous()
        extras = {
            "completeness_gap": total - found.scores,
            "bias_layers": [name for name in biases if found.outputs[name]],
        }
        return saliency, extras
