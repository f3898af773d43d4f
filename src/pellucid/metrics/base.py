"""The metric protocol: settings as a frozen dataclass, one ``compute`` per metric.

A metric is a small frozen dataclass whose fields are its settings, with class variables
``name``, ``direction`` ("higher" or "lower" is better) and ``category``. ``compute(case)``
returns per-sample scores (and curves where the metric has them) for one :class:`Case`:
the explained :class:`~pellucid.task.Task`, the forward pass at a private copy of the
inputs, the attribution under test and, when available, the method that produced it (for
metrics that re-run it).
"""

from __future__ import annotations

import dataclasses
import operator
import warnings
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from ..batching import expanded_rows, row_chunks
from ..method import Method
from ..registry import Registry
from ..targets import Target, TargetSpec
from ..task import Forward, Task

CATEGORIES = (
    "faithfulness", "robustness", "localisation", "complexity", "axiomatic", "randomisation"
)
DIRECTIONS = ("higher", "lower")
#: trains a fresh model on (inputs, labels), for the metrics that retrain (ROAR, data
#: randomisation)
TrainFn = Callable[[Tensor, Tensor], nn.Module]

METRICS: Registry[type[Metric]] = Registry("metric")
M = TypeVar("M", bound="type[Metric]")


def register_metric(name: str) -> Callable[[M], M]:
    """Class decorator: register a metric as ``category.name`` (``faithfulness.insertion``)."""

    def decorate(cls: M) -> M:
        category = name.split(".", 1)[0]
        if category not in CATEGORIES:
            raise ValueError(
                f"metric {name!r} has the unknown category {category!r}; name it "
                f"'category.name' with a category in {', '.join(CATEGORIES)}"
            )
        direction = cls.direction
        if direction not in DIRECTIONS:
            raise ValueError(
                f"metric {name!r} has direction {direction!r} for its default settings; "
                "give 'higher' or 'lower' (which scores are better)"
            )
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


#: deprecated attributes of :class:`Case` and the attribute each one reads
_CASE_ALIASES = {
    "model": "task.model",
    "target": "task.target",
    "select": "task.select",
    "model_kwargs": "task.model_kwargs",
    "inputs": "forward.inputs",
    "output": "forward.output",
}


@dataclasses.dataclass(frozen=True, eq=False)
class Case:
    """One batch under evaluation.

    ``task`` is what is explained (model, resolved target, output selector, model
    arguments, rows), ``forward`` the forward pass at a private copy of the inputs
    (``forward.inputs``, ``forward.output``), ``attribution`` the explanation under test,
    ``method`` the method that made it (for metrics that re-run it) and ``masks`` the
    ground-truth masks of the localisation metrics.
    """

    task: Task
    forward: Forward
    attribution: Tensor
    method: Method | None = None
    masks: Tensor | None = None

    def __getattr__(self, name: str) -> Any:
        moved = _CASE_ALIASES.get(name)
        if moved is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        warnings.warn(f"Case.{name} is deprecated; read case.{moved}", DeprecationWarning,
                      stacklevel=2)
        return operator.attrgetter(moved)(self)

    def scores(self, x: Tensor, sample: Tensor | None = None, probability: bool = False) -> Tensor:
        """The target score of rows ``x``, without grad.

        Row r belongs to sample ``sample[r]`` (``None``: one row per sample, in order);
        ``probability`` scores the softmax of the output instead of the output.
        """
        task = self.task if sample is None else self.task.take(sample)
        with torch.no_grad():
            out = task.output(x)
            return task.target.score(out.softmax(1) if probability else out)

    def explain(
        self,
        x: Tensor,
        sample: Tensor | None = None,
        *,
        model: nn.Module | None = None,
        target: Tensor | None = None,
        batch_size: int | None = None,
        metric: str = "this metric",
    ) -> Tensor:
        """Re-run the method on rows ``x``, at most ``batch_size`` rows per call.

        Row r belongs to sample ``sample[r]`` (``None``: one row per sample, in order).
        ``model`` replaces the task's model (randomisation tests) and ``target``, one class
        per row, the task's target.
        """
        if self.method is None:
            raise ValueError(
                f"{metric} re-runs the explanation method; pass a method name or a Method object "
                "(not only an Explanation whose method is not registered)"
            )
        parts = []
        for rows in row_chunks(len(x), batch_size, x.device):
            task = self.task.take(rows if sample is None else sample[rows])
            explanation = self.method(
                task.model if model is None else model,
                x[rows],
                _target_spec(task.target) if target is None else target[rows],
                output=task.select,
                model_kwargs=task.model_kwargs,
            )
            parts.append(explanation.attribution.to(x))
        return torch.cat(parts)

    def grid_values(
        self, variants: int, value: Callable[[Tensor, Tensor], Tensor], batch_size: int | None
    ) -> Tensor:
        """``value(sample, variant)`` over the (sample, variant) grid, as a (B, variants) tensor.

        The grid is flattened into rows and cut into chunks of at most ``batch_size`` rows
        (:func:`pellucid.batching.expanded_rows`); ``value`` gets the sample and variant
        index of a chunk's rows and returns one number per row.
        """
        x = self.forward.inputs
        values = x.new_empty(len(x), variants)
        for sample, variant in expanded_rows(len(x), variants, batch_size, x.device):
            values[sample, variant] = value(sample, variant)
        return values

    def labels(self, metric: str = "this metric") -> Tensor:
        """The explained class per sample (B,); a ValueError for a target callable."""
        classes = self.task.target.classes
        if classes is None:
            raise ValueError(
                f"{metric} needs a class per sample, not a target callable; pass target= an "
                "int, one class per sample, or None (the predicted class)"
            )
        return classes.to(self.forward.inputs.device)


def _target_spec(target: Target) -> TargetSpec:
    """The spec that resolves to ``target`` again: its score function or its classes."""
    return target.fn if target.fn is not None else target.classes


class direction_by_settings:
    """``direction`` of a metric whose better direction depends on its settings.

    Decorates a method of the metric that returns "higher" or "lower". Read on a metric
    object it gives the direction of that object's settings; read on the class (as the
    registry does) the direction of the default settings.
    """

    def __init__(self, rule: Callable[[Any], str]) -> None:
        self.rule = rule
        self.__doc__ = rule.__doc__

    def __get__(self, metric: Metric | None, cls: type[Metric]) -> str:
        return self.rule(cls() if metric is None else metric)


@dataclasses.dataclass(frozen=True, eq=False)
class Metric:
    """Base of every metric (settings are the dataclass fields).

    ``direction`` ("higher" or "lower" is better) is the one statement of a metric's
    direction: a class variable, or :class:`direction_by_settings` where the settings
    decide it. Results, tables and reports read it from the configured metric.
    """

    name: ClassVar[str] = "metric"
    direction: ClassVar[str] = "higher"
    category: ClassVar[str] = ""

    def compute(self, case: Case) -> Scores:
        """Per-sample scores (and curves) for the batch in ``case``."""
        raise NotImplementedError

    def better(self) -> str:
        """Deprecated: read ``direction``."""
        warnings.warn("Metric.better() is deprecated; read metric.direction",
                      DeprecationWarning, stacklevel=2)
        return self.direction

    def settings(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def required_train_fn(metric: str, train_fn: TrainFn | None) -> TrainFn:
    """The ``train_fn`` setting of a metric that retrains, or a ValueError that asks for it."""
    if train_fn is None:
        raise ValueError(f"{metric} needs train_fn=<callable (inputs, labels) -> model>")
    return train_fn


def get_metric(name: str, **settings: Any) -> Metric:
    """The metric registered as ``name``, configured with ``settings``."""
    return METRICS.build(name, **settings)
