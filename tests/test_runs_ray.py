"""The Ray engine: a local Ray instance with 2 CPUs writes the same store as the local
engine, array for array; resume, failures, callbacks and errors behave the same."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("zarr")
pytest.importorskip("ray")

import ray

from pellucid.errors import ArgumentError, PellucidError
from pellucid.runs import Run, prepare, run
from pellucid.runs.ray_engine import expected_throughput, run_on_ray
from pellucid.runs.store import Store
from tests.helpers.runs_models import FragileCNN, TinyCNN

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["gradient", "integrated_gradients"]
METRICS = ["complexity.sparseness", "faithfulness.deletion"]
SETTINGS = {"integrated_gradients": {"steps": 8}}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray with 2 CPUs for the module; its workers find ``tests.helpers`` (the
    models' module) through PYTHONPATH, and ``pellucid`` as the installed package."""
    started = not ray.is_initialized()
    if started:
        path = ":".join(p for p in (str(ROOT), str(ROOT / "src")) if p)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield
    if started:
        ray.shutdown()


def images(n: int = 64, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 8, 8, generator=generator), torch.randint(0, 3, (n,),
                                                                      generator=generator)


def all_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of a store but the timings (``seconds``), by name."""
    group = Store.open(path).group
    return {name: np.asarray(array[:]) for name, array in group.members(max_depth=None)
            if hasattr(array, "shape") and not name.endswith("seconds")}


def assert_same_store(got: Path, expected: Path) -> None:
    a, b = all_arrays(got), all_arrays(expected)
    assert sorted(a) == sorted(b) and len(a) >= 14, sorted(a)
    for name in b:
        assert a[name].dtype == b[name].dtype, name
        np.testing.assert_array_equal(a[name], b[name], err_msg=name, strict=True)
    attrs_a, attrs_b = Store.open(got).attrs, Store.open(expected).attrs
    assert attrs_a == attrs_b


def job(model, x, y, store, engine, **kwargs):
    return run(model, (x, y), METHODS, metrics=METRICS, method_settings=SETTINGS,
               target="labels", store=store, batch_size=16, progress=False, engine=engine,
               **kwargs)


def test_the_ray_store_equals_the_local_store_exactly(tmp_path):
    model, (x, y) = TinyCNN().eval(), images()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = {"local": [], "ray": []}

    def recorder(engine):
        def callback(method, batch, explanation, scores):
            seen[engine].append((method, batch.number, batch.index.tolist(),
                                 explanation.attribution.clone(),
                                 {k: v.clone() for k, v in scores.items()}))
        return [callback]

    job(model, x, y, tmp_path / "local", "local", callbacks=recorder("local"))
    on_ray = job(model, x, y, tmp_path / "ray", "ray", callbacks=recorder("ray"))
    assert_same_store(tmp_path / "ray", tmp_path / "local")
    assert len(on_ray) == 64 and on_ray.failures == []
    # the driver's callbacks see every (method, batch) once, in the batches' order
    assert [s[:3] for s in seen["ray"]] == [s[:3] for s in seen["local"]]
    assert [(m, n) for m, n, *_ in seen["ray"]] == [(m, n) for n in range(4) for m in METHODS]
    for (*_, a, scores_a), (*_, b, scores_b) in zip(seen["ray"], seen["local"], strict=True):
        assert torch.equal(a, b) and scores_a.keys() == scores_b.keys()
        assert all(torch.equal(scores_a[k], scores_b[k]) for k in scores_a)
    # the closed form of the gradient of a linear head is checked by test_runs; here the
    # stored gradient equals autograd's on the driver
    z = x[:16].clone().requires_grad_(True)
    model(z).gather(1, y[:16, None]).sum().backward()
    stored = Run.open(tmp_path / "ray").attribution("gradient", slice(0, 16)).float()
    torch.testing.assert_close(stored, z.grad.half().float())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_ray_resumes_a_partial_local_store(tmp_path):
    model, (x, y) = TinyCNN().eval(), images()
    job(model, x[:32], y[:32], tmp_path / "partial", "local")  # batches 0 and 1 complete
    explained = []
    plan = prepare(METHODS, METRICS, target="labels", method_settings=SETTINGS)
    resumed = run_on_ray(model, (x, y), plan, store=tmp_path / "partial", batch_size=16,
                         progress=False, concurrency=1,  # one actor: the same store
                         callbacks=[lambda m, b, e, s: explained.append((m, b.number))])
    assert explained == [(m, n) for n in (2, 3) for m in METHODS]
    job(model, x, y, tmp_path / "whole", "local")
    assert_same_store(tmp_path / "partial", tmp_path / "whole")
    assert len(resumed) == 64
    explained.clear()  # complete: nothing left for Ray
    job(model, x, y, tmp_path / "partial", "ray",
        callbacks=[lambda m, b, e, s: explained.append(m)])
    assert explained == []


def test_a_failing_sample_is_recorded_as_the_local_engine_records_it(tmp_path):
    model, (x, y) = FragileCNN().eval(), images()
    x[[3, 40, 41], 0, 0, 0] = 99.0
    job(model, x, y, tmp_path / "local", "local", dtype="float32")
    on_ray = job(model, x, y, tmp_path / "ray", "ray", dtype="float32")
    assert_same_store(tmp_path / "ray", tmp_path / "local")
    assert sorted({f.index for f in on_ray.failures}) == [3, 40, 41]
    assert {(f.error, f.message) for f in on_ray.failures} == {("RuntimeError", "marked sample")}
    assert on_ray.attribution("gradient", [3, 40, 41]).isnan().all()
    assert on_ray.targets[[3, 40, 41]].tolist() == [-1, -1, -1]
    with pytest.raises(RuntimeError, match="marked sample"):  # on_error="raise": as it was
        job(model, x, y, None, "ray", on_error="raise")


def test_errors_reach_the_driver_as_they_were_raised(tmp_path):
    model, x = TinyCNN().eval(), images(32)[0]
    with pytest.raises(ArgumentError, match="target") as error:  # class 7 of 3: the call's
        run(model, x, ["gradient"], target=7, engine="ray", progress=False, batch_size=16)
    assert error.value.argument == "target"
    plan = prepare(["gradient"])
    for bad, argument in [(dict(concurrency=0), "concurrency"), (dict(num_gpus=-1), "num_gpus"),
                          (dict(concurrency=1.5), "concurrency")]:
        with pytest.raises(PellucidError) as error:
            run_on_ray(model, x, plan, progress=False, **bad)
        assert error.value.argument == argument and argument in str(error.value)
    with pytest.raises(ArgumentError, match="data"):
        run_on_ray(model, x[:0], plan, progress=False)
    with pytest.raises(PellucidError) as error:
        run_on_ray(model, x, plan, progress=False, callbacks=[3])
    assert error.value.argument == "callbacks"
    unpicklable = TinyCNN().eval()
    unpicklable.lock = threading.Lock()  # pickling it fails: named before any work
    with pytest.raises(ArgumentError, match="picklable") as error:
        run_on_ray(unpicklable, x, plan, store=tmp_path / "never", progress=False)
    assert error.value.argument == "model" and not (tmp_path / "never").exists()


def test_a_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ArgumentError, match=r"pellucid\[ray\]") as error:
        run_on_ray(TinyCNN().eval(), images(4)[0], prepare(["gradient"]), progress=False)
    assert error.value.argument == "engine"


def test_expected_throughput_is_the_smaller_of_actors_and_writer():
    assert expected_throughput(3, 10.0, 1e6, 1e3) == 30.0  # 3 actors · 10/s < 1000/s
    assert expected_throughput(300, 10.0, 1e6, 1e3) == 1000.0  # the writer: 1e6 / 1e3
    for bad, argument in [((0, 1.0, 1.0, 1.0), "actors"), ((1, -1.0, 1.0, 1.0), "rate"),
                          ((1, 1.0, float("nan"), 1.0), "bandwidth"),
                          ((1, 1.0, 1.0, 0.0), "bytes_per_sample")]:
        with pytest.raises(PellucidError) as error:
            expected_throughput(*bad)
        assert error.value.argument == argument
