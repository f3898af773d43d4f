"""Attributions from anywhere: tensors and arrays, one map per sample, ``method=``, regressors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import pellucid
from pellucid import Explanation
from pellucid.errors import ArgumentError, ArgumentTypeError
from pellucid.metrics import evaluate, list_metrics
from pellucid.metrics.maps import as_attribution, location_map

B, C, H, W = 3, 3, 4, 5
LOCATION_METRICS = ["faithfulness.pixel_flipping", "faithfulness.deletion",
                    "faithfulness.insertion", "faithfulness.region_perturbation",
                    "localisation.relevance_mass", "localisation.pointing_game",
                    "localisation.relevance_rank"]
LOCATION_SETTINGS = {"fill": "zero", "patch": 2}


def linear_classifier(classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(C * H * W, classes)).double().eval()


class Regressor(nn.Module):
    """f(x) = w·x + b, output (B,) or (B, 1)."""

    def __init__(self, keepdim: bool) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.linear = nn.Linear(C * H * W, 1).double()
        self.keepdim = keepdim
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x.flatten(1))
        return out if self.keepdim else out[:, 0]


def inputs() -> torch.Tensor:
    return torch.rand(B, C, H, W, generator=torch.Generator().manual_seed(2), dtype=torch.float64)


def masks() -> torch.Tensor:
    m = torch.zeros(B, H, W)
    m[:, 1:3, 1:4] = 1
    return m


def scores(results: dict) -> dict:
    return {k: r.scores for k, r in results.items()}


def gini(values: torch.Tensor) -> torch.Tensor:
    """Gini index of |values| per row, by its mean-absolute-difference definition."""
    v = values.flatten(1).abs()
    return (v[:, :, None] - v[:, None, :]).abs().mean((1, 2)) / (2 * v.mean(1))


# --- tensors, arrays and Explanations score alike ---------------------------------------

def test_a_tensor_an_array_and_an_explanation_score_alike():
    model, x = linear_classifier(), inputs()
    e = pellucid.explain(model, x, 1, "gradient_x_input")
    metrics = [*LOCATION_METRICS, "complexity.sparseness", "axiomatic.completeness"]
    by_explanation = scores(evaluate(model, x, 1, e, metrics, masks(), **LOCATION_SETTINGS))
    for given in (e.attribution, e.attribution.numpy(), e.attribution.float()):
        got = scores(evaluate(model, x, 1, given, metrics, masks(), **LOCATION_SETTINGS))
        for name in metrics:
            torch.testing.assert_close(got[name], by_explanation[name], equal_nan=True)


def test_one_map_per_sample_is_the_location_map_itself():
    """(B, H, W) and (B, 1, H, W) maps m are location maps: every per-location metric
    scores them as any C-channel attribution whose channel sum is m, and no metric sees
    m multiplied by C."""
    model, x = linear_classifier(), inputs()
    m = torch.randn(B, H, W, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    uneven = torch.stack([2 * m, -m, torch.zeros_like(m)], 1)  # channel sum m, unlike m / C
    reference = scores(evaluate(model, x, 0, uneven, LOCATION_METRICS, masks(),
                                **LOCATION_SETTINGS))
    for given in (m, m[:, None], m.numpy()):
        got = scores(evaluate(model, x, 0, given, LOCATION_METRICS, masks(), **LOCATION_SETTINGS))
        for name in LOCATION_METRICS:
            torch.testing.assert_close(got[name], reference[name], equal_nan=True)
    torch.testing.assert_close(location_map(as_attribution(m, x, "attributions")), m)

    element_wise = scores(evaluate(model, x, 0, m, ["axiomatic.completeness",
                                                    "complexity.sparseness",
                                                    "complexity.entropy"]))
    with torch.no_grad():
        explained = model(x)[:, 0] - model(torch.zeros_like(x))[:, 0]
    torch.testing.assert_close(element_wise["axiomatic.completeness"],
                               (m.sum((1, 2)) - explained).abs())  # Σ a = Σ m, not C Σ m
    torch.testing.assert_close(element_wise["complexity.sparseness"], gini(m))  # replication
    p = m.abs().flatten(1) / m.abs().flatten(1).sum(1, keepdim=True)
    torch.testing.assert_close(element_wise["complexity.entropy"],
                               -(p * p.log()).sum(1) + math.log(C))  # H(m) + log C


def test_masks_of_every_accepted_shape_agree():
    model, x = linear_classifier(), inputs()
    a = torch.randn(B, C, H, W, dtype=torch.float64)
    m = masks()
    expected = evaluate(model, x, 0, a, "localisation.relevance_mass", m)
    for given in (m[:, None], m[:, None].expand(B, C, H, W), m.numpy(), m.bool()):
        got = evaluate(model, x, 0, a, "localisation.relevance_mass", given)
        torch.testing.assert_close(got["localisation.relevance_mass"].scores,
                                   expected["localisation.relevance_mass"].scores)
    with pytest.raises(ArgumentError, match=r"\(3, 1, 4, 5\)") as error:
        evaluate(model, x, 0, a, "localisation.relevance_mass", torch.ones(B, 2, H, W))
    assert error.value.argument == "masks"


@pytest.mark.parametrize(("given", "error"), [
    (torch.ones(B, 2, H, W), ArgumentError),         # neither C channels nor one map
    (torch.ones(B, H), ArgumentError),
    (torch.ones(B - 1, H, W), ArgumentError),         # another batch
    (torch.ones(B, C, W, H), ArgumentError),
    (np.full((B, H, W), np.nan), ArgumentError),
    (torch.ones(B, H, W, dtype=torch.bool), ArgumentTypeError),
    (torch.ones(B, H, W, dtype=torch.complex64), ArgumentTypeError),
    (np.array([["a"]]), ArgumentTypeError),
    ([[0.0] * W] * H, ArgumentTypeError),             # a list: give a tensor or an array
])
def test_bad_attributions_name_the_argument_and_the_shapes(given, error, snapshot, untouched):
    model, x = linear_classifier(), inputs()
    before = snapshot(model)
    with pytest.raises(error) as raised:
        evaluate(model, x, 0, given, "complexity.sparseness")
    assert raised.value.argument == "attributions"
    assert "attributions" in str(raised.value)
    if error is ArgumentError and not isinstance(given, np.ndarray):
        assert "(3, 1, 4, 5) or (3, 4, 5)" in str(raised.value)
    untouched(model, before)


def test_tabular_attributions_have_the_inputs_shape_only():
    model = nn.Linear(4, 2).double().eval()
    x = torch.randn(3, 4, dtype=torch.float64)
    ok = evaluate(model, x, 0, torch.ones(3, 4).numpy(), "complexity.sparseness")
    assert ok["complexity.sparseness"].scores.abs().max() < 1e-12  # uniform: Gini 0
    with pytest.raises(ArgumentError, match=r"the inputs' shape \(3, 4\)"):
        evaluate(model, x, 0, torch.ones(3, 1, 4), "complexity.sparseness")


# --- method= for the metrics that re-explain --------------------------------------------

RERUN = ["robustness.max_sensitivity", "robustness.continuity",
         "randomisation.model_parameter", "randomisation.random_logit"]


def gradient_by_hand(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """∂f_target/∂x, as another library would compute it."""
    x = x.detach().requires_grad_(True)
    out = model(x)
    (grad,) = torch.autograd.grad(out.gather(1, target[:, None]).sum(), x)
    return grad


def test_a_tensor_without_method_says_how_to_re_explain():
    model, x = linear_classifier(), inputs()
    a = pellucid.explain(model, x, 0, "gradient").attribution
    for name in RERUN:
        with pytest.raises(ArgumentError, match="method=") as error:
            evaluate(model, x, 0, a, name)
        assert error.value.argument == "method"
        assert "callable (model, x, target)" in str(error.value)


def test_method_by_name_object_or_callable_gives_the_numbers_of_the_method(snapshot, untouched):
    model, x = linear_classifier(), inputs()
    settings = {"draws": 3, "max_shift": 1, "radius": 0.1}
    expected = scores(evaluate(model, x, 2, "gradient", RERUN, **settings))
    a = pellucid.explain(model, x, 2, "gradient").attribution
    before = snapshot(model)
    for method in ("gradient", pellucid.get_method("gradient"), gradient_by_hand):
        got = scores(evaluate(model, x, 2, a, RERUN, method=method, **settings))
        for name in RERUN:
            torch.testing.assert_close(got[name], expected[name], equal_nan=True)
    # a callable as the attributions explains first, then re-runs
    got = scores(evaluate(model, x, 2, gradient_by_hand, RERUN, **settings))
    for name in RERUN:
        torch.testing.assert_close(got[name], expected[name], equal_nan=True)
    untouched(model, before)


def test_a_callable_gets_the_target_rows_and_a_randomised_copy():
    model, x = linear_classifier(), inputs()
    seen = []

    def record(m, rows, target):
        seen.append((m, target))
        return gradient_by_hand(m, rows, target)

    evaluate(model, x, torch.tensor([0, 1, 2]), pellucid.explain(model, x, [0, 1, 2],
             "gradient").attribution, "randomisation.model_parameter", method=record)
    assert all(torch.equal(t, torch.tensor([0, 1, 2])) for _, t in seen)
    assert any(m is not model for m, _ in seen)  # randomised copies, never the model itself


def test_method_settings_configure_method():
    model, x = linear_classifier(), inputs()
    a = torch.rand(B, C, H, W, dtype=torch.float64)
    by_settings = evaluate(model, x, 0, a, "robustness.max_sensitivity", method="smoothgrad",
                           method_settings={"samples": 2, "seed": 3}, draws=2)
    by_object = evaluate(model, x, 0, a, "robustness.max_sensitivity",
                         method=pellucid.get_method("smoothgrad", samples=2, seed=3), draws=2)
    torch.testing.assert_close(by_settings["robustness.max_sensitivity"].scores,
                               by_object["robustness.max_sensitivity"].scores)


@pytest.mark.parametrize(("method", "argument", "error", "words"), [
    (lambda m, x, t: torch.ones(len(x), 2, H, W), "method", ArgumentError, "shape"),
    (lambda m, x, t: torch.full_like(x, math.nan), "method", ArgumentError, "NaN"),
    (lambda m, x, t: "saliency", "method", ArgumentTypeError, "str"),
    (nn.Linear, "method", ArgumentTypeError, "class"),
    (3, "method", ArgumentTypeError, "callable"),
    ("saliancy", "method", ArgumentError, "saliency"),
])
def test_a_bad_method_is_named(method, argument, error, words, snapshot, untouched):
    model, x = linear_classifier(), inputs()
    before = snapshot(model)
    with pytest.raises(error) as raised:
        evaluate(model, x, 0, torch.rand(B, C, H, W), "robustness.max_sensitivity",
                 method=method, draws=1)
    assert raised.value.argument == argument
    assert argument in str(raised.value) and words in str(raised.value)
    untouched(model, before)


def test_method_conflicts_are_errors():
    model, x = linear_classifier(), inputs()
    a = torch.rand(B, C, H, W)
    with pytest.raises(ArgumentError) as error:
        evaluate(model, x, 0, "gradient", "complexity.sparseness", method="saliency")
    assert error.value.argument == "method"
    with pytest.raises(ArgumentError) as error:
        evaluate(model, x, 0, a, "complexity.sparseness", method=gradient_by_hand,
                 method_settings={"steps": 3})
    assert error.value.argument == "method_settings"
    with pytest.raises(ArgumentError) as error:
        evaluate(model, x, 0, a, "complexity.sparseness", method_settings={"steps": 3})
    assert error.value.argument == "method_settings"
    with pytest.raises(ArgumentError) as error:
        evaluate(model, x, 0, a, "robustness.max_sensitivity", method=gradient_by_hand,
                 output=lambda out: out)
    assert error.value.argument == "method"


def test_the_former_keyword_still_works_with_a_warning():
    model, x = linear_classifier(), inputs()
    a = torch.rand(B, C, H, W, dtype=torch.float64)
    with pytest.warns(DeprecationWarning, match="attributions"):
        old = evaluate(model, x, 0, explanation_or_method=a, metrics="complexity.sparseness")
    new = evaluate(model, x, 0, attributions=a, metrics="complexity.sparseness")
    torch.testing.assert_close(old["complexity.sparseness"].scores,
                               new["complexity.sparseness"].scores)
    with pytest.raises(ArgumentError) as error:
        evaluate(model, x, 0, a, "complexity.sparseness", explanation_or_method=a)
    assert error.value.argument == "attributions"
    with pytest.raises(ArgumentTypeError) as error:
        evaluate(model, x, 0, metrics="complexity.sparseness")
    assert error.value.argument == "attributions"


def test_an_explanation_of_an_unregistered_method_takes_method():
    model, x = linear_classifier(), inputs()
    grad = pellucid.explain(model, x, 1, "gradient")
    foreign = Explanation(grad.attribution, grad.output, grad.target, "captum_saliency")
    expected = evaluate(model, x, 1, grad, "robustness.avg_sensitivity", draws=2)
    got = evaluate(model, x, None, foreign, "robustness.avg_sensitivity", method=gradient_by_hand,
                   draws=2)
    torch.testing.assert_close(got["robustness.avg_sensitivity"].scores,
                               expected["robustness.avg_sensitivity"].scores)


# --- regression: every metric on f(x) = w·x + b with target=None --------------------------

def contributions(model: Regressor, x: torch.Tensor) -> torch.Tensor:
    """c_p = Σ_c w_cp x_cp: the gradient × input location map of the linear regressor."""
    return (model.linear.weight.detach().view(1, C, H, W) * x).sum(1).flatten(1)


def removal_curve(model: Regressor, x: torch.Tensor) -> torch.Tensor:
    """f after zeroing the most relevant locations one at a time (k = 0..N)."""
    c = contributions(model, x)
    f = c.sum(1, keepdim=True) + model.linear.bias.detach()
    removed = c.sort(1, descending=True).values.cumsum(1)
    return torch.cat([f, f - removed], 1)


@pytest.mark.parametrize("keepdim", [False, True])
def test_every_metric_on_a_regressor_with_target_none(keepdim):
    model, x = Regressor(keepdim), inputs()
    n = H * W
    train = {"train_fn": lambda inputs, labels: Regressor(keepdim)}
    results = {}
    for name in list_metrics():
        settings = {"fill": "zero", "subset_size": 4, "draws": 2, "max_shift": 1,
                    **(train if name in ("faithfulness.roar", "randomisation.data") else {})}
        own = {k: v for k, v in settings.items()
               if k in pellucid.metrics.get_metric(name).settings()}
        method = "gradient" if name.startswith(("robustness", "faithfulness.infidelity")) \
            else "gradient_x_input"
        if name in ("faithfulness.roar", "randomisation.random_logit", "randomisation.data"):
            with pytest.raises(ArgumentError) as error:  # no classes: never a silent number
                evaluate(model, x, None, method, name, masks(), **own)
            assert error.value.argument == ("data" if name == "randomisation.data" else "model")
            continue
        results[name] = evaluate(model, x, None, method, name, masks(), **own)[name]
    assert set(results) == set(list_metrics()) - {"faithfulness.roar",
                                                 "randomisation.random_logit",
                                                 "randomisation.data"}
    curve = removal_curve(model, x)
    c = contributions(model, x)
    # raw output, never a softmax of one value
    for name in ("faithfulness.deletion", "faithfulness.pixel_flipping",
                 "faithfulness.insertion"):
        assert results[name].extras["probability"] is False
    torch.testing.assert_close(results["faithfulness.deletion"].curves, curve)
    torch.testing.assert_close(results["faithfulness.deletion"].scores,
                               torch.trapezoid(curve, dx=1 / n))
    torch.testing.assert_close(results["faithfulness.pixel_flipping"].scores,
                               (curve[:, :1] - curve).mean(1))
    inserted = (curve[:, -1:] + c.sort(1, descending=True).values.cumsum(1))
    torch.testing.assert_close(results["faithfulness.insertion"].curves[:, 1:], inserted)
    torch.testing.assert_close(results["faithfulness.correlation"].scores,
                               torch.ones(B, dtype=torch.float64))  # Δf = Σ_S c exactly
    for name in ("axiomatic.completeness", "faithfulness.infidelity",
                 "robustness.max_sensitivity", "robustness.avg_sensitivity",
                 "robustness.continuity"):  # linear: exact completeness, constant gradient
        assert results[name].scores.abs().max() < 1e-9, name
    a = model.linear.weight.detach().view(1, C, H, W) * x
    torch.testing.assert_close(results["complexity.sparseness"].scores, gini(a))
    inside = masks().flatten(1).bool()
    positive = c.clamp(min=0)
    torch.testing.assert_close(results["localisation.relevance_mass"].scores,
                               (positive * inside).sum(1) / positive.sum(1))
    torch.testing.assert_close(results["localisation.pointing_game"].scores,
                               inside.gather(1, c.argmax(1, keepdim=True))[:, 0].double())
    assert results["randomisation.model_parameter"].scores.isfinite().all()


def test_data_randomisation_of_a_regressor_permutes_given_targets():
    model, x = Regressor(True), inputs()
    targets = torch.randn(B, 1, dtype=torch.float64)
    received = []

    def train_fn(inputs, labels):
        received.append(labels)
        return Regressor(True)

    evaluate(model, x, None, "gradient", "randomisation.data", train_fn=train_fn,
             data=(x, targets))
    assert sorted(received[0].flatten().tolist()) == sorted(targets.flatten().tolist())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_attributions_and_a_callable_on_a_cuda_model():
    model, x = linear_classifier(), inputs()
    a = pellucid.explain(model, x, 1, "gradient").attribution
    names = ["faithfulness.deletion", "robustness.max_sensitivity"]
    on_cpu = scores(evaluate(model, x, 1, a.numpy(), names, method=gradient_by_hand, draws=2))
    on_gpu = scores(evaluate(model.cuda(), x, 1, a.numpy(), names, method=gradient_by_hand,
                             draws=2))
    for name in names:
        torch.testing.assert_close(on_gpu[name], on_cpu[name])
