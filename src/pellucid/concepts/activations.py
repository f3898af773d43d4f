"""A layer's activations for many inputs, computed in chunks without gradients."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..batching import check_batch_size
from ..checks import check_inputs
from ..guard import preserved
from ..layers import capture, find_layer


def layer_activations(
    model: nn.Module,
    layer: str,
    inputs: Tensor,
    batch_size: int | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Tensor:
    """The output of ``layer`` (dotted name) for every row of ``inputs``, N × (layer shape).

    The model runs on at most ``batch_size`` rows at a time under ``torch.no_grad``; if the
    layer runs several times in one forward pass, its last output is taken.
    """
    find_layer(model, layer)
    check_inputs(inputs)
    size = check_batch_size(batch_size)
    chunks = []
    with preserved(model), torch.no_grad():
        for start in range(0, inputs.shape[0], size):
            with capture(model, [layer]) as captured:
                model(inputs[start : start + size], **(model_kwargs or {}))
            chunks.append(_tensor_output(captured[layer], layer).detach())
    return torch.cat(chunks)


def _tensor_output(outputs: list[Any], layer: str) -> Tensor:
    if not outputs:
        raise ValueError(f"layer {layer!r} did not run in the forward pass; pick a layer that does")
    out = outputs[-1]
    if not isinstance(out, Tensor):
        raise TypeError(
            f"layer {layer!r} returns a {type(out).__name__}, not a tensor; pick a layer "
            "(or a submodule of it) whose output is a tensor"
        )
    return out


__all__ = ["layer_activations"]
