"""Issue 15, item 2: every metric computes its statistics in float32 at least (correlations in
float64), so float16 and bfloat16 models give finite scores close to the float32 model's.

Attributions of 3×64×64 inputs whose Σ|a| exceeds float16's largest value (65504): before,
sparseness was NaN, entropy and relevance mass 0 and continuity Inf in float16.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
from torch import nn

import pellucid
from pellucid.metrics import evaluate, get_metric, list_metrics
from pellucid.metrics.maps import location_map
from pellucid.metrics.stats import pearson, trapezoid, wide

HALF = (torch.bfloat16, torch.float16)


def cnn() -> nn.Module:
    """A small CNN with BatchNorm (running statistics away from 0 and 1), seeded."""
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(128, 5)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=gen) * 0.3)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5, generator=gen)
                module.running_var.uniform_(0.5, 2.0, generator=gen)
    return model


@pytest.fixture(scope="module")
def setting():
    gen = torch.Generator().manual_seed(1)
    model, x = cnn(), torch.rand(4, 3, 64, 64, generator=gen)
    attribution = pellucid.explain(model, x, 0, method="gradient_x_input").attribution
    attribution = attribution / attribution.abs().mean() * 30  # Σ|a| ≈ 3.7e5 > 65504
    masks = torch.zeros(4, 64, 64)
    masks[:, 16:48, 16:48] = 1
    return model, x, attribution, masks


def scores(model, x, attribution, masks, name, dtype):
    fields = {f.name for f in dataclasses.fields(get_metric(name))}
    half = copy.deepcopy(model).to(dtype)
    settings = {k: v for k, v in {"seed": 0, "train_fn": lambda a, b: half}.items()
                if k in fields}
    result = evaluate(half, x.to(dtype), 0, attribution.to(dtype), [name], masks=masks,
                      method="gradient", **settings)[name]
    return result.scores.double()


#: |half − float32| allowed per metric, absolute (the scores' scales differ): statistics of the
#: attribution alone are nearly exact; scores made of model outputs carry the model's rounding
#: (bfloat16: 8 bits of mantissa, differences of logits ~1e-3), correlations of such
#: differences most. Measured maxima are in docs/metrics.md.
TOLERANCE = {
    "axiomatic.completeness": 0.05,  # relative: a gap of Σa ≈ 1e3 and bfloat16 logits
    "complexity.entropy": 1e-4, "complexity.sparseness": 1e-4,
    "localisation.pointing_game": 0.0,
    "localisation.relevance_rank": 0.01,  # bfloat16 rounds near-equal locations into ties
    "localisation.relevance_mass": 1e-3,
    "robustness.continuity": 1e-3, "robustness.max_sensitivity": 1e-3,
    "robustness.avg_sensitivity": 1e-3,  # relative: scores ≈ 1e3
}
LOOSE = {torch.float16: 0.002, torch.bfloat16: 0.01}  # model-output metrics, absolute
#: the correlation of 16-pixel output drops (≈1e-3) with bfloat16 logits (resolution ≈ 2⁻⁸ of
#: the logit) is dominated by the model's rounding, not by the statistic (measured 0.43;
#: float16 0.039)
LOOSE_BY_NAME = {("faithfulness.correlation", torch.bfloat16): 0.6,
                 ("faithfulness.correlation", torch.float16): 0.1}


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("name", list_metrics())
def test_every_metric_is_finite_and_close_to_float32_in_half_precision(setting, name, dtype):
    model, x, attribution, masks = setting
    reference = scores(model, x, attribution, masks, name, torch.float32)
    half = scores(model, x, attribution, masks, name, dtype)
    assert half.isfinite().all() and reference.isfinite().all(), (half, reference)
    if name in TOLERANCE:
        error = ((half - reference).abs() / reference.abs().clamp(min=1)).max()
        assert error <= TOLERANCE[name], float(error)
    else:
        bound = LOOSE_BY_NAME.get((name, dtype), LOOSE[dtype])
        assert (half - reference).abs().max() <= bound, (half, reference)


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_closed_forms_past_float16_range(dtype):
    """One-hot Gini (n − 1)/n and uniform entropy log n over n = 12288 elements, whose
    integers and sums float16 cannot hold; relevance mass of a uniform map is the mask's area."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64 * 64, 2)).to(dtype).eval()
    x = torch.rand(2, 3, 64, 64).to(dtype)
    n = x[0].numel()
    one_hot = torch.zeros_like(x)
    one_hot[:, 1, 7, 9] = 6e4
    uniform = torch.full_like(x, 6e4)
    masks = torch.zeros(2, 64, 64)
    masks[:, :16] = 1
    sparse = evaluate(model, x, 0, one_hot, ["complexity.sparseness"])
    spread = evaluate(model, x, 0, uniform, ["complexity.entropy", "complexity.sparseness",
                                               "localisation.relevance_mass"], masks=masks)
    def close(result, value):
        assert result.scores.dtype == torch.float32  # not the model's float16
        torch.testing.assert_close(result.scores, torch.full((2,), value), rtol=1e-5, atol=0)

    close(sparse["complexity.sparseness"], (n - 1) / n)
    close(spread["complexity.entropy"], math.log(n))
    assert spread["complexity.sparseness"].scores.abs().max() < 1e-5  # 0 up to float32
    close(spread["localisation.relevance_mass"], 0.25)


def test_statistics_helpers_widen_and_stay_exact():
    big = torch.full((1, 3, 4, 4), 3e4, dtype=torch.float16)
    assert location_map(big).dtype == torch.float32 and location_map(big)[0, 0, 0] == 9e4
    assert wide(torch.ones(1, dtype=torch.bfloat16)).dtype == torch.float32
    assert wide(torch.ones(1, dtype=torch.float64)).dtype == torch.float64
    # ranks up to 4096 in float16 would round (integers exact to 2048): correlation 1 exactly
    ranks = torch.arange(4096.0).unsqueeze(0)
    assert pearson(ranks.half(), ranks.half()).dtype == torch.float64
    assert float(pearson(ranks.to(torch.float16), ranks.to(torch.float16))) == pytest.approx(1.0)
    # ∫₀¹ of a constant 6e4 curve sampled at 3 points is 6e4 (beyond float16's trapezoid sums)
    curve = torch.full((1, 3), 6e4, dtype=torch.float16)
    area = trapezoid(curve, torch.tensor([0.0, 0.5, 1.0]))
    assert area.dtype == torch.float32 and float(area) == pytest.approx(float(curve[0, 0]))


@pytest.mark.parametrize("method", ["smoothgrad", "smoothgrad_squared", "vargrad"])
@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_noise_wrappers_accumulate_in_float32(method, dtype):
    """Gradients of a linear model are its weight w: SmoothGrad = w, SmoothGrad² = w² and
    VarGrad = 0 exactly, with the same noise draws whatever the dtype; w² summed over 64
    copies overflows float16 (64 · 200² > 65504) unless accumulated in float32."""
    w = torch.full((1, 8), 200.0)
    model = nn.Linear(8, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(w)
    model = model.to(dtype).eval()
    x = torch.rand(3, 8).to(dtype)
    explanation = pellucid.explain(model, x, None, method=method, samples=64, batch_size=16)
    attribution = explanation.attribution
    assert attribution.dtype == dtype and attribution.isfinite().all()
    expected = {"smoothgrad": w, "smoothgrad_squared": w.square(), "vargrad": 0 * w}[method]
    torch.testing.assert_close(attribution.float(), expected.expand(3, 8), rtol=1e-2, atol=0)


@pytest.mark.parametrize("parameterisation", ["pixels", "fourier"])
@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_feature_visualisation_optimises_in_float32_for_half_models(parameterisation, dtype):
    """Parameters, FFT and Adam's state stay in float32 (a bfloat16 FFT fails on CPU, Adam's
    ε = 1e-8 is 0 in float16): finite float32 images whose class logit, scored by the float32
    model, rose above that of the starting images for every image."""
    from pellucid import features

    model = cnn()
    half = copy.deepcopy(model).to(dtype)
    settings = {"parameterisation": parameterisation, "progress": False, "seed": 3,
                "regularisers": [features.Jitter(2)]}
    objective = features.ClassLogit(1)
    start = torch.stack(features.maximise(half, objective, (2, 3, 32, 32), steps=0, **settings))
    images = torch.stack(features.maximise(half, objective, (2, 3, 32, 32), steps=30,
                                           **settings))
    assert images.dtype == torch.float32 and images.isfinite().all()
    with torch.no_grad():
        assert (model(images)[:, 1] > model(start)[:, 1]).all()
