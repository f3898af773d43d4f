"""The store of a run: a zarr v3 group on disk, or NumPy arrays in memory
(:mod:`~pellucid.runs.memory`, no optional dependency), written one batch at a time.

Layout (see docs/runs.md): root attributes ``format``, ``format_version``,
``pellucid_version``, ``fingerprint``, ``settings`` (what the fingerprint hashes),
``methods`` (label → key), ``metrics`` (label → key, direction), ``chunk`` (rows per
chunk); arrays ``index``, ``labels``, ``targets``, ``outputs`` and per method
``methods/<key>/attribution``, ``scores/<metric key>``, ``curves/<metric key>``,
``errors``, ``seconds`` (per batch) and ``done`` (per batch: the row after its last, 0
while not written). A batch's markers (``done``) are written after all its arrays, so
that a run killed mid-way leaves no half-written batch marked done (each chunk file is
replaced atomically).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ArgumentError, ArgumentTypeError
from ..saving import _version
from .memory import MemoryGroup

if TYPE_CHECKING:
    from .runner import BatchResult

__all__ = ["FORMAT", "Store", "fingerprint", "model_fingerprint"]

FORMAT = "pellucid.runs"
FORMAT_VERSION = 1
#: markers per chunk of a ``done``/``seconds`` array (each chunk file is replaced atomically)
MARKER_CHUNK = 256
#: characters of a label that do not go into an array's name
UNSAFE = re.compile(r"[^\w.=,()-]")


def zarr_module() -> Any:
    """zarr, or an error that names the extra to install."""
    try:
        import zarr
    except ImportError:
        raise ArgumentError(
            "store", "pellucid.runs stores results with zarr, which is not installed; "
            "pip install 'pellucid[runs]'",
        ) from None
    return zarr


def model_fingerprint(model: nn.Module) -> str:
    """A hash of the model's parameter and buffer names, shapes, dtypes and two checksums
    of their values (Σw and Σ|w| in float64): cheap, and different for other weights.

    >>> import torch
    >>> a, b = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    >>> model_fingerprint(a) == model_fingerprint(a), model_fingerprint(a) == model_fingerprint(b)
    (True, False)
    """
    parts = []
    with torch.no_grad():
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            values = t.detach().double() if t.is_floating_point() else t.detach().long()
            parts.append([name, list(t.shape), str(t.dtype), repr(float(values.sum())),
                          repr(float(values.abs().sum()))])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def canonical(value: Any) -> Any:
    """A JSON form of a setting that is the same in every process: tensors and arrays by a
    hash of their values, callables by their qualified name, other objects by their repr
    without memory addresses."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, (Tensor, np.ndarray)):
        array = value.detach().cpu().numpy() if isinstance(value, Tensor) else value
        digest = hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
        return {"array": list(array.shape), "dtype": str(array.dtype), "sha256": digest}
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, type) or (callable(value) and hasattr(value, "__qualname__")):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
    return re.sub(r" at 0x[0-9a-f]+", "", repr(value))


def fingerprint(settings: Mapping[str, Any]) -> str:
    """The SHA-256 of the canonical JSON of ``settings`` (see :func:`canonical`).

    >>> fingerprint({"steps": 8}) == fingerprint({"steps": 8}), fingerprint({"steps": 9})[:4]
    (True, '...')
    """
    text = json.dumps(canonical(settings), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def key(label: str) -> str:
    """The array name of a method or metric label."""
    return UNSAFE.sub("_", label)


class Store:
    """A run's arrays, in a zarr group on disk or a :class:`~pellucid.runs.memory.MemoryGroup`:
    :meth:`create` to write (or resume), :meth:`open` to read."""

    def __init__(self, group: Any, path: Path | None) -> None:
        self.group = group
        self.path = path

    @classmethod
    def create(cls, path: Any, settings: dict[str, Any], methods: list[str],
               metrics: dict[str, str], resume: bool) -> Store:
        """The store at ``path`` (a folder; ``None``: in memory) for a run with these
        ``settings``: a new one, or with ``resume`` an existing one of the same fingerprint.

        ``methods`` are the method labels, ``metrics`` the metric labels → direction.
        Errors name ``store``.
        """
        attrs = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "pellucid_version": _version(),
            "fingerprint": fingerprint(settings), "settings": canonical(settings),
            "methods": {label: key(label) for label in methods},
            "metrics": {label: {"key": key(label), "direction": d} for label, d in metrics.items()},
        }
        if path is None:
            group = MemoryGroup()
            group.attrs.update(attrs)
            return cls(group, None)
        folder = _folder(path)
        zarr = zarr_module()
        if resume and (folder / "zarr.json").exists():
            store = cls.open(folder, mode="r+", argument="store")
            if store.attrs["fingerprint"] != attrs["fingerprint"]:
                raise ArgumentError(
                    "store", f"store {str(folder)!r} holds a run with other settings (methods, "
                    "metrics, target, dtype or model differ); use another path, or resume=False "
                    "to overwrite it",
                )
            return store
        if folder.exists() and any(folder.iterdir()) and not (folder / "zarr.json").exists():
            raise ArgumentError(
                "store", f"store {str(folder)!r} is a folder that is not a run's store; give a "
                "new or empty folder (it is not overwritten)",
            )
        group = zarr.open_group(str(folder), mode="w")
        group.attrs.update(attrs)
        return cls(group, folder)

    @classmethod
    def open(cls, path: Any, mode: str = "r", argument: str = "path") -> Store:
        """The store written at ``path``, read lazily; errors name ``argument``."""
        zarr = zarr_module()
        folder = _folder(path, argument)
        if not (folder / "zarr.json").exists():
            raise ArgumentError(
                argument, f"{argument} {str(folder)!r} holds no run store (no zarr.json); give "
                "the folder that pellucid.runs.run(..., store=) wrote",
            )
        group = zarr.open_group(str(folder), mode=mode)
        if group.attrs.get("format") != FORMAT:
            raise ArgumentError(
                argument, f"{argument} {str(folder)!r} is a zarr group that pellucid.runs did "
                "not write; give a run's store (or a new folder to write one)",
            )
        if group.attrs.get("format_version") != FORMAT_VERSION:
            raise ArgumentError(
                argument, f"{argument} {str(folder)!r} has store format version "
                f"{group.attrs.get('format_version')!r}; this pellucid reads {FORMAT_VERSION}",
            )
        return cls(group, folder)

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.group.attrs)

    def array(self, name: str) -> Any | None:
        """The array at ``name`` (e.g. ``methods/gradient/attribution``), None if not written."""
        try:
            return self.group[name]
        except KeyError:
            return None

    def marker(self, name: str, number: int) -> int:
        """The marker of batch ``number`` in the ``done`` array at ``name`` (0: not done)."""
        done = self.array(name)
        return int(done[number]) if done is not None and number < done.shape[0] else 0

    def pending(self, number: int, stop: int, methods: list[str]) -> list[str]:
        """The method labels whose results for batch ``number`` (rows up to ``stop``) are
        not complete; an error naming ``data`` when the stored batch had other rows."""
        keys = self.attrs["methods"]
        left = []
        for label in methods:
            done = self.marker(f"methods/{keys[label]}/done", number)
            if done not in (0, stop):
                raise ArgumentError(
                    "data", f"batch {number} of data ends at sample {stop}, but in the store it "
                    f"ended at {done}: the data or its batches changed; resume with the same "
                    "data and batch size, or resume=False",
                )
            if done == 0:
                left.append(label)
        return left

    def write(self, result: BatchResult) -> None:
        """Write one batch's results, then its markers (``done``), last."""
        rows = slice(int(result.index[0]), int(result.index[-1]) + 1)
        if rows.stop - rows.start != len(result.index):
            raise ArgumentError("data", "the batch's samples are not consecutive positions")
        number = result.number
        if "chunk" not in self.group.attrs:
            if number != 0:
                raise RuntimeError(
                    "the store's chunk size is the first batch's: record it with "
                    "runner.check_chunk(store, batch 0) before writing other batches"
                )
            self.set_chunk(len(result.index))
        self._put("index", rows, result.index, -1)
        if result.labels is not None:
            self._put("labels", rows, result.labels, -1)
        self._put("targets", rows, result.targets, -1)
        if result.outputs is not None:
            self._put("outputs", rows, result.outputs, np.nan)
        keys = self.attrs["methods"]
        metric_keys = {label: m["key"] for label, m in self.attrs["metrics"].items()}
        for label, part in result.methods.items():
            base = f"methods/{keys[label]}"
            self._put(f"{base}/attribution", rows, part.attribution, np.nan)
            self._put(f"{base}/errors", rows, part.errors, "")
            for metric, scores in part.scores.items():
                self._put(f"{base}/scores/{metric_keys[metric]}", rows, scores, np.nan)
            for metric, (x_axis, curves) in part.curves.items():
                array = self._put(f"{base}/curves/{metric_keys[metric]}", rows, curves, np.nan)
                array.attrs["x_axis"] = x_axis.tolist()
            self._mark(f"{base}/seconds", number, part.seconds)
        self._grow(rows.stop)
        for label in result.methods:
            self._mark(f"methods/{keys[label]}/done", number, rows.stop)

    def set_chunk(self, size: int) -> None:
        """Record the samples per chunk (the first batch's size), once."""
        self.group.attrs["chunk"] = int(size)

    def _put(self, name: str, rows: slice, values: np.ndarray, fill: Any) -> Any:
        """Write rows of the array ``name``, creating it (chunks of the first batch's size)
        or growing it as needed."""
        array = self.array(name)
        if array is None:
            chunk = self.group.attrs["chunk"]
            dtype = str if values.dtype.kind in "UTO" else values.dtype
            array = self.group.create_array(
                name, shape=(0, *values.shape[1:]), chunks=(chunk, *values.shape[1:]),
                dtype=dtype, fill_value=fill,
            )
        if array.shape[0] < rows.stop:
            array.resize((rows.stop, *array.shape[1:]))
        array[rows] = values
        return array

    def _grow(self, stop: int) -> None:
        """Grow every per-sample array that this batch did not reach (a method or metric
        that failed on every sample of it) to ``stop`` rows: its rows stay at the fill."""
        for name, array in self.group.members(max_depth=None):
            per_batch = name.endswith(("/done", "/seconds"))
            if hasattr(array, "resize") and not per_batch and array.shape[0] < stop:
                array.resize((stop, *array.shape[1:]))

    def _mark(self, name: str, number: int, value: float) -> None:
        array = self.array(name)
        if array is None:
            dtype = np.float64 if isinstance(value, float) else np.int64
            array = self.group.create_array(name, shape=(0,), chunks=(MARKER_CHUNK,),
                                            dtype=dtype, fill_value=0)
        if array.shape[0] <= number:
            array.resize((number + 1,))
        array[number] = value


def _folder(path: Any, argument: str = "store") -> Path:
    if not isinstance(path, (str, Path)):
        raise ArgumentTypeError(
            argument, f"{argument} must be a folder path (str or Path), got {path!r}"
        )
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ArgumentError(argument, f"{argument} {str(folder)!r} is a file; give a folder path")
    return folder
