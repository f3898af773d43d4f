"""The metric protocol: settings as a frozen dataclass, one ``compute`` per metric.

A metric is a small frozen dataclass whose fields are its settings, with class variables
``name``, ``direction`` ("higher" or "lower" is better) and ``category``. ``compute(case)``
returns per-sample scores (and curves where the metric has them) for one :class:`Case`:
the explained :class:`~pellucid.task.Task`, the forward pass at a private copy of the
inputs, the attribution under test and, when available, the method that produced it (for
metrics that re-run it).

Inputs of token ids (B, L) are scored per token: attributions are (B, L), a removed token
is replaced by a fill token (:func:`pellucid.perturb.token_fill`), and the positions that
``model_kwargs["attention_mask"]`` (B, L) marks 0 (padding) are never removed nor counted
(:attr:`Case.valid`).
"""

from __future__ import annotations

import dataclasses
import math
import operator
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from ..batching import expanded_rows, row_chunks
from ..errors import ArgumentError
from ..method import Method
from ..perturb import BaselineSpec, make_baseline, token_fill
from ..registry import Registry
from ..saving import load_fields, save_fields
from ..targets import Target, TargetSpec
from ..task import Forward, Task
from ..tokens import TOKEN_ROLES, is_token_ids

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
            raise ArgumentError(
                "name",
                f"metric name {name!r} has the unknown category {category!r}; name it "
                f"'category.name' with a category in {', '.join(CATEGORIES)}",
            )
        direction = cls.direction
        if direction not in DIRECTIONS:
            raise ArgumentError(
                "direction",
                f"metric {name!r} has direction {direction!r} for its default settings; "
                "give 'higher' or 'lower' (which scores are better)",
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
        scores: one score per sample (B,), on the CPU; NaN where the metric is undefined
            for a sample (e.g. relevance mass without positive relevance).
        direction: ``"higher"`` or ``"lower"`` is better.
        curves: per-sample curves (B, K) or ``None``; ``x_axis`` (K,) is their abscissa.
        settings: the metric's settings.
        extras: metric-specific values (e.g. the random-removal curve of ROAR).

    ``mean`` and ``std`` are over all samples, so they are NaN when any score is:
    ``nan_count`` says how many, ``valid_mean`` and ``valid_std`` leave them out.
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
        """The mean score; NaN when a sample's score is NaN (see ``nan_count``)."""
        return float(self.scores.double().mean())

    @property
    def std(self) -> float:
        """The sample standard deviation of the scores (0 for one sample); NaN as ``mean``."""
        return _std(self.scores.double())

    @property
    def nan_count(self) -> int:
        """The number of samples for which the metric is undefined (NaN)."""
        return int(self.scores.isnan().sum())

    @property
    def valid_mean(self) -> float:
        """The mean over the samples whose score is not NaN (NaN if there are none)."""
        return float(self.scores.double().nanmean())

    @property
    def valid_std(self) -> float:
        """The standard deviation over the samples whose score is not NaN."""
        return _std(self.scores[~self.scores.isnan()].double())

    def __repr__(self) -> str:
        arrow = "↑" if self.direction == "higher" else "↓"
        undefined = f", {self.nan_count} of {len(self.scores)} NaN" if self.nan_count else ""
        return f"MetricResult({self.name}: {self.mean:.4g} ± {self.std:.3g} {arrow}{undefined})"

    def save(self, path: str | os.PathLike) -> Path:
        """Save to one ``.safetensors`` file (scores, curves, tensors) with JSON (the rest).

        Settings that cannot be stored (a ``train_fn``, a method object) are saved as their
        ``repr`` and load back as that string (see docs/tasks/saving.md).

        Example:
            >>> import tempfile, torch
            >>> scores = torch.tensor([0.25, float("nan")])
            >>> r = MetricResult("faithfulness.deletion", scores, "lower")
            >>> path = r.save(tempfile.mkdtemp() + "/r.safetensors")
            >>> MetricResult.load(path).nan_count
            1
        """
        return save_fields(path, self)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> MetricResult:
        """A result saved by :meth:`save`, its tensors on ``device``; never unpickles."""
        return cls(**load_fields(path, cls, device))


def _std(values: Tensor) -> float:
    return float(values.std()) if values.numel() > 1 else (0.0 if values.numel() else math.nan)


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
        ``probability`` scores the softmax of the output over dim 1 (the classes) instead
        of the output (resolve the setting with :meth:`probability`).
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
            raise ArgumentError(
                "method",
                f"{metric} re-runs the explanation method, which attributions made elsewhere "
                "(a tensor, an array, an Explanation of an unregistered method) do not carry; "
                "pass method= a registered name (method='integrated_gradients'), a Method "
                "object, or a callable (model, x, target) -> attributions, e.g. "
                "method=lambda m, x, t: IntegratedGradients(m).attribute(x, target=t) with "
                "Captum",
            )
        parts = []
        for rows in row_chunks(len(x), batch_size, x.device):
            task = self.task.take(rows if sample is None else sample[rows])
            explanation = self.method(
                task.model if model is None else model,
                x[rows],
                _target_spec(task.target) if target is None else target[rows],
                output=task.select,
                model_kwargs=task.marked_kwargs(),
            )
            parts.append(explanation.attribution.to(self.attribution))
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
        dtype = torch.promote_types(self.attribution.dtype, torch.float32)  # statistics' dtype
        values = self.attribution.new_empty(len(x), variants, dtype=dtype)
        for sample, variant in expanded_rows(len(x), variants, batch_size, x.device):
            values[sample, variant] = value(sample, variant).to(dtype)
        return values

    @property
    def tokens(self) -> bool:
        """Whether the inputs are token ids (B, L), scored one value per token."""
        return is_token_ids(self.forward.inputs)

    @property
    def valid(self) -> Tensor | None:
        """For token ids, the positions that count as features (B, L), bool: those where
        ``model_kwargs["attention_mask"]`` (a (B, L) tensor) is nonzero; ``None`` when every
        position counts (inputs that are not token ids, or no such mask)."""
        mask = self.task.model_kwargs.get("attention_mask")
        x = self.forward.inputs
        if not self.tokens or not isinstance(mask, Tensor) or mask.shape != x.shape:
            return None
        valid = mask.to(x.device).ne(0)
        empty = ~valid.any(1)
        if empty.any():
            raise ArgumentError(
                "model_kwargs",
                f"model_kwargs['attention_mask'] marks every token of samples "
                f"{empty.nonzero().flatten().tolist()} as padding, so they have no token to "
                "score; leave those samples out",
            )
        return valid

    def fill(self, spec: BaselineSpec, argument: str = "fill", *, sigma: float = 5.0,
             seed: int | None = 0) -> Tensor:
        """The inputs with every feature removed: the baseline ``spec`` for real-valued
        inputs (:func:`pellucid.perturb.make_baseline`), the fill token for token ids
        (:func:`pellucid.perturb.token_fill`), padding (:attr:`valid`) kept as it is.
        Errors name ``argument``.

        Example:
            >>> import torch
            >>> from pellucid.metrics.evaluate import make_case
            >>> model = torch.nn.Sequential(torch.nn.Embedding(10, 1), torch.nn.Flatten())
            >>> case = make_case(model, torch.tensor([[4, 5, 6]]), 0, torch.ones(1, 3),
            ...                  None, None, {}, None)
            >>> case.tokens, case.valid, case.fill(3).tolist()
            (True, None, [[3, 3, 3]])
        """
        x = self.forward.inputs
        if self.tokens:
            filled = token_fill(spec, x, self.task.model, argument)
            valid = self.valid
            return filled if valid is None else torch.where(valid, filled, x)
        if isinstance(spec, str) and spec in TOKEN_ROLES:
            raise ArgumentError(
                argument,
                f"{argument}={spec!r} names a token, but the inputs are real-valued "
                f"(dtype {x.dtype}); pass token ids (B, L) or a {argument} for real values "
                "('zero', 'mean', 'blur', 'uniform', a number or a tensor)",
            )
        return make_baseline(spec, x, sigma=sigma, seed=seed, argument=argument)

    def refuse_tokens(self, metric: str, reason: str) -> None:
        """An ArgumentError naming ``metrics`` when the inputs are token ids, for a metric
        that cannot apply to them (``reason`` says why)."""
        if self.tokens:
            raise ArgumentError(
                "metrics",
                f"{metric} cannot score inputs of token ids {tuple(self.forward.inputs.shape)}: "
                f"{reason}. Choose a metric that removes tokens (faithfulness.pixel_flipping, "
                "faithfulness.deletion, faithfulness.insertion, faithfulness.correlation) or "
                "compares maps (localisation.*, complexity.*, randomisation.*)",
            )

    def labels(self, metric: str = "this metric") -> Tensor:
        """The explained class per sample (B,); an ArgumentError for a target callable."""
        classes = self.task.target.classes
        if classes is None:
            raise ArgumentError(
                "target",
                f"{metric} needs a class per sample, not a target callable; pass target= an "
                "int, one class per sample, or None (the predicted class)",
            )
        return classes.to(self.forward.inputs.device)

    @property
    def one_output(self) -> bool:
        """Whether the model gives one value per sample, (B,) or (B, 1, …): a regressor or a
        single logit, with no classes to compare."""
        out = self.forward.output
        return out.ndim == 1 or out.shape[1] == 1

    def probability(self, setting: bool | None, metric: str) -> bool:
        """Whether ``metric`` scores softmax probabilities, for its ``probability`` setting.

        ``None`` (auto): the softmax over the classes when the model gives several outputs
        per sample (dim 1 of size ≥ 2) that are not already probabilities (non-negative,
        summing to 1) and the target is a class; the raw output for a one-output model
        ((B,) or (B, 1): a regressor or a single logit, whose softmax is always 1) and for a
        target callable. ``True`` on a one-output model is an error.
        """
        out = self.forward.output
        if setting is None:
            if self.one_output or self.task.target.classes is None:
                return False
            sums = out.sum(1)
            return not (bool((out >= 0).all()) and torch.allclose(sums, torch.ones_like(sums)))
        if setting and self.one_output:
            raise ArgumentError(
                "probability",
                f"{metric}: probability=True scores the softmax over the classes, but the model "
                f"output has shape {tuple(out.shape)}, one value per sample, whose softmax is "
                "always 1; pass probability=False (the raw output) or None (auto)",
            )
        return setting


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


def distinct_labels(objects: Sequence[Metric | Method], argument: str) -> list[str]:
    """A label per metric or method: its name, and where several share a name, the name
    with the settings that differ among them (``integrated_gradients(steps=8)``).

    Two objects of one name and the same settings are an :class:`ArgumentError` naming
    ``argument``: listing one twice is a mistake, and merging different ones is wrong.
    """
    labels = [obj.name for obj in objects]
    groups: dict[str, list[int]] = {}
    for i, obj in enumerate(objects):
        groups.setdefault(obj.name, []).append(i)
    for name, members in groups.items():
        if len(members) < 2:
            continue
        kinds = {type(objects[i]) for i in members}
        settings = [objects[i].settings() for i in members]
        keys = list(dict.fromkeys(k for s in settings for k in s))
        differ = [k for k in keys
                  if any(not _same(settings[0].get(k), s.get(k)) for s in settings[1:])]
        for i, own in zip(members, settings, strict=True):
            shown = ", ".join(f"{k}={_show(own.get(k))}" for k in differ)
            base = type(objects[i]).__qualname__ if len(kinds) > 1 else name
            labels[i] = f"{base}({shown})" if shown else base
        for i in members:
            if labels.count(labels[i]) > 1:
                raise ArgumentError(
                    argument,
                    f"{argument} lists {labels[i]!r} twice with the same settings; list it "
                    "once (or give the two different settings)",
                )
    return labels


def _same(a: Any, b: Any) -> bool:
    """Whether two setting values are equal (tensors by value; False when undecidable)."""
    if a is b:
        return True
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return (isinstance(a, Tensor) and isinstance(b, Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and bool(torch.equal(a.cpu(), b.cpu())))
    try:
        return bool(a == b)
    except Exception:  # e.g. tuples of tensors: compared element-wise, ambiguous
        return False


def _show(value: Any) -> str:
    """A short form of a setting value for a label."""
    if isinstance(value, Tensor):
        return f"tensor{tuple(value.shape)}"
    if callable(value) and hasattr(value, "__name__"):
        return value.__name__
    return repr(value)


def required_train_fn(metric: str, train_fn: TrainFn | None) -> TrainFn:
    """The ``train_fn`` setting of a metric that retrains, or an ArgumentError that asks for it."""
    if train_fn is None:
        raise ArgumentError(
            "train_fn", f"{metric} needs train_fn=<callable (inputs, labels) -> nn.Module>"
        )
    return train_fn


def train_model(metric: str, train_fn: TrainFn | None, inputs: Tensor, labels: Tensor) -> nn.Module:
    """``train_fn(inputs, labels)`` (on copies), checked to be a model, in eval mode."""
    model = required_train_fn(metric, train_fn)(inputs.clone(), labels.clone())
    if not isinstance(model, nn.Module):
        raise ArgumentError(
            "train_fn",
            f"{metric}: train_fn must return the trained model (a torch.nn.Module), but it "
            f"returned {type(model).__name__}; end it with `return model`",
        )
    return model.eval()


def get_metric(name: str, **settings: Any) -> Metric:
    """The metric registered as ``name``, configured with ``settings``."""
    return METRICS.build(name, **settings)
