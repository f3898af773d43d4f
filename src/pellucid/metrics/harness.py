"""``benchmark``: methods × metrics on the first ``n`` samples of a data set, as a table."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..checks import check_count
from ..errors import ArgumentError, ArgumentTypeError, UnknownNameError
from ..guard import preserved
from ..method import Method
from ..registry import check_settings, suggest
from ..saving import load_fields, save_fields
from ..targets import TargetSpec
from .base import distinct_labels
from .evaluate import MetricSpec, as_list, as_method_object, chosen_metrics, make_case, score
from .maps import check_metric_inputs
from .random_attribution import RandomAttribution

COLUMNS = ("method", "metric", "mean", "std", "direction", "n", "nan", "seconds")
#: the keys of a batch given as a dict, in the order of a tuple batch
BATCH_KEYS = ("inputs", "labels", "masks")
Batch = tuple[Tensor, Tensor | None, Tensor | None]
#: characters of a metric label that do not go into a plot's file name
UNSAFE = re.compile(r"[^\w.=,()-]")


@dataclass
class Table:
    """Rows of (method, metric, mean, std, direction, n, nan, seconds), with per-sample
    scores (for paired comparisons between methods on the same samples) and the mean curves.

    ``method`` and ``metric`` are the labels of the method and the metric: the name, with
    the settings that differ where one is listed twice (``integrated_gradients(steps=8)``).
    ``mean`` and ``std`` are NaN when some samples are (``nan`` counts them); ``seconds`` is
    the time of the method's explanation and the metric.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    #: (method, metric) -> per-sample scores (n,)
    scores: dict[tuple[str, str], Tensor] = field(default_factory=dict)
    #: (method, metric) -> (x axis (K,), mean curve (K,))
    curves: dict[tuple[str, str], tuple[Tensor, Tensor]] = field(default_factory=dict)

    def to_csv(self, path: str | Path) -> None:
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows)

    def to_json(self, path: str | Path) -> None:
        """The rows and mean curves as JSON; NaN is written as null."""
        curves = [
            {"method": m, "metric": k, "x": x.tolist(), "y": y.tolist()}
            for (m, k), (x, y) in self.curves.items()
        ]
        text = json.dumps(_nan_to_none({"rows": self.rows, "curves": curves}), indent=2,
                          allow_nan=False)
        Path(path).write_text(text)

    def save(self, path: str | os.PathLike) -> Path:
        """Save the rows, scores and curves to one ``.safetensors`` file that :meth:`load`
        reads back exactly (NaN included); ``to_csv`` and ``to_json`` are reports to read.

        Example:
            >>> import tempfile, torch
            >>> table = Table([{"method": "gradient", "metric": "complexity.sparseness",
            ...                 "mean": 0.5, "std": 0.0, "direction": "higher", "n": 1,
            ...                 "nan": 0, "seconds": 0.1}],
            ...               {("gradient", "complexity.sparseness"): torch.tensor([0.5])})
            >>> path = table.save(tempfile.mkdtemp() + "/table.safetensors")
            >>> Table.load(path).value("gradient", "complexity.sparseness")
            0.5
        """
        return save_fields(path, self)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> Table:
        """A table saved by :meth:`save`, its tensors on ``device``; never unpickles."""
        return cls(**load_fields(path, cls, device))

    def value(self, method: str, metric: str) -> float:
        """The mean of ``metric`` for ``method`` (their labels in the table)."""
        for row in self.rows:
            if row["method"] == method and row["metric"] == metric:
                return row["mean"]
        methods = list(dict.fromkeys(r["method"] for r in self.rows))
        metrics = list(dict.fromkeys(r["metric"] for r in self.rows))
        wrong, name, names = (("method", method, methods) if method not in methods
                              else ("metric", metric, metrics))
        raise UnknownNameError(
            wrong, f"the table has no row for {wrong} {name!r}.{suggest(name, names)} "
            f"Its {wrong}s are: {', '.join(names)}",
        )

    def __str__(self) -> str:
        methods = list(dict.fromkeys(r["method"] for r in self.rows))
        metrics = list(dict.fromkeys(r["metric"] for r in self.rows))
        arrows = {r["metric"]: "↑" if r["direction"] == "higher" else "↓" for r in self.rows}
        header = ["method"] + [f"{m} {arrows[m]}" for m in metrics]
        cells = {(r["method"], r["metric"]): _cell(r) for r in self.rows}
        body = [[m] + [cells.get((m, k), "—") for k in metrics] for m in methods]
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
        lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths)) for row in [header, *body]]
        lines.insert(1, "-+-".join("-" * w for w in widths))
        return "\n".join(lines)

    def plot(self, out_dir: str | Path) -> list[Path]:
        """One figure per metric with curves, a line per method (needs matplotlib)."""
        from matplotlib.figure import Figure  # no pyplot: the user's backend is left alone

        saved = []
        for metric in dict.fromkeys(k for _, k in self.curves):
            fig = Figure(figsize=(5, 3.5))
            ax = fig.subplots()
            for (method, name), (x, y) in self.curves.items():
                if name == metric:
                    ax.plot(x.numpy(), y.numpy(), label=method)
            ax.set_title(metric)
            ax.legend(fontsize=7)
            path = Path(out_dir) / (UNSAFE.sub("_", metric) + ".png")
            fig.tight_layout()
            fig.savefig(path, dpi=120)
            saved.append(path)
        return saved


def _cell(row: dict[str, Any]) -> str:
    text = f"{row['mean']:.4f} ± {row['std']:.3f}"
    return f"{text} ({row['nan']} NaN)" if row["nan"] else text


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


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
    **settings: Any,
) -> Table:
    """Score every method × metric on the first ``n`` samples of ``data``.

    Each method explains the samples once; every metric scores that explanation.

    Args:
        data: one batch, or an iterable of batches (a DataLoader) whose first ``n`` samples
            are taken (see :func:`take_samples`); the labels become the target unless
            ``target`` is given.
        methods: registered names, method objects, or ``"random"`` (the random attribution
            that every method has to beat). One method listed twice with different
            settings gives two rows, labelled with the settings that differ.
        n: the number of samples (at most), a positive int; ``None`` takes them all.
        method_settings: ``{method name: settings}``; every name must be in ``methods``.
        out_dir: when given, ``benchmark.csv``, ``benchmark.json`` and a plot per metric
            with curves are written there (the folder is checked before anything runs).
        seed: seeds the random attribution; metric seeds are metric settings (``**settings``).

    Example:
        >>> import torch
        >>> from pellucid.metrics import benchmark
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
    metric_labels = distinct_labels(configured, "metrics")
    chosen = _methods(methods, method_settings, seed)
    method_labels = distinct_labels(chosen, "methods")
    inputs, labels, data_masks = take_samples(data, n)
    check_metric_inputs(inputs, "data")
    if target is None and labels is not None:
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise ArgumentError(
                "data",
                f"the labels in data have dtype {labels.dtype}; they become the target, so "
                "they must be class indices (integers). For a regressor or another score, "
                "pass target= (e.g. target=lambda out: out[:, 0])",
            )
        target = labels
    masks = data_masks if masks is None else _given_masks(masks, len(inputs), n)
    table = Table()
    pairs = [(i, j) for i in range(len(chosen)) for j in range(len(configured))]
    current, case, explain_seconds = -1, None, 0.0
    with preserved(model):
        for i, j in _progress(pairs, progress):
            if i != current:
                start = time.perf_counter()
                case = make_case(model, inputs, target, chosen[i], masks, None, {}, None)
                current, explain_seconds = i, time.perf_counter() - start
            start = time.perf_counter()
            result = score(case, configured[j])
            key = (method_labels[i], metric_labels[j])
            table.rows.append({
                "method": key[0], "metric": key[1], "mean": result.mean, "std": result.std,
                "direction": result.direction, "n": len(result.scores),
                "nan": result.nan_count,
                "seconds": round(explain_seconds + time.perf_counter() - start, 3),
            })
            table.scores[key] = result.scores
            if result.curves is not None and result.x_axis is not None:
                table.curves[key] = (result.x_axis, result.curves.double().mean(0))
    if folder is not None:
        table.to_csv(folder / "benchmark.csv")
        table.to_json(folder / "benchmark.json")
        if table.curves:
            table.plot(folder)
    return table


def _progress(items: list[Any], progress: bool) -> Iterable[Any]:
    if not progress:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc="benchmark", disable=None)  # None: only on a terminal


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


def _methods(
    methods: Any, method_settings: Mapping[str, Mapping[str, Any]] | None, seed: int
) -> list[Method]:
    """The method objects of ``methods``, each with its ``method_settings``."""
    specs = as_list(methods, "methods", (str, Method))
    names = [spec if isinstance(spec, str) else getattr(spec, "name", None) for spec in specs]
    if method_settings is None:
        method_settings = {}
    if not isinstance(method_settings, Mapping):
        raise ArgumentTypeError(
            "method_settings",
            f"method_settings must be a dict {{method name: {{setting: value}}}}, got "
            f"{method_settings!r}",
        )
    listed = [name for name in names if isinstance(name, str)]
    for key, own in method_settings.items():
        if key not in listed:
            raise ArgumentError(
                "method_settings",
                f"method_settings has settings for {key!r}, which is not one of the methods "
                f"({', '.join(map(repr, dict.fromkeys(listed)))}).{suggest(str(key), listed)}",
            )
        if not isinstance(own, Mapping):
            raise ArgumentTypeError(
                "method_settings",
                f"method_settings[{key!r}] must be a dict of settings, got {own!r}",
            )
    chosen = []
    for spec, name in zip(specs, names, strict=True):
        own = dict(method_settings.get(name, {})) if isinstance(name, str) else {}
        if spec == "random":
            check_settings(RandomAttribution, own, "method 'random'")
            chosen.append(RandomAttribution(**{"seed": seed, **own}))
        else:
            chosen.append(as_method_object(spec, "methods", own))
    return chosen


def take_samples(data: Any, n: int | None) -> Batch:
    """(inputs, labels or None, masks or None) of the first ``n`` samples of ``data`` (all
    for ``None``).

    ``data`` is one batch or an iterable of batches (a DataLoader, a list of tuples). A
    batch is a tensor of inputs; a tuple or list of tensors (inputs,), (inputs, labels) or
    (inputs, labels, masks); or a dict with the key ``"inputs"`` and optionally
    ``"labels"`` and ``"masks"``. Labels hold one class per sample (B,), masks one mask
    per sample; the batches of an iterable all have the same parts. Anything else is an
    error naming ``data``.
    """
    one = _batch(data, "data")
    if one is not None:
        return _first(one, n)
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise ArgumentTypeError(
            "data", f"data must be a batch (a tensor, a tuple (inputs[, labels[, masks]]) or a "
            f"dict with 'inputs') or an iterable of batches, got {type(data).__name__}",
        )
    batches: list[Batch] = []
    count = 0
    for index, item in enumerate(data):
        batch = _batch(item, f"batch {index} of data")
        if batch is None:
            raise ArgumentTypeError(
                "data", f"batch {index} of data is a {type(item).__name__}; each batch must be "
                "a tensor, a tuple (inputs[, labels[, masks]]) or a dict with 'inputs'",
            )
        parts = [part is not None for part in batch]
        if batches and parts != [part is not None for part in batches[0]]:
            raise ArgumentError(
                "data", f"batch {index} of data has other parts (inputs, labels, masks) than "
                "batch 0; give every batch the same parts",
            )
        if batches and batch[0].shape[1:] != batches[0][0].shape[1:]:
            raise ArgumentError(
                "data", f"batch {index} of data has samples of shape "
                f"{tuple(batch[0].shape[1:])}, batch 0 of {tuple(batches[0][0].shape[1:])}",
            )
        batches.append(batch)
        count += len(batch[0])
        if n is not None and count >= n:
            break
    if not batches:
        raise ArgumentError("data", "data is empty (no batch); give at least one sample")
    joined = tuple(
        None if batches[0][i] is None else torch.cat([b[i] for b in batches])
        for i in range(len(BATCH_KEYS))
    )
    return _first(joined, n)  # type: ignore[arg-type]


def _given_masks(masks: Any, taken: int, n: int | None) -> Tensor:
    """The ``masks=`` argument of :func:`benchmark` cut to the ``taken`` samples: one mask
    per sample of ``data``, of which the first ``n`` are used."""
    if not isinstance(masks, Tensor):
        raise ArgumentTypeError(
            "masks", f"masks must be a tensor with one mask per sample, got {type(masks).__name__}"
        )
    complete = n is None or taken < n  # every sample of data was taken
    if masks.ndim < 1 or len(masks) < taken or (complete and len(masks) != taken):
        got = tuple(masks.shape)
        raise ArgumentError(
            "masks",
            f"masks have shape {got} but data holds {'' if complete else 'at least '}{taken} "
            "samples; give one mask per sample of data, in the same order",
        )
    return masks[:taken]


def _first(batch: Batch, n: int | None) -> Batch:
    return tuple(None if part is None else part[:n] for part in batch)  # type: ignore[return-value]


def _batch(item: Any, where: str) -> Batch | None:
    """``item`` as (inputs, labels, masks) if it is one batch, else None (not a batch form)."""
    if isinstance(item, Tensor):
        return item, None, None
    if isinstance(item, Mapping):
        unknown = sorted(set(map(str, item)) - set(BATCH_KEYS))
        if "inputs" not in item or unknown:
            raise ArgumentError(
                "data", f"{where} is a dict with the keys {sorted(map(str, item))}; a dict "
                "batch has 'inputs' and optionally 'labels' and 'masks'",
            )
        parts: list[Any] = [item.get(key) for key in BATCH_KEYS]
    elif isinstance(item, (tuple, list)) and item and isinstance(item[0], Tensor):
        if len(item) > len(BATCH_KEYS):
            raise ArgumentError(
                "data", f"{where} is a {type(item).__name__} of {len(item)} parts; a batch is "
                "(inputs,), (inputs, labels) or (inputs, labels, masks). Several batches go "
                "in a list of such tuples or a DataLoader",
            )
        parts = [*item, None, None][: len(BATCH_KEYS)]
    else:
        return None
    inputs, labels, masks = parts
    for key, part in zip(BATCH_KEYS, parts, strict=True):
        if part is not None and not isinstance(part, Tensor):
            raise ArgumentTypeError(
                "data", f"the {key} of {where} must be a tensor, got {type(part).__name__}"
            )
    if not isinstance(inputs, Tensor) or inputs.ndim < 1:
        raise ArgumentError("data", f"the inputs of {where} must be a tensor, batch first")
    if labels is not None and labels.shape != inputs.shape[:1]:
        raise ArgumentError(
            "data", f"the labels of {where} have shape {tuple(labels.shape)}; give one class "
            f"per sample, shape ({len(inputs)},). Several batches of inputs go in a list of "
            "tuples (inputs,) or a DataLoader",
        )
    if masks is not None and (masks.ndim < 1 or len(masks) != len(inputs)):
        raise ArgumentError(
            "data", f"the masks of {where} have shape {tuple(masks.shape)}; give one mask per "
            f"sample ({len(inputs)} first)",
        )
    return inputs, labels, masks
