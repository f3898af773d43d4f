"""``evaluate``: score one explanation (or method) on one batch with any registered metrics."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..api import as_method, get_method
from ..checks import check_finite, check_inputs
from ..errors import ArgumentError, ArgumentTypeError
from ..explanation import Explanation
from ..guard import preserved
from ..method import METHODS, Method, private_copy
from ..outputs import OutputSelector
from ..registry import suggest
from ..targets import TargetSpec
from ..task import Task
from .base import METRICS, Case, Metric, MetricResult, distinct_labels
from .localisation import check_masks

MetricSpec = str | Metric
Explained = Explanation | str | Method


def evaluate(
    model: nn.Module,
    inputs: Tensor,
    target: TargetSpec,
    explanation_or_method: Explained,
    metrics: Sequence[MetricSpec] | MetricSpec = ("faithfulness.pixel_flipping",),
    masks: Tensor | None = None,
    *,
    output: OutputSelector = None,
    model_kwargs: Mapping[str, Any] | None = None,
    method_settings: Mapping[str, Any] | None = None,
    progress: bool = False,
    **settings: Any,
) -> dict[str, MetricResult]:
    """Score an explanation of ``model`` on ``inputs`` with each of ``metrics``.

    Args:
        target: as for :func:`pellucid.explain`; ``None`` takes the explanation's target
            (its class per sample, or the target callable it explained), or the
            predicted class when a method is given.
        explanation_or_method: an :class:`~pellucid.Explanation` of these inputs, a method
            name, or a method object. Metrics that re-run the method (sensitivity,
            randomisation, random logit) need a name or object, or an Explanation whose
            method is registered.
        metrics: registered names (see :func:`list_metrics`) or metric objects. The same
            metric twice with different settings gives two results, each keyed by the name
            and the settings that tell them apart (``faithfulness.pixel_flipping(order='lerf')``).
        masks: ground-truth masks for the localisation metrics, (B, *spatial) or the inputs'
            shape; nonzero marks the object.
        method_settings: settings of the method (given by name or as an object).
        **settings: metric settings (e.g. ``batch_size=128``, ``seed=1``, ``steps=50``),
            given to every chosen metric that has a setting of that name.

    Returns:
        ``{metric name: MetricResult}`` with per-sample scores, curves, mean, std, direction.

    Example:
        >>> import torch
        >>> from pellucid.metrics import evaluate
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3)).eval()
        >>> x = torch.randn(4, 3, 4, 4)
        >>> r = evaluate(model, x, 0, "gradient_x_input", ["complexity.sparseness"])
        >>> r["complexity.sparseness"].scores.shape
        torch.Size([4])
    """
    check_inputs(inputs)
    chosen = chosen_metrics(metrics, settings)
    with preserved(model):
        case = make_case(model, inputs, target, explanation_or_method, masks, output,
                         dict(model_kwargs or {}), method_settings)
        return {
            label: score(case, metric)
            for label, metric in _progress(list(zip(distinct_labels(chosen, "metrics"), chosen,
                                                    strict=True)), progress, "metrics")
        }


def score(case: Case, metric: Metric) -> MetricResult:
    """``metric`` on ``case``, as a result on the CPU."""
    computed = metric.compute(case)
    return MetricResult(
        name=metric.name,
        scores=computed.scores.detach().cpu(),
        direction=metric.direction,
        curves=None if computed.curves is None else computed.curves.detach().cpu(),
        x_axis=None if computed.x_axis is None else computed.x_axis.detach().cpu(),
        settings=metric.settings(),
        extras=computed.extras,
    )


def _progress(items: list[Any], progress: bool, desc: str) -> Iterable[Any]:
    if not progress:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc)


def chosen_metrics(
    metrics: Sequence[MetricSpec] | MetricSpec, settings: dict[str, Any]
) -> list[Metric]:
    """Metric objects for names or objects, each given the ``settings`` it has."""
    specs = as_list(metrics, "metrics", (str, Metric))
    chosen: list[Metric] = []
    used: set[str] = set()
    fields: set[str] = set()
    for spec in specs:
        if isinstance(spec, str):
            metric = METRICS.get(spec, "metrics")()
        elif isinstance(spec, Metric):
            metric = spec
        else:
            raise ArgumentTypeError("metrics", _not_an_object(
                "metrics", "metric names (str) or Metric objects; see pellucid.list_metrics()",
                spec, Metric))
        names = {f.name for f in dataclasses.fields(metric)}
        own = {k: v for k, v in settings.items() if k in names}
        chosen.append(dataclasses.replace(metric, **own) if own else metric)
        used |= set(own)
        fields |= names
    unused = sorted(set(settings) - used)
    if unused:
        raise ArgumentTypeError(
            unused[0],
            f"no chosen metric has the setting(s) {', '.join(map(repr, unused))}."
            f"{suggest(unused[0], sorted(fields))} The chosen metrics' settings are: "
            f"{', '.join(sorted(fields)) or 'none'} (docs/metrics.md)",
        )
    return chosen


def as_list(values: Any, argument: str, single: tuple[type, ...]) -> list[Any]:
    """``values`` as a non-empty list; one ``single`` value becomes a list of one."""
    if isinstance(values, (*single, type)):
        return [values]
    if isinstance(values, (Mapping, bytes)) or not isinstance(values, Iterable):
        raise ArgumentTypeError(
            argument, f"{argument} must be a list of names or objects, got {values!r}"
        )
    items = list(values)
    if not items:
        raise ArgumentError(argument, f"{argument} is empty; name at least one")
    return items


def _not_an_object(argument: str, expected: str, spec: Any, base: type) -> str:
    """The message for an entry of ``argument`` that is neither a name nor a ``base`` object."""
    if isinstance(spec, type) and issubclass(spec, base):
        return (f"{argument} holds the class {spec.__name__}; pass an object, "
                f"{spec.__name__}(...), or its registered name {getattr(spec, 'name', '')!r}")
    return f"{argument} must hold {expected}, got {spec!r}"


def as_method_object(
    spec: Any, argument: str, settings: Mapping[str, Any], expected: str = ""
) -> Method:
    """The method for a registered name or a method object, with ``settings``; an error
    naming ``argument`` for anything else (``None``, a class)."""
    if isinstance(spec, str):
        METHODS.get(spec, argument)
    elif not isinstance(spec, Method):
        expected = expected or "method names (str) or Method objects; see pellucid.list_methods()"
        raise ArgumentTypeError(argument, _not_an_object(argument, expected, spec, Method))
    return as_method(spec, **settings)


def make_case(
    model: nn.Module,
    inputs: Tensor,
    target: TargetSpec,
    explained: Explained,
    masks: Tensor | None,
    output: OutputSelector,
    model_kwargs: dict[str, Any],
    method_settings: Mapping[str, Any] | None,
) -> Case:
    """The batch under evaluation: the attribution (computed when a method is given), the
    method when it is known, and the task resolved at a forward pass on a private copy.
    """
    if method_settings is not None and not isinstance(method_settings, Mapping):
        raise ArgumentTypeError(
            "method_settings",
            f"method_settings must be a dict of the method's settings, got {method_settings!r}",
        )
    method: Method | None
    if isinstance(explained, Explanation):
        if method_settings:
            raise ArgumentError(
                "method_settings",
                "method_settings cannot change an Explanation, which is already computed; "
                "pass the method's name or object as explanation_or_method instead",
            )
        explanation = explained
        _check_attribution(explanation.attribution, inputs)
        method = (get_method(explanation.method, **explanation.settings)
                  if explanation.method in METHODS else None)
        if target is None:
            target = _explained_target(explanation)
    else:
        method = as_method_object(
            explained, "explanation_or_method", method_settings or {},
            "an Explanation, a method name (str) or a Method object",
        )
        explanation = method(model, inputs, target, output=output, model_kwargs=model_kwargs)
        check_finite(explanation.attribution, f"the attribution of {method.name}",
                     argument="explanation_or_method",
                     fix="check the method's settings and that the model's gradients are finite")
        if target is None:
            target = _explained_target(explanation)
    x = private_copy(inputs, model)
    task = Task.start(model, x, target, select=output, model_kwargs=model_kwargs)
    return Case(
        task=task,
        forward=task.first_forward,
        attribution=explanation.attribution.to(x),
        method=method,
        masks=None if masks is None else check_masks(masks, x),
    )


def _check_attribution(attribution: Any, inputs: Tensor) -> None:
    """An Explanation's attribution must be a finite tensor of the inputs' shape."""
    if not isinstance(attribution, Tensor) or attribution.is_complex():
        raise ArgumentTypeError(
            "explanation_or_method",
            "the attribution of explanation_or_method must be a real tensor of the inputs' "
            "shape, got "
            f"{getattr(attribution, 'dtype', type(attribution).__name__)}",
        )
    if attribution.shape != inputs.shape:
        raise ArgumentError(
            "explanation_or_method",
            f"the attribution of explanation_or_method has shape {tuple(attribution.shape)} but "
            f"the inputs have shape {tuple(inputs.shape)}; pass the inputs it explains",
        )
    check_finite(attribution, "the explanation's attribution", argument="explanation_or_method",
                 fix="a metric cannot rank them; pass a finite attribution")


def _explained_target(explanation: Explanation) -> TargetSpec:
    """The target an explanation explained: its target callable, or its classes."""
    spec = getattr(explanation, "target_spec", None)
    if spec is not None:
        return spec
    if bool((torch.as_tensor(explanation.target) < 0).any()):
        raise ArgumentError(
            "target",
            "the explanation explains a target callable (its target is -1) that it does not "
            "carry; pass the same callable as target= so that the metrics score the output "
            "that was explained, not the predicted class",
        )
    return explanation.target
