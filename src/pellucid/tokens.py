"""Token ids as inputs: which tensors are token ids, and token ids named by their role.

A model that reads token ids (B, L) is explained at the output of its input embedding
layer (see :mod:`pellucid.layer_inputs`); baselines, fills and masked positions then name
a token by its role, ``"pad"`` or ``"mask"``, or by its id.

- :func:`is_token_ids`: an int64, int32 or int16 tensor, the inputs of a language model.
- :func:`token_id`: the id that a role or an int names for a model, read from its
  ``config`` (``pad_token_id``, ``mask_token_id``) as Hugging Face models carry it.
- :func:`ids_like`: the ids of a reference or fill with the shape of the inputs, from a
  role or a tensor of ids (baselines of methods, fills of metrics).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .errors import ArgumentError, ArgumentTypeError

#: the token roles a baseline or fill may name instead of an id
TOKEN_ROLES = ("pad", "mask")
#: the dtypes read as token ids (uint8 and int8 are images or masks, not ids)
TOKEN_DTYPES = (torch.int64, torch.int32, torch.int16)


def is_token_ids(inputs: Any) -> bool:
    """True for an int64, int32 or int16 tensor (token ids); floats, bool masks and 8-bit
    images are not ids.

    >>> import torch
    >>> is_token_ids(torch.tensor([[101, 7592, 102]])), is_token_ids(torch.zeros(1, 3))
    (True, False)
    """
    return isinstance(inputs, Tensor) and inputs.dtype in TOKEN_DTYPES


def token_id(spec: Any, model: nn.Module, argument: str) -> int:
    """The token id that ``spec`` names for ``model``: an int ≥ 0 is itself, ``"pad"`` and
    ``"mask"`` are read from ``model.config.pad_token_id`` / ``mask_token_id``.

    ``argument`` names the setting in the error (``"baseline"``, ``"fill"``).

    >>> import torch
    >>> token_id(3, torch.nn.Embedding(10, 4), "baseline")
    3
    """
    if isinstance(spec, bool) or not isinstance(spec, int | str):
        raise ArgumentTypeError(
            argument,
            f"{argument} names a token by its id (an int) or its role {TOKEN_ROLES}, got "
            f"{type(spec).__name__}",
        )
    if isinstance(spec, int):
        if spec < 0:
            raise ArgumentError(argument, f"{argument}={spec} is not a token id; ids are ≥ 0")
        return spec
    if spec not in TOKEN_ROLES:
        raise ArgumentError(
            argument, f"{argument}={spec!r} is not a token role; the roles are {TOKEN_ROLES}"
        )
    key = f"{spec}_token_id"
    value = getattr(getattr(model, "config", None), key, None)
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ArgumentError(
            argument,
            f"{argument}={spec!r} needs the model's {spec} token, but the model has no "
            f"config.{key}; give the token's id instead (e.g. {argument}=tokenizer.{key}), "
            "or a tensor of token ids",
        )
    return value


def ids_like(spec: Any, ids: Tensor, model: nn.Module, argument: str) -> Tensor | None:
    """The token ids with the shape of ``ids`` that ``spec`` names: a role (``"pad"``,
    ``"mask"``) at every position, or an integer tensor of ids ≥ 0 broadcast to ``ids``;
    None when ``spec`` names no tokens. Errors name ``argument``.

    >>> import torch
    >>> ids_like(torch.tensor([1, 2]), torch.zeros(2, 2, dtype=torch.long), None, "fill")
    tensor([[1, 2],
            [1, 2]])
    """
    if isinstance(spec, str) and spec in TOKEN_ROLES:
        return torch.full_like(ids, token_id(spec, model, argument))
    if not is_token_ids(spec):
        return None
    if bool((spec < 0).any()):
        raise ArgumentError(argument, f"the {argument} tensor holds negative token ids; token "
                            "ids are ≥ 0")
    try:
        return torch.broadcast_to(spec.to(ids.device), ids.shape).to(ids.dtype).clone()
    except RuntimeError:
        raise ArgumentError(
            argument,
            f"{argument} holds token ids of shape {tuple(spec.shape)}, which do not broadcast "
            f"to the inputs {tuple(ids.shape)}; give ids (L,) or (B, L)",
        ) from None
