"""Half-precision models: BatchNorm folding in bfloat16, and every rule-engine method on
float16 and bfloat16 models with BatchNorm, computed in float32 (the ε-rule's quotients
overflow float16) and returned in the model's dtype (issue 15; the precision per rule is
measured in docs/lrp.md)."""

from __future__ import annotations

import pytest
import torch

import pellucid
from tests.helpers.models import VGGish


def vgg_with_statistics() -> torch.nn.Module:
    torch.manual_seed(0)
    model = VGGish().eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("method", ["lrp.epsilon", "lrp.epsilon_plus", "lrp.epsilon_gamma_box"])
def test_bfloat16_batchnorm_models_fold_and_stay_near_float32(method):
    model, x = vgg_with_statistics(), torch.rand(2, 3, 32, 32)
    reference = pellucid.explain(model, x, 0, method=method).attribution
    half = pellucid.explain(model.to(torch.bfloat16), x, 0, method=method).attribution
    assert half.dtype == torch.bfloat16 and half.isfinite().all()  # the model's dtype
    half = half.float()
    # bfloat16 keeps 8 bits of mantissa: a few per cent over a deep network
    assert (half - reference).norm() / reference.norm() < 0.2


RULE_METHODS = [m for m in pellucid.list_methods() if m.startswith("lrp") or m in (
    "deep_taylor", "deconvnet", "deeplift", "excitation_backprop", "guided_backprop")]


def _error_against_float64(method: str, dtype: torch.dtype) -> tuple[torch.Tensor, float]:
    torch.manual_seed(5)
    model, x = vgg_with_statistics(), torch.rand(2, 3, 32, 32)
    reference = pellucid.explain(model.double(), x.double(), 0, method=method).attribution
    half = pellucid.explain(model.to(dtype), x.to(dtype), 0, method=method).attribution
    return half, ((half.double() - reference).norm() / reference.norm()).item()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("method", RULE_METHODS)
def test_rule_methods_on_half_precision_models_are_finite_and_near_float64(method, dtype):
    """Against the float64 result: the forward pass in half precision (ReLUs that flip near
    0) sets the error, not the walk, which runs in float32. On this model the model's own
    gradient (autograd in the half dtype) is 2e-2 (float16) and 1.6e-1 (bfloat16) away from
    its float64 value; the rules stay within 0.1 and 0.3 (the table in docs/lrp.md)."""
    half, error = _error_against_float64(method, dtype)
    assert half.dtype == dtype and half.isfinite().all()
    assert error < {torch.float16: 0.1, torch.bfloat16: 0.3}[dtype]


def test_the_walk_of_a_float16_model_is_computed_in_float32(monkeypatch):
    """Without widening, the ε-rule's R / (z + ε) overflows float16 at units with z ≈ 0."""
    import pellucid.lrp.engine as engine

    seen = []
    walk = engine.walk_back
    monkeypatch.setattr(engine, "walk_back", lambda plan, source, message: seen.append(
        {op.node.outputs[0].dtype for op in plan.ops if op.node.outputs}) or walk(
        plan, source, message))
    model, x = vgg_with_statistics().to(torch.float16), torch.rand(2, 3, 32, 32)
    pellucid.explain(model, x.half(), 0, method="lrp.epsilon")
    assert seen == [{torch.float32}]
    assert all(p.dtype == torch.float16 for p in model.parameters())  # the model is untouched


ANY_MODEL = [m for m in pellucid.list_methods()
             if "attention" not in pellucid.get_method(m).requires]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("method", ANY_MODEL)
def test_every_method_runs_on_half_precision_models_with_batchnorm(method, dtype):
    """Every registered method (at a small budget) on a float16 / bfloat16 CNN with
    BatchNorm: finite, in the model's dtype, and correlated with the float32 attribution."""
    from tests.test_contract import cheap

    model = vgg_with_statistics()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    chosen = cheap(method, x)
    reference = pellucid.explain(model, x, 0, method=chosen).attribution.double().flatten()
    half = pellucid.explain(model.to(dtype), x.to(dtype), 0, method=chosen).attribution
    assert half.dtype == dtype and half.isfinite().all()
    if reference.std() > 0:
        correlation = torch.corrcoef(torch.stack([half.double().flatten(), reference]))[0, 1]
        assert correlation > 0.5
