"""The contract every registered method keeps, on every reference model.

For each (method, model): the attribution has the input's shape and dtype, a batch gives
the concatenation of single-sample results, the model is untouched afterwards, and a
failure injected in the middle of the call also leaves it untouched.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pellucid
from pellucid.method import Method
from tests.helpers.methods import methods_without
from tests.helpers.models import reference_models

MODELS = reference_models()

#: (method, model) pairs that cannot apply, and the error that must say so
INAPPLICABLE = {
    ("gradcam", "mlp"): "spatial",
    ("gradcam_plus_plus", "mlp"): "spatial",
    **{(method, model): "self-attention"  # no reference model has attention
       for method in ("attention_rollout", "attention_flow", "generic_attention")
       for model in MODELS},
}


def cheap(method: str, x: torch.Tensor, evaluations: int = 4) -> Method:
    """The registered ``method`` with a small budget for ``x`` (references for those that
    draw from data)."""
    references = torch.randn(4, *x.shape[1:], generator=torch.Generator().manual_seed(2))
    return pellucid.get_method(method).cheap(x, evaluations=evaluations, references=references)


CASES = [(m, name) for m in pellucid.list_methods() for name in MODELS]


class Faulty(nn.Module):
    """Wraps a model and raises on its ``fail_at``-th forward call."""

    def __init__(self, inner: nn.Module, fail_at: int) -> None:
        super().__init__()
        self.inner = inner
        self.fail_at = fail_at
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("injected failure")
        return self.inner(x)


@pytest.mark.parametrize(("method", "model_name"), CASES)
def test_method_contract(method, model_name, snapshot, untouched):
    model, x = MODELS[model_name]
    chosen = cheap(method, x)
    before = snapshot(model)
    kept = x.clone()
    if (method, model_name) in INAPPLICABLE:
        with pytest.raises(ValueError, match=INAPPLICABLE[(method, model_name)]):
            pellucid.explain(model, x, method=chosen)
        untouched(model, before)
        return
    e = pellucid.explain(model, x, target=1, method=chosen)
    untouched(model, before)
    assert torch.equal(x, kept)
    assert e.attribution.shape == x.shape and e.attribution.dtype == x.dtype
    assert torch.isfinite(e.attribution).all()
    assert e.method == method and e.target.tolist() == [1] * len(x)

    singles = torch.cat(
        [pellucid.explain(model, x[i : i + 1], 1, method=chosen).attribution
         for i in range(len(x))]
    )
    scale = e.attribution.abs().max().clamp_min(1e-6)
    assert torch.allclose(e.attribution, singles, atol=1e-4 * scale.item(), rtol=1e-4), (
        "a batch must give the concatenation of single-sample attributions"
    )


@pytest.mark.parametrize(("method", "model_name"), [c for c in CASES if c not in INAPPLICABLE])
def test_failure_mid_call_leaves_the_model_untouched(method, model_name, snapshot, untouched):
    model, x = MODELS[model_name]
    chosen = cheap(method, x)
    counter = Faulty(model, fail_at=0).eval()
    pellucid.explain(counter, x, 1, method=chosen)
    faulty = Faulty(model, fail_at=max(1, (counter.calls + 1) // 2 + (counter.calls > 1))).eval()
    before = snapshot(faulty)
    with pytest.raises(RuntimeError, match="injected failure"):
        pellucid.explain(faulty, x, 1, method=chosen)
    untouched(faulty, before)


def test_float64_models_work_for_every_method():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(3 * 8 * 8, 4)).double().eval()
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    for method in methods_without("attention"):
        e = pellucid.explain(model, x, 0, method=cheap(method, x))
        assert e.attribution.dtype == torch.float64, method


@pytest.mark.parametrize("method", pellucid.list_methods())
def test_cheap_gives_the_same_method_with_settings_it_accepts(method):
    """``cheap(x)`` at its default budget: the same class, settings the registry accepts
    back, and a method that runs on every reference model it applies to."""
    for model_name, (model, x) in MODELS.items():
        chosen = cheap(method, x, evaluations=8)
        assert type(chosen) is type(pellucid.get_method(method))
        rebuilt = pellucid.get_method(method, **chosen.settings())
        if (method, model_name) not in INAPPLICABLE:
            e = pellucid.explain(model, x[:1], 1, method=rebuilt)
            assert torch.isfinite(e.attribution).all(), (method, model_name)


IMAGES = torch.zeros(2, 3, 64, 64)


@pytest.mark.parametrize(
    ("method", "base", "evaluations", "expected"),
    [
        ("integrated_gradients", {}, 5, {"steps": 5}),
        ("expected_gradients", {}, 5, {"samples": 5}),
        ("smoothgrad", {"base": "integrated_gradients"}, 5,
         {"samples": 5, "base_settings": {"steps": 5}}),
        ("vargrad", {}, 5, {"samples": 5, "base_settings": {}}),
        ("occlusion", {}, 16, {"window": (8, 8), "stride": (4, 4)}),
        ("rise", {}, 16, {"samples": 400, "cells": (6, 6)}),
        ("lime", {}, 16, {"samples": 128, "patch": (8, 8)}),
        ("kernel_shap", {}, 4, {"samples": 32, "patch": (16, 16)}),
        ("gradcam", {}, 5, {}),
    ],
)
def test_cheap_settings(method, base, evaluations, expected):
    chosen = pellucid.get_method(method, **base).cheap(IMAGES, evaluations=evaluations)
    assert {name: chosen.settings()[name] for name in expected} == expected
    assert chosen.settings() == {**pellucid.get_method(method, **base).settings(), **expected}


def test_cheap_sets_batch_size_and_references_only_when_given():
    references = torch.ones(3, 3, 64, 64)
    own = pellucid.get_method("expected_gradients", references=references, batch_size=7)
    kept = own.cheap(IMAGES)
    assert kept.batch_size == 7 and kept.references is references
    given = own.cheap(IMAGES, references=IMAGES, batch_size=2)
    assert given.batch_size == 2 and given.references is IMAGES
    assert pellucid.get_method("rise").cheap(IMAGES, batch_size=3).batch_size == 3


@pytest.mark.parametrize(
    ("evaluations", "error"),
    [(0, ValueError), (-3, ValueError), (2.5, TypeError), (True, TypeError), ("8", TypeError),
     (float("nan"), TypeError)],
)
def test_cheap_rejects_a_budget_that_is_not_a_positive_int(evaluations, error):
    with pytest.raises(error, match="evaluations must be a positive int") as raised:
        pellucid.get_method("integrated_gradients").cheap(IMAGES, evaluations=evaluations)
    assert raised.value.argument == "evaluations"


@pytest.mark.parametrize(
    ("given", "argument"),
    [({"batch_size": 0}, "batch_size"), ({"batch_size": True}, "batch_size"),
     ({"batch_size": 2.0}, "batch_size"), ({"references": [[0.0]]}, "references")],
)
def test_cheap_checks_batch_size_and_references(given, argument):
    from pellucid.errors import PellucidError

    with pytest.raises(PellucidError, match=argument) as raised:
        pellucid.get_method("expected_gradients").cheap(IMAGES, **given)
    assert raised.value.argument == argument


def test_cheap_leaves_single_pass_methods_unchanged():
    gradient = pellucid.get_method("gradient")
    assert gradient.cheap(IMAGES, evaluations=3, batch_size=5) is gradient
