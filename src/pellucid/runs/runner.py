"""The runner: explain and evaluate a whole data set, batch by batch, into a store.

The contract that every engine follows (the local loop here, the Ray engine in
``ray_engine.py``):

1. :func:`prepare` validates the call once, before any work (method and metric names,
   settings, target, ``on_error``, ``dtype``) and gives a :class:`Plan`; every error
   about the call is raised there or on the first batch, never skipped per sample.
2. :func:`explain_batch` ``(model, batch, plan) -> BatchResult`` is the one pure function
   of the work: each method explains the batch **once**, and every metric scores that
   explanation (:func:`pellucid.evaluate`); user callbacks see it. The result holds
   NumPy arrays and plain values only, so it pickles (an engine may run this function in
   workers that each hold the model).
3. :meth:`Store.write(result) <pellucid.runs.store.Store.write>` is the one writer, run
   where the store is (the driver): it writes the batch's arrays, then its completion
   markers, last.
4. A batch whose markers are all set is skipped when a run resumes
   (:meth:`Store.pending <pellucid.runs.store.Store.pending>`).

:func:`run` validates its arguments, then hands ``engine="ray"`` to
``ray_engine.run_on_ray(model, data, plan, *, store, resume, progress, callbacks,
batch_size) -> Run``, which opens the store with :func:`open_store`, checks the first
batch with :func:`check_chunk`, asks ``Store.pending`` what is left, runs
:func:`explain_batch` on workers and ``Store.write`` on the driver.

Failure policy (``on_error``): ``"skip"`` retries a (method, batch) that raised sample by
sample; the samples that still fail get NaN attributions and scores, and their error
(type and message) is recorded in the store (``Run.failures``). Errors that concern the
call rather than a sample, :class:`~pellucid.errors.PellucidError` whose ``argument`` is
not ``"model"`` or ``"inputs"`` (a wrong target, a metric that needs masks), always
raise. ``"raise"`` stops at the first error.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..checks import check_bool, check_choice, check_model
from ..errors import ArgumentError, ArgumentTypeError, PellucidError
from ..explanation import Explanation
from ..method import Method
from ..metrics.base import Metric, distinct_labels
from ..metrics.evaluate import MetricSpec, chosen_metrics, evaluate
from ..metrics.harness import resolve_methods
from ..task import per_sample
from .accumulate import Moments
from .batches import Batch, batches, sample_count
from .results import Run
from .store import Store, model_fingerprint

__all__ = ["BatchResult", "MethodResult", "Plan", "explain_batch", "prepare", "run"]

ON_ERROR = ("skip", "raise")
DTYPES = ("float16", "float32")
ENGINES = ("local", "ray")
#: the arguments of a PellucidError that concern one sample (skipped), not the call
SAMPLE_ARGUMENTS = ("model", "inputs")
#: ``callback(method label, batch, explanation, {metric label: scores (B,)})``
Callback = Callable[[str, Batch, Explanation, dict[str, Tensor]], Any]


@dataclasses.dataclass(frozen=True)
class Plan:
    """A validated run: methods and metrics by label, the target, the shared model
    arguments, the failure policy and the attribution dtype."""

    methods: dict[str, Method]
    metrics: dict[str, Metric]
    target: Any = None
    model_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    on_error: str = "skip"
    dtype: str = "float16"

    def settings(self, model: nn.Module) -> dict[str, Any]:
        """What a store's fingerprint hashes: methods, metrics, target, dtype, model."""
        return {
            "methods": {k: [m.name, m.settings()] for k, m in self.methods.items()},
            "metrics": {k: [m.name, m.settings()] for k, m in self.metrics.items()},
            "target": self.target, "dtype": self.dtype, "model": model_fingerprint(model),
            "model_kwargs": self.model_kwargs,
        }


@dataclasses.dataclass
class MethodResult:
    """One method on one batch: attributions (B, …) in the plan's dtype, per-sample scores
    and curves by metric label, the error of each sample (``""`` where none), seconds."""

    attribution: np.ndarray
    scores: dict[str, np.ndarray]
    curves: dict[str, tuple[np.ndarray, np.ndarray]]
    errors: np.ndarray
    seconds: float


@dataclasses.dataclass
class BatchResult:
    """One batch's results (NumPy only, picklable): positions, labels, explained targets
    (−1 for a target callable, or where no method succeeded), model outputs (NaN where no
    method succeeded; None when none did for any sample) and a :class:`MethodResult` per
    method label."""

    number: int
    index: np.ndarray
    labels: np.ndarray | None
    targets: np.ndarray
    outputs: np.ndarray | None
    methods: dict[str, MethodResult]


def prepare(
    methods: Sequence[str | Method] | str | Method,
    metrics: Sequence[MetricSpec] | MetricSpec = (),
    *,
    target: Any = None,
    method_settings: Mapping[str, Mapping[str, Any]] | None = None,
    metric_settings: Mapping[str, Any] | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    on_error: str = "skip",
    dtype: str = "float16",
) -> Plan:
    """Validate a run's arguments once (see :func:`run`) and return its :class:`Plan`.

    Example:
        >>> plan = prepare(["gradient", "integrated_gradients"], ["complexity.sparseness"],
        ...                method_settings={"integrated_gradients": {"steps": 8}})
        >>> list(plan.methods), plan.methods["integrated_gradients"].steps
        (['gradient', 'integrated_gradients'], 8)
    """
    chosen = resolve_methods(methods, method_settings, 0)
    if metric_settings is not None and not isinstance(metric_settings, Mapping):
        raise ArgumentTypeError(
            "metric_settings", f"metric_settings must be a dict {{setting: value}} given to every "
            f"metric that has the setting, got {metric_settings!r}",
        )
    measured = [] if isinstance(metrics, (list, tuple)) and not metrics else \
        chosen_metrics(metrics, dict(metric_settings or {}))
    if not measured and metric_settings:
        raise ArgumentError("metric_settings", "metric_settings are given but metrics is empty; "
                            "name the metrics they configure")
    _check_target(target)
    if model_kwargs is not None and not isinstance(model_kwargs, Mapping):
        raise ArgumentTypeError("model_kwargs",
                                f"model_kwargs must be a dict, got {model_kwargs!r}")
    return Plan(
        methods=dict(zip(distinct_labels(chosen, "methods"), chosen, strict=True)),
        metrics=dict(zip(distinct_labels(measured, "metrics"), measured, strict=True)),
        target=target, model_kwargs=dict(model_kwargs or {}),
        on_error=check_choice(on_error, "on_error", ON_ERROR,
                              "skip and record failing samples, or stop at the first error"),
        dtype=check_choice(dtype, "dtype", DTYPES, "the dtype of the stored attributions"),
    )


def _check_target(target: Any) -> None:
    if target is None or target == "labels" or (callable(target) and not isinstance(target, type)):
        return
    if isinstance(target, int) and not isinstance(target, bool) and target >= 0:
        return
    raise ArgumentError(
        "target", f"target must be None (the predicted class), 'labels' (the data's labels), "
        f"a class index ≥ 0 or a callable (output -> one score per sample), got {target!r}; "
        "per-sample classes come from the data's labels with target='labels'",
    )


def explain_batch(
    model: nn.Module, batch: Batch, plan: Plan, callbacks: Sequence[Callback] = ()
) -> BatchResult:
    """Explain ``batch`` once with each method of ``plan`` and score every explanation
    with each metric; ``callbacks`` see each (method, explanation, scores).

    Example:
        >>> import torch
        >>> from pellucid.runs import Batch
        >>> model = torch.nn.Linear(3, 2).eval()
        >>> batch = Batch(torch.arange(4), torch.randn(4, 3))
        >>> result = explain_batch(model, batch, prepare(["gradient"], dtype="float32"))
        >>> result.methods["gradient"].attribution.shape, result.targets.shape
        ((4, 3), (4,))
    """
    target = _batch_target(plan.target, batch)
    methods: dict[str, MethodResult] = {}
    outputs: np.ndarray | None = None
    targets = np.full(len(batch), -1, dtype=np.int64)
    found = np.zeros(len(batch), dtype=bool)
    for label, method in plan.methods.items():
        start = time.perf_counter()
        explanation, scores, errors = _explained(model, batch, method, plan, target)
        part = _result(explanation, scores, errors, plan.dtype, time.perf_counter() - start)
        methods[label] = part
        new = ~found & (part.errors == "")
        if new.any():
            if outputs is None:
                outputs = np.full(explanation.output.shape, np.nan, dtype=np.float32)
            outputs[new] = explanation.output.detach().float().cpu().numpy()[new]
            targets[new] = explanation.target.cpu().numpy()[new]
            found |= new
        for callback in callbacks:
            callback(label, batch, explanation,
                     {k: torch.from_numpy(v) for k, v in part.scores.items()})
    labels = None if batch.labels is None else batch.labels.cpu().numpy().astype(np.int64)
    return BatchResult(batch.number, batch.index.cpu().numpy().astype(np.int64), labels,
                       targets, outputs, methods)


def _batch_target(spec: Any, batch: Batch) -> Any:
    if isinstance(spec, str):  # "labels"
        if batch.labels is None:
            raise ArgumentError(
                "target", f"target='labels' explains the data's labels, but batch {batch.number} "
                "of data has none; give (inputs, labels) batches or another target",
            )
        return batch.labels
    return spec


def _explained(
    model: nn.Module, batch: Batch, method: Method, plan: Plan, target: Any
) -> tuple[Explanation, dict[str, Any], list[str]]:
    """The explanation and metric results of ``method`` on ``batch``; under ``skip``, a
    batch that raises is redone sample by sample and the failing samples get NaN."""
    try:
        return (*_unit(model, batch, method, plan, target), [""] * len(batch))
    except Exception as error:
        if plan.on_error == "raise" or _concerns_call(error):
            raise
    parts, errors = [], []
    for i in range(len(batch)):
        one = batch.rows(slice(i, i + 1))
        part_target = target[i:i + 1] if isinstance(target, Tensor) else target
        try:
            parts.append(_unit(model, one, method, plan, part_target))
            errors.append("")
        except Exception as error:
            if _concerns_call(error):
                raise
            parts.append(None)
            errors.append(f"{type(error).__name__}: {error}")
    return (*_joined(parts, batch, method), errors)


def _concerns_call(error: Exception) -> bool:
    return isinstance(error, PellucidError) and error.argument not in SAMPLE_ARGUMENTS


def _unit(
    model: nn.Module, batch: Batch, method: Method, plan: Plan, target: Any
) -> tuple[Explanation, dict[str, Any]]:
    """One method's explanation of a batch and every metric's result on it."""
    kwargs = {**plan.model_kwargs, **{k: per_sample(v) for k, v in batch.model_kwargs.items()}}
    explanation = method(model, batch.inputs, target, model_kwargs=kwargs)
    if not plan.metrics:
        return explanation, {}
    results = evaluate(model, batch.inputs, target, explanation, list(plan.metrics.values()),
                       batch.masks, model_kwargs=kwargs)
    return explanation, dict(zip(plan.metrics, results.values(), strict=True))


def _joined(
    parts: list[tuple[Explanation, dict[str, Any]] | None], batch: Batch, method: Method
) -> tuple[Explanation, dict[str, Any]]:
    """Per-sample results joined into one batch's, NaN (and target −1) where one failed."""
    done = [p for p in parts if p is not None]
    if not done:  # no sample went through: shapes from the inputs, the output unknown
        nan = torch.full(batch.inputs.shape, float("nan"))
        explanation = Explanation(nan, torch.zeros(len(batch), 0), torch.full((len(batch),), -1),
                                  method.name, method.settings())
        return explanation, {}

    def stack(get: Callable[[Any], Tensor | None]) -> Tensor | None:
        first = get(done[0])
        if first is None:
            return None
        rows = [get(p) if p is not None else torch.full_like(first, float("nan"))
                for p in parts]
        return torch.cat(rows)

    attribution = stack(lambda p: p[0].attribution)
    output = stack(lambda p: p[0].output)
    target = torch.cat([p[0].target if p is not None else torch.full((1,), -1, device=output.device)
                        for p in parts])
    explanation = Explanation(attribution, output, target, method.name, method.settings())
    results = {}
    for label in done[0][1]:
        first = done[0][1][label]
        results[label] = dataclasses.replace(
            first, scores=stack(lambda p, k=label: p[1][k].scores),
            curves=stack(lambda p, k=label: p[1][k].curves),
        )
    return explanation, results


def _result(explanation: Explanation, results: dict[str, Any], errors: list[str], dtype: str,
            seconds: float) -> MethodResult:
    attribution = explanation.attribution.detach().float().cpu().numpy()
    with np.errstate(over="ignore"):  # overflow is checked next
        stored = attribution.astype(dtype)
    if dtype == "float16" and bool((np.isinf(stored) & np.isfinite(attribution)).any()):
        raise ArgumentError(
            "dtype", f"{explanation.method}'s attributions reach "
            f"{float(np.nanmax(np.abs(attribution))):.3g}, beyond float16 (±65504); pass "
            "dtype='float32'",
        )
    scores = {k: r.scores.double().numpy() for k, r in results.items()}
    curves = {k: (r.x_axis.double().numpy(), r.curves.float().numpy())
              for k, r in results.items() if r.curves is not None and r.x_axis is not None}
    return MethodResult(stored, scores, curves, np.array(errors, dtype=str), seconds)


def run(
    model: nn.Module,
    data: Any,
    methods: Sequence[str | Method] | str | Method,
    *,
    metrics: Sequence[MetricSpec] | MetricSpec = (),
    store: Any = None,
    target: Any = None,
    method_settings: Mapping[str, Mapping[str, Any]] | None = None,
    metric_settings: Mapping[str, Any] | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    resume: bool = True,
    progress: bool = True,
    on_error: str = "skip",
    dtype: str = "float16",
    callbacks: Sequence[Callback] = (),
    engine: str = "local",
    batch_size: int | None = None,
    engine_settings: Mapping[str, Any] | None = None,
) -> Run:
    """Explain every sample of ``data`` with each method, score it with each metric, and
    keep everything in a store (on disk with ``store=path``, else in memory).

    Args:
        data: a DataLoader or any iterable of batches (tuples ``(x,)``, ``(x, y)``,
            ``(x, y, masks)`` or dicts), a ``Dataset``, tensors, or an ImageSet/TokenSet
            (see :func:`pellucid.runs.batches`); token ids work as in ``explain``.
        methods: names or Method objects (``"random"`` too), with ``method_settings``
            ``{name: settings}``.
        metrics: metric names or objects; ``metric_settings`` go to every metric that has
            the setting, as ``evaluate(**settings)``.
        store: a folder for the zarr store, or None (in memory).
        target: None (the predicted class), ``"labels"`` (the data's), a class index, or a
            callable as in :func:`pellucid.explain`.
        model_kwargs: model arguments shared by every batch (per-sample ones come from
            dict batches, e.g. ``attention_mask``).
        resume: continue a store of the same fingerprint (complete batches are skipped);
            False overwrites it.
        on_error: ``"skip"`` (retry per sample, record failures, NaN) or ``"raise"``.
        dtype: ``"float16"`` or ``"float32"`` for the stored attributions.
        callbacks: ``callback(method label, batch, explanation, scores)`` per method and batch.
        engine: ``"local"`` or ``"ray"`` (:mod:`pellucid.runs.ray_engine`, extra ``ray``).
        batch_size: samples per batch for tensors, tuples, dicts and Datasets (default 64).
        engine_settings: settings of the engine, e.g. ``{"concurrency": 4, "num_gpus": 1}``
            for ``engine="ray"`` (see :func:`pellucid.runs.ray_engine.run_on_ray`); none
            for the local engine.

    Example:
        >>> import torch
        >>> from pellucid.runs import run
        >>> model = torch.nn.Linear(4, 3).eval()
        >>> x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
        >>> r = run(model, (x, y), ["gradient"], metrics=["complexity.sparseness"],
        ...         target="labels", batch_size=4, progress=False)
        >>> r.attribution("gradient").shape, r.scores("gradient")["complexity.sparseness"].shape
        (torch.Size([10, 4]), torch.Size([10]))
    """
    check_model(model)
    plan = prepare(methods, metrics, target=target, method_settings=method_settings,
                   metric_settings=metric_settings, model_kwargs=model_kwargs,
                   on_error=on_error, dtype=dtype)
    check_bool(resume, "resume")
    check_bool(progress, "progress")
    check_choice(engine, "engine", ENGINES, "where the batches are explained")
    callbacks = _checked_callbacks(callbacks)
    engine_settings = _checked_engine_settings(engine, engine_settings)
    if engine == "ray":
        try:
            from .ray_engine import run_on_ray
        except ImportError as error:
            raise ArgumentError(
                "engine", f"engine='ray' is not available ({error}); install "
                "'pellucid[ray]', or use engine='local'",
            ) from None
        return run_on_ray(model, data, plan, store=store, resume=resume, progress=progress,
                          callbacks=callbacks, batch_size=batch_size, **engine_settings)
    written = open_store(model, plan, store, resume)
    bars = _Bars(list(plan.methods), progress, sample_count(data))
    empty = True
    try:
        for batch in batches(data, batch_size):
            empty = False
            check_chunk(written, batch)
            stop = int(batch.index[-1]) + 1
            left = written.pending(batch.number, stop, list(plan.methods))
            if left:
                todo = dataclasses.replace(plan, methods={k: plan.methods[k] for k in left})
                result = explain_batch(model, batch, todo, callbacks)
                written.write(result)
                bars.update(result, len(batch))
            else:
                bars.update(None, len(batch))
    finally:
        bars.close()
    if empty:
        raise ArgumentError("data", "data is empty (no batch); give at least one sample")
    return Run(written)


#: the settings each engine takes (``engine_settings=``)
ENGINE_SETTINGS = {"local": (), "ray": ("concurrency", "num_gpus")}


def _checked_engine_settings(engine: str, given: Any) -> dict[str, Any]:
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise ArgumentTypeError(
            "engine_settings", f"engine_settings must be a dict, got {type(given).__name__}; "
            "e.g. engine_settings={'concurrency': 4}",
        )
    unknown = sorted(set(given) - set(ENGINE_SETTINGS[engine]))
    if unknown:
        raise ArgumentError(
            "engine_settings", f"engine={engine!r} takes no setting {unknown}; its settings "
            f"are {list(ENGINE_SETTINGS[engine]) or 'none'}",
        )
    return dict(given)


def open_store(model: nn.Module, plan: Plan, store: Any, resume: bool) -> Store:
    """The store of a run with ``plan`` (created, or resumed when the fingerprint matches)."""
    directions = {k: m.direction for k, m in plan.metrics.items()}
    return Store.create(store, plan.settings(model), list(plan.methods), directions, resume)


def check_chunk(store: Store, batch: Batch) -> None:
    """Record the first batch's size as the store's chunk size, or check that a resumed
    store's first batch had as many samples as this one."""
    if batch.number != 0:
        return
    chunk = store.group.attrs.get("chunk")
    if chunk is None:
        store.set_chunk(len(batch))
    elif chunk != len(batch):
        raise ArgumentError(
            "data", f"the store's batches have {chunk} samples, this data's first batch "
            f"{len(batch)}; resume with the same batch size (batch_size={chunk}), or "
            "resume=False",
        )


def _checked_callbacks(callbacks: Any) -> list[Callback]:
    items = [callbacks] if callable(callbacks) else list(callbacks)
    for item in items:
        if not callable(item):
            raise ArgumentTypeError(
                "callbacks", f"callbacks must be callables (method, batch, explanation, "
                f"scores), got {item!r}",
            )
    return items


class _Bars:
    """A tqdm bar per method with ETA; the postfix shows the running mean of its first
    metric (a streaming :class:`Moments`)."""

    def __init__(self, methods: list[str], progress: bool, total: int | None) -> None:
        self.bars: dict[str, Any] = {}
        self.moments = {m: Moments() for m in methods}
        if progress:
            from tqdm.auto import tqdm

            self.bars = {m: tqdm(desc=m, total=total, unit="sample", position=i, leave=True)
                         for i, m in enumerate(methods)}

    def update(self, result: BatchResult | None, n: int) -> None:
        for label, bar in self.bars.items():
            part = None if result is None else result.methods.get(label)
            if part is not None and part.scores:
                metric, scores = next(iter(part.scores.items()))
                moments = self.moments[label].update(scores)
                bar.set_postfix_str(f"{metric} {moments.valid_mean:.4g}", refresh=False)
            bar.update(n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
