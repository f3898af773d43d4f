"""Generated bad input: hypothesis draws models, inputs, targets and settings, and calls
every registered method and metric with them.

Each drawn call must end in one of two ways:

- a finite result of the right shape, with the model and the inputs untouched;
- a :class:`pellucid.errors.PellucidError` whose ``argument`` is the argument that was
  broken and whose message names it, with the model and the inputs untouched.

Anything else (a NaN map, a raw torch error, an ``AssertionError`` from inside, a changed
model) fails. Profiles: ``ci`` (the default: fixed seed, sized for the CI budget) and
``thorough`` (``HYPOTHESIS_PROFILE=thorough``: more cases, random seed).
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import pellucid
from pellucid.errors import PellucidError
from pellucid.metrics import evaluate, list_metrics
from pellucid.metrics.base import METRICS
from tests.conftest import assert_untouched, model_state

settings.register_profile(
    "ci", max_examples=300, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough", max_examples=3000, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

#: how many calls each test drew (printed in the terminal summary, see conftest.py)
DRAWN: Counter[str] = Counter()

METHODS = pellucid.list_methods()
METRIC_NAMES = list_metrics()
CLASSES = 3


# ---------------------------------------------------------------------------- models


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, CLASSES))


def _cnn() -> nn.Module:
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 4 * 4, CLASSES),
    )
    bn = model[1]
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    return model


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        return self.head(h + self.body(h))


class _Squeeze(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.squeeze(1)


def _inplace_first() -> nn.Module:
    """Begins with an in-place op: running it on the user's tensor would change it."""
    return nn.Sequential(nn.ReLU(inplace=True), *_cnn())


#: name -> (build, input shape of one sample, number of outputs (None: a regressor))
MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], int | None]] = {
    "mlp": (_mlp, (6,), CLASSES),
    "cnn": (_cnn, (3, 8, 8), CLASSES),
    "residual": (_Residual, (3, 8, 8), CLASSES),
    "inplace_first": (_inplace_first, (3, 8, 8), CLASSES),
    "cnn_train_mode": (_cnn, (3, 8, 8), CLASSES),
    "regressor": (lambda: nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 1),
                                        _Squeeze()), (6,), None),
    "regressor_b1": (lambda: nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 1)),
                     (6,), None),
}
SPATIAL = {"cnn", "residual", "inplace_first", "cnn_train_mode"}


def build(name: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = MODELS[name][0]()
    return model.train() if name == "cnn_train_mode" else model.eval()


def draw_inputs(name: str, batch: int, scale: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(batch, *MODELS[name][1], generator=gen)


def references_for(x: torch.Tensor) -> torch.Tensor:
    return torch.randn(4, *x.shape[1:], generator=torch.Generator().manual_seed(7))


def cheap(method: str, x: torch.Tensor) -> pellucid.Method:
    return pellucid.get_method(method).cheap(x, evaluations=4, references=references_for(x))


# ---------------------------------------------------------------------------- checks


def check_outcome(call: Callable[[], Any], model: nn.Module, x: torch.Tensor,
                  blame: set[str] | None = None, must_fail: bool = False) -> Any:
    """Run ``call``: it must leave the model and ``x`` untouched, and either return, or
    raise a PellucidError that names its argument, which must be one of ``blame`` (when
    given). With ``must_fail``, returning fails the test."""
    before = model_state(model)
    kept = x.clone() if isinstance(x, torch.Tensor) else None
    grad_before = x.requires_grad if isinstance(x, torch.Tensor) else None
    try:
        result = call()
    except PellucidError as error:
        assert error.argument in str(error), (
            f"the message does not name its argument {error.argument!r}: {error}")
        if blame is not None:
            assert error.argument in blame, (
                f"expected an error blaming {sorted(blame)}, got {error.argument!r}: {error}")
        result = error
    else:
        assert not must_fail, f"broke {sorted(blame or ())} but the call succeeded"
    assert_untouched(model, before)
    if kept is not None:
        assert torch.equal(x, kept) or (x.isnan() == kept.isnan()).all(), "inputs changed"
        assert x.requires_grad == grad_before and x.grad is None, "inputs' grad state changed"
    return result


def assert_finite_explanation(result: Any, x: torch.Tensor) -> None:
    if isinstance(result, PellucidError):
        return
    assert result.attribution.shape == x.shape
    assert torch.isfinite(result.attribution).all(), "a non-finite attribution"


# ---------------------------------------------------------------------------- valid calls

#: (method, model) pairs that cannot apply; the error must name this argument
INAPPLICABLE: dict[tuple[str, str], str] = {}
for _method in ("gradcam", "gradcam_plus_plus"):  # need a spatial layer
    for _model in set(MODELS) - SPATIAL:
        INAPPLICABLE[(_method, _model)] = "inputs"
for _method in METHODS:  # the rule engine needs BatchNorm as a fixed affine map (eval mode)
    if type(pellucid.get_method(_method)).__module__ == "pellucid.lrp.methods":
        INAPPLICABLE[(_method, "cnn_train_mode")] = "model"
for _method in ("attention_rollout", "attention_flow", "generic_attention"):
    for _model in MODELS:  # no drawn model has self-attention
        INAPPLICABLE[(_method, _model)] = "model"


def valid_targets(model_name: str, batch: int) -> st.SearchStrategy[Any]:
    if MODELS[model_name][2] is None:
        return st.just(None)
    classes = st.integers(0, CLASSES - 1)
    return st.one_of(
        st.none(),
        classes,
        st.lists(classes, min_size=batch, max_size=batch),
        st.lists(classes, min_size=batch, max_size=batch).map(torch.tensor),
        st.just(lambda out: out[:, 0] - out[:, 1]),
    )


@st.composite
def valid_calls(draw: st.DrawFn) -> tuple[str, str, torch.Tensor, Any, int]:
    method = draw(st.sampled_from(METHODS))
    model_name = draw(st.sampled_from(sorted(MODELS)))
    batch = draw(st.integers(1, 3))
    scale = draw(st.sampled_from([1e-3, 1.0, 30.0]))
    seed = draw(st.integers(0, 2**16))
    x = draw_inputs(model_name, batch, scale, seed)
    target = draw(valid_targets(model_name, batch))
    return method, model_name, x, target, seed


@given(valid_calls())
def test_every_method_on_drawn_valid_calls(call):
    method, model_name, x, target, seed = call
    DRAWN["valid method calls"] += 1
    model = build(model_name, seed)
    chosen = cheap(method, x)
    inapplicable = INAPPLICABLE.get((method, model_name))
    result = check_outcome(lambda: pellucid.explain(model, x, target, method=chosen), model, x,
                           blame={inapplicable} if inapplicable else set(),
                           must_fail=inapplicable is not None)
    assert_finite_explanation(result, x)


@settings(max_examples=max(30, settings.default.max_examples // 10))  # drawing takes ~0.5 s
@given(valid_calls())
def test_every_method_result_saves_loads_and_draws(call):
    """What a user does next with a result: save it, load it back bit for bit, look at it."""
    method, model_name, x, target, seed = call
    if (method, model_name) in INAPPLICABLE:
        return
    DRAWN["results saved, loaded and drawn"] += 1
    model = build(model_name, seed)
    e = pellucid.explain(model, x, target, method=cheap(method, x))
    with tempfile.TemporaryDirectory() as folder:
        loaded = pellucid.Explanation.load(e.save(Path(folder) / "e.safetensors"))
    for name in ("attribution", "output", "target", "inputs"):
        assert torch.equal(getattr(loaded, name), getattr(e, name)), name
    assert loaded.method == e.method
    figure = e.plot()
    assert figure.axes, "an empty figure"
    png = e._repr_png_()
    assert png is not None and png.startswith(b"\x89PNG")
    matplotlib.pyplot.close("all")


# ---------------------------------------------------------------------------- one broken argument


def _x(model_name: str) -> torch.Tensor:
    return draw_inputs(model_name, 2, 1.0, 0)


#: argument -> ways to break it: (description, (model_name, x) -> {keyword: value}[,
#: the same call unbroken]). With an unbroken twin, a method that needs no gradient may
#: tolerate the breakage, but then it must give the twin's result exactly.
Breaking = Callable[[str, torch.Tensor], dict[str, Any]]
BROKEN: dict[str, list[tuple[Any, ...]]] = {
    "inputs": [
        ("NaN", lambda m, x: {"inputs": x.masked_fill(torch.rand_like(x) < 0.3, math.nan)}),
        ("Inf", lambda m, x: {"inputs": torch.full_like(x, math.inf)}),
        ("int dtype", lambda m, x: {"inputs": x.long()}),
        ("bool dtype", lambda m, x: {"inputs": x > 0}),
        ("no batch dimension", lambda m, x: {"inputs": x[0].flatten()}),
        ("empty batch", lambda m, x: {"inputs": x[:0]}),
        ("a list", lambda m, x: {"inputs": x.tolist()}),
        ("a string", lambda m, x: {"inputs": "not a tensor"}),
    ],
    "target": [
        ("a string", lambda m, x: {"target": "cat"}),
        ("an empty list", lambda m, x: {"target": []}),
        ("a float", lambda m, x: {"target": 1.5}),
        ("a huge int", lambda m, x: {"target": 10**20}),
        ("out of range", lambda m, x: {"target": CLASSES}),
        ("negative", lambda m, x: {"target": -1}),
        ("a bool", lambda m, x: {"target": True}),
        ("wrong length", lambda m, x: {"target": [0] * (len(x) + 1)}),
        ("float tensor", lambda m, x: {"target": torch.zeros(len(x))}),
        ("2-D tensor", lambda m, x: {"target": torch.zeros(len(x), 2, dtype=torch.long)}),
        ("nested list", lambda m, x: {"target": [[0]] * len(x)}),
        ("callable, wrong shape", lambda m, x: {"target": lambda out: out}),
        ("callable, detached", lambda m, x: {"target": lambda out: out[:, 0].detach()},
         lambda m, x: {"target": lambda out: out[:, 0]}),
        ("callable, NaN", lambda m, x: {"target": lambda out: out[:, 0] * math.nan}),
        ("callable, not a tensor", lambda m, x: {"target": lambda out: 1.0}),
    ],
    "method": [
        ("None", lambda m, x: {"method": None}),
        ("a class", lambda m, x: {"method": type(pellucid.get_method("gradient"))}),
        ("a typo", lambda m, x: {"method": "integrated_gradient"}),
        ("an int", lambda m, x: {"method": 3}),
    ],
    "model": [
        ("a string", lambda m, x: {"model": "resnet50"}),
        ("a function", lambda m, x: {"model": lambda t: t}),
        ("on the meta device", lambda m, x: {"model": build(m, 0).to("meta")}),
        ("lazy, uninitialised", lambda m, x: {"model": nn.Sequential(
            nn.Flatten(), nn.LazyLinear(CLASSES)).eval()}),
        ("runs under no_grad", lambda m, x: {"model": _NoGrad(build(m, 0))},
         lambda m, x: {"model": build(m, 0)}),
        ("returns NaN", lambda m, x: {"model": _Nan(build(m, 0))}),
    ],
    "output": [
        ("a key on a tensor output", lambda m, x: {"output": "logits"}),
    ],
}


class _NoGrad(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.inner(x)


class _Nan(_NoGrad):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * math.nan


BROKEN_CASES = [(argument, i) for argument, ways in BROKEN.items() for i in range(len(ways))]


@given(st.sampled_from(METHODS), st.sampled_from(["mlp", "cnn"]),
       st.sampled_from(BROKEN_CASES))
def test_every_method_names_a_broken_argument(method, model_name, case):
    argument, index = case
    description, breaking, *unbroken = BROKEN[argument][index]
    if argument == "target" and MODELS[model_name][2] is None:
        return
    DRAWN["method calls with a broken argument"] += 1
    model = build(model_name, 0)
    x = _x(model_name)
    call: dict[str, Any] = {"model": model, "inputs": x, "target": 0, "method": cheap(method, x)}
    call.update(breaking(model_name, x))
    drawn = call["model"]
    victim = model
    if isinstance(drawn, nn.Module) and not any(p.is_meta for p in drawn.parameters()):
        victim = drawn
    inputs = call["inputs"]
    blame = {argument} | ({INAPPLICABLE[(method, model_name)]}
                          if (method, model_name) in INAPPLICABLE else set())
    result = check_outcome(lambda: pellucid.explain(**call), victim,
                           inputs if isinstance(inputs, torch.Tensor) else x, blame,
                           must_fail=not unbroken)
    if not isinstance(result, PellucidError):
        twin = {**call, **unbroken[0](model_name, x)}
        expected = pellucid.explain(**twin).attribution
        assert torch.allclose(result.attribution, expected, atol=1e-6), (
            f"{description}: tolerated, but the result differs from the unbroken call")


# ---------------------------------------------------------------------------- settings

BAD_VALUES = [0, -1, -0.5, math.nan, math.inf, True, "x", None, [], object()]


def _settings(method: str) -> list[str]:
    return [f.name for f in dataclasses.fields(pellucid.get_method(method))]


SETTING_CASES = [(m, s) for m in METHODS for s in _settings(m)]


@given(st.sampled_from(SETTING_CASES), st.sampled_from(BAD_VALUES),
       st.sampled_from(["mlp", "cnn"]))
def test_every_method_setting_rejects_or_handles_odd_values(case, value, model_name):
    method, setting = case
    DRAWN["method settings with an odd value"] += 1
    model = build(model_name, 0)
    x = _x(model_name)
    base = cheap(method, x)

    def call() -> Any:
        chosen = dataclasses.replace(base, **{setting: value})
        return pellucid.explain(model, x, 0, method=chosen)

    result = check_outcome(call, model, x, None)
    if isinstance(result, PellucidError):
        inapplicable = INAPPLICABLE.get((method, model_name))
        assert result.argument in (setting, inapplicable), (
            f"{method}({setting}={value!r}) blamed {result.argument!r}: {result}")
    else:
        assert_finite_explanation(result, x)


# ---------------------------------------------------------------------------- metrics

#: settings that keep every metric cheap; each metric gets those it has
METRIC_BUDGET: dict[str, Any] = {
    "steps": 4, "subsets": 6, "subset_size": 4, "perturbations": 4, "draws": 2,
    "fractions": (0.5,), "train_fn": lambda x, y: _cnn().eval(),
}


def metric_budget(name: str, **extra: Any) -> dict[str, Any]:
    fields = {f.name for f in dataclasses.fields(METRICS.get(name))}
    return {k: v for k, v in {**METRIC_BUDGET, **extra}.items() if k in fields}


def _masks(x: torch.Tensor) -> torch.Tensor:
    masks = torch.zeros(len(x), *x.shape[2:])
    masks[:, 2:5, 2:5] = 1
    return masks


@given(st.sampled_from(METRIC_NAMES), st.sampled_from(["gradient", "lrp.epsilon"]),
       st.integers(1, 3), st.integers(0, 2**16), st.sampled_from(["cnn", "residual"]))
def test_every_metric_on_drawn_valid_calls(metric, method, batch, seed, model_name):
    DRAWN["valid metric calls"] += 1
    model = build(model_name, seed)
    x = draw_inputs(model_name, batch, 1.0, seed)
    target = torch.arange(batch) % CLASSES
    # ROAR scores the dataset: one score, and a batch of one leaves nothing to train on
    dataset_level = metric == "faithfulness.roar"
    blame = {"test_fraction"} if dataset_level and batch == 1 else set()
    result = check_outcome(
        lambda: evaluate(model, x, target, method, [metric], _masks(x),
                         **metric_budget(metric))[metric], model, x, blame=blame)
    if isinstance(result, PellucidError):
        return
    assert result.scores.shape == ((1,) if dataset_level else (batch,))
    assert torch.isfinite(result.scores).all() or math.isnan(result.mean), (
        "NaN scores hidden behind a finite mean")


#: evaluate's arguments -> ways to break them: (description, (x, explanation) -> {kw: value})
BROKEN_EVALUATE: dict[str, list[tuple[str, Callable[[torch.Tensor, Any], dict[str, Any]]]]] = {
    "metrics": [
        ("a typo", lambda x, e: {"metrics": ["faithfulness.pixel_fliping"]}),
        ("None", lambda x, e: {"metrics": [None]}),
        ("a class", lambda x, e: {"metrics": [type(pellucid.metrics.get_metric(
            "complexity.sparseness"))]}),
    ],
    "attributions": [
        ("None", lambda x, e: {"attributions": None}),
        ("a typo", lambda x, e: {"attributions": "gradiant"}),
        ("a method class", lambda x, e: {"attributions": type(
            pellucid.get_method("gradient"))}),
        ("wrong spatial shape", lambda x, e: {"attributions": dataclasses.replace(
            e, attribution=e.attribution[..., :4, :4])}),
        ("NaN attribution", lambda x, e: {"attributions": dataclasses.replace(
            e, attribution=e.attribution * math.nan)}),
        ("of another batch", lambda x, e: {"attributions": dataclasses.replace(
            e, attribution=e.attribution[:1])}),
    ],
    "masks": [
        ("wrong shape", lambda x, e: {"masks": torch.ones(len(x), 5, 5)}),
        ("NaN", lambda x, e: {"masks": torch.full((len(x), *x.shape[2:]), math.nan)}),
        ("missing", lambda x, e: {"masks": None}),
    ],
    "inputs": [
        ("NaN", lambda x, e: {"inputs": x * math.nan}),
        ("int dtype", lambda x, e: {"inputs": x.long()}),
    ],
    "target": [
        ("a string", lambda x, e: {"target": "cat"}),
        ("out of range", lambda x, e: {"target": CLASSES}),
    ],
}
EVALUATE_CASES = [(a, i) for a, ways in BROKEN_EVALUATE.items() for i in range(len(ways))]


@given(st.sampled_from(METRIC_NAMES), st.sampled_from(EVALUATE_CASES))
def test_every_metric_names_a_broken_argument(metric, case):
    argument, index = case
    _, breaking = BROKEN_EVALUATE[argument][index]
    if argument == "masks" and not metric.startswith("localisation"):
        return  # only the localisation metrics read masks
    DRAWN["metric calls with a broken argument"] += 1
    model = build("cnn", 0)
    x = _x("cnn")
    target = torch.tensor([0, 1])
    explanation = pellucid.explain(model, x, target, "gradient")
    call: dict[str, Any] = {"model": model, "inputs": x, "target": target,
                            "attributions": explanation, "metrics": [metric],
                            "masks": _masks(x), **metric_budget(metric)}
    call.update(breaking(x, explanation))
    check_outcome(lambda: evaluate(**call), model, x, {argument}, must_fail=True)


METRIC_SETTING_CASES = [
    (name, f.name) for name in METRIC_NAMES
    for f in dataclasses.fields(METRICS.get(name)) if f.name not in ("train_fn", "data")
]


@given(st.sampled_from(METRIC_SETTING_CASES), st.sampled_from(BAD_VALUES))
def test_every_metric_setting_rejects_or_handles_odd_values(case, value):
    metric, setting = case
    DRAWN["metric settings with an odd value"] += 1
    model = build("cnn", 0)
    x = _x("cnn")
    budget = metric_budget(metric, **{setting: value})
    result = check_outcome(
        lambda: evaluate(model, x, torch.tensor([0, 1]), "gradient", [metric], _masks(x),
                         **budget)[metric], model, x, None)
    if isinstance(result, PellucidError):
        assert result.argument == setting, (
            f"{metric}({setting}={value!r}) blamed {result.argument!r}: {result}")
    else:
        assert torch.isfinite(result.scores).all() or math.isnan(result.mean)


@pytest.fixture(scope="module", autouse=True)
def _print_counts():
    """Print how many calls were drawn (visible with ``pytest -s``)."""
    yield
    print("\ngenerated calls:", dict(DRAWN), "total", sum(DRAWN.values()))
