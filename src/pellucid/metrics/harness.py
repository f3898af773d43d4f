"""The benchmark's :class:`Table` (methods × metrics) and :func:`resolve_methods`, the method
objects of a list of names; ``benchmark`` itself runs on :mod:`pellucid.runs`."""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import ArgumentError, ArgumentTypeError, UnknownNameError
from ..method import Method
from ..registry import check_settings, suggest
from ..saving import load_fields, save_fields
from .evaluate import as_list, as_method_object
from .random_attribution import RandomAttribution

__all__ = ["COLUMNS", "Table", "resolve_methods"]

COLUMNS = ("method", "metric", "mean", "std", "direction", "n", "nan", "seconds")
#: characters of a metric label that do not go into a plot's file name
UNSAFE = re.compile(r"[^\w.=,()-]")


@dataclass
class Table:
    """Rows of (method, metric, mean, std, direction, n, nan, seconds), with per-sample
    scores (for paired comparisons between methods on the same samples) and the mean curves.

    ``method`` and ``metric`` are the labels of the method and the metric: the name, with
    the settings that differ where one is listed twice (``integrated_gradients(steps=8)``).
    ``mean`` and ``std`` are NaN when some samples are (``nan`` counts them); ``seconds`` is
    the time of the method's explanation and of every metric on it (each method explains
    each batch once, for all metrics).
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


def resolve_methods(
    methods: Any, method_settings: Mapping[str, Mapping[str, Any]] | None, seed: int
) -> list[Method]:
    """The method objects of ``methods`` (names, objects or ``"random"``, the
    :class:`RandomAttribution` seeded with ``seed``), each with its ``method_settings``
    ``{name: {setting: value}}``; errors name ``methods`` or ``method_settings``.

    Example:
        >>> [m.name for m in resolve_methods(["random", "gradient"], None, seed=0)]
        ['random', 'gradient']
    """
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
