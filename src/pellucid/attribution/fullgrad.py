"""FullGrad: input gradients plus the bias gradients of every layer (Srinivas & Fleuret 2019).

For a piecewise-linear network with biases (ReLU, max/average pooling, convolutions,
linear layers, BatchNorm in eval mode) the score decomposes exactly (completeness):

    f(x) = ∇ₓf · x + Σ_l Σ (∂f/∂z_l ⊙ b_l),

z_l the output of layer l and b_l its bias, broadcast over the positions. The saliency
map aggregates both parts:

    S = ψ(∇ₓf ⊙ x) + Σ_l Σ_c ψ(∂f/∂z_l ⊙ b_l),

ψ = absolute value, then a min-max rescaling to [0, 1] per sample; each layer's map is
summed over its channels and upsampled to the input size, the input term is summed over
the input channels, and S is repeated over the input channels. Layers are found by
structure: convolutions of any dimension (transposed too) and linear layers with a bias,
and normalisations with running statistics in eval mode, whose effective bias is
β − γ·μ/√(σ² + ε). Linear biases (no spatial map) count in the completeness check only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..batching import broadcast_like
from ..layers import captured_forward, layer_gradients
from ..method import Method, register_method
from ..spatial import upsample
from ..task import Forward, Task

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


def rescale(maps: Tensor) -> Tensor:
    """ψ: |maps| min-max rescaled to [0, 1] per sample (all zeros for a constant map)."""
    magnitude = maps.abs()
    flat = magnitude.flatten(1)
    low = flat.amin(1)
    span = flat.amax(1) - low
    span = torch.where(span > 0, span, torch.ones_like(span))
    return (magnitude - broadcast_like(low, maps)) / broadcast_like(span, maps)


@register_method("fullgrad")
@dataclass(frozen=True, eq=False)
class FullGrad(Method):
    """FullGrad: ψ(∇ₓf ⊙ x) plus the per-layer bias-gradient maps (Srinivas & Fleuret 2019).

    Settings: ``interpolation`` for the layer maps (``"auto"``: linear, bilinear or
    trilinear). ``extras``: ``completeness_gap`` = ∇ₓf·x + Σ bias terms − f(x) per sample
    (≈ 0 for piecewise-linear networks), ``bias_layers`` (the layers that contributed).
    Tabular inputs N×D get ψ(∇ₓf ⊙ x) per feature (there are no maps to draw).
    """

    interpolation: str = "auto"

    def first_pass(self, task: Task, x: Tensor) -> Forward:
        """The call's first forward, with every bias layer captured (reused by attribute)."""
        return captured_forward(task, x, list(bias_layers(task.model)))

    def attribute(self, task: Task, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        biases = bias_layers(task.model)
        recorded = task.first_forward_at(x)
        found = layer_gradients(task, x, list(biases), with_input=True, recorded=recorded)
        input_term = found.input_grad * x
        total = input_term.flatten(1).sum(1)
        maps = []
        for name, (bias, dim) in biases.items():
            for grad in found.grads[name]:
                shape = [1] * grad.ndim
                shape[dim] = -1
                contribution = grad * bias.to(grad).view(shape)
                total = total + contribution.flatten(1).sum(1)
                if dim == CHANNEL and grad.ndim == x.ndim >= 3:
                    maps.append(rescale(contribution).sum(1, keepdim=True))
        saliency = rescale(input_term)
        if x.ndim >= 3:
            saliency = saliency.sum(1, keepdim=True)
            for layer_map in maps:
                saliency = saliency + upsample(layer_map, x.shape[2:], self.interpolation)
            saliency = saliency.expand_as(x).contiguous()
        extras = {
            "completeness_gap": total - found.scores,
            "bias_layers": [name for name in biases if found.outputs[name]],
        }
        return saliency, extras
