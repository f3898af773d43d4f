"""Semantic dictionaries (Olah et al. 2018, "The Building Blocks of Interpretability").

At one spatial position of a layer, the activation vector is read as a mix of channels:
the channels that fire most there, each shown by its feature visualisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..checks import check_count, check_inputs
from ..errors import ArgumentError
from ..guard import preserved
from ..layers import LayerRef, layer_name
from .maximise import _observe, maximise
from .objectives import Channel, Objective, _check_position, at_position


@dataclass(frozen=True, eq=False)
class SemanticDictionary:
    """The top channels of ``layer`` at ``position`` with their activations and images:
    ``channels`` and ``activations`` on the CPU, ``images`` as :func:`maximise` returns them
    (on the model's device)."""

    layer: str
    position: tuple[int, ...]
    channels: Tensor
    activations: Tensor
    images: list[Tensor]


def semantic_dictionary(
    model: nn.Module,
    layer: LayerRef,
    image: Tensor,
    position: Sequence[int],
    top: int = 4,
    **settings: Any,
) -> SemanticDictionary:
    """The ``top`` channels with the largest activation at ``position`` for ``image``.

    Args:
        layer: a dotted name or a submodule of ``model``.
        image: one input with a batch dimension of 1 (e.g. 1×3×H×W); the model sees a copy.
        position: the spatial position in the layer's feature map (e.g. (row, column)).
        settings: passed to :func:`maximise` for the visualisations (steps, lr,
            parameterisation, regularisers, ...); each image maximises its channel's mean.
    """
    check_inputs(image, "image")
    if image.shape[0] != 1:
        raise ArgumentError(
            "image",
            f"image has shape {tuple(image.shape)}; give one input with a batch dimension of "
            "1 (e.g. x[:1] or x.unsqueeze(0))",
        )
    if position is None:
        raise ArgumentError("position", "position is required: (row, column) in the feature map")
    _check_position(position)
    top = check_count(top, "top", "how many channels")
    with preserved(model), torch.no_grad():
        layer = layer_name(model, layer)
        act = _observe(model, image.detach(), [layer], None, None).layer(layer)
    if act.ndim < 3:
        raise ArgumentError(
            "layer",
            f"layer {layer!r} outputs shape {tuple(act.shape)}, without spatial positions; "
            "pick a convolutional layer (N×C×H×W output)",
        )
    vector = at_position(act[0], tuple(position))
    k = min(top, vector.numel())
    values, channels = vector.topk(k)
    objective: Objective = Channel(layer, channels)
    images = maximise(model, objective, (k, *image.shape[1:]), **settings)
    return SemanticDictionary(layer, tuple(position), channels.cpu(), values.cpu(), images)


__all__ = ["SemanticDictionary", "semantic_dictionary"]
