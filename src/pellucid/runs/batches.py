"""Every form of data a run accepts, as one stream of :class:`Batch` objects.

:func:`batches` turns a DataLoader or any iterable of batches, a ``torch.utils.data.Dataset``,
a tensor, a tuple of tensors, a dict of tensors, or pellucid's data sets (recognised by
their attributes: ``images``/``labels``/``masks``, or ``input_ids``/``attention_mask``/
``labels``/``masks``) into batches that know their positions in the data set. Only one
batch is held at a time: nothing is concatenated.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor

from ..batching import check_batch_size
from ..errors import ArgumentError, ArgumentTypeError, PellucidError

__all__ = ["Batch", "batches", "sample_count"]

#: dict keys read as the inputs, the labels and the masks of a batch (first match wins)
INPUT_KEYS = ("inputs", "images", "input_ids", "pixel_values", "x")
LABEL_KEYS = ("labels", "label", "y")
MASK_KEYS = ("masks", "mask")


@dataclasses.dataclass(frozen=True)
class Batch:
    """One batch of a data set.

    ``index`` (B,) int64: the samples' positions in the data set; ``number``: the batch's
    ordinal (its chunk in a store); ``labels`` (B,) and ``masks`` (B, …) or None;
    ``model_kwargs``: per-sample model arguments (``attention_mask``), one row per sample.
    """

    index: Tensor
    inputs: Tensor
    labels: Tensor | None = None
    masks: Tensor | None = None
    model_kwargs: dict[str, Tensor] = dataclasses.field(default_factory=dict)
    number: int = 0

    def __len__(self) -> int:
        return len(self.inputs)

    def rows(self, rows: slice) -> Batch:
        """The batch of the samples ``rows`` (a slice), with their positions."""
        part = None if self.labels is None else self.labels[rows]
        masks = None if self.masks is None else self.masks[rows]
        kwargs = {k: v[rows] for k, v in self.model_kwargs.items()}
        return Batch(self.index[rows], self.inputs[rows], part, masks, kwargs, self.number)


def batches(data: Any, batch_size: int | None = None) -> Iterator[Batch]:
    """The batches of ``data``; tensors, tuples of tensors, dicts and Datasets are cut into
    batches of ``batch_size`` samples (default 64), iterables keep their own batches.

    Example:
        >>> import torch
        >>> from pellucid.runs import batches
        >>> x, y = torch.zeros(5, 3), torch.tensor([0, 1, 0, 1, 1])
        >>> [(b.index.tolist(), b.labels.tolist()) for b in batches((x, y), batch_size=2)]
        [([0, 1], [0, 1]), ([2, 3], [0, 1]), ([4], [1])]
    """
    size = check_batch_size(batch_size)
    columns = _columns(data)
    if columns is not None:
        return _cut(columns, size)
    if isinstance(data, torch.utils.data.Dataset) and hasattr(data, "__len__") and \
            hasattr(data, "__getitem__") and not isinstance(data, torch.utils.data.IterableDataset):
        return _stream(_collated(data, size))
    if isinstance(data, (str, bytes, Mapping)) or not isinstance(data, Iterable):
        raise ArgumentTypeError(
            "data", f"data must be a DataLoader or an iterable of batches, a Dataset, a tensor, "
            f"a tuple of tensors (inputs[, labels[, masks]]), a dict with 'inputs', or a "
            f"pellucid ImageSet/TokenSet; got {type(data).__name__}",
        )
    return _stream(iter(data))


def sample_count(data: Any) -> int | None:
    """The number of samples in ``data`` when it is known without reading it (tensors,
    Datasets, DataLoaders over a Dataset), else None (a generator).

    >>> import torch
    >>> sample_count(torch.zeros(5, 2)), sample_count(iter([torch.zeros(2, 2)]))
    (5, None)
    """
    try:
        columns = _columns(data)
    except PellucidError:
        return None
    if columns is not None:
        return len(columns["inputs"])
    if isinstance(data, torch.utils.data.DataLoader):
        data = data.dataset
    if isinstance(data, torch.utils.data.Dataset) and \
            not isinstance(data, torch.utils.data.IterableDataset) and hasattr(data, "__len__"):
        return len(data)
    return None


def _columns(data: Any) -> dict[str, Any] | None:
    """The whole data set as columns (inputs, labels, masks, model_kwargs), or None when
    ``data`` is a stream of batches."""
    if isinstance(data, Tensor):
        return _parts(data, "data")
    if isinstance(data, tuple) and data and all(isinstance(t, Tensor) for t in data):
        return _parts(data, "data")
    if isinstance(data, Mapping):
        return _parts(data, "data")
    if isinstance(data, torch.utils.data.Dataset):
        return None
    if all(hasattr(data, a) for a in ("input_ids", "attention_mask", "labels")):
        return _parts({"input_ids": data.input_ids, "attention_mask": data.attention_mask,
                       "labels": data.labels, "masks": getattr(data, "masks", None)}, "data")
    if all(hasattr(data, a) for a in ("images", "labels")):
        return _parts({"images": data.images, "labels": data.labels,
                       "masks": getattr(data, "masks", None)}, "data")
    return None


def _cut(columns: dict[str, Any], size: int) -> Iterator[Batch]:
    n = len(columns["inputs"])
    for number, start in enumerate(range(0, n, size)):
        rows = slice(start, min(start + size, n))
        yield _batch(columns, torch.arange(rows.start, rows.stop), number, rows)


def _collated(dataset: Any, size: int) -> Iterator[Any]:
    collate = torch.utils.data.default_collate
    for start in range(0, len(dataset), size):
        yield collate([dataset[i] for i in range(start, min(start + size, len(dataset)))])


def _stream(items: Iterator[Any]) -> Iterator[Batch]:
    start = 0
    for number, item in enumerate(items):
        columns = _parts(item, f"batch {number} of data")
        n = len(columns["inputs"])
        yield _batch(columns, torch.arange(start, start + n), number, slice(None))
        start += n


def _batch(columns: dict[str, Any], index: Tensor, number: int, rows: slice) -> Batch:
    def cut(value: Tensor | None) -> Tensor | None:
        return None if value is None else value[rows]

    return Batch(index, columns["inputs"][rows], cut(columns["labels"]), cut(columns["masks"]),
                 {k: v[rows] for k, v in columns["model_kwargs"].items()}, number)


def _parts(item: Any, where: str) -> dict[str, Any]:
    """A batch's (or the data set's) inputs, labels, masks and per-sample model arguments."""
    if isinstance(item, Tensor):
        item = (item,)
    if isinstance(item, (tuple, list)):
        if not item or len(item) > 3 or not all(isinstance(t, Tensor) for t in item):
            raise ArgumentError(
                "data", f"{where} is a {type(item).__name__} of {len(item)} parts; a batch is a "
                "tensor or a tuple of tensors (inputs,), (inputs, labels) or (inputs, labels, "
                "masks)",
            )
        parts = dict(itertools.zip_longest(("inputs", "labels", "masks"), item))
        parts["model_kwargs"] = {}
    elif isinstance(item, Mapping):
        parts = _from_dict(item, where)
    else:
        raise ArgumentTypeError(
            "data", f"{where} is a {type(item).__name__}; a batch is a tensor, a tuple of "
            "tensors (inputs[, labels[, masks]]) or a dict with 'inputs' (or 'images', "
            "'input_ids')",
        )
    inputs = parts["inputs"]
    if inputs.ndim < 1 or len(inputs) == 0:
        raise ArgumentError("data", f"the inputs of {where} hold no sample (shape "
                            f"{tuple(inputs.shape)}); give batches with the batch first")
    for key, value in [("labels", parts["labels"]), ("masks", parts["masks"]),
                       *parts["model_kwargs"].items()]:
        if value is not None and (value.ndim < 1 or len(value) != len(inputs)):
            raise ArgumentError(
                "data", f"the {key} of {where} have shape {tuple(value.shape)} for "
                f"{len(inputs)} inputs; give one row per sample",
            )
    return parts


def _from_dict(item: Mapping[str, Any], where: str) -> dict[str, Any]:
    keys = [k for k in INPUT_KEYS if k in item]
    if not keys:
        raise ArgumentError(
            "data", f"{where} is a dict with the keys {sorted(map(str, item))}; it needs the "
            f"inputs under one of {', '.join(map(repr, INPUT_KEYS))}",
        )
    label = next((k for k in LABEL_KEYS if k in item), None)
    mask = next((k for k in MASK_KEYS if k in item), None)
    taken = {keys[0], label, mask}
    kwargs = {}
    for key, value in item.items():
        if key in taken or value is None:
            continue
        if not isinstance(value, Tensor):
            raise ArgumentTypeError(
                "data", f"{where} has {key!r} = {type(value).__name__}; the other keys of a dict "
                "batch are per-sample model arguments (tensors); pass shared ones as "
                "model_kwargs=",
            )
        kwargs[str(key)] = value
    for key in (keys[0], label, mask):
        if key is not None and item[key] is not None and not isinstance(item[key], Tensor):
            raise ArgumentTypeError(
                "data", f"the {key!r} of {where} must be a tensor, got {type(item[key]).__name__}"
            )
    return {"inputs": item[keys[0]], "labels": None if label is None else item[label],
            "masks": None if mask is None else item[mask], "model_kwargs": kwargs}
