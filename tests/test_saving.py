"""Saving and loading results: Explanation, MetricResult and Table round-trip exactly,
through one safetensors file, without pickle; broken files are errors naming ``path``."""

from __future__ import annotations

import json
import math
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

import pellucid
from pellucid import Explanation, benchmark
from pellucid.errors import ArgumentError, ArgumentTypeError
from pellucid.metrics import MetricResult, Table, evaluate
from pellucid.saving import FORMAT_VERSION, HEADER_KEY, Repr, load_fields, save_fields


def assert_same(a: Any, b: Any, where: str = "value") -> None:
    """Equal values of equal types; tensors bitwise, with their dtype, shape and device."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, Tensor):
        assert (a.dtype, a.shape, a.device) == (b.dtype, b.shape, b.device), where
        assert torch.equal(_bytes(a), _bytes(b)), f"{where}: {a} != {b}"
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b, strict=True)):
            assert_same(u, v, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, where


def _bytes(t: Tensor) -> Tensor:
    """The bytes of a tensor's values, so that NaN == NaN and -0.0 != 0.0."""
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8)


def assert_same_fields(a: Any, b: Any) -> None:
    for name in a.__dataclass_fields__:
        assert_same(getattr(a, name), getattr(b, name), name)


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16, 3)
    ).eval()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "result.safetensors"


@pytest.mark.parametrize("method", ["integrated_gradients", "lrp.epsilon", "gradcam"])
def test_explanations_of_several_methods_round_trip(method, path):
    model, x = cnn(), torch.randn(2, 3, 4, 4)
    e = pellucid.explain(model, x, torch.tensor([0, 2]), method=method)
    assert e.save(path) == path
    loaded = Explanation.load(path)
    assert_same_fields(e, loaded)
    expected = {"integrated_gradients": "completeness_gap", "lrp.epsilon": "layer_relevance",
                "gradcam": "layer_map"}[method]
    assert expected in loaded.extras


def test_loaded_integrated_gradients_keeps_completeness(path):
    """For a linear model IG is exact: Σ attribution = f(x) − f(0) holds after loading too."""
    torch.manual_seed(1)
    model = nn.Linear(5, 2).eval()
    x = torch.randn(3, 5)
    Explanation.save(pellucid.explain(model, x, 1, method="integrated_gradients"), path)
    loaded = Explanation.load(path)
    with torch.no_grad():
        gap = model(x)[:, 1] - model(torch.zeros_like(x))[:, 1]
    torch.testing.assert_close(loaded.attribution.sum(1), gap)
    torch.testing.assert_close(loaded.attribution, model.weight[1].detach() * x)


def _every_kind_of_extra() -> dict[str, Any]:
    base = torch.arange(12.0).reshape(3, 4)
    return {
        "float16": torch.randn(2, 3).half(),
        "bfloat16": torch.randn(2, 3).bfloat16(),
        "float64": torch.tensor([math.nan, math.inf, -0.0], dtype=torch.float64),
        "int64": torch.tensor([-(2**62), 0, 7]),
        "uint8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "transposed": base.t(),  # a non-contiguous view
        "row": base[1],  # a view sharing memory with the two above
        "base": base,
        "same_object": {"again": None},  # filled below: one tensor object twice
        "nested": {"layer": [torch.ones(2), {"deep": (torch.zeros(1, dtype=torch.int32), 3)}]},
        "int_keys": {0: torch.ones(1), (1, "a"): "tuple key"},
        "collision": {"__tensor__": "not a tag"},
        "floats": [math.nan, math.inf, -math.inf, 0.1, -0.0],
        "plain": {"steps": 8, "rule": "gauss_legendre", "flag": True, "none": None},
        "numpy": np.array([[1.5, np.nan]], dtype=np.float32),
        "numpy_scalar": np.float64(0.25),
    }


def test_every_dtype_and_nesting_round_trips(path):
    extras = _every_kind_of_extra()
    extras["same_object"]["again"] = extras["base"]
    e = Explanation(torch.randn(2, 3), torch.randn(2, 4), torch.tensor([1, 3]), "gradient",
                    {"batch_size": None, "window": (2, 2)}, extras)
    e.save(path)
    loaded = Explanation.load(path)
    expected = dict(extras, numpy_scalar=0.25)  # a numpy scalar comes back as a Python number
    assert_same(loaded.extras, expected, "extras")
    assert_same_fields(Explanation(**{**e.__dict__, "extras": expected}), loaded)
    assert loaded.extras["transposed"].is_contiguous()
    assert loaded.extras["same_object"]["again"] is loaded.extras["base"]
    # saving copies: the explanation's own tensors are untouched
    assert not e.extras["transposed"].is_contiguous()
    assert e.extras["row"].data_ptr() == e.extras["base"][1].data_ptr()


def test_a_tensor_that_requires_grad_is_saved_detached(path):
    attribution = torch.ones(1, 2, requires_grad=True)
    Explanation(attribution * 2, torch.zeros(1, 2), torch.tensor([0]), "gradient").save(path)
    loaded = Explanation.load(path)
    assert not loaded.attribution.requires_grad
    assert torch.equal(loaded.attribution, torch.full((1, 2), 2.0))


class Unrepresentable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_values_that_cannot_be_stored_load_as_their_repr(path):
    from pellucid.lrp import Composite, Epsilon

    composite = Composite({nn.Linear: Epsilon(0.1)})

    def score(out: Tensor) -> Tensor:
        return out[:, 0] - out[:, 1]

    model, x = nn.Linear(3, 2).eval(), torch.randn(4, 3)
    e = pellucid.explain(model, x, score, method="lrp.epsilon", composite=composite)
    e.extras["objects"] = [Unrepresentable(), nn.ReLU()]
    e.save(path)
    loaded = Explanation.load(path)
    assert loaded.target_spec is None and torch.equal(loaded.target, torch.full((4,), -1))
    assert loaded.settings["composite"] == repr(composite)
    assert isinstance(loaded.settings["composite"], Repr)
    assert loaded.extras["objects"] == ["<Unrepresentable object>", "ReLU()"]
    with safe_open(str(path), framework="pt") as handle:
        header = json.loads(handle.metadata()[HEADER_KEY])
    assert header["fields"]["target_spec"] == {"__repr__": repr(e.target_spec)}
    assert "score" in header["fields"]["target_spec"]["__repr__"]
    # saved again, a Repr stays a Repr
    loaded.save(path)
    assert isinstance(Explanation.load(path).settings["composite"], Repr)


def test_an_explanation_of_a_target_callable_is_evaluated_with_the_callable_again(path):
    def score(out: Tensor) -> Tensor:
        return out[:, 0] - out[:, 1]

    torch.manual_seed(2)
    model, x = nn.Linear(3, 2).eval(), torch.randn(4, 3)
    e = pellucid.explain(model, x, score, method="gradient")
    e.save(path)
    loaded = Explanation.load(path)
    assert loaded.target_spec is None
    # the gradient of a linear score is its weight row difference, for every sample
    torch.testing.assert_close(loaded.attribution,
                               (model.weight[0] - model.weight[1]).detach().expand(4, 3))
    before = pellucid.evaluate(model, x, score, e, "faithfulness.deletion")
    after = pellucid.evaluate(model, x, score, loaded, "faithfulness.deletion")
    assert_same(before["faithfulness.deletion"].scores, after["faithfulness.deletion"].scores)


def test_a_tensor_safetensors_cannot_hold_is_stored_as_its_repr_with_a_warning(path):
    value = torch.tensor([1 + 2j], dtype=torch.complex128)
    e = Explanation(torch.ones(1, 1), torch.ones(1, 1), torch.tensor([0]), "gradient",
                    extras={"complex": value})
    with pytest.warns(UserWarning, match="cannot be stored"):
        e.save(path)
    assert Explanation.load(path).extras["complex"] == repr(value)


def _metric_results() -> dict[str, MetricResult]:
    model, x = cnn(), torch.randn(3, 3, 4, 4)
    e = pellucid.explain(model, x, 0, method="gradient")
    return pellucid.evaluate(
        model, x, 0, e, ["faithfulness.deletion", "faithfulness.insertion",
                         "complexity.sparseness"], steps=4,
    )


@pytest.mark.parametrize("name", ["faithfulness.deletion", "faithfulness.insertion",
                                  "complexity.sparseness"])
def test_metric_results_round_trip(name, path):
    result = _metric_results()[name]
    assert (result.curves is not None) == name.startswith("faithfulness")
    result.save(path)
    loaded = MetricResult.load(path)
    assert_same_fields(result, loaded)
    assert (loaded.mean, loaded.std, loaded.direction) == (result.mean, result.std,
                                                           result.direction)


def test_a_metric_result_with_nan_scores_and_means_round_trips(path):
    result = MetricResult("localisation.relevance_mass", torch.tensor([0.5, math.nan]),
                          "higher", settings={"threshold": math.nan}, extras={"mean": math.nan})
    result.save(path)
    loaded = MetricResult.load(path)
    assert_same_fields(result, loaded)
    assert loaded.nan_count == 1 and loaded.valid_mean == 0.5 and math.isnan(loaded.mean)


def test_benchmark_tables_round_trip(path):
    model, x = cnn(), torch.randn(4, 3, 4, 4)
    table = benchmark(model, x, ["random", "gradient"],
                      ["faithfulness.deletion", "complexity.sparseness"], n=4, progress=False,
                      steps=4)
    table.rows[0]["mean"] = math.nan  # NaN means are kept, not turned into None
    table.save(path)
    loaded = Table.load(path)
    assert_same_fields(table, loaded)
    assert set(loaded.curves) == {("random", "faithfulness.deletion"),
                                  ("gradient", "faithfulness.deletion")}
    assert loaded.value("gradient", "complexity.sparseness") == table.value(
        "gradient", "complexity.sparseness")
    assert str(loaded) == str(table)


def test_loading_never_unpickles(path, monkeypatch):
    _metric_results()["faithfulness.deletion"].save(path)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pickle was used")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    assert MetricResult.load(path).curves is not None


def test_load_puts_tensors_on_the_device_asked_for(path):
    e = Explanation(torch.ones(1, 2), torch.ones(1, 2), torch.tensor([0]), "gradient")
    e.save(path)
    assert Explanation.load(path, device=torch.device("cpu")).attribution.device.type == "cpu"
    with pytest.raises(ArgumentError, match="device") as info:
        Explanation.load(path, device="nowhere")
    assert info.value.argument == "device"


def _rewrite_header(path: Path, change: dict[str, Any]) -> None:
    with safe_open(str(path), framework="pt") as handle:
        header = json.loads(handle.metadata()[HEADER_KEY])
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    save_file(tensors, str(path), metadata={HEADER_KEY: json.dumps({**header, **change})})


def _broken(kind: str, path: Path) -> tuple[Path, str]:
    """A file (or folder) that loading must refuse, and words its error must contain."""
    result = MetricResult("complexity.sparseness", torch.arange(64.0), "higher")
    result.save(path)
    data = path.read_bytes()
    if kind == "other format version":
        _rewrite_header(path, {"format_version": FORMAT_VERSION + 1})
        return path, f"format version {FORMAT_VERSION + 1}"
    if kind == "other kind":
        return path, "holds a saved MetricResult, but Explanation.load"
    if kind == "corrupt":
        path.write_bytes(b"\x00garbage" + data[8:])
        return path, "not a readable safetensors file"
    if kind == "truncated":
        path.write_bytes(data[:-40])
        return path, "truncated"
    if kind == "empty":
        path.write_bytes(b"")
        return path, "not a readable safetensors file"
    if kind == "folder":
        return path.parent, "is a folder"
    if kind == "missing":
        return path.with_name("nothing.safetensors"), "does not exist"
    if kind == "no metadata":
        save_file({"weight": torch.ones(2)}, str(path))
        return path, "without pellucid's metadata"
    if kind == "other metadata":
        save_file({"weight": torch.ones(2)}, str(path), metadata={"format": "pt"})
        return path, "without pellucid's metadata"
    if kind == "bad json":
        save_file({}, str(path), metadata={HEADER_KEY: "{not json"})
        return path, "corrupt pellucid header"
    if kind == "missing tensor":
        header = {"format": "pellucid", "format_version": FORMAT_VERSION, "kind": "MetricResult",
                  "fields": {"name": "x", "direction": "higher", "scores": {"__tensor__": "9"}}}
        save_file({}, str(path), metadata={HEADER_KEY: json.dumps(header)})
        return path, "does not hold"
    if kind == "unknown field":
        _rewrite_header(path, {"fields": {"name": "x", "scores": 1, "direction": "higher",
                                          "novel": 1}})
        return path, "does not have"
    raise AssertionError(kind)


BROKEN = ["other format version", "other kind", "corrupt", "truncated", "empty", "folder",
          "missing", "no metadata", "other metadata", "bad json", "missing tensor",
          "unknown field"]


@pytest.mark.parametrize("kind", BROKEN)
def test_a_file_that_cannot_be_loaded_is_an_error_naming_path(kind, path):
    broken, words = _broken(kind, path)
    load = Explanation.load if kind == "other kind" else MetricResult.load
    with pytest.raises(ArgumentError, match=re.escape(words)) as info:
        load(broken)
    assert info.value.argument == "path" and "path" in str(info.value)


def test_saving_to_a_folder_or_a_missing_folder_is_an_error(tmp_path):
    result = MetricResult("complexity.sparseness", torch.ones(2), "higher")
    for where, words in [(tmp_path, "is a folder"), (tmp_path / "no" / "r.safetensors",
                                                     "does not exist")]:
        with pytest.raises(ArgumentError, match=words) as info:
            result.save(where)
        assert info.value.argument == "path"
    with pytest.raises(ArgumentTypeError, match="path") as info:
        result.save(3)  # type: ignore[arg-type]
    assert info.value.argument == "path"
    assert list(tmp_path.iterdir()) == []


def test_save_fields_and_load_fields_work_on_any_dataclass_result(path):
    result = MetricResult("complexity.sparseness", torch.ones(2), "higher")
    save_fields(str(path), result)
    assert_same(load_fields(path, MetricResult), {
        "name": "complexity.sparseness", "scores": torch.ones(2), "direction": "higher",
        "curves": None, "x_axis": None, "settings": {}, "extras": {}})



def test_a_loaded_explanation_with_an_unstorable_setting_is_scored_without_rebuilding(tmp_path):
    """Its Composite came back as a repr: metrics that need no re-run score it; those that
    re-run the method ask for method= instead of failing on the repr."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 3)).eval()
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
    composite = pellucid.lrp.Composite({torch.nn.Linear: pellucid.lrp.Epsilon(0.1)})
    e = pellucid.explain(model, x, 0, "lrp.epsilon", composite=composite)
    loaded = Explanation.load(e.save(tmp_path / "e.safetensors"))
    expected = evaluate(model, x, 0, e, "complexity.sparseness")["complexity.sparseness"]
    got = evaluate(model, x, 0, loaded, "complexity.sparseness")["complexity.sparseness"]
    torch.testing.assert_close(got.scores, expected.scores)
    with pytest.raises(ArgumentError) as error:
        evaluate(model, x, 0, loaded, "robustness.max_sensitivity")
    assert error.value.argument == "method"
    again = evaluate(model, x, 0, loaded, "robustness.max_sensitivity",
                     method=pellucid.get_method("lrp.epsilon", composite=composite))
    reference = evaluate(model, x, 0, e, "robustness.max_sensitivity")
    torch.testing.assert_close(again["robustness.max_sensitivity"].scores,
                               reference["robustness.max_sensitivity"].scores)


def test_an_interrupted_save_keeps_the_previous_file(tmp_path, monkeypatch):
    import safetensors.torch

    first = MetricResult("complexity.sparseness", torch.tensor([0.5, 1.0]), "higher")
    path = save_fields(tmp_path / "r.safetensors", first)

    def dies_halfway(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\x00" * 10)  # a truncated file, then the crash
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", dies_halfway)
    second = MetricResult("complexity.sparseness", torch.tensor([0.0, 0.0]), "higher")
    with pytest.raises(KeyboardInterrupt):
        save_fields(path, second)
    assert torch.equal(load_fields(path, MetricResult)["scores"], first.scores)
    assert [p.name for p in tmp_path.iterdir()] == ["r.safetensors"]
