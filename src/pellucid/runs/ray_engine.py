"""The Ray engine of :func:`pellucid.runs.run` (``engine="ray"``, extra ``ray``).

The same contract as the local loop (see :mod:`pellucid.runs.runner`): the driver reads
the data with :func:`~pellucid.runs.batches` and asks the store what is left
(:meth:`Store.pending <pellucid.runs.store.Store.pending>`); each pending batch becomes
one Ray Data block in the object store (one row: its number and the pickled ``Batch``,
put as soon as it is read, so the driver holds one batch at a time); ``map_batches``
runs :func:`~pellucid.runs.explain_batch` on an actor pool whose actors each hold the
model once (shipped through the object store with ``ray.put``, moved to the actor's GPU
when Ray gives it one); the driver, the single writer, writes each result with
``Store.write`` in the order of the batches, updates the progress bars and calls the
callbacks. The store equals the local engine's, array for array (on the same device).

Throughput model (docs/runs.md): with N actors of rate r samples/s each and a driver
that writes W bytes/s, b bytes per sample, a run goes at min(N·r, W/b) samples/s.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections import deque
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..checks import check_bool, check_count, check_finite_number
from ..errors import ArgumentError
from .batches import Batch, batches, sample_count
from .results import Run
from .runner import (
    Callback,
    Plan,
    _Bars,
    _checked_callbacks,
    check_chunk,
    explain_batch,
    open_store,
)

__all__ = ["expected_throughput", "run_on_ray"]


def expected_throughput(
    actors: int, rate: float, bandwidth: float, bytes_per_sample: float
) -> float:
    """Samples per second of a Ray run: ``min(actors · rate, bandwidth / bytes_per_sample)``,
    the actors' explaining rate or the driver's writing rate, whichever is smaller.

    ``rate``: samples/s of one actor for the run's methods and metrics; ``bandwidth``:
    bytes/s the driver writes to the store; ``bytes_per_sample``: what one sample adds to
    the store (attributions, scores, curves, outputs).

    Example:
        >>> expected_throughput(4, 50.0, 2e8, 1e5)   # 4 actors at 50/s; the writer takes 2000/s
        200.0
        >>> expected_throughput(64, 50.0, 2e8, 1e5)  # 64 actors: the writer bounds it
        2000.0
    """
    actors = check_count(actors, "actors", "explaining actors")
    rate = check_finite_number(rate, "rate", 0.0, inclusive=False, meaning="samples/s per actor")
    bandwidth = check_finite_number(bandwidth, "bandwidth", 0.0, inclusive=False,
                                    meaning="bytes/s the driver writes")
    size = check_finite_number(bytes_per_sample, "bytes_per_sample", 0.0, inclusive=False,
                               meaning="bytes one sample adds to the store")
    return min(actors * rate, bandwidth / size)


def _ray() -> Any:
    """ray (with Ray Data), or an error naming ``engine`` and the extra to install."""
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise ArgumentError(
            "engine", f"engine='ray' needs Ray with Ray Data ({error}); pip install "
            "'pellucid[ray]', or use engine='local'",
        ) from None
    return ray


def run_on_ray(
    model: nn.Module,
    data: Any,
    plan: Plan,
    *,
    store: Any = None,
    resume: bool = True,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
    batch_size: int | None = None,
    concurrency: int | None = None,
    num_gpus: float | None = None,
) -> Run:
    """Run ``plan`` over ``data`` on a Ray actor pool and write the store on the driver
    (what :func:`pellucid.runs.run` does with ``engine="ray"``).

    A Ray instance already started (``ray.init(address=...)``) is used; else ``ray.init()``
    connects to ``RAY_ADDRESS`` when it is set, or starts a local instance with every CPU.
    ``concurrency``: actors (default: the cluster's available GPUs / ``num_gpus`` when
    actors take GPUs, else its available CPUs); ``num_gpus``: GPUs per actor (default 1
    where the cluster has GPUs, else 0). Each actor explains whole batches, the same ones
    as the local engine, so the stores are equal; results are written in batch order.

    Example (starts Ray, so it is not run by the doctests; tests/test_runs_ray.py runs it):
        >>> from pellucid.runs import run
        >>> r = run(model, (images, labels), ["gradient"], store="store",
        ...         engine="ray", progress=False)  # doctest: +SKIP
    """
    ray = _ray()
    if concurrency is not None:
        concurrency = check_count(concurrency, "concurrency", "Ray actors explaining batches")
    if num_gpus is not None:
        num_gpus = check_finite_number(num_gpus, "num_gpus", 0.0, meaning="GPUs per actor")
    check_bool(resume, "resume")
    check_bool(progress, "progress")
    callbacks = _checked_callbacks(callbacks)
    if not ray.is_initialized():
        ray.init()
    try:
        shipped = ray.put(model)  # once; every actor fetches it from the object store
    except Exception as error:
        raise ArgumentError(
            "model", f"engine='ray' ships the model to its actors by pickling it, which "
            f"failed ({type(error).__name__}: {error}); make the model picklable, or use "
            "engine='local'",
        ) from None
    written = open_store(model, plan, store, resume)
    bars = _Bars(list(plan.methods), progress, sample_count(data))
    try:
        blocks = _pending_blocks(ray, data, batch_size, written, plan, bars)
        if blocks:
            gpus = _gpus(ray, num_gpus)
            actors = min(concurrency or _default_actors(ray, gpus), len(blocks))
            _explain_and_write(ray, blocks, shipped, plan, written, bars, callbacks, actors, gpus)
    finally:
        bars.close()
    return Run(written)


def _pending_blocks(ray: Any, data: Any, batch_size: int | None, written: Any, plan: Plan,
                    bars: _Bars) -> dict[int, Any]:
    """One object-store block per batch with a method left, by batch number: a row of its
    number and the pickled (batch, methods left). Complete batches only move the bars."""
    import pyarrow as pa

    blocks = {}
    empty = True
    for batch in batches(data, batch_size):
        empty = False
        check_chunk(written, batch)
        left = written.pending(batch.number, int(batch.index[-1]) + 1, list(plan.methods))
        if not left:
            bars.update(None, len(batch))
            continue
        payload = pickle.dumps((batch, left), protocol=pickle.HIGHEST_PROTOCOL)
        blocks[batch.number] = ray.put(pa.table({"number": [batch.number],
                                                 "payload": [payload]}))
    if empty:
        raise ArgumentError("data", "data is empty (no batch); give at least one sample")
    return blocks


def _gpus(ray: Any, num_gpus: float | None) -> float:
    if num_gpus is not None:
        return num_gpus
    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def _default_actors(ray: Any, gpus: float) -> int:
    """The actors that the cluster's free GPUs (or CPUs, for CPU actors) hold now."""
    resources = ray.available_resources()
    if gpus > 0:
        return max(1, int(resources.get("GPU", 0) // gpus))
    return max(1, int(resources.get("CPU", 1)))


def _explain_and_write(ray: Any, blocks: dict[int, Any], shipped: Any, plan: Plan,
                       written: Any, bars: _Bars, callbacks: Sequence[Callback], actors: int,
                       gpus: float) -> None:
    """map_batches on the actor pool; the driver writes each result in batch order."""
    context = ray.data.DataContext.get_current()
    ordered = context.execution_options.preserve_order
    context.execution_options.preserve_order = True  # the dataset copies the context
    try:
        dataset = ray.data.from_arrow_refs(list(blocks.values())).map_batches(
            _Explainer, batch_size=1, batch_format="pyarrow", concurrency=actors,
            num_cpus=0 if gpus > 0 else 1, num_gpus=gpus,
            fn_constructor_kwargs={"model": [shipped], "plan": plan, "record": bool(callbacks)},
        )
    finally:
        context.execution_options.preserve_order = ordered
    order = deque(blocks)
    blocks.clear()  # the dataset holds the references now
    waiting: dict[int, bytes] = {}
    for row in dataset.iter_rows():  # in order; a batch that came early would wait here
        waiting[int(row["number"])] = row["payload"]
        while order and order[0] in waiting:
            _written(pickle.loads(waiting.pop(order.popleft())), written, bars, callbacks)


def _written(outcome: Any, written: Any, bars: _Bars, callbacks: Sequence[Callback]) -> None:
    """Write one batch's result, move the bars, call the callbacks; or raise its error."""
    if isinstance(outcome, BaseException):
        raise outcome
    result, batch, records = outcome
    written.write(result)
    bars.update(result, len(result.index))
    for label, explanation, scores in records:
        for callback in callbacks:
            callback(label, batch, explanation, scores)


class _Explainer:
    """A Ray Data actor: holds the model once (from the object store, on the actor's GPU
    when it has one) and explains one pickled batch per call with :func:`explain_batch`.

    It returns the pickled ``(BatchResult, batch, records)``, ``records`` being the
    (method, explanation, scores) the driver's callbacks will see (empty without
    callbacks), or the exception the batch raised, re-raised by the driver as it is."""

    def __init__(self, model: list[Any], plan: Plan, record: bool) -> None:
        import ray

        self.device = torch.device("cuda") if ray.get_gpu_ids() else torch.device("cpu")
        self.model = ray.get(model[0]).to(self.device)
        self.plan = _moved(plan, self.device)
        self.record = record

    def __call__(self, rows: Any) -> Any:
        import pyarrow as pa
        from ray import cloudpickle

        number = rows.column("number")[0].as_py()
        batch, left = pickle.loads(rows.column("payload")[0].as_py())
        records: list[tuple[str, Any, dict[str, Tensor]]] = []

        def keep(label: str, _: Batch, explanation: Any, scores: dict[str, Tensor]) -> None:
            records.append((label, _cpu(explanation), scores))

        todo = dataclasses.replace(self.plan, methods={k: self.plan.methods[k] for k in left})
        try:
            result = explain_batch(self.model, _on(batch, self.device), todo,
                                   [keep] if self.record else [])
            payload = cloudpickle.dumps((result, batch if self.record else None, records))
        except Exception as error:  # re-raised on the driver, after the earlier batches
            payload = cloudpickle.dumps(_portable(error))
        return pa.table({"number": [number], "payload": [payload]})


def _portable(error: Exception) -> Exception:
    """``error`` in a form that unpickles on the driver (pellucid's errors pickle with their
    ``argument``); anything that does not pickle becomes a RuntimeError with its type and
    message."""
    from ray import cloudpickle

    try:
        cloudpickle.loads(cloudpickle.dumps(error))
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error


def _on(batch: Batch, device: torch.device) -> Batch:
    if device.type == "cpu":
        return batch

    def move(t: Tensor | None) -> Tensor | None:
        return None if t is None else t.to(device)

    return dataclasses.replace(
        batch, inputs=move(batch.inputs), labels=move(batch.labels), masks=move(batch.masks),
        model_kwargs={k: v.to(device) for k, v in batch.model_kwargs.items()},
    )


def _moved(plan: Plan, device: torch.device) -> Plan:
    if device.type == "cpu":
        return plan
    shared = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in plan.model_kwargs.items()}
    return dataclasses.replace(plan, model_kwargs=shared)


def _cpu(explanation: Any) -> Any:
    """The explanation with its tensors on the CPU (what the driver's callbacks get)."""
    fields = {f.name: getattr(explanation, f.name) for f in dataclasses.fields(explanation)}
    def cpu(value: Any) -> Any:
        if isinstance(value, Tensor):
            return value.detach().cpu()
        return {k: cpu(v) for k, v in value.items()} if isinstance(value, dict) else value

    return dataclasses.replace(explanation, **{k: cpu(v) for k, v in fields.items()})

