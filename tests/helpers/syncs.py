"""Count the calls that would make the host wait for the GPU, on any device (CPU included).

On a GPU, reading a Python value from a device tensor (``item``, ``bool``, ``tolist``, an
output whose shape depends on the data) or copying a host tensor to the device without
pinned memory makes the host wait for every queued kernel. On CPU nothing waits, so the
calls themselves are counted: :func:`count_syncs` is a ``torch.overrides.TorchFunctionMode``
that sees every torch function and tensor method and records those that synchronise, with
the pellucid line that made each::

    with count_syncs(model, x) as syncs:
        pellucid.explain(model, x, method="gradient")
    assert syncs.total <= 8, syncs.report()

Where the tensors live is emulated. The tensors given to :func:`count_syncs` (the inputs,
the model's parameters and buffers) live on the **device**, and so does what is computed
from them or made with their ``.device``; everything else (a tensor made by a factory
without a device, a draw from a CPU generator, NumPy data, ``.cpu()`` copies, tensors
cached before the block) lives on the **host**. Reading a host tensor is free; reading a
device tensor is a sync, and so is a host tensor copied to the device (``.to(x.device)``,
``torch.tensor(v, device=d)``, a host index into a device tensor). Where a copy between
devices would make a new tensor and CPU returns its input, the counter returns an alias.

Modes nest: the rule engine's ``Recorder`` is itself a mode, pushed above this one while
it records, and torch pops a mode while its ``__torch_function__`` runs, so the calls the
recorder makes (the model's ops included) reach this mode below it. Only calls on tensors
(or making tensors) are counted, never on Python numbers.
"""

from __future__ import annotations

import collections
import os
import sys
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode, resolve_name
from torch.utils._pytree import tree_flatten

import pellucid

_PELLUCID = os.path.dirname(pellucid.__file__) + os.sep

#: a Python value read from a device tensor
_READS = {
    "item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__",
    "__complex__", "__array__", "__repr__", "__format__", "__str__", "__contains__",
    "equal", "is_nonzero", "allclose",
}
#: outputs whose shape depends on the data
_DATA_SHAPED = {
    "nonzero", "argwhere", "masked_select", "unique", "unique_consecutive", "bincount",
}
#: linear algebra that checks its solver's status on the host (cuSOLVER's ``info``)
_CHECKED_LINALG = {"lstsq", "solve", "inv", "cholesky", "lu_factor"}
#: functions that make tensors from sizes or Python data: on the host without a device
_FACTORIES = {
    "tensor", "as_tensor", "zeros", "ones", "full", "empty", "arange", "linspace",
    "logspace", "rand", "randn", "randint", "randperm", "eye", "from_numpy", "normal",
    "bernoulli", "multinomial", "scalar_tensor",
}


def _short_name(func) -> str:
    name = resolve_name(func) or getattr(func, "__name__", repr(func))
    return name.rsplit(".", 1)[-1]


def _literal_cpu(value) -> bool:
    return isinstance(value, str) and torch.device(value).type == "cpu"


class Syncs(TorchFunctionMode):
    """The synchronising calls seen: ``counts[(kind, pellucid file:line)]``.

    ``on_device`` are the tensors (and the parameters and buffers of the modules) that live
    on the device; what is computed from them, or made with their device, does too.
    """

    def __init__(self, on_device: Iterable[Tensor | nn.Module] = ()) -> None:
        super().__init__()
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self._device: dict[int, weakref.ref] = {}
        #: the ``.device`` objects read from device tensors (kept alive: ids stay unique)
        self._device_places: dict[int, torch.device] = {}
        from pellucid.lrp.engine import WEIGHT_CACHE

        for value in on_device:
            # a model's parameters, buffers and the weights derived from them in earlier calls
            for t in [*value.parameters(), *value.buffers(), *WEIGHT_CACHE.tensors(value)] \
                    if isinstance(value, nn.Module) else [value]:
                self._mark(t, host=False)

    def on_host(self, t: object) -> bool:
        """``t`` is a tensor on the host (see the module docstring)."""
        if isinstance(t, nn.Parameter):
            return False  # a model's, wherever it was made (a deepcopy of the model)
        ref = self._device.get(id(t))
        return isinstance(t, Tensor) and (ref is None or ref() is not t)

    def _mark(self, t: Tensor, host: bool) -> None:
        key = id(t)
        if host:
            self._device.pop(key, None)
        else:
            self._device[key] = weakref.ref(t, lambda _, key=key: self._device.pop(key, None))

    def _names_host(self, place) -> bool:
        """A device argument that names the host: ``"cpu"``, the ``.device`` of a host tensor,
        or a host tensor (as in ``.to(t)``); the ``.device`` of a device tensor is the GPU."""
        if isinstance(place, str):
            return torch.device(place).type == "cpu"
        if isinstance(place, torch.device):
            return id(place) not in self._device_places
        return self.on_host(place)

    def kind(self, name: str, args: tuple, kwargs: dict, tensors: list[Tensor]
             ) -> tuple[str | None, bool]:
        """(the kind of sync the call is, or None; whether its outputs live on the host)."""
        host_inputs = bool(tensors) and all(self.on_host(t) for t in tensors)
        device = kwargs.get("device")
        if name in _FACTORIES and all(self.on_host(t) for t in tensors):
            if device is None or self._names_host(device):
                return None, True
            copies = name in ("tensor", "as_tensor")  # Python data or a host tensor, copied
            return (f"{name}(device=) host→device copy" if copies else None), False
        if name in ("to", "cuda", "cpu"):
            places = [v for v in (*args[1:], device)
                      if isinstance(v, str | torch.device | Tensor)]
            to_host = name == "cpu" or (name == "to" and any(map(self._names_host, places)))
            if to_host:
                return (None if self.on_host(args[0]) else "to host"), True
            if self.on_host(args[0]):
                moved = name == "cuda" or bool(places)
                return ("host→device copy", False) if moved else (None, True)
            return None, False
        if name == "copy_" and len(args) > 1 and self.on_host(args[1]) \
                and not self.on_host(args[0]):
            return "host→device copy", False
        if host_inputs:
            return None, True
        if name in _READS or name in _DATA_SHAPED or name in _CHECKED_LINALG:
            return name, False
        if name == "where" and len(args) + len(kwargs) == 1:
            return "where(cond)", False
        if name == "repeat_interleave":
            repeats = kwargs.get("repeats", args[1] if len(args) > 1 else None)
            if isinstance(repeats, Tensor) and kwargs.get("output_size") is None:
                return name, False
        if name in ("__getitem__", "__setitem__") and len(args) > 1:
            index = args[1] if isinstance(args[1], tuple | list) else (args[1],)
            tensor_index = [i for i in index if isinstance(i, Tensor) and i.ndim > 0]
            if any(i.dtype == torch.bool for i in tensor_index):
                return "boolean-mask indexing", False
            if any(self.on_host(i) for i in tensor_index):
                return "host index into a device tensor", False
        return None, False

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        if resolve_name(func) == "torch.Tensor.device.__get__":
            place = func(*args, **kwargs)
            if not self.on_host(args[0]):
                self._device_places[id(place)] = place
            return place
        name = _short_name(func)
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, Tensor)]
        kind, host = self.kind(name, args, kwargs, tensors)
        if kind is not None:
            self.counts[(kind, _caller())] += 1
        out = func(*args, **kwargs)
        if kind in ("to host", "host→device copy") and any(out is t for t in tensors):
            out = out.view_as(out)  # between devices a copy is a new tensor; on CPU, alias
        for t in tree_flatten(out)[0]:
            if isinstance(t, Tensor) and not any(t is i for i in tensors):
                self._mark(t, host)
        return out

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def by_site(self) -> dict[str, int]:
        """Counts per ``kind at file:line``, most frequent first."""
        return {f"{k} at {where}": n for (k, where), n in self.counts.most_common()}

    def report(self) -> str:
        lines = [f"  {n:4d}  {site}" for site, n in self.by_site().items()]
        return f"{self.total} host syncs:\n" + "\n".join(lines)


def _caller() -> str:
    """``file:line`` of the innermost pellucid frame, else of the innermost frame outside
    torch and this module (the test's)."""
    frame = sys._getframe(2)
    fallback = None
    while frame is not None:
        path = frame.f_code.co_filename
        if path.startswith(_PELLUCID):
            return f"{os.path.relpath(path, os.path.dirname(_PELLUCID[:-1]))}:{frame.f_lineno}"
        if fallback is None and f"torch{os.sep}" not in path and path != __file__:
            fallback = f"{os.path.basename(path)}:{frame.f_lineno}"
        frame = frame.f_back
    return fallback or "?"


@contextmanager
def count_syncs(*on_device: Tensor | nn.Module) -> Iterator[Syncs]:
    """Count the synchronising calls made inside the block, with ``on_device`` (tensors,
    and models for their parameters and buffers) on the device (see the module docstring)."""
    syncs = Syncs(on_device)
    with syncs:
        yield syncs
