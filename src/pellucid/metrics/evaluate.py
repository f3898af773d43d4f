"""``evaluate``: score one explanation (or method) on one batch with any registered metrics."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..api import as_method, get_method
from ..checks import check_finite, deferred_checks
from ..errors import ArgumentError, ArgumentTypeError
from ..explanation import Explanation
from ..guard import preserved
from ..method import METHODS, Method, private_copy
from ..outputs import OutputSelector
from ..registry import suggest
from ..saving import Repr
from ..targets import TargetSpec
from ..task import Task
from .base import METRICS, Case, Metric, MetricResult, distinct_labels
from .external import CALLABLE, CallableMethod
from .localisation import check_masks
from .maps import as_attribution, check_metric_inputs

MetricSpec = str | Metric
#: a method that metrics can re-run: a registered name, a Method object, or a callable
#: ``(model, x, target) -> attributions`` (e.g. Captum's ``attribute``)
MethodSpec = str | Method | Callable[[nn.Module, Tensor, Any], Any]
#: what ``evaluate`` scores: attributions made anywhere, an Explanation, or a method
Attributions = Explanation | Tensor | np.ndarray | MethodSpec
Explained = Attributions  # the former name


def evaluate(
    model: nn.Module,
    inputs: Tensor,
    target: TargetSpec,
    attributions: Attributions | None = None,
    metrics: Sequence[MetricSpec] | MetricSpec = ("faithfulness.pixel_flipping",),
    masks: Tensor | np.ndarray | None = None,
    *,
    method: MethodSpec | None = None,
    output: OutputSelector = None,
    model_kwargs: Mapping[str, Any] | None = None,
    method_settings: Mapping[str, Any] | None = None,
    progress: bool = False,
    **settings: Any,
) -> dict[str, MetricResult]:
    """Score attributions of ``model`` on ``inputs`` with each of ``metrics``.

    Args:
        target: as for :func:`pellucid.explain`; ``None`` takes the explanation's target
            (its class per sample, or the target callable it explained), or the
            predicted class (the output itself for a one-output model, a regressor).
        attributions: what is scored: attributions made anywhere (a tensor or NumPy array
            of the inputs' shape, or for inputs (B, C, *S) one map per sample (B, 1, *S) or
            (B, *S), taken as the location map: each channel gets map / C), an
            :class:`~pellucid.Explanation` of these inputs, or a method (a registered name,
            a Method object, or a callable as for ``method``) that explains them first.
            (Formerly ``explanation_or_method=``, which still works with a warning.)
        metrics: registered names (see :func:`list_metrics`) or metric objects. The same
            metric twice with different settings gives two results, each keyed by the name
            and the settings that tell them apart (``faithfulness.pixel_flipping(order='lerf')``).
        masks: ground-truth masks for the localisation metrics, (B, *S), (B, 1, *S) or the
            inputs' shape; nonzero marks the object.
        inputs: real floating inputs, or token ids (B, L), scored per token (attributions
            (B, L); padding is where ``model_kwargs["attention_mask"]`` is 0; see
            docs/metrics.md, "Token inputs").
        method: the method that metrics which re-explain (sensitivity, continuity,
            randomisation) re-run: a registered name, a Method object, or any callable
            ``(model, x, target) -> attributions`` (see
            :class:`~pellucid.metrics.external.CallableMethod`). Default: the method of
            ``attributions`` when it is one, or the registered method of an Explanation.
        method_settings: settings of the method given by name or object.
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
        >>> saliency = torch.rand(4, 4, 4)  # one map per sample, from any library
        >>> r = evaluate(model, x, 0, saliency, "robustness.max_sensitivity", method="saliency")
        >>> r["robustness.max_sensitivity"].scores.shape
        torch.Size([4])
    """
    attributions = _renamed_attributions(attributions, settings)
    check_metric_inputs(inputs)
    chosen = chosen_metrics(metrics, settings)
    with preserved(model):
        with deferred_checks():  # the case's checks of inputs, output and attribution
            case = make_case(model, inputs, target, attributions, masks, output,
                             dict(model_kwargs or {}), method_settings, method)
        return {
            label: score(case, metric)
            for label, metric in _progress(list(zip(distinct_labels(chosen, "metrics"), chosen,
                                                    strict=True)), progress, "metrics")
        }


def _renamed_attributions(attributions: Any, settings: dict[str, Any]) -> Any:
    """``attributions``, or what was given by its former name ``explanation_or_method``."""
    if "explanation_or_method" not in settings:
        return attributions
    former = settings.pop("explanation_or_method")
    if attributions is not None:
        raise ArgumentError(
            "attributions", "attributions and explanation_or_method (its former name) are both "
            "given; pass attributions only",
        )
    warnings.warn("evaluate(explanation_or_method=...) is deprecated; pass attributions=...",
                  DeprecationWarning, stacklevel=3)
    return former


def score(case: Case, metric: Metric) -> MetricResult:
    """``metric`` on ``case``, as a result on the CPU (its finiteness checks made at the end,
    with one host synchronisation: :func:`pellucid.checks.deferred_checks`)."""
    with deferred_checks():
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


def rerun_method(spec: Any, argument: str, settings: Mapping[str, Any]) -> Method:
    """The method that metrics re-run, for a registered name, a Method object or a callable
    ``(model, x, target) -> attributions``; ``settings`` configure a name or object."""
    if callable(spec) and not isinstance(spec, (Method, type)):
        if settings:
            raise ArgumentError(
                "method_settings",
                f"method_settings configure a registered method, but {argument} is a callable, "
                "which has none: set them inside the callable",
            )
        return CallableMethod(spec)
    return as_method_object(spec, argument, settings,
                            f"a method name (str), a Method object, or {CALLABLE}")


def make_case(
    model: nn.Module,
    inputs: Tensor,
    target: TargetSpec,
    explained: Attributions | None,
    masks: Any,
    output: OutputSelector,
    model_kwargs: dict[str, Any],
    method_settings: Mapping[str, Any] | None,
    method: MethodSpec | None = None,
) -> Case:
    """The batch under evaluation: the attribution (computed when a method is given, shaped
    as the inputs), the method that metrics re-run when it is known, and the task resolved
    at a forward pass on a private copy.
    """
    if method_settings is not None and not isinstance(method_settings, Mapping):
        raise ArgumentTypeError(
            "method_settings",
            f"method_settings must be a dict of the method's settings, got {method_settings!r}",
        )
    given = isinstance(explained, (Explanation, Tensor, np.ndarray))
    if method is not None:
        if not given:
            raise ArgumentError(
                "method", "attributions is already a method; pass the method once, as "
                "attributions (to explain and re-run) or as method= beside attributions made "
                "elsewhere",
            )
        rerun: Method | None = rerun_method(method, "method", method_settings or {})
    elif given and method_settings:
        raise ArgumentError(
            "method_settings",
            "method_settings configure a method, but attributions are already computed; pass "
            "method= the method they configure (for the metrics that re-run it), or a method "
            "name or object as attributions",
        )
    else:
        rerun = None
    if isinstance(explained, Explanation):
        attribution = explained.attribution
        # a loaded Explanation holds settings it could not store as their repr (a Composite,
        # a callable): its method cannot be rebuilt, so metrics that re-run it ask for method=
        rebuildable = not any(isinstance(v, Repr) for v in explained.settings.values())
        if rerun is None and explained.method in METHODS and rebuildable:
            rerun = get_method(explained.method, **explained.settings)
        if target is None:
            target = _explained_target(explained)
    elif given:
        attribution = explained
    else:
        if explained is None:
            raise ArgumentTypeError(
                "attributions", "attributions is None; pass attributions (a tensor or NumPy "
                "array), an Explanation, or a method name, Method object or callable",
            )
        rerun = rerun_method(explained, "attributions", method_settings or {})
        explanation = rerun(model, inputs, target, output=output, model_kwargs=model_kwargs)
        check_finite(explanation.attribution, f"the attributions of {rerun.name}",
                     argument="attributions",
                     fix="check the method's settings and that the model's gradients are finite")
        attribution = explanation.attribution
        if target is None:
            target = _explained_target(explanation)
    x = private_copy(inputs, model)  # token ids keep their dtype
    task = Task.start(model, x, target, select=output, model_kwargs=model_kwargs)
    return Case(
        task=task,
        forward=task.first_forward,
        attribution=as_attribution(attribution, x, "attributions",
                                   dtype=task.first_forward.output.dtype),
        method=rerun,
        masks=None if masks is None else check_masks(masks, x),
    )


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
