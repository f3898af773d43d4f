"""A layer's activations for many inputs, computed in chunks without gradients."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..batching import row_chunks
from ..checks import check_finite, check_inputs
from ..errors import ModelError
from ..guard import preserved
from ..layers import LayerRef, capture, layer_name, tensor_outputs
from ..placement import to_model
from ..targets import Target
from ..task import Forward, Task


def layer_activations(
    model: nn.Module,
    layer: LayerRef,
    inputs: Tensor,
    batch_size: int | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Tensor:
    """The output of ``layer`` for every row of ``inputs``, N × (layer shape).

    ``layer`` is a dotted name or a submodule of ``model``. The model runs on at most
    ``batch_size`` rows at a time under ``torch.no_grad``, on a private copy of the rows in
    the model's device and dtype (a model that writes to its input in place cannot change
    ``inputs``); per-sample model arguments follow the rows. If the layer runs several
    times in one forward pass, its last output is taken. Activations that are not finite
    raise :class:`~pellucid.errors.ModelError`. The result is on the model's device, in its
    dtype, whatever the device and floating dtype of ``inputs``.

    Example:
        >>> import torch
        >>> from pellucid.concepts import layer_activations
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU()).double().eval()
        >>> layer_activations(model, "1", torch.ones(4, 2)).dtype
        torch.float64
    """
    check_inputs(inputs)
    chunks = []
    with preserved(model), torch.no_grad():
        name = layer_name(model, layer)
        task = Task(model, Target(), None, model_kwargs, len(inputs))
        for rows in row_chunks(len(inputs), batch_size):
            x = to_model(inputs[rows].detach(), model, copy=True)
            with capture(model, [name]) as captured:
                output = model(x, **task.take(rows).model_kwargs)
            chunks.append(Forward(x, output, tensor_outputs(captured)).layer(name).detach())
    acts = torch.cat(chunks)
    check_finite(
        acts, f"the activations of layer {name!r}", argument="model", error=ModelError,
        fix="the model computed them from finite inputs; check its weights and forward pass",
    )
    return acts


__all__ = ["layer_activations"]
