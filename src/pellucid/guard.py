"""The guarantee that the user's model comes out of every call exactly as it went in.

:func:`preserved` snapshots the train/eval mode of every module, the identity,
``requires_grad`` flag, ``.grad`` and version counter of every parameter, the values of
every buffer, and the hook dictionaries of every module. On exit, successful or raising,
it restores all of it and removes any hook added during the call. Buffers are copied
(they are small: BatchNorm statistics); parameters are checked by version counter, since
pellucid never writes to them and a copy of a large model on every call would be costly.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .checks import check_model
from .errors import ModelError

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)


@dataclass
class _ParamState:
    module: nn.Module
    name: str
    param: nn.Parameter
    requires_grad: bool
    grad: Tensor | None
    version: int


@dataclass
class _BufferState:
    module: nn.Module
    name: str
    buffer: Tensor | None
    value: Tensor | None


class ModelSnapshot:
    """Everything about a model that a call could change, and how to put it back."""

    def __init__(self, model: nn.Module) -> None:
        self.modes = training_flags(model)
        self.params = [
            _ParamState(m, n, p, p.requires_grad, p.grad, p._version)
            for m in model.modules()
            for n, p in m._parameters.items()
            if p is not None
        ]
        self.buffers = [
            _BufferState(m, n, b, None if b is None else b.detach().clone())
            for m in model.modules()
            for n, b in m._buffers.items()
        ]
        self.hooks = [
            (m, {name: set(getattr(m, name, {}) or {}) for name in _HOOK_DICTS})
            for m in model.modules()
        ]

    def restore(self) -> list[str]:
        """Put the model back; return descriptions of parameters whose values were written."""
        restore_training_flags(self.modes)
        for module, keys in self.hooks:
            for name, before in keys.items():
                hooks = getattr(module, name, None)
                if hooks:
                    for key in set(hooks) - before:
                        del hooks[key]
        written = []
        for s in self.params:
            s.module._parameters[s.name] = s.param
            s.param.requires_grad_(s.requires_grad)
            s.param.grad = s.grad
            if s.param._version != s.version:
                written.append(f"{type(s.module).__name__}.{s.name}")
        with torch.no_grad():
            for b in self.buffers:
                if b.buffer is not None and b.value is not None:
                    b.buffer.copy_(b.value)
                b.module._buffers[b.name] = b.buffer
        return written


def training_flags(model: nn.Module) -> list[tuple[nn.Module, bool]]:
    """The train/eval flag of every module."""
    return [(m, m.training) for m in model.modules()]


def restore_training_flags(flags: list[tuple[nn.Module, bool]]) -> None:
    for module, training in flags:
        module.training = training


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run a block with ``model`` in eval mode; every module's flag is restored afterwards."""
    flags = training_flags(model)
    model.eval()
    try:
        yield model
    finally:
        restore_training_flags(flags)


@contextmanager
def preserved(model: nn.Module) -> Iterator[ModelSnapshot]:
    """Run a block and restore ``model`` afterwards, on every exit path.

    Checks the model first (:func:`~pellucid.checks.check_model`). Warns when it is in
    train mode: dropout and batch statistics then make the explanation random and
    batch-dependent (call ``model.eval()`` first).
    """
    check_model(model)
    if model.training:
        warnings.warn(
            "the model is in train mode: dropout and batch statistics make explanations "
            "random and batch-dependent; call model.eval() first",
            stacklevel=3,
        )
    snapshot = ModelSnapshot(model)
    failed = True
    try:
        yield snapshot
        failed = False
    finally:
        written = snapshot.restore()
        if written and not failed:
            raise ModelError(
                "model",
                f"the model's parameters {written} were modified in place during the call; "
                "the model's forward must not write to its parameters (if it does not, this "
                "is a bug in pellucid, please report it)",
            )
