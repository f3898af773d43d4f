"""``evaluate``: score one explanation (or method) on one batch with any registered metrics."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..api import as_method, get_method
from ..checks import check_inputs
from ..explanation import Explanation
from ..guard import preserved
from ..method import METHODS, Method, private_copy
from ..outputs import OutputSelector
from ..targets import TargetSpec
from ..task import Task
from .base import METRICS, Case, Metric, MetricResult

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
            (or the predicted class).
        explanation_or_method: an :class:`~pellucid.Explanation` of these inputs, a method
            name, or a method object. Metrics that re-run the method (sensitivity,
            randomisation, random logit) need a name or object, or an Explanation whose
            method is registered.
        metrics: registered names (see :func:`list_metrics`) or metric objects.
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
    iterator: Any = chosen
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(chosen, desc="metrics")
    results: dict[str, MetricResult] = {}
    with preserved(model):
        case = _case(model, inputs, target, explanation_or_method, masks, output,
                     dict(model_kwargs or {}), dict(method_settings or {}))
        for metric in iterator:
            computed = metric.compute(case)
            results[metric.name] = MetricResult(
                name=metric.name,
                scores=computed.scores.detach().cpu(),
                direction=metric.direction,
                curves=None if computed.curves is None else computed.curves.detach().cpu(),
                x_axis=None if computed.x_axis is None else computed.x_axis.detach().cpu(),
                settings=metric.settings(),
                extras=computed.extras,
            )
    return results


def chosen_metrics(
    metrics: Sequence[MetricSpec] | MetricSpec, settings: dict[str, Any]
) -> list[Metric]:
    """Metric objects for names or objects, each given the ``settings`` it has."""
    specs = [metrics] if isinstance(metrics, (str, Metric)) else list(metrics)
    if not specs:
        raise ValueError("metrics is empty; name at least one (see pellucid.list_metrics())")
    chosen: list[Metric] = []
    used: set[str] = set()
    for spec in specs:
        metric = spec if isinstance(spec, Metric) else METRICS.get(spec)()
        fields = {f.name for f in dataclasses.fields(metric)}
        own = {k: v for k, v in settings.items() if k in fields}
        chosen.append(dataclasses.replace(metric, **own) if own else metric)
        used |= set(own)
    unused = sorted(set(settings) - used)
    if unused:
        raise TypeError(
            f"no chosen metric has the setting(s) {', '.join(map(repr, unused))}; "
            "see each metric's settings in docs/metrics.md"
        )
    return chosen


def _case(
    model: nn.Module,
    inputs: Tensor,
    target: TargetSpec,
    explained: Explained,
    masks: Tensor | None,
    output: OutputSelector,
    model_kwargs: dict[str, Any],
    method_settings: dict[str, Any],
) -> Case:
    """The batch under evaluation: the attribution (computed when a method is given), the
    method when it is known, and the task resolved at a forward pass on a private copy.
    """
    method: Method | None
    if isinstance(explained, Explanation):
        explanation = explained
        if explanation.attribution.shape != inputs.shape:
            raise ValueError(
                f"the explanation's attribution has shape {tuple(explanation.attribution.shape)} "
                f"but the inputs have shape {tuple(inputs.shape)}; pass the inputs it explains"
            )
        method = (get_method(explanation.method, **explanation.settings)
                  if explanation.method in METHODS else None)
        if target is None and bool((explanation.target >= 0).all()):
            target = explanation.target
    else:
        if isinstance(explained, (Method, str)):
            method = as_method(explained, **method_settings)
        else:
            raise TypeError(
                "explanation_or_method must be an Explanation, a method name or a Method, got "
                f"{type(explained).__name__}"
            )
        explanation = method(model, inputs, target, output=output, model_kwargs=model_kwargs)
        if target is None:
            target = explanation.target
    x = private_copy(inputs, model)
    task = Task.start(model, x, target, select=output, model_kwargs=model_kwargs)
    return Case(
        task=task,
        forward=task.first_forward,
        attribution=explanation.attribution.to(x),
        method=method,
        masks=None if masks is None else torch.as_tensor(masks).to(x.device),
    )
