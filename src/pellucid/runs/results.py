"""A run's results, read lazily from its store: attributions by index or class, per-sample
scores, curves, failures and a summary table."""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..errors import ArgumentError, ArgumentTypeError, UnknownNameError
from ..metrics.harness import Table
from ..registry import suggest
from .accumulate import CurveMean, Moments
from .store import Store

if TYPE_CHECKING:
    from ..analysis import Spray

__all__ = ["Failure", "Run"]


@dataclasses.dataclass(frozen=True)
class Failure:
    """A sample that a method (with its metrics) could not explain: its position in the
    data set, the method label, the error's type and message."""

    index: int
    method: str
    error: str
    message: str


class Run:
    """The results of :func:`pellucid.runs.run`, read lazily from its store.

    Example:
        >>> import tempfile, torch
        >>> from pellucid.runs import Run, run
        >>> path = tempfile.mkdtemp() + "/store"
        >>> _ = run(torch.nn.Linear(3, 2).eval(), torch.randn(6, 3), ["gradient"], store=path,
        ...         batch_size=4, progress=False)
        >>> r = Run.open(path)
        >>> r.methods, len(r), r.attribution("gradient", slice(0, 2)).shape
        (['gradient'], 6, torch.Size([2, 3]))
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    @classmethod
    def open(cls, path: str | os.PathLike) -> Run:
        """The run stored at ``path`` (a folder written by ``run(..., store=path)``)."""
        return cls(Store.open(path))

    def __len__(self) -> int:
        index = self.store.array("index")
        return 0 if index is None else int(index.shape[0])

    def __repr__(self) -> str:
        where = "memory" if self.store.path is None else str(self.store.path)
        return (f"Run({len(self)} samples, methods {self.methods}, metrics {self.metrics}, "
                f"{len(self.failures)} failures, store {where})")

    @property
    def methods(self) -> list[str]:
        """The method labels."""
        return list(self.store.attrs["methods"])

    @property
    def metrics(self) -> list[str]:
        """The metric labels."""
        return list(self.store.attrs["metrics"])

    @property
    def settings(self) -> dict[str, Any]:
        """What the fingerprint hashes: methods, metrics, target, dtype, model."""
        return self.store.attrs["settings"]

    @property
    def fingerprint(self) -> str:
        return self.store.attrs["fingerprint"]

    @property
    def index(self) -> Tensor:
        """The samples' positions in the data set (N,); −1 for rows not written."""
        return self._column("index")

    @property
    def labels(self) -> Tensor | None:
        """The data's labels (N,), or None when the data had none."""
        return self._column("labels") if self.store.array("labels") is not None else None

    @property
    def targets(self) -> Tensor:
        """The explained class per sample (N,); −1 for a target callable or no result."""
        return self._column("targets")

    @property
    def outputs(self) -> Tensor:
        """The model outputs (N, …); NaN where no method explained the sample."""
        return self._column("outputs")

    def attribution(
        self, method: str, index: int | slice | Any = None, *, cls: int | None = None
    ) -> Tensor:
        """The attributions of ``method`` (float32): all (N, …), the rows ``index`` (an int,
        a slice, or positions), or the samples whose target is class ``cls``."""
        array = self._method_array(method, "attribution")
        return torch.from_numpy(_read(array, self._rows(index, cls)).astype(np.float32))

    def scores(self, method: str, index: int | slice | Any = None, *,
               cls: int | None = None) -> dict[str, Tensor]:
        """``{metric label: per-sample scores (float64)}`` of ``method``, NaN where a sample
        failed (or was not written)."""
        rows = self._rows(index, cls)
        base = f"methods/{self._key(method)}/scores"
        found = {}
        for label, m in self.store.attrs["metrics"].items():
            array = self.store.array(f"{base}/{m['key']}")
            # no array: the method failed on every sample so far
            values = np.full(len(self), np.nan) if array is None else array
            found[label] = torch.from_numpy(_read(values, rows))
        return found

    def spray(self, method: str, cls: int, **settings: Any) -> Spray:
        """SpRAy (:func:`pellucid.analysis.spray`) on the heatmaps of ``method`` for the
        samples whose target is class ``cls`` (failed samples, NaN, left out); ``settings``
        go to ``spray``. The result's labels follow ``run.index`` of those samples
        (``Spray.index``: their positions in the data set).

        Example:
            >>> import torch
            >>> from pellucid.runs import run
            >>> model = torch.nn.Linear(16, 2, bias=False).eval()
            >>> halves = torch.tensor([[1.0] * 8 + [0.0] * 8, [0.0] * 8 + [1.0] * 8])
            >>> x = (1 + 0.1 * torch.rand(40, 16)) * halves.repeat_interleave(20, 0)
            >>> r = run(model, x, ["gradient_x_input"], target=0, progress=False)
            >>> result = r.spray("gradient_x_input", 0, embedding="spectral", neighbours=19)
            >>> result.suggested_clusters, sorted(result.counts.tolist())
            (2, [20, 20])
        """
        from ..analysis import spray

        rows = self._rows(None, cls)
        heatmaps = self.attribution(method, rows)
        keep = heatmaps.flatten(1).isfinite().all(1)
        if int(keep.sum()) == 0:
            raise ArgumentError(
                "cls", f"no sample of class {cls} has an attribution of {method!r} (none "
                "explained, or every one failed); pick a class the run holds",
            )
        result = spray(heatmaps[keep], **settings)
        return dataclasses.replace(result, index=self.index[torch.as_tensor(rows)][keep])

    def curves(self, method: str) -> dict[str, tuple[Tensor, Tensor]]:
        """``{metric label: (x axis (K,), per-sample curves (N, K))}`` of ``method``."""
        found = {}
        for label, m in self.store.attrs["metrics"].items():
            array = self.store.array(f"methods/{self._key(method)}/curves/{m['key']}")
            if array is not None:
                found[label] = (torch.tensor(array.attrs["x_axis"]),
                                torch.from_numpy(np.asarray(array[:])))
        return found

    @property
    def failures(self) -> list[Failure]:
        """Every sample that failed, per method, with its error."""
        found = []
        index = None
        for label, key in self.store.attrs["methods"].items():
            errors = self.store.array(f"methods/{key}/errors")
            if errors is None:
                continue
            for start, values in _chunks(errors):
                for row in np.flatnonzero(values != ""):
                    index = self.index if index is None else index
                    kind, _, message = str(values[row]).partition(": ")
                    found.append(Failure(int(index[start + row]), label, kind, message))
        return found

    def summary(self) -> Table:
        """A table of mean ± std per method × metric, streamed over the stored scores
        chunk by chunk (:class:`~pellucid.runs.accumulate.Moments`). ``mean`` and ``std``
        leave out NaN scores (failed or unwritten samples); ``nan`` counts them, ``n``
        counts all samples; ``seconds`` is the method's time over all batches."""
        table = Table()
        attrs = self.store.attrs
        for label, key in attrs["methods"].items():
            seconds = self.store.array(f"methods/{key}/seconds")
            spent = 0.0 if seconds is None else float(np.asarray(seconds[:]).sum())
            for metric, m in attrs["metrics"].items():
                array = self.store.array(f"methods/{key}/scores/{m['key']}")
                moments = Moments(nan=len(self) if array is None else 0)  # None: all failed
                for _, values in [] if array is None else _chunks(array):
                    moments.update(values)
                table.rows.append({
                    "method": label, "metric": metric, "mean": moments.valid_mean,
                    "std": moments.std, "direction": m["direction"],
                    "n": moments.count + moments.nan, "nan": moments.nan,
                    "seconds": round(spent, 3),
                })
                curves = self.store.array(f"methods/{key}/curves/{m['key']}")
                if curves is not None:
                    mean = CurveMean()
                    for _, values in _chunks(curves):
                        mean.update(values)
                    table.curves[(label, metric)] = (torch.tensor(curves.attrs["x_axis"]),
                                                     torch.from_numpy(mean.mean))
        return table

    def _column(self, name: str) -> Tensor:
        array = self.store.array(name)
        if array is None:  # nothing written yet
            return torch.zeros(0, dtype=torch.float32 if name == "outputs" else torch.int64)
        return torch.from_numpy(np.asarray(array[:]))

    def _key(self, method: str) -> str:
        keys = self.store.attrs["methods"]
        if not isinstance(method, str):
            raise ArgumentTypeError("method",
                                    f"method must be a method label (str), got {method!r}")
        if method not in keys:
            raise UnknownNameError(
                "method", f"the run has no method {method!r}.{suggest(method, list(keys))} "
                f"Its methods are: {', '.join(keys)}",
            )
        return keys[method]

    def _method_array(self, method: str, name: str) -> Any:
        array = self.store.array(f"methods/{self._key(method)}/{name}")
        if array is None:
            raise ArgumentError("method", f"the run holds no {name} of {method!r} yet (no batch "
                                "was written)")
        return array

    def _rows(self, index: Any, cls: int | None) -> Any:
        """What to read: None (all), an int, a slice, or an array of positions."""
        if cls is not None:
            if index is not None:
                raise ArgumentError("cls", "give index or cls, not both")
            if isinstance(cls, bool) or not isinstance(cls, (int, np.integer)):
                raise ArgumentTypeError("cls", f"cls must be a class index (int), got {cls!r}")
            return np.flatnonzero(self.targets.numpy() == int(cls))
        if index is None or isinstance(index, slice):
            return index
        if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
            return int(index)
        rows = np.asarray(index.cpu() if isinstance(index, Tensor) else index)
        if rows.ndim != 1 or rows.dtype.kind not in "iu":
            raise ArgumentTypeError(
                "index", f"index must be an int, a slice or a 1-D sequence of positions, got "
                f"{type(index).__name__} of shape {rows.shape}",
            )
        return rows


def _read(array: Any, rows: Any) -> np.ndarray:
    if rows is None:
        return np.asarray(array[:])
    if isinstance(rows, np.ndarray):
        if len(rows) and (rows.min() < 0 or rows.max() >= array.shape[0]):
            raise ArgumentError("index", f"index holds positions outside 0..{array.shape[0] - 1}")
        if not len(rows):
            return np.zeros((0, *array.shape[1:]), dtype=array.dtype)
        return np.asarray(array.oindex[rows] if hasattr(array, "oindex") else array[rows])
    try:
        return np.asarray(array[rows])
    except IndexError as error:
        raise ArgumentError("index", f"index {rows!r} is out of range ({error})") from None


def _chunks(array: Any) -> Any:
    """(start, values) of an array's chunks along the first axis: memory of one chunk."""
    step = array.chunks[0]
    for start in range(0, array.shape[0], step):
        yield start, np.asarray(array[start:start + step])

