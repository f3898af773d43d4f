"""The guarantee that the user's model comes out of every call exactly as it went in.

:func:`preserved` snapshots, in one walk over the modules, the train/eval mode of every
module, the identity, ``requires_grad`` flag, ``.grad`` and version counter of every
parameter, and the identity, version counter and value of every buffer. On exit,
successful or raising, it restores what changed and removes every hook added during the
call (hook keys are handle ids, which only grow: the ones at or above the first id of the
call are new). Parameters are checked by version counter, since pellucid never writes to
them and a copy of a large model on every call would be costly.

Buffers and version counters. An in-place write bumps a tensor's version counter, so a
buffer whose counter is unchanged holds the value it had, with one exception: BatchNorm's
kernel updates ``running_mean`` and ``running_var`` in train mode without bumping theirs
(only ``num_batches_tracked``, written from Python, moves). The guard therefore:

- restores (copies back) only the buffers whose counter or storage changed, together with
  every buffer of the same module (BatchNorm's statistics follow its counter), and every
  buffer when a module is in train mode; an unchanged buffer keeps its counter, so caches
  keyed on it (the rule engine's folded BatchNorms) keep hitting;
- keeps the copies it restores from, per model (weakly) and module: the buffers of a
  module whose identities and counters are unchanged since the last call (or the enclosing
  call, for nested guards) are not copied again (:func:`clear_buffer_copies` drops them);
- when a module's buffers moved between two calls but some counters did not (BatchNorm
  trained in between), bumps those counters at the next call's entry, so that every cache
  keyed on them sees the change.

A write that bumps no counter of the module (``buffer.data.add_()``, or ``F.batch_norm``
with ``training=True`` on buffers of a module in eval mode and without a counter of its own)
is not seen.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle
from torch.utils.weak import WeakIdKeyDictionary

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

Stamp = tuple[int, int]
#: model → {id(module): what the guard last saw of the module's buffers (a ``_Seen``)}
_SEEN: WeakIdKeyDictionary = WeakIdKeyDictionary()


def clear_buffer_copies() -> None:
    """Forget the copies of buffers that the guard keeps between calls (device memory of
    the size of every explained model's buffers); the next call copies them again.

    Example:
        >>> import torch
        >>> model = torch.nn.BatchNorm1d(3).eval()
        >>> with preserved(model):
        ...     pass
        >>> clear_buffer_copies()
        >>> [seen.copies for seen in _SEEN[model].values()]
        [None]
    """
    for seen in _SEEN.values():
        for kept in seen.values():
            kept.copies = None


def stamp(t: Tensor | None) -> Stamp | None:
    """What says that a tensor is unchanged: its version counter and its storage (the
    guard's buffers, the rule engine's weight cache)."""
    return None if t is None else (t._version, t.data_ptr())


def _slot(slots: Any, name: str) -> Tensor | None:
    """``slots[name]``, None when absent (TorchScript's dict wrappers have no ``get``)."""
    return slots[name] if name in slots else None  # noqa: SIM401


def _bump(buffer: Tensor) -> None:
    """Advance a buffer's version counter without changing its value."""
    if not buffer.is_inference():
        with torch.no_grad():
            buffer.copy_(buffer)


class _Seen:
    """One module's buffers as a guard last left them: their stamps and copies."""

    __slots__ = ("copies", "module", "stamps", "tensors")

    def __init__(self, module: nn.Module, tensors: list[Tensor | None],
                 stamps: tuple[Stamp | None, ...], copies: list[Tensor | None] | None) -> None:
        # weak: the model may be its own module, and replaced buffers should not be kept
        self.module = weakref.ref(module)
        self.tensors = [None if t is None else weakref.ref(t) for t in tensors]
        self.stamps, self.copies = stamps, copies

    def same_buffers(self, module: nn.Module, tensors: list[Tensor | None]) -> bool:
        return self.module() is module and len(self.tensors) == len(tensors) and all(
            b is None if a is None else a() is b for a, b in zip(self.tensors, tensors))


class _ModuleBuffers:
    """One module's buffers at entry: the tensors, their stamps and copies of their values."""

    __slots__ = ("copies", "module", "names", "seen", "stamps", "tensors")

    def __init__(self, module: nn.Module, seen: _Seen | None, training: bool) -> None:
        self.module = module
        self.names = list(module._buffers)
        self.tensors = list(module._buffers.values())
        self.stamps = tuple(stamp(t) for t in self.tensors)
        if seen is not None and not seen.same_buffers(module, self.tensors):
            seen = None
        if seen is not None and seen.stamps != self.stamps:
            # moved since the last call, maybe without bumping every counter (BatchNorm
            # trained in between): make the change visible in every counter of the module
            for t, before, now in zip(self.tensors, seen.stamps, self.stamps):
                if t is not None and before == now:
                    _bump(t)
            self.stamps = tuple(stamp(t) for t in self.tensors)
            seen = None
        if seen is not None and seen.copies is not None and not training:
            self.copies = seen.copies  # unchanged since a guard copied them
        else:
            self.copies = [None if t is None else t.detach().clone() for t in self.tensors]
            seen = _Seen(module, self.tensors, self.stamps, self.copies)
        self.seen = seen

    def restore(self, everything: bool) -> _Seen:
        """Put back the buffers if any of them changed (all of them with ``everything``);
        what the module's buffers are now."""
        slots = self.module._buffers
        changed = everything or any(
            _slot(slots, n) is not t or stamp(t) != s
            for n, t, s in zip(self.names, self.tensors, self.stamps)
        )
        if not changed:
            return self.seen
        with torch.no_grad():
            for name, tensor, copy in zip(self.names, self.tensors, self.copies):
                slots[name] = tensor
                if tensor is None or copy is None:
                    continue
                if tensor.shape == copy.shape and tensor.dtype == copy.dtype:
                    tensor.copy_(copy)
                else:  # given new data of another shape or dtype (``.data = ...``)
                    tensor.data = copy.clone()
        stamps = tuple(stamp(t) for t in self.tensors)
        return _Seen(self.module, self.tensors, stamps, self.copies)


class ModelSnapshot:
    """Everything about a model that a call could change, and how to put it back."""

    def __init__(self, model: nn.Module) -> None:
        self.first_hook = RemovableHandle.next_id
        self.modules = list(model.modules())
        self.modes = [(m, m.training) for m in self.modules]
        self.training = any(training for _, training in self.modes)
        self.params = [
            (m, n, p, p.requires_grad, p.grad, p._version)
            for m in self.modules
            for n, p in m._parameters.items()
            if p is not None
        ]
        self.model = model
        seen = _SEEN.get(model) or {}
        self.buffers = [_ModuleBuffers(m, seen.get(id(m)), self.training)
                        for m in self.modules if m._buffers]
        _SEEN[model] = {id(b.module): b.seen for b in self.buffers}  # for nested guards

    def restore(self) -> list[str]:
        """Put the model back; return descriptions of parameters whose values were written."""
        training = self.training or any(m.training for m in self.modules)
        restore_training_flags(self.modes)
        added_hooks = RemovableHandle.next_id != self.first_hook
        for module in self.modules if added_hooks else ():
            for name in _HOOK_DICTS:
                hooks = module.__dict__.get(name)
                if hooks:
                    for key in [k for k in hooks if isinstance(k, int) and k >= self.first_hook]:
                        del hooks[key]
        written = []
        for module, name, param, requires_grad, grad, version in self.params:
            if _slot(module._parameters, name) is not param:
                module._parameters[name] = param
            if param.requires_grad != requires_grad:
                param.requires_grad_(requires_grad)
            if param.grad is not grad:
                param.grad = grad
            if param._version != version:
                written.append(f"{type(module).__name__}.{name}")
        _SEEN[self.model] = {id(b.module): b.restore(everything=training) for b in self.buffers}
        return written


def training_flags(model: nn.Module) -> list[tuple[nn.Module, bool]]:
    """The train/eval flag of every module."""
    return [(m, m.training) for m in model.modules()]


def restore_training_flags(flags: list[tuple[nn.Module, bool]]) -> None:
    for module, training in flags:
        if module.training != training:
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
