"""The metric protocol: settings as a frozen dataclass, one ``compute`` per metric.

A metric is a small frozen dataclass whose fields are its settings, with class variables
``name``, ``direction`` ("higher" or "lower" is better) and ``category``. ``compute(case)``
returns per-sample scores (and curves where the metric has them) for one :class:`Case`:
the model, a private copy of the inputs, the resolved target, the attribution under test
and, when available, the method that produced it (for metrics that re-run it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from ..batching import check_batch_size
from ..method import Method
from ..outputs import OutputSelector
from ..registry import Registry
from ..targets import Target
from ..task import Task

CATEGORIES = (
    "faithfulness", "robustness", "localisation", "complexity", "axiomatic", "randomisation"
)
DIRECTIONS = ("higher", "lower")

METRICS: Registry[type[Metric]] = Registry("metric")
M = TypeVar("M", bound="type[Metric]")


def register_metric(name: str) -> Callable[[M], M]:
    """Class decorator: register a metric as ``category.name`` (``faithfulness.insertion``)."""

    def decorate(cls: M) -> M:
        category = name.split(".", 1)[0]
        if category not in CATEGORIES or cls.direction not in DIRECTIONS:
            raise ValueError(f"metric {name!r}: unknown category or direction {cls.direction!r}")
        cls.name = name
        cls.category = category
        return METRICS.register(name)(cls)

    return decorate


def list_metrics(pattern: str = "*") -> list[str]:
    """Registered metric names matching a shell-style pattern, e.g. ``"faithfulness.*"``."""
    return METRICS.names(pattern)


@dataclasses.dataclass(frozen=True)
class Scores:
    """What a metric computes: per-sample scores, optional curves (B, K) over ``x_axis`` (K,)."""

    scores: Tensor
    curves: Tensor | None = None
    x_axis: Tensor | None = None
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class MetricResult:
    """The result of one metric on one batch.

    Attributes:
        name: the registered metric name.
        scores: one score per sample (B,), on the CPU.
        direction: ``"higher"`` or ``"lower"`` is better.
        curves: per-sample curves (B, K) or ``None``; ``x_axis`` (K,) is their abscissa.
        settings: the metric's settings.
        extras: metric-specific values (e.g. the random-removal curve of ROAR).
    """

    name: str
    scores: Tensor
    direction: str
    curves: Tensor | None = None
    x_axis: Tensor | None = None
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def mean(self) -> float:
        return float(self.scores.double().nanmean())

    @property
    def std(self) -> float:
        valid = self.scores[~self.scores.isnan()].double()
        return float(valid.std()) if valid.numel() > 1 else 0.0

    def __repr__(self) -> str:
        arrow = "↑" if self.direction == "higher" else "↓"
        return f"MetricResult({self.name}: {self.mean:.4g} ± {self.std:.3g} {arrow})"


@dataclasses.dataclass(frozen=True, eq=False)
class Case:
    """One batch under evaluation: model, private inputs, target, attribution, method."""

    model: nn.Module
    inputs: Tensor
    target: Target
    attribution: Tensor
    output: Tensor
    method: Method | None = None
    masks: Tensor | None = None
    select: OutputSelector = None
    model_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def task(self) -> Task:
        return Task(self.model, self.target, self.select, self.model_kwargs, len(self.inputs))

    def scores(
        self, x: Tensor, sample: Tensor, probability: bool = False, model: nn.Module | None = None
    ) -> Tensor:
        """The target score of rows ``x`` (row r belongs to sample ``sample[r]``), no grad."""
        task = self.task if model is None else dataclasses.replace(self.task, model=model)
        task = task.take(sample)
        with torch.no_grad():
            out = task.output(x)
            if probability:
                out = out.softmax(1)
            return task.target.score(out)

    def explain(
        self,
        x: Tensor,
        sample: Tensor,
        *,
        model: nn.Module | None = None,
        target: Tensor | None = None,
        batch_size: int | None = None,
        metric: str = "this metric",
    ) -> Tensor:
        """Re-run the method on rows ``x`` (row r from sample ``sample[r]``), in chunks."""
        if self.method is None:
            raise ValueError(
                f"{metric} re-runs the explanation method; pass a method name or a Method object "
                "(not only an Explanation whose method is not registered)"
            )
        size = check_batch_size(batch_size)
        parts = []
        for start in range(0, len(x), size):
            rows = sample[start : start + size]
            task = self.task.take(rows)
            spec: Any = task.target.fn if target is None else target[start : start + size]
            if spec is None:
                spec = task.target.classes
            explanation = self.method(
                self.model if model is None else model,
                x[start : start + size],
                spec,
                output=self.select,
                model_kwargs=task.model_kwargs,
            )
            parts.append(explanation.attribution.to(x))
        return torch.cat(parts)

    def labels(self) -> Tensor:
        """The explained class per sample (B,); an error for a callable target."""
        if self.target.classes is None:
            raise ValueError("this metric needs class targets, not a target callable")
        return self.target.classes.to(self.inputs.device)


@dataclasses.dataclass(frozen=True, eq=False)
class Metric:
    """Base of every metric (settings are the dataclass fields)."""

    name: ClassVar[str] = "metric"
    direction: ClassVar[str] = "higher"
    category: ClassVar[str] = ""

    def compute(self, case: Case) -> Scores:
        """Per-sample scores (and curves) for the batch in ``case``."""
        raise NotImplementedError

    def better(self) -> str:
        """Which direction is better for these settings (most metrics: the class variable)."""
        return self.direction

    def settings(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def get_metric(name: str, **settings: Any) -> Metric:
    """The metric registered as ``name``, configured with ``settings``."""
    return METRICS.build(name, **settings)
