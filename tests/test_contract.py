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
from models import reference_models

MODELS = reference_models()

#: settings a method needs (or that keep the contract tests fast), by method name
SETTINGS = {
    "integrated_gradients": {"steps": 4},
    "smoothgrad": {"samples": 3},
    "smoothgrad_squared": {"samples": 3},
    "vargrad": {"samples": 3},
    "occlusion": {},
    "rise": {"samples": 16},
    "lime": {"samples": 32},
    "kernel_shap": {"samples": 32},
}

#: (method, model) pairs that cannot apply, and the error that must say so
INAPPLICABLE = {
    ("gradcam", "mlp"): "spatial",
    ("gradcam_plus_plus", "mlp"): "spatial",
}


def settings_for(method: str, x: torch.Tensor) -> dict:
    found = dict(SETTINGS.get(method, {}))
    if method == "expected_gradients":
        found.update(references=torch.randn(4, *x.shape[1:]), samples=4)
    if method in ("occlusion",):
        found.update(window=(2,) * max(1, x.ndim - 2))
    if method in ("lime", "kernel_shap") and x.ndim > 2:
        found.update(patch=(4,) * (x.ndim - 2))
    return {k: v for k, v in found.items() if k in _fields(method)}


def _fields(method: str) -> set[str]:
    import dataclasses

    from pellucid.method import METHODS

    return {f.name for f in dataclasses.fields(METHODS.get(method))}


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
    settings = settings_for(method, x)
    before = snapshot(model)
    kept = x.clone()
    if (method, model_name) in INAPPLICABLE:
        with pytest.raises(ValueError, match=INAPPLICABLE[(method, model_name)]):
            pellucid.explain(model, x, method=method, **settings)
        untouched(model, before)
        return
    e = pellucid.explain(model, x, target=1, method=method, **settings)
    untouched(model, before)
    assert torch.equal(x, kept)
    assert e.attribution.shape == x.shape and e.attribution.dtype == x.dtype
    assert torch.isfinite(e.attribution).all()
    assert e.method == method and e.target.tolist() == [1] * len(x)

    singles = torch.cat(
        [pellucid.explain(model, x[i : i + 1], 1, method=method, **settings).attribution
         for i in range(len(x))]
    )
    scale = e.attribution.abs().max().clamp_min(1e-6)
    assert torch.allclose(e.attribution, singles, atol=1e-4 * scale.item(), rtol=1e-4), (
        "a batch must give the concatenation of single-sample attributions"
    )


@pytest.mark.parametrize(("method", "model_name"), CASES)
def test_failure_mid_call_leaves_the_model_untouched(method, model_name, snapshot, untouched):
    if (method, model_name) in INAPPLICABLE:
        pytest.skip("not applicable")
    model, x = MODELS[model_name]
    settings = settings_for(method, x)
    counter = Faulty(model, fail_at=0).eval()
    pellucid.explain(counter, x, 1, method=method, **settings)
    faulty = Faulty(model, fail_at=max(1, (counter.calls + 1) // 2 + (counter.calls > 1))).eval()
    before = snapshot(faulty)
    with pytest.raises(RuntimeError, match="injected failure"):
        pellucid.explain(faulty, x, 1, method=method, **settings)
    untouched(faulty, before)


def test_float64_models_work_for_every_method():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(3 * 8 * 8, 4)).double().eval()
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    for method in pellucid.list_methods():
        e = pellucid.explain(model, x, 0, method=method, **settings_for(method, x))
        assert e.attribution.dtype == torch.float64, method
