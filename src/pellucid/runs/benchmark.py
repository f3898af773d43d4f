"""``benchmark``: methods × metrics on the first ``n`` samples of a data set, as a table,
computed by the dataset runner (:func:`pellucid.runs.run`): the data is streamed batch by
batch, each method explains each batch once and every metric scores that explanation."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..checks import check_count
from ..errors import ArgumentError, ArgumentTypeError
from ..method import Method
from ..metrics.base import MetricResult, distinct_labels
from ..metrics.evaluate import MetricSpec, chosen_metrics
from ..metrics.harness import Table, resolve_methods
from ..metrics.maps import check_metric_inputs
from ..targets import TargetSpec
from .batches import Batch, batches, sample_count
from .runner import run

__all__ = ["benchmark", "output_folder"]


def benchmark(
    model: nn.Module,
    data: Tensor | tuple[Tensor, ...] | Mapping[str, Tensor] | Iterable[Any],
    methods: Sequence[str | Method] = ("random", "gradient", "integrated_gradients"),
    metrics: Sequence[MetricSpec] = ("faithfulness.pixel_flipping",),
    n: int | None = 64,
    *,
    target: TargetSpec = None,
    masks: Tensor | None = None,
    method_settings: Mapping[str, Mapping[str, Any]] | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    seed: int = 0,
    batch_size: int | None = None,
    **settings: Any,
) -> Table:
    """Score every method × metric on the first ``n`` samples of ``data``.

    Runs on :func:`pellucid.runs.run` (in memory): the samples are streamed in batches of
    ``batch_size``, each method explains each batch once and every metric scores that
    explanation. A row's ``mean`` and ``std`` are those of the per-sample scores (NaN when
    one is, as :class:`~pellucid.metrics.MetricResult`); ``table.scores`` keeps them.

    Args:
        data: what :func:`pellucid.runs.batches` reads (a tensor, a tuple or list
            ``(inputs[, labels[, masks]])``, a dict, a Dataset, a DataLoader or any
            iterable of batches); the labels become the target unless ``target`` is given.
        methods: registered names, method objects, or ``"random"`` (the random attribution
            that every method has to beat). One method listed twice with different
            settings gives two rows, labelled with the settings that differ.
        n: the number of samples (at most), a positive int; ``None`` takes them all.
        target: None (the labels, else the predicted class), a class index, one class per
            sample of ``data`` (a tensor), or a callable as in :func:`pellucid.explain`.
        masks: one mask per sample of ``data`` (replaces the data's masks).
        method_settings: ``{method name: settings}``; every name must be in ``methods``.
        out_dir: when given, ``benchmark.csv``, ``benchmark.json`` and a plot per metric
            with curves are written there (the folder is checked before anything runs).
        seed: seeds the random attribution; metric seeds are metric settings (``**settings``).
        batch_size: samples per batch for tensors, tuples, dicts and Datasets (default 64).

    Example:
        >>> import torch
        >>> from pellucid import benchmark
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3)).eval()
        >>> table = benchmark(model, torch.randn(8, 3, 4, 4), ["random", "gradient"],
        ...                   ["complexity.sparseness"], n=8, progress=False)
        >>> len(table.rows)
        2
    """
    folder = output_folder(out_dir)
    if n is not None:
        n = check_count(n, "n", "the number of samples to evaluate")
    configured = chosen_metrics(metrics, settings)
    distinct_labels(configured, "metrics")
    chosen = resolve_methods(methods, method_settings, seed)
    distinct_labels(chosen, "methods")
    if isinstance(data, list) and data and all(isinstance(t, Tensor) for t in data):
        data = tuple(data)  # a list of tensors is one batch (inputs, labels[, masks])
    total = sample_count(data)
    taken = None if total is None else (total if n is None else min(n, total))
    if masks is not None:
        _check_masks(masks, taken, n)
    stream = _first_samples(batches(data, batch_size), n, masks, target)
    first = next(stream, None)
    if first is None:
        raise ArgumentError("data", "data is empty (no batch); give at least one sample")
    if isinstance(target, Tensor) and target.ndim == 0:
        target = int(target)
    per_sample = target is None or isinstance(target, Tensor)
    spec = ("labels" if first.get("labels") is not None else None) if per_sample else target
    result = run(model, _chained(first, stream), chosen, metrics=configured, target=spec,
                 progress=bool(progress) and sys.stderr.isatty(), on_error="raise",
                 dtype="float32")
    table = Table()
    for row in result.summary().rows:
        method, metric = row["method"], row["metric"]
        scores = result.scores(method)[metric]
        summary = MetricResult(metric, scores, row["direction"])
        table.rows.append({**row, "mean": summary.mean, "std": summary.std})
        table.scores[(method, metric)] = scores
        if metric in (curves := result.curves(method)):
            x_axis, values = curves[metric]
            table.curves[(method, metric)] = (x_axis, values.double().mean(0))
    if folder is not None:
        table.to_csv(folder / "benchmark.csv")
        table.to_json(folder / "benchmark.json")
        if table.curves:
            table.plot(folder)
    return table


def _chained(first: dict[str, Tensor], rest: Iterator[dict[str, Tensor]]) -> Iterator[Any]:
    yield first
    yield from rest


def _first_samples(
    stream: Iterator[Batch], n: int | None, masks: Tensor | None, target: Any
) -> Iterator[dict[str, Tensor]]:
    """The batches holding the first ``n`` samples (the last one cut), as dict batches with
    ``masks=`` and a per-sample ``target`` in place of the data's masks and labels; no batch
    after the ``n``-th sample is read."""
    count, parts = 0, None
    for batch in stream:
        if n is not None and count + len(batch) > n:
            batch = batch.rows(slice(0, n - count))
        where = f"batch {batch.number} of data"
        check_metric_inputs(batch.inputs, "data")
        labels = batch.labels
        if isinstance(target, Tensor) and target.ndim > 0:
            if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
                raise ArgumentError(
                    "target", f"target is a tensor of dtype {target.dtype}; give one class "
                    "index (an integer) per sample of data, or a callable for other scores",
                )
            labels = _rows(target, batch.index, "target", "one class per sample of data")
        elif target is None and labels is not None and (
                labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool):
            raise ArgumentError(
                "data", f"the labels in {where} have dtype {labels.dtype}; they become the "
                "target, so they must be class indices (integers). For a regressor or another "
                "score, pass target= (e.g. target=lambda out: out[:, 0])",
            )
        given = batch.masks if masks is None else _rows(masks, batch.index, "masks",
                                                         "one mask per sample of data")
        if parts is None:
            parts = (labels is not None, given is not None, tuple(batch.inputs.shape[1:]))
        elif parts != (labels is not None, given is not None, tuple(batch.inputs.shape[1:])):
            raise ArgumentError(
                "data", f"{where} has other parts (labels, masks) or another sample shape "
                f"({tuple(batch.inputs.shape[1:])}) than batch 0 ({parts[2]}); give every "
                "batch the same parts and shapes",
            )
        yield {**batch.model_kwargs, "inputs": batch.inputs, "labels": labels, "masks": given}
        count += len(batch)
        if n is not None and count >= n:
            return
    if masks is not None and (n is None or count < n):  # every sample of data was read
        _check_masks(masks, count, n)


def _rows(values: Tensor, index: Tensor, argument: str, what: str) -> Tensor:
    """The rows ``index`` of a per-sample tensor given beside the data."""
    if int(index[-1]) >= len(values):
        raise ArgumentError(
            argument, f"{argument} has {len(values)} rows but data holds at least "
            f"{int(index[-1]) + 1} samples; give {what}, in the same order",
        )
    return values[index]


def _check_masks(masks: Any, taken: int | None, n: int | None) -> None:
    """``masks=`` holds one mask per sample of ``data``, of which ``taken`` are used
    (``None``: not known before reading the data)."""
    if not isinstance(masks, Tensor):
        raise ArgumentTypeError(
            "masks", f"masks must be a tensor with one mask per sample, got {type(masks).__name__}"
        )
    if taken is None:
        if masks.ndim < 1:
            raise ArgumentError("masks", f"masks have shape {tuple(masks.shape)}; give one mask "
                                "per sample of data, in the same order")
        return
    complete = n is None or taken < n  # every sample of data is taken
    if masks.ndim < 1 or len(masks) < taken or (complete and len(masks) != taken):
        raise ArgumentError(
            "masks",
            f"masks have shape {tuple(masks.shape)} but data holds "
            f"{'' if complete else 'at least '}{taken} samples; give one mask per sample of "
            "data, in the same order",
        )


def output_folder(out_dir: str | Path | None) -> Path | None:
    """``out_dir`` as a folder that exists (created if missing), checked before computing."""
    if out_dir is None:
        return None
    if not isinstance(out_dir, (str, Path)):
        raise ArgumentTypeError(
            "out_dir", f"out_dir must be a folder path (str or Path), got {out_dir!r}"
        )
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise ArgumentError(
            "out_dir", f"out_dir {str(folder)!r} is an existing file, not a folder; pass a "
            "folder (it is created if missing)",
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ArgumentError(
            "out_dir", f"out_dir {str(folder)!r} cannot be created ({error.strerror}); pass a "
            "writable folder",
        ) from None
    return folder
