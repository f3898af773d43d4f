"""A layer's activations for many inputs, computed in chunks without gradients."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..batching import row_chunks
from ..checks import check_inputs
from ..guard import preserved
from ..layers import capture, find_layer, tensor_outputs
from ..method import private_copy
from ..targets import Target
from ..task import Forward, Task


def layer_activations(
    model: nn.Module,
    layer: str,
    inputs: Tensor,
    batch_size: int | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Tensor:
    """The output of ``layer`` (dotted name) for every row of ``inputs``, N × (layer shape).

    The model runs on at most ``batch_size`` rows at a time under ``torch.no_grad``, on a
    copy of the rows in the model's device and dtype; per-sample model arguments follow
    the rows. If the layer runs several times in one forward pass, its last output is taken.
    """
    find_layer(model, layer)
    check_inputs(inputs)
    task = Task(model, Target(), None, dict(model_kwargs or {}), len(inputs))
    chunks = []
    with preserved(model), torch.no_grad():
        for rows in row_chunks(len(inputs), batch_size):
            x = private_copy(inputs[rows], model)
            with capture(model, [layer]) as captured:
                output = model(x, **task.take(rows).model_kwargs)
            chunks.append(Forward(x, output, tensor_outputs(captured)).layer(layer).detach())
    return torch.cat(chunks)


__all__ = ["layer_activations"]
