"""``benchmark``: methods × metrics on the first ``n`` samples of a data set, as a table."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..api import as_method
from ..method import Method
from ..targets import TargetSpec
from .evaluate import MetricSpec, chosen_metrics, evaluate
from .random_attribution import RandomAttribution

COLUMNS = ("method", "metric", "mean", "std", "direction", "n", "seconds")


@dataclass
class Table:
    """Rows of (method, metric, mean, std, direction, n, seconds), with per-sample scores
    (for paired comparisons between methods on the same samples) and the mean curves.
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
        curves = [
            {"method": m, "metric": k, "x": x.tolist(), "y": y.tolist()}
            for (m, k), (x, y) in self.curves.items()
        ]
        Path(path).write_text(json.dumps({"rows": self.rows, "curves": curves}, indent=2))

    def value(self, method: str, metric: str) -> float:
        """The mean of ``metric`` for ``method``."""
        for row in self.rows:
            if row["method"] == method and row["metric"] == metric:
                return row["mean"]
        raise KeyError(f"no row for method {method!r} and metric {metric!r}")

    def __str__(self) -> str:
        methods = list(dict.fromkeys(r["method"] for r in self.rows))
        metrics = list(dict.fromkeys(r["metric"] for r in self.rows))
        arrows = {r["metric"]: "↑" if r["direction"] == "higher" else "↓" for r in self.rows}
        header = ["method"] + [f"{m} {arrows[m]}" for m in metrics]
        cells = {(r["method"], r["metric"]): f"{r['mean']:.4f} ± {r['std']:.3f}" for r in self.rows}
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
            path = Path(out_dir) / f"{metric}.png"
            fig.tight_layout()
            fig.savefig(path, dpi=120)
            saved.append(path)
        return saved


def benchmark(
    model: nn.Module,
    data: Tensor | tuple[Tensor, ...] | Iterable[Any],
    methods: Sequence[str | Method] = ("random", "gradient", "integrated_gradients"),
    metrics: Sequence[MetricSpec] = ("faithfulness.pixel_flipping",),
    n: int = 64,
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

    Args:
        data: inputs, a tuple (inputs, labels[, masks]), or an iterable of such batches
            (a DataLoader); the labels become the target unless ``target`` is given.
        methods: registered names, method objects, or ``"random"`` (the random attribution
            that every method has to beat).
        method_settings: ``{method name: settings}``.
        out_dir: when given, ``benchmark.csv``, ``benchmark.json`` and a plot per metric
            with curves are written there.
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
    inputs, labels, data_masks = take_samples(data, n)
    if target is None and labels is not None:
        target = labels
    masks = masks if masks is not None else data_masks
    configured = chosen_metrics(metrics, settings)
    table = Table()
    pairs = [(m, k) for m in methods for k in configured]
    iterator: Any = pairs
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(pairs, desc="benchmark")
    chosen: dict[str, Method] = {}
    for method, metric in iterator:
        key = method if isinstance(method, str) else method.name
        if key not in chosen:
            chosen[key] = _method(method, dict((method_settings or {}).get(key, {})), seed)
        start = time.perf_counter()
        result = evaluate(model, inputs, target, chosen[key], [metric], masks)[metric.name]
        table.rows.append({
            "method": key, "metric": result.name, "mean": result.mean, "std": result.std,
            "direction": result.direction, "n": len(result.scores),
            "seconds": round(time.perf_counter() - start, 3),
        })
        table.scores[(key, result.name)] = result.scores
        if result.curves is not None and result.x_axis is not None:
            table.curves[(key, result.name)] = (result.x_axis, result.curves.double().mean(0))
    if out_dir is not None:
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        table.to_csv(folder / "benchmark.csv")
        table.to_json(folder / "benchmark.json")
        if table.curves:
            table.plot(folder)
    return table


def _method(spec: str | Method, settings: dict[str, Any], seed: int) -> Method:
    """The method object for a name, an object, or ``"random"``."""
    if spec == "random":
        return RandomAttribution(seed=seed, **settings)
    return as_method(spec, **settings)


def take_samples(
    data: Tensor | tuple[Tensor, ...] | Iterable[Any], n: int
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """(inputs, labels or None, masks or None) of the first ``n`` samples of ``data``."""
    if isinstance(data, Tensor):
        return data[:n], None, None
    if isinstance(data, (tuple, list)) and data and isinstance(data[0], Tensor) \
            and data[0].ndim >= 2 and len(data) <= 3:
        parts = [t[:n] for t in data] + [None, None]
        return parts[0], parts[1], parts[2]
    batches: list[Any] = []
    count = 0
    for batch in data:
        batch = batch if isinstance(batch, (tuple, list)) else (batch,)
        batches.append(batch)
        count += len(batch[0])
        if count >= n:
            break
    if not batches:
        raise ValueError("data is empty")
    joined = [torch.cat([b[i] for b in batches])[:n] for i in range(len(batches[0]))]
    parts = [*joined, None, None]
    return parts[0], parts[1], parts[2]
