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

from ..checks import check_inputs
from ..guard import preserved
from ..layers import find_layer
from ..method import private_copy
from .maximise import maximise, observe
from .objectives import Channel, Objective, at_position


@dataclass(frozen=True, eq=False)
class SemanticDictionary:
    """The top channels of ``layer`` at ``position`` with their activations and images."""

    layer: str
    position: tuple[int, ...]
    channels: Tensor
    activations: Tensor
    images: list[Tensor]


def semantic_dictionary(
    model: nn.Module,
    layer: str,
    image: Tensor,
    position: Sequence[int],
    top: int = 4,
    **settings: Any,
) -> SemanticDictionary:
    """The ``top`` channels with the largest activation at ``position`` for ``image``.

    Args:
        image: one input with a batch dimension of 1 (e.g. 1×3×H×W).
        position: the spatial position in the layer's feature map (e.g. (row, column)).
        settings: passed to :func:`maximise` for the visualisations (steps, lr,
            parameterisation, regularisers, ...); each image maximises its channel's mean.
    """
    find_layer(model, layer)
    check_inputs(image)
    if image.shape[0] != 1:
        raise ValueError(
            f"image has shape {tuple(image.shape)}; give one input with a batch dimension of "
            "1 (e.g. x[:1] or x.unsqueeze(0))"
        )
    with preserved(model), torch.no_grad():
        act = observe(model, private_copy(image, model), [layer]).layer(layer)
    if act.ndim < 3:
        raise ValueError(
            f"layer {layer!r} outputs shape {tuple(act.shape)}, without spatial positions; "
            "pick a convolutional layer (N×C×H×W output)"
        )
    vector = at_position(act[0], tuple(position))
    k = min(top, vector.numel())
    values, channels = vector.topk(k)
    objective: Objective = Channel(layer, channels)
    images = maximise(model, objective, (k, *image.shape[1:]), **settings)
    return SemanticDictionary(layer, tuple(position), channels.cpu(), values.cpu(), images)


__all__ = ["SemanticDictionary", "semantic_dictionary"]
