"""The in-memory backend of a run's store: the part of zarr's group and array API that
:class:`~pellucid.runs.store.Store` and :class:`~pellucid.runs.results.Run` use, on NumPy
arrays, so that a run without ``store=`` needs no optional dependency.

A :class:`MemoryArray` grows along its first axis by doubling its capacity (amortised O(1)
copies per row), and every read returns a copy, as reading a zarr array does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["MemoryArray", "MemoryGroup"]


class MemoryArray:
    """A growable NumPy array with ``shape``, ``chunks``, ``dtype``, ``attrs``, ``resize``
    and copying reads.

    >>> a = MemoryArray((0, 2), (4, 2), np.float32, np.nan)
    >>> a.resize((3, 2)); a[1:2] = np.ones((1, 2)); a[:].tolist()
    [[nan, nan], [1.0, 1.0], [nan, nan]]
    """

    def __init__(self, shape: tuple[int, ...], chunks: tuple[int, ...], dtype: Any,
                 fill_value: Any) -> None:
        self.dtype = np.dtype(object if dtype is str else dtype)
        self.fill_value = fill_value
        self.chunks = tuple(chunks)
        self.attrs: dict[str, Any] = {}
        self._data = np.full(shape, fill_value, dtype=self.dtype)
        self._rows = shape[0]

    @property
    def shape(self) -> tuple[int, ...]:
        return (self._rows, *self._data.shape[1:])

    def resize(self, shape: tuple[int, ...]) -> None:
        """Grow (or cut) the first axis to ``shape[0]`` rows; new rows hold the fill value."""
        rows = shape[0]
        if rows > len(self._data):
            grown = np.full((max(rows, 2 * len(self._data)), *self._data.shape[1:]),
                            self.fill_value, dtype=self.dtype)
            grown[:self._rows] = self._data[:self._rows]
            self._data = grown
        elif rows < self._rows:
            self._data[rows:self._rows] = self.fill_value
        self._rows = rows

    def __getitem__(self, rows: Any) -> np.ndarray:
        return np.array(self._data[:self._rows][rows], copy=True)

    def __setitem__(self, rows: Any, values: Any) -> None:
        self._data[:self._rows][rows] = values


class MemoryGroup:
    """A tree of :class:`MemoryArray` by path (``methods/gradient/attribution``) with
    ``attrs``, ``create_array`` and ``members``, as a zarr group offers them.

    >>> g = MemoryGroup()
    >>> _ = g.create_array("a/b", shape=(0,), chunks=(2,), dtype=np.int64, fill_value=-1)
    >>> g["a/b"].shape, [name for name, _ in g.members(max_depth=None)]
    ((0,), ['a/b'])
    """

    def __init__(self) -> None:
        self.attrs: dict[str, Any] = {}
        self._arrays: dict[str, MemoryArray] = {}

    def __getitem__(self, name: str) -> MemoryArray:
        return self._arrays[name]

    def create_array(self, name: str, *, shape: tuple[int, ...], chunks: tuple[int, ...],
                     dtype: Any, fill_value: Any) -> MemoryArray:
        array = MemoryArray(shape, chunks, dtype, fill_value)
        self._arrays[name] = array
        return array

    def members(self, max_depth: int | None = None) -> Iterator[tuple[str, MemoryArray]]:
        """Every array with its path (the tree is flat: ``max_depth`` is accepted as zarr's)."""
        return iter(list(self._arrays.items()))
