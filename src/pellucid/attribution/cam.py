"""Class activation maps from the gradients at a convolutional layer: Grad-CAM, Grad-CAM++.

With A the output of a layer (N×C×S, S one, two or three spatial dimensions), y the
explained score and g = ∂y/∂A:

- Grad-CAM (Selvaraju et al. 2017):  αᶜ = meanₛ gᶜₛ,  map = ReLU(Σᶜ αᶜ Aᶜ).
- Grad-CAM++ (Chattopadhay et al. 2018), the closed form for an exponential score:
  αᶜₛ = (gᶜₛ)² / (2 (gᶜₛ)² + (Σₛ' Aᶜₛ') (gᶜₛ)³)  (0 where the denominator is 0),
  wᶜ = Σₛ αᶜₛ ReLU(gᶜₛ),  map = ReLU(Σᶜ wᶜ Aᶜ).

A layer output in another layout is first read as N×C×S (``spatial.as_feature_map``):
transformer tokens N×(K + h·w)×D lose their K leading tokens (class token, registers) and
are laid on the patch grid (h, w) = (H/p, W/p); channels-last maps N×h×w×C are permuted.
The layer map is upsampled to the input's spatial size (linear, bilinear or trilinear)
and repeated over the input channels, so the attribution has the input's shape.
For a network that ends in global average pooling and one linear layer, Grad-CAM is
CAM (Zhou et al. 2016) divided by the number of positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..checks import check_bool, check_choice, check_eager
from ..errors import ArgumentError, ArgumentTypeError
from ..layers import captured_forward, last_reached_layer, layer_gradients, spatial_forward
from ..method import Method, register_method
from ..spatial import (
    INTERPOLATIONS,
    Reshape,
    as_feature_map,
    check_interpolation,
    check_reshape,
    check_spatial_input,
    upsample,
)
from ..task import Forward, Task
from .rows import check_finite_values


@dataclass(frozen=True, eq=False)
class _LayerCam(Method):
    layer: str | nn.Module | None = None
    relu: bool = True
    interpolation: str = "auto"
    reshape: Reshape = None

    #: a map over spatial positions (a conv layer, or tokens that form a patch grid)
    requires: ClassVar[frozenset[str]] = frozenset({"spatial"})
    per_position: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.layer is not None and not isinstance(self.layer, (str, nn.Module)):
            raise ArgumentTypeError(
                "layer",
                f"layer must be a dotted layer name (a key of dict(model.named_modules())), "
                f"a submodule of the model, or None; got {self.layer!r}",
            )
        check_bool(self.relu, "relu")
        check_choice(self.interpolation, "interpolation", INTERPOLATIONS)
        check_reshape(self.reshape)

    def channel_weights(self, activation: Tensor, grad: Tensor) -> Tensor:
        """One weight per sample and channel, (N, C)."""
        raise NotImplementedError

    def first_pass(self, task: Task, x: Tensor) -> Forward:
        """The call's first forward, with the explained layer captured (reused by attribute);
        with ``layer=None``, every outermost spatial layer, the candidates."""
        check_spatial_input(x, self.name)
        check_interpolation(self.interpolation, x.ndim - 2)
        check_eager(task.model, f"the layer hooks of {self.name}")
        if self.layer is None:
            return spatial_forward(task, x, own_inputs=True)
        return captured_forward(task, x, [self.layer], own_inputs=True)

    def attribute(self, task: Task, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        recorded = task.first_forward_at(x) or self.first_pass(task, x)  # checks x is spatial
        if self.layer is None:
            name, found = last_reached_layer(task, recorded, self.reshape)
        else:
            (name,) = recorded.layers
            recorded.layer(name)  # the one error for a layer that did not run
            found = layer_gradients(task, x, [name], recorded=recorded)
        # a layer that runs several times is explained at its last call
        activation, grad = (as_feature_map(t[name][-1], x, self.reshape, name)
                            for t in (found.outputs, found.grads))
        _check_feature_map(name, activation, x)
        if not grad.any() and found.grads[name][-1].any():
            raise ArgumentError(
                "layer",
                f"the score depends on layer {name!r} only through the tokens left out of "
                f"its map (class token, registers: reshape={self.reshape!r}), so the map "
                "would be zero; pick an earlier layer, e.g. the input of the last attention "
                "block (layer=None finds one)",
            )
        check_finite_values(grad, self.name, "gradients", f"layer {name!r}")
        weights = self.channel_weights(activation, grad)
        layer_map = torch.einsum("nc,nc...->n...", weights, activation)
        if self.relu:
            layer_map = layer_map.clamp_min(0)
        drawn = upsample(layer_map.unsqueeze(1), x.shape[2:], self.interpolation)
        return drawn.expand_as(x).contiguous(), {"layer_map": layer_map, "layer": name}


def _check_feature_map(name: str, activation: Tensor, x: Tensor) -> None:
    if activation.ndim < 3 or activation.shape[0] != x.shape[0]:
        raise ArgumentError(
            "layer",
            f"layer {name!r} outputs shape {tuple(activation.shape)} for a batch of "
            f"{x.shape[0]}, which is not a feature map N×C×S; pick a convolutional layer "
            "(or leave layer=None to use the last spatial layer, or read it as a map with "
            "reshape=)",
        )
    if math.prod(activation.shape[2:]) == 1:
        raise ArgumentError(
            "layer",
            f"layer {name!r} outputs a single position {tuple(activation.shape)}, so its map "
            "would be one value spread over the whole input; pick a layer with a spatial "
            "output (or leave layer=None to use the last spatial layer)",
        )
    if activation.ndim != x.ndim:
        raise ArgumentError(
            "layer",
            f"layer {name!r} outputs a {activation.ndim - 2}-D feature map "
            f"{tuple(activation.shape)} but the inputs {tuple(x.shape)} are "
            f"{x.ndim - 2}-D, so the map cannot be drawn on them; pick a layer with the "
            "inputs' number of spatial dimensions (or read it as a map with reshape=)",
        )


@register_method("gradcam")
@dataclass(frozen=True, eq=False)
class GradCAM(_LayerCam):
    """Grad-CAM: feature maps weighted by their mean gradient (Selvaraju et al. 2017).

    Settings: ``layer`` (a dotted name or a submodule; None picks the last outermost layer
    with a spatial output whose map the score's gradient reaches at more than one position,
    from the call's one forward pass), ``relu`` (keep only positive
    evidence), ``interpolation`` (``"auto"`` is linear, bilinear or trilinear), ``reshape``
    (how to read the layer output as N×C×S: None automatic, ``"vit"``, ``"tokens=K"``,
    ``"channels_last"``, ``"channels_first"`` or a callable). ``extras``: ``layer_map``
    (N×S at the layer) and ``layer``.

    Example:
        >>> import pellucid
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
        ...     torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> pellucid.explain(net, torch.randn(2, 3, 8, 8), method="gradcam").attribution.shape
        torch.Size([2, 3, 8, 8])
    """

    def channel_weights(self, activation: Tensor, grad: Tensor) -> Tensor:
        return grad.flatten(2).mean(2)


@register_method("gradcam_plus_plus")
@dataclass(frozen=True, eq=False)
class GradCAMPlusPlus(_LayerCam):
    """Grad-CAM++: pixel-weighted positive gradients (Chattopadhay et al. 2018).

    Settings and extras as for ``gradcam``. Weights wᶜ = Σₛ αᶜₛ ReLU(gᶜₛ) with
    αᶜₛ = g² / (2g² + (Σₛ' Aᶜₛ') g³), the closed form for an exponential score.
    """

    def channel_weights(self, activation: Tensor, grad: Tensor) -> Tensor:
        g = grad.flatten(2)
        total = activation.flatten(2).sum(2, keepdim=True)
        denominator = 2 * g.square() + total * g.pow(3)
        defined = denominator != 0
        alpha = torch.where(defined, g.square() / torch.where(defined, denominator, 1), 0)
        return (alpha * g.clamp_min(0)).sum(2)
