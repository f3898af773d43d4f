"""Where a model's tensors live: its device and floating dtype, and inputs moved there.

One rule for every public function that runs a user's model: the model's first floating
parameter decides, else its first floating buffer; a model without either (a parameter-free
module) runs on whatever it is given. Floating inputs take the model's device and dtype;
integer tensors (token ids, labels, masks) and booleans take its device and keep their dtype.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn


def placement(model: nn.Module, like: Tensor | None = None) -> tuple[torch.device, torch.dtype]:
    """(device, floating dtype) of ``model``: those of its first floating parameter, else
    buffer; for a model with neither, those of ``like`` (CPU and float32 without ``like``).

    Example:
        >>> import torch
        >>> placement(torch.nn.Linear(2, 1).double())
        (device(type='cpu'), torch.float64)
        >>> placement(torch.nn.ReLU(), torch.zeros(1, dtype=torch.float16))
        (device(type='cpu'), torch.float16)
    """
    tensors = itertools.chain(model.parameters(), model.buffers())
    reference = next((t for t in tensors if t.is_floating_point()), like)
    if reference is None:
        return torch.device("cpu"), torch.float32
    return reference.device, reference.dtype


def to_model(x: Tensor, model: nn.Module, *, copy: bool = False) -> Tensor:
    """``x`` on ``model``'s device; floating ``x`` also in its floating dtype (see
    :func:`placement`), other dtypes (token ids, labels, masks) kept. Differentiable; with
    ``copy`` a new tensor even when nothing changes (a private copy of the caller's data).

    Example:
        >>> import torch
        >>> to_model(torch.ones(2, 2), torch.nn.Linear(2, 1).double()).dtype
        torch.float64
        >>> to_model(torch.ones(2, dtype=torch.long), torch.nn.Linear(2, 1).double()).dtype
        torch.int64
    """
    device, dtype = placement(model, x)
    if x.is_floating_point():
        return x.to(device=device, dtype=dtype, copy=copy)
    return x.to(device=device, copy=copy)


__all__ = ["placement", "to_model"]
