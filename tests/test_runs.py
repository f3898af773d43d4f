"""pellucid.runs: the dataset runner and its store, against closed forms."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("zarr")

from pellucid.errors import ArgumentError, ArgumentTypeError, PellucidError
from pellucid.runs import CurveMean, Moments, Run, batches, run
from pellucid.runs.batches import sample_count
from pellucid.runs.store import Store

ROOT = Path(__file__).resolve().parents[1]


def linear(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).eval()


def data(n: int = 11, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 2, 2, generator=g), torch.randint(0, 3, (n,), generator=g)


def closed_forms(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
    """f(x) = W·flatten(x) + b: ∂f_t/∂x = W_t, so IG from zero and gradient × input are x ⊙ W_t."""
    w = model[1].weight[t].detach().reshape(x.shape)
    return {"gradient": w, "saliency": w.abs(), "gradient_x_input": x * w,
            "integrated_gradients": x * w}


@pytest.mark.parametrize("dtype, tol", [("float32", 1e-6), ("float16", 2e-3)])
def test_linear_attributions_round_trip_through_the_store(tmp_path, dtype, tol):
    model = linear()
    x, y = data()
    methods = ["gradient", "saliency", "gradient_x_input", "integrated_gradients"]
    run(model, (x, y), methods, target="labels", store=tmp_path / "s", batch_size=4,
        progress=False, dtype=dtype, method_settings={"integrated_gradients": {"steps": 4}})
    r = Run.open(tmp_path / "s")
    expected = closed_forms(model, x, y)
    assert r.methods == methods and len(r) == 11
    for method in methods:
        got = r.attribution(method)
        torch.testing.assert_close(got, expected[method], atol=tol, rtol=tol)
        torch.testing.assert_close(r.attribution(method, 5), expected[method][5], atol=tol,
                                   rtol=tol)
        rows = torch.tensor([0, 7, 10])
        torch.testing.assert_close(r.attribution(method, rows), expected[method][rows],
                                   atol=tol, rtol=tol)
        c = int(y[3])
        torch.testing.assert_close(r.attribution(method, cls=c), expected[method][y == c],
                                   atol=tol, rtol=tol)
    assert torch.equal(r.targets, y) and torch.equal(r.labels, y)
    assert torch.equal(r.index, torch.arange(11))
    torch.testing.assert_close(r.outputs, model(x).detach())
    array = r.store.array("methods/gradient/attribution")
    assert array.chunks[0] == 4 and str(array.dtype) == dtype
    assert r.failures == []


def test_without_a_store_results_live_in_memory_with_the_same_api():
    model = linear()
    x = data()[0]
    r = run(model, x, ["gradient"], metrics=["complexity.sparseness"], progress=False,
            batch_size=5, dtype="float32")
    predicted = model(x).argmax(1)
    torch.testing.assert_close(r.attribution("gradient"), closed_forms(model, x, predicted)[
        "gradient"])
    assert torch.equal(r.targets, predicted) and r.store.path is None
    assert r.labels is None
    assert r.summary().rows[0]["n"] == 11


@pytest.mark.parametrize("sizes", [[1, 6, 3], [4, 4, 4, 1], [11]])
def test_moments_merge_to_the_one_shot_mean_and_std(sizes):
    values = np.random.default_rng(0).normal(3.0, 2.0, sum(sizes))
    values[[2, 9]] = np.nan
    merged = Moments()
    for part in np.split(values, np.cumsum(sizes)[:-1]):
        merged.merge(Moments().update(part))
    finite = values[~np.isnan(values)]
    assert merged.count == len(finite) and merged.nan == 2
    assert abs(merged.mean - finite.mean()) < 1e-12
    assert abs(merged.std - finite.std(ddof=1)) < 1e-12
    curves = np.random.default_rng(1).random((sum(sizes), 5))
    curves[3, 1] = np.nan
    mean = CurveMean()
    for part in np.split(curves, np.cumsum(sizes)[:-1]):
        mean.update(part)
    np.testing.assert_allclose(mean.mean, np.nanmean(curves, 0), rtol=0, atol=1e-12)


def test_summary_streams_the_stored_scores():
    model = linear()
    x, y = data(13)
    r = run(model, (x, y), ["gradient", "integrated_gradients"],
            metrics=["complexity.sparseness", "faithfulness.pixel_flipping"], target="labels",
            batch_size=3, progress=False, method_settings={"integrated_gradients": {"steps": 4}})
    table = r.summary()
    assert len(table.rows) == 4
    for row in table.rows:
        scores = r.scores(row["method"])[row["metric"]].numpy()
        assert row["n"] == 13 and row["nan"] == 0
        assert abs(row["mean"] - scores.mean()) < 1e-12
        assert abs(row["std"] - scores.std(ddof=1)) < 1e-12
    x_axis, curve = table.curves[("gradient", "faithfulness.pixel_flipping")]
    stored_x, stored = r.curves("gradient")["faithfulness.pixel_flipping"]
    assert torch.equal(x_axis, stored_x) and stored.shape == (13, len(x_axis))
    torch.testing.assert_close(curve, stored.double().mean(0))


CHILD = """
import os, signal, sys, torch
sys.path.insert(0, {tests!r})
from test_runs import linear, data
from pellucid.runs import run
from pellucid.runs import store as store_module

original = store_module.Store._mark
def mark(self, name, number, value):
    if name.endswith("integrated_gradients/done") and number == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # batch 2: gradient marked, IG written, not marked
    original(self, name, number, value)
store_module.Store._mark = mark
x, y = data(17)
run(linear(), (x, y), ["gradient", "integrated_gradients"], metrics=METRICS, target="labels",
    store={path!r}, batch_size=4, progress=False, method_settings=SETTINGS)
"""
METRICS = ["complexity.sparseness", "faithfulness.deletion"]
SETTINGS = {"integrated_gradients": {"steps": 4}}


def all_arrays(path: Path) -> dict[str, np.ndarray]:
    group = Store.open(path).group
    found = {}
    for name, array in group.arrays():
        found[name] = np.asarray(array[:])
    for name, sub in group.groups():
        for inner, array in sub.members(max_depth=None):
            if hasattr(array, "shape") and not inner.endswith("seconds"):
                found[f"{name}/{inner}"] = np.asarray(array[:])
    return found


def test_a_run_killed_by_sigkill_resumes_to_the_uninterrupted_results(tmp_path):
    path = tmp_path / "killed"
    script = CHILD.format(tests=str(ROOT / "tests"), path=str(path))
    script = f"METRICS = {METRICS!r}\nSETTINGS = {SETTINGS!r}\n" + textwrap.dedent(script)
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           timeout=300)
    assert child.returncode == -9, child.stderr
    store = Store.open(path)
    assert store.marker("methods/gradient/done", 2) == 12
    assert store.marker("methods/integrated_gradients/done", 2) == 0
    assert store.marker("methods/gradient/done", 3) == 0
    calls = []
    x, y = data(17)
    resumed = run(linear(), (x, y), ["gradient", "integrated_gradients"], metrics=METRICS,
                  target="labels", store=path, batch_size=4, progress=False,
                  method_settings=SETTINGS,
                  callbacks=[lambda m, b, e, s: calls.append((m, b.number))])
    assert calls == [("integrated_gradients", 2), ("gradient", 3), ("integrated_gradients", 3),
                     ("gradient", 4), ("integrated_gradients", 4)]
    whole = run(linear(), (x, y), ["gradient", "integrated_gradients"], metrics=METRICS,
                target="labels", store=tmp_path / "whole", batch_size=4, progress=False,
                method_settings=SETTINGS)
    got, expected = all_arrays(path), all_arrays(whole.store.path)
    assert sorted(got) == sorted(expected) and len(got) >= 12
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    assert len(resumed) == 17
    # a complete store resumes without any work
    calls.clear()
    run(linear(), (x, y), ["gradient", "integrated_gradients"], metrics=METRICS,
        target="labels", store=path, batch_size=4, progress=False, method_settings=SETTINGS,
        callbacks=[lambda m, b, e, s: calls.append(m)])
    assert calls == []


def test_a_store_with_other_settings_refuses_to_resume(tmp_path):
    x = data()[0]
    path = tmp_path / "s"
    run(linear(), x, ["integrated_gradients"], store=path, progress=False,
        method_settings={"integrated_gradients": {"steps": 4}})
    changes = [
        dict(method_settings={"integrated_gradients": {"steps": 8}}),
        dict(method_settings={"integrated_gradients": {"steps": 4}}, dtype="float32"),
        dict(method_settings={"integrated_gradients": {"steps": 4}}, target=1),
        dict(method_settings={"integrated_gradients": {"steps": 4}},
             metrics=["complexity.sparseness"]),
    ]
    for change in changes:
        with pytest.raises(ArgumentError, match="store") as error:
            run(linear(), x, ["integrated_gradients"], store=path, progress=False, **change)
        assert error.value.argument == "store"
    with pytest.raises(ArgumentError, match="store"):  # other weights
        run(linear(seed=5), x, ["integrated_gradients"], store=path, progress=False,
            method_settings={"integrated_gradients": {"steps": 4}})
    r = run(linear(), x, ["integrated_gradients"], store=path, progress=False, resume=False,
            method_settings={"integrated_gradients": {"steps": 8}})
    assert r.settings["methods"]["integrated_gradients"][1]["steps"] == 8
    with pytest.raises(ArgumentError, match="batch_size=11"):  # other batches
        run(linear(), x, ["integrated_gradients"], store=path, progress=False, batch_size=4,
            method_settings={"integrated_gradients": {"steps": 8}})


class Fragile(nn.Module):
    """A linear model that raises for any sample whose first value is 99."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = linear()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x.flatten(1)[:, 0] == 99).any()):
            raise RuntimeError("marked sample")
        return self.inner(x)


def test_on_error_skip_records_exactly_the_failing_samples(tmp_path):
    model = Fragile().eval()
    x, y = data(10)
    x[[3, 8, 9], 0, 0, 0] = 99.0  # batch 2 (samples 8, 9) fails as a whole
    r = run(model, (x, y), ["gradient", "gradient_x_input"], metrics=["complexity.sparseness"],
            target="labels", store=tmp_path / "s", batch_size=4, progress=False,
            dtype="float32")
    r = Run.open(tmp_path / "s")
    failed = sorted((f.index, f.method) for f in r.failures)
    assert failed == [(3, "gradient"), (3, "gradient_x_input"), (8, "gradient"),
                      (8, "gradient_x_input"), (9, "gradient"), (9, "gradient_x_input")]
    assert {f.error for f in r.failures} == {"RuntimeError"}
    assert all("marked sample" in f.message for f in r.failures)
    good = torch.ones(10, dtype=torch.bool)
    good[[3, 8, 9]] = False
    expected = closed_forms(model.inner, x, y)
    for method in ("gradient", "gradient_x_input"):
        attribution = r.attribution(method)
        assert attribution[~good].isnan().all()
        torch.testing.assert_close(attribution[good], expected[method][good])
        scores = r.scores(method)["complexity.sparseness"]
        assert scores[~good].isnan().all() and not scores[good].isnan().any()
    assert r.targets[[3, 8, 9]].tolist() == [-1, -1, -1] and r.outputs[[3, 8, 9]].isnan().all()
    assert len(r.outputs) == len(r.targets) == 10
    torch.testing.assert_close(r.outputs[good], model.inner(x[good]).detach())
    row = r.summary().rows[0]
    assert row["nan"] == 3 and row["n"] == 10
    with pytest.raises(RuntimeError, match="marked sample"):
        run(model, (x, y), ["gradient"], target="labels", on_error="raise", progress=False)


def test_a_method_that_fails_on_every_sample_reads_as_nan():
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("always")

    r = run(Broken().eval(), torch.randn(5, 3), ["gradient"], metrics=["complexity.sparseness"],
            progress=False, batch_size=2)
    assert r.attribution("gradient").isnan().all() and len(r.failures) == 5
    assert r.scores("gradient", [1, 2])["complexity.sparseness"].isnan().all()
    row = r.summary().rows[0]
    assert (row["n"], row["nan"]) == (5, 5) and np.isnan(row["mean"])
    assert r.targets.tolist() == [-1] * 5


def test_errors_about_the_call_raise_before_any_work():
    x, y = data()
    calls = []
    seen = [lambda m, b, e, s: calls.append(m)]
    cases = [
        (dict(methods=["gradiant"]), "methods"),
        (dict(methods=["integrated_gradients"], method_settings={"integrated_gradients":
                                                                  {"stepz": 3}}), "stepz"),
        (dict(metrics=["complexity.sparsenes"]), "metrics"),
        (dict(on_error="ignore"), "on_error"),
        (dict(dtype="float64"), "dtype"),
        (dict(target="label"), "target"),
        (dict(target=torch.tensor([0, 1])), "target"),
        (dict(engine="spark"), "engine"),
        (dict(resume="yes"), "resume"),
        (dict(metric_settings={"no_such": 1}, metrics=["complexity.sparseness"]), "no_such"),
        (dict(store=3), "store"),
        (dict(callbacks=[3]), "callbacks"),
    ]
    for change, argument in cases:
        kwargs = {"methods": ["gradient"], "progress": False, "callbacks": seen, **change}
        with pytest.raises(PellucidError) as error:
            run(linear(), (x, y), **kwargs)
        assert error.value.argument == argument, (change, error.value)
        assert argument in str(error.value)
    assert calls == []
    # a wrong class index is the call's error: raised, not skipped per sample
    with pytest.raises(ArgumentError, match="target") as error:
        run(linear(), (x, y), ["gradient"], target=7, progress=False)
    assert error.value.argument == "target"
    with pytest.raises(ArgumentError, match="target='labels'"):
        run(linear(), x, ["gradient"], target="labels", progress=False)


def test_float16_refuses_attributions_it_cannot_hold():
    model = linear()
    with torch.no_grad():
        model[1].weight.mul_(1e6)
    with pytest.raises(ArgumentError, match="float32") as error:
        run(model, data()[0] * 1e3, ["gradient_x_input"], progress=False)
    assert error.value.argument == "dtype"


def test_without_zarr_memory_runs_and_a_store_path_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "zarr", None)
    model, (x, y) = linear(), data()
    r = run(model, (x, y), ["gradient_x_input"], metrics=["complexity.sparseness"],
            target="labels", batch_size=4, progress=False, dtype="float32")
    torch.testing.assert_close(r.attribution("gradient_x_input"),
                               closed_forms(model, x, y)["gradient_x_input"])
    assert r.summary().rows[0]["n"] == 11
    with pytest.raises(ArgumentError, match=r"pellucid\[runs\]") as error:
        run(model, x, ["gradient"], store=tmp_path / "s", progress=False)
    assert error.value.argument == "store"


def test_the_memory_store_holds_what_the_zarr_store_holds(tmp_path):
    """Same arrays, dtypes, chunks and attributes in both backends, failures included."""
    fragile, (x, y) = Fragile().eval(), data(10)
    x[6, 0, 0, 0] = 99.0
    common = {"metrics": ["complexity.sparseness", "faithfulness.deletion"],
              "target": "labels", "batch_size": 4, "progress": False}
    on_disk = run(fragile, (x, y), ["gradient", "saliency"], store=tmp_path / "s", **common)
    in_memory = run(fragile, (x, y), ["gradient", "saliency"], **common)
    names = {name for name, _ in on_disk.store.group.members(max_depth=None)
             if hasattr(_, "shape")}
    assert names == {name for name, _ in in_memory.store.group.members()}
    for name in names:
        disk, memory = on_disk.store.array(name), in_memory.store.array(name)
        if name.endswith("seconds"):
            assert disk.shape == memory.shape
            continue
        assert disk.shape == memory.shape and disk.chunks == memory.chunks, name
        np.testing.assert_array_equal(np.asarray(disk[:]), np.asarray(memory[:]), err_msg=name)
        assert dict(disk.attrs) == dict(memory.attrs), name
    assert in_memory.failures == on_disk.failures and [f.index for f in on_disk.failures] == \
        [6, 6]
    assert in_memory.store.attrs == on_disk.store.attrs
    assert str(in_memory.summary()) == str(on_disk.summary())


def test_reads_from_the_memory_store_are_copies():
    r = run(linear(), data(5)[0], ["gradient"], metrics=["complexity.sparseness"],
            progress=False, batch_size=2)
    before = r.scores("gradient")["complexity.sparseness"].clone()
    r.scores("gradient")["complexity.sparseness"].fill_(7.0)
    r.attribution("gradient", slice(0, 2)).fill_(7.0)
    assert torch.equal(r.scores("gradient")["complexity.sparseness"], before)
    assert not (r.attribution("gradient") == 7.0).any()


def test_engine_ray_without_its_module_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pellucid.runs.ray_engine", None)
    with pytest.raises(ArgumentError, match="pellucid\\[ray\\]") as error:
        run(linear(), data()[0], ["gradient"], engine="ray", progress=False)
    assert error.value.argument == "engine"


def test_the_runner_holds_one_batch_at_a_time():
    """A generator of 50 batches: when a batch is explained, the earlier ones are freed."""
    model = linear()
    alive: list[weakref.ref] = []
    peak = []

    def generate():
        for i in range(50):
            x = torch.randn(2, 3, 2, 2)
            alive.append(weakref.ref(x))
            yield x, torch.tensor([i % 3, (i + 1) % 3])

    def callback(method, batch, explanation, scores):
        peak.append(sum(ref() is not None for ref in alive))

    r = run(model, generate(), ["gradient"], target="labels", progress=False,
            callbacks=[callback])
    assert len(peak) == 50 and max(peak) <= 2
    assert len(r) == 100 and torch.equal(r.index, torch.arange(100))
    assert r.store.array("index").chunks == (2,)


class TokenModel(nn.Module):
    """logits = Σ_l mask_l · E[id_l] Wᵀ: the gradient × input of token l is mask_l · E[id_l]·W_t."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(20, 5)
        self.head = nn.Linear(5, 2, bias=False)

    def forward(self, input_ids, attention_mask=None):
        e = self.embed(input_ids)
        if attention_mask is not None:
            e = e * attention_mask.unsqueeze(-1).to(e.dtype)
        return self.head(e.sum(1))


def test_token_ids_from_a_token_set(tmp_path):
    model = TokenModel().eval()
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(3, 20, (7, 6), generator=g)
    mask = torch.ones(7, 6, dtype=torch.bool)
    mask[2, 4:] = False
    tokens = types.SimpleNamespace(input_ids=ids, attention_mask=mask,
                                   labels=torch.randint(0, 2, (7,), generator=g),
                                   masks=torch.zeros(7, 6, dtype=torch.bool))
    r = run(model, tokens, ["gradient_x_input"], metrics=["faithfulness.deletion"],
            metric_settings={"fill": 0}, target="labels", batch_size=3, progress=False,
            dtype="float32", store=tmp_path / "t")
    e = model.embed.weight[ids].detach()
    w = model.head.weight[tokens.labels].detach()
    expected = (e * w[:, None, :]).sum(-1) * mask
    torch.testing.assert_close(Run.open(tmp_path / "t").attribution("gradient_x_input"),
                               expected)
    assert not r.scores("gradient_x_input")["faithfulness.deletion"].isnan().any()


def test_every_data_form_gives_the_same_batches():
    x, y = data(7)
    masks = torch.zeros(7, 2, 2)
    dataset = torch.utils.data.TensorDataset(x, y, masks)
    forms = {
        "tuple": (x, y, masks),
        "dict": {"images": x, "labels": y, "masks": masks},
        "dataset": dataset,
        "loader": torch.utils.data.DataLoader(dataset, batch_size=3),
        "list": [(x[i:i + 3], y[i:i + 3], masks[i:i + 3]) for i in (0, 3, 6)],
        "dicts": [{"inputs": x[i:i + 3], "labels": y[i:i + 3], "masks": masks[i:i + 3]}
                  for i in (0, 3, 6)],
        "image set": types.SimpleNamespace(images=x, labels=y, masks=masks),
    }
    for name, form in forms.items():
        got = list(batches(form, 3))
        assert [b.number for b in got] == [0, 1, 2], name
        assert torch.equal(torch.cat([b.index for b in got]), torch.arange(7)), name
        assert torch.equal(torch.cat([b.inputs for b in got]), x), name
        assert torch.equal(torch.cat([b.labels for b in got]), y), name
        assert torch.equal(torch.cat([b.masks for b in got]), masks), name
    counts = {name: sample_count(form) for name, form in forms.items()}
    assert counts == {**dict.fromkeys(forms, 7), "list": None, "dicts": None}
    only = list(batches(x, 4))
    assert [len(b) for b in only] == [4, 3] and only[0].labels is None
    kwargs = next(batches([{"input_ids": torch.zeros(2, 3, dtype=torch.long),
                            "attention_mask": torch.ones(2, 3)}]))
    assert set(kwargs.model_kwargs) == {"attention_mask"}


@pytest.mark.parametrize("bad, message", [
    ("text", "data must be"),
    ([(torch.zeros(2, 3), torch.zeros(3))], "labels"),
    ([{"features": torch.zeros(2, 3)}], "inputs"),
    ([(1, 2)], "tuple of tensors"),
    ([{"inputs": torch.zeros(2, 3), "note": "x"}], "model arguments"),
])
def test_bad_data_names_data(bad, message):
    with pytest.raises((ArgumentError, ArgumentTypeError), match=message) as error:
        run(linear(), bad, ["gradient"], progress=False)
    assert error.value.argument == "data"


def test_empty_data_and_bad_reads():
    with pytest.raises(ArgumentError, match="empty"):
        run(linear(), [], ["gradient"], progress=False)
    r = run(linear(), data(5)[0], ["gradient"], progress=False)
    with pytest.raises(PellucidError, match="gradiant") as error:
        r.attribution("gradiant")
    assert error.value.argument == "method"
    with pytest.raises(ArgumentError, match="index"):
        r.attribution("gradient", [0, 9])
    with pytest.raises(ArgumentError, match="cls"):
        r.attribution("gradient", 0, cls=1)
    with pytest.raises(ArgumentError, match="path"):
        Run.open("/nonexistent/store")


def test_progress_bars_one_per_method(capsys):
    run(linear(), data(7)[0], ["gradient", "saliency"], metrics=["complexity.sparseness"],
        batch_size=4)
    err = capsys.readouterr().err
    assert "gradient" in err and "saliency" in err and "complexity.sparseness" in err
    assert "7/7" in err  # the total is known: the bar has an ETA


def test_callbacks_see_each_explanation_once():
    x, y = data(7)
    seen = []

    def callback(method, batch, explanation, scores):
        seen.append((method, batch.index.tolist(), explanation.attribution.shape,
                     sorted(scores)))

    run(linear(), (x, y), ["gradient", "saliency"], metrics=["complexity.sparseness"],
        batch_size=4, progress=False, callbacks=[callback])
    assert seen == [
        ("gradient", [0, 1, 2, 3], (4, 3, 2, 2), ["complexity.sparseness"]),
        ("saliency", [0, 1, 2, 3], (4, 3, 2, 2), ["complexity.sparseness"]),
        ("gradient", [4, 5, 6], (3, 3, 2, 2), ["complexity.sparseness"]),
        ("saliency", [4, 5, 6], (3, 3, 2, 2), ["complexity.sparseness"]),
    ]


# --------------------------------------------------------------------------- benchmark


def counted(calls: list[int]):
    """The gradient method, recording the size of each batch it explains."""
    from pellucid import get_method

    class Counted(type(get_method("gradient"))):
        def attribute(self, task, x):
            calls.append(len(x))
            return super().attribute(task, x)

    return Counted()


def test_benchmark_explains_each_batch_once_for_every_metric_and_streams_n():
    from pellucid import benchmark

    model, (x, y) = linear(), data(11)
    calls: list[int] = []
    read: list[int] = []

    def stream():
        for start in range(0, 11, 3):
            read.append(start)
            yield x[start:start + 3], y[start:start + 3]

    metrics = ["complexity.sparseness", "faithfulness.deletion", "complexity.entropy"]
    table = benchmark(model, stream(), [counted(calls)], metrics, n=7, progress=False)
    assert calls == [3, 3, 1]  # one explanation per batch for 3 metrics; the last batch cut
    assert read == [0, 3, 6]  # no batch after the 7th sample is read
    stored = run(model, (x[:7], y[:7]), ["gradient"], metrics=metrics, target="labels",
                 batch_size=3, progress=False, dtype="float32")
    for metric in metrics:
        scores = stored.scores("gradient")[metric]
        torch.testing.assert_close(table.scores[("gradient", metric)], scores)
        row = next(r for r in table.rows if r["metric"] == metric)
        assert row["n"] == 7 and abs(row["mean"] - float(scores.mean())) < 1e-12
        assert abs(row["std"] - float(scores.std())) < 1e-12
    _, curve = table.curves[("gradient", "faithfulness.deletion")]
    torch.testing.assert_close(curve, stored.curves("gradient")["faithfulness.deletion"][1]
                               .double().mean(0))
    assert len(benchmark(model, x, ["gradient"], ["complexity.sparseness"], n=None,
                         batch_size=4, progress=False).scores[("gradient",
                                                               "complexity.sparseness")]) == 11


def test_benchmark_targets_and_masks_given_beside_the_data():
    from pellucid import benchmark
    from pellucid.metrics import evaluate

    model, (x, y) = linear(), data(9)
    other = (y + 1) % 3
    masks = torch.rand(9, 2, 2, generator=torch.Generator().manual_seed(3)) > 0.5
    masks[:, 0, 0] = True  # no empty mask
    metric = "localisation.relevance_mass"
    table = benchmark(model, (x, y), ["gradient"], [metric], n=None, target=other, masks=masks,
                      batch_size=4, progress=False)
    want = evaluate(model, x, other, "gradient", metric, masks)[metric].scores.double()
    torch.testing.assert_close(table.scores[("gradient", metric)], want, equal_nan=True)
    one = benchmark(model, x, ["gradient"], ["complexity.sparseness"], target=torch.tensor(2),
                    batch_size=4, progress=False)
    want = evaluate(model, x, 2, "gradient", "complexity.sparseness")
    torch.testing.assert_close(one.scores[("gradient", "complexity.sparseness")],
                               want["complexity.sparseness"].scores.double())
    with pytest.raises(ArgumentError, match="integer") as error:
        benchmark(model, x, ["gradient"], ["complexity.sparseness"], target=other.float(),
                  progress=False)
    assert error.value.argument == "target"
    with pytest.raises(ArgumentError, match="target") as error:
        benchmark(model, x, ["gradient"], ["complexity.sparseness"], target=other[:5],
                  batch_size=4, progress=False)
    assert error.value.argument == "target"
    batches_of_x = [(x[i:i + 4],) for i in range(0, 9, 4)]
    for wrong in (masks[:5], torch.cat([masks, masks[:1]])):  # found in a batch, at the end
        with pytest.raises(ArgumentError, match="one mask per sample") as error:
            benchmark(model, iter(batches_of_x), ["gradient"], [metric], n=None, masks=wrong,
                      progress=False)
        assert error.value.argument == "masks"
    with pytest.raises(ArgumentError, match="same parts") as error:
        benchmark(model, [(x[:4], y[:4]), (x[4:],)], ["gradient"], ["complexity.sparseness"],
                  progress=False)
    assert error.value.argument == "data"



def test_spray_of_a_stored_class_follows_the_data_sets_positions():
    # class 0's evidence sits on the first or the last half of the features: two strategies
    model = nn.Linear(16, 2, bias=False).eval()
    torch.manual_seed(0)
    first = (1 + 0.1 * torch.rand(15, 16)) * torch.cat([torch.ones(8), torch.zeros(8)])
    second = (1 + 0.1 * torch.rand(15, 16)) * torch.cat([torch.zeros(8), torch.ones(8)])
    x = torch.stack([first, second], 1).reshape(30, 16)  # interleaved: 0, 1, 0, 1, ...
    result = run(model, x, ["gradient_x_input"], target=0, batch_size=7, progress=False)
    found = result.spray("gradient_x_input", 0, embedding="spectral", neighbours=14)
    assert found.suggested_clusters == 2
    assert torch.equal(found.index, torch.arange(30))
    strategy = torch.arange(30) % 2
    assert len({(int(s), int(c)) for s, c in zip(strategy, found.labels)}) == 2  # ARI = 1
    with pytest.raises(ArgumentError) as error:
        result.spray("gradient_x_input", 1)
    assert error.value.argument == "cls"


def test_engine_settings_are_checked_per_engine():
    with pytest.raises(ArgumentError, match="takes no setting") as error:
        run(nn.Linear(4, 2).eval(), torch.randn(4, 4), ["gradient"], progress=False,
            engine_settings={"concurrency": 2})
    assert error.value.argument == "engine_settings"
    with pytest.raises(ArgumentTypeError) as error:
        run(nn.Linear(4, 2).eval(), torch.randn(4, 4), ["gradient"], progress=False,
            engine_settings=[("concurrency", 2)])
    assert error.value.argument == "engine_settings"
