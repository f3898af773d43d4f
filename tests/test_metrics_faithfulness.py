"""Faithfulness metrics against closed forms on linear models (f(x) = w·x + b)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pellucid import Explanation
from pellucid.errors import ArgumentError, PellucidError
from pellucid.metrics import evaluate

B, C, H, W = 4, 2, 3, 4  # images of 12 locations, 2 channels


def linear_image_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(C * H * W, 3)).double().eval()
    return model


def given(attribution: torch.Tensor, x: torch.Tensor) -> Explanation:
    """An explanation object holding a hand-made attribution."""
    return Explanation(attribution, torch.zeros(len(x), 3), torch.zeros(len(x), dtype=torch.long),
                       "hand_made")


def weights(model: nn.Module, target: int) -> torch.Tensor:
    return model[1].weight[target].detach().view(C, H, W)


def deletion_curve_by_hand(model, x, attribution, target, fill):
    """f after removing locations one at a time in order of decreasing summed attribution."""
    w, b = weights(model, target), float(model[1].bias[target].detach())
    curves = []
    for xi, ai in zip(x, attribution):
        per_location = ai.sum(0).flatten().tolist()
        order = sorted(range(H * W), key=lambda i: -per_location[i])
        current = xi.clone()
        values = [float((w * current).sum()) + b]
        for i in order:
            current[:, i // W, i % W] = fill
            values.append(float((w * current).sum()) + b)
        curves.append(values)
    return torch.tensor(curves, dtype=torch.float64)


def test_perfect_attribution_beats_random_and_reversed_in_aopc():
    model = linear_image_model()
    x = torch.randn(B, C, H, W, dtype=torch.float64)
    perfect = weights(model, 1) * x
    settings = dict(steps=H * W, fill="zero", metrics=["faithfulness.pixel_flipping"])
    aopc = {}
    for name, attribution in {
        "perfect": perfect, "reversed": -perfect,
        "random": torch.randn(x.shape, generator=torch.Generator().manual_seed(1),
                              dtype=torch.float64),
    }.items():
        aopc[name] = evaluate(model, x, 1, given(attribution, x), **settings)[
            "faithfulness.pixel_flipping"].scores
    assert (aopc["perfect"] > aopc["random"]).all()
    assert (aopc["perfect"] > aopc["reversed"]).all()
    # with a zero fill the perfect order removes the largest drops first: no order does better
    for seed in range(5):
        other = torch.randn(x.shape, generator=torch.Generator().manual_seed(10 + seed),
                            dtype=torch.float64)
        score = evaluate(model, x, 1, given(other, x), **settings)[
            "faithfulness.pixel_flipping"].scores
        assert (aopc["perfect"] >= score - 1e-12).all()


def test_morf_curve_is_monotone_for_the_perfect_attribution_when_contributions_are_positive():
    model = linear_image_model()
    with torch.no_grad():
        model[1].weight.abs_()
    x = torch.rand(B, C, H, W, dtype=torch.float64) + 0.1
    result = evaluate(model, x, 0, given(weights(model, 0) * x, x), "faithfulness.pixel_flipping",
                      steps=H * W, fill="zero")["faithfulness.pixel_flipping"]
    steps = result.curves.diff(dim=1)
    assert (steps < 0).all()
    # the steepest drops come first: the drops are sorted in decreasing size
    assert (steps.diff(dim=1) >= -1e-12).all()


def test_pixel_flipping_curve_and_aopc_match_the_closed_form():
    model = linear_image_model(2)
    x = torch.randn(B, C, H, W, dtype=torch.float64)
    attribution = torch.randn(x.shape, dtype=torch.float64)
    result = evaluate(model, x, 2, given(attribution, x), "faithfulness.pixel_flipping",
                      steps=H * W, fill="zero", order="morf")["faithfulness.pixel_flipping"]
    expected = deletion_curve_by_hand(model, x, attribution, 2, 0.0)
    torch.testing.assert_close(result.curves, expected)
    aopc = (expected[:, :1] - expected).sum(1) / (H * W + 1)
    torch.testing.assert_close(result.scores, aopc)
    assert result.direction == "higher"


def test_lerf_takes_the_least_relevant_first_and_prefers_lower():
    model = linear_image_model(3)
    x = torch.randn(B, C, H, W, dtype=torch.float64)
    attribution = torch.randn(x.shape, dtype=torch.float64)
    lerf = evaluate(model, x, 0, given(attribution, x), "faithfulness.pixel_flipping",
                    order="lerf", steps=H * W, fill="zero")["faithfulness.pixel_flipping"]
    morf_of_reversed = evaluate(model, x, 0, given(-attribution, x), "faithfulness.pixel_flipping",
                                steps=H * W, fill="zero")["faithfulness.pixel_flipping"]
    torch.testing.assert_close(lerf.curves, morf_of_reversed.curves)
    assert lerf.direction == "lower"


def test_deletion_and_insertion_match_the_closed_form():
    model = linear_image_model(4)
    x = torch.randn(B, C, H, W, dtype=torch.float64)
    attribution = torch.randn(x.shape, dtype=torch.float64)
    fill = 0.5
    results = evaluate(model, x, 1, given(attribution, x),
                       ["faithfulness.deletion", "faithfulness.insertion"],
                       steps=H * W, probability=False, fill=fill)
    deletion = deletion_curve_by_hand(model, x, attribution, 1, fill)
    # inserting into the fill in the same order: f(fill) + the contributions restored so far
    w, b = weights(model, 1), float(model[1].bias[1].detach())
    start = float((w * fill).sum()) + b
    restored = deletion[:, :1] - deletion  # Σ over removed of w·(x − fill)
    insertion = start + restored
    fraction = torch.arange(H * W + 1, dtype=torch.float64) / (H * W)
    for name, curve in (("faithfulness.deletion", deletion), ("faithfulness.insertion", insertion)):
        torch.testing.assert_close(results[name].curves, curve)
        area = ((curve[:, 1:] + curve[:, :-1]) / 2 * fraction.diff()).sum(1)
        torch.testing.assert_close(results[name].scores, area)
        torch.testing.assert_close(results[name].x_axis, fraction)
    assert results["faithfulness.deletion"].direction == "lower"
    assert results["faithfulness.insertion"].direction == "higher"


def test_patches_remove_whole_regions_and_steps_round_the_counts():
    torch.manual_seed(5)
    x = torch.randn(B, C, 4, 4, dtype=torch.float64)
    model = nn.Sequential(nn.Flatten(), nn.Linear(C * 16, 3)).double().eval()
    attribution = torch.randn(x.shape, dtype=torch.float64)
    result = evaluate(model, x, 0, given(attribution, x), "faithfulness.region_perturbation",
                      patch=2, steps=2, fill="zero")["faithfulness.region_perturbation"]
    # 4 patches in 2 steps: 0, 2 and 4 patches removed; all removed leaves the bias
    torch.testing.assert_close(result.x_axis, torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    torch.testing.assert_close(result.curves[:, -1], model[1].bias[0].detach().expand(B))


def test_faithfulness_correlation_is_one_for_w_times_x_on_a_linear_model():
    model = linear_image_model(6)
    x = torch.randn(B, C, H, W, dtype=torch.float64)
    perfect = weights(model, 0) * x
    scores = {}
    for name, attribution in (("perfect", perfect), ("random", torch.randn_like(x))):
        scores[name] = evaluate(model, x, 0, given(attribution, x), "faithfulness.correlation",
                                subsets=20, subset_size=3)["faithfulness.correlation"].scores
    torch.testing.assert_close(scores["perfect"], torch.ones(B, dtype=torch.float64))
    assert (scores["random"] < 0.99).all()


def test_infidelity_is_zero_for_the_gradient_of_a_linear_model():
    model = linear_image_model(7)
    x = torch.randn(B, C, H, W, dtype=torch.float64)
    for optimal in (True, False):
        exact = evaluate(model, x, 0, "gradient", "faithfulness.infidelity",
                         optimal_scale=optimal)["faithfulness.infidelity"]
        assert exact.scores.abs().max() < 1e-20
        noisy = evaluate(model, x, 0, given(torch.randn_like(x), x), "faithfulness.infidelity",
                         optimal_scale=optimal)["faithfulness.infidelity"]
        assert (noisy.scores > 1e-6).all()


def test_completeness_and_conservation_gaps():
    model = linear_image_model(8)
    x = torch.randn(B, C, H, W, dtype=torch.float64)
    gap = evaluate(model, x, 1, "gradient_x_input", "axiomatic.completeness")
    assert gap["axiomatic.completeness"].scores.abs().max() < 1e-12  # Σ w⊙x = f(x) − f(0)
    conservation = evaluate(model, x, 1, "gradient_x_input", "axiomatic.completeness",
                            baseline=None)["axiomatic.completeness"].scores
    torch.testing.assert_close(conservation, model[1].bias[1].detach().abs().expand(B))


@pytest.mark.parametrize("fill", ["uniform", "blur", "mean", "zero"])
def test_a_batch_scores_like_its_samples_one_by_one(fill):
    model = linear_image_model(9)
    x = torch.randn(3, C, H, W, dtype=torch.float64)
    attribution = torch.randn(x.shape, dtype=torch.float64)
    metrics = ["faithfulness.pixel_flipping", "faithfulness.insertion"]
    batch = evaluate(model, x, 0, given(attribution, x), metrics, fill=fill, steps=5,
                     batch_size=4)
    for i in range(3):
        one = evaluate(model, x[i : i + 1], 0, given(attribution[i : i + 1], x[i : i + 1]),
                       metrics, fill=fill, steps=5)
        for name in metrics:
            torch.testing.assert_close(batch[name].curves[i : i + 1], one[name].curves)


def test_unknown_fill_and_bad_steps_are_explained():
    model = linear_image_model()
    x = torch.randn(2, C, H, W, dtype=torch.float64)
    with pytest.raises(ValueError, match="unknown fill"):
        evaluate(model, x, 0, "gradient", "faithfulness.pixel_flipping", fill="black")
    with pytest.raises(ValueError, match="steps must be a positive int"):
        evaluate(model, x, 0, "gradient", "faithfulness.pixel_flipping", steps=0)


def test_until_stops_after_a_fraction_of_the_regions():
    model = linear_image_model(10)
    x = torch.randn(B, C, H, W, dtype=torch.float64)
    attribution = torch.randn(x.shape, dtype=torch.float64)
    part = evaluate(model, x, 0, given(attribution, x), "faithfulness.pixel_flipping",
                    steps=3, until=0.25, fill="zero")["faithfulness.pixel_flipping"]
    full = deletion_curve_by_hand(model, x, attribution, 0, 0.0)
    torch.testing.assert_close(part.curves, full[:, :4])  # 3 of 12 locations, one per step
    torch.testing.assert_close(part.x_axis, torch.tensor([0, 1, 2, 3.0],
                                                         dtype=torch.float64) / 12)


def linear_regressor(flat: bool) -> nn.Module:
    """f(x) = w·x + b with one output per sample: (B, 1), or (B,) when ``flat``."""
    torch.manual_seed(11)
    layers = [nn.Flatten(), nn.Linear(C * H * W, 1)]
    if flat:
        layers.append(nn.Flatten(0))
    return nn.Sequential(*layers).double().eval()


@pytest.mark.parametrize("flat", [False, True])
def test_deletion_on_a_one_output_regressor_scores_the_raw_output(flat):
    model = linear_regressor(flat)
    x = torch.randn(B, C, H, W, dtype=torch.float64)
    w = model[1].weight.detach().view(C, H, W)
    perfect, reversed_ = w * x, -w * x
    target = (lambda out: out) if flat else None
    scores = {}
    for name, attribution in (("perfect", perfect), ("reversed", reversed_)):
        result = evaluate(model, x, target, given(attribution, x), "faithfulness.deletion",
                          steps=H * W)["faithfulness.deletion"]
        # the closed form: f after zeroing locations in order of decreasing Σ_c w⊙x
        expected = deletion_curve_by_hand(
            nn.Sequential(nn.Flatten(), model[1]), x, attribution, 0, 0.0)
        torch.testing.assert_close(result.curves, expected)
        assert result.extras["probability"] is False
        scores[name] = result.scores
    # a softmax of one value would be 1.0 for both; the raw curve tells them apart
    assert (scores["perfect"] < scores["reversed"]).all()


def test_probability_true_on_one_output_is_an_error_and_auto_follows_the_output():
    x = torch.randn(B, C, H, W, dtype=torch.float64)
    with pytest.raises(ArgumentError, match="probability=True") as error:
        evaluate(linear_regressor(False), x, None, "gradient", "faithfulness.pixel_flipping",
                 steps=4, probability=True)
    assert error.value.argument == "probability"
    logits = linear_image_model(12)
    attribution = torch.randn(x.shape, dtype=torch.float64)
    # auto on a classifier's logits: the softmax over the 3 classes of the hand-made logits
    by_class = torch.stack(
        [deletion_curve_by_hand(logits, x, attribution, c, 0.0) for c in range(3)], -1)
    auto = evaluate(logits, x, 1, given(attribution, x), "faithfulness.deletion",
                    steps=H * W)["faithfulness.deletion"]
    assert auto.extras["probability"] is True
    torch.testing.assert_close(auto.curves, by_class.softmax(-1)[..., 1])
    # a model that already outputs probabilities is scored as it is, not softmaxed again
    probabilities = nn.Sequential(*logits, nn.Softmax(1)).eval()
    result = evaluate(probabilities, x, 1, given(attribution, x), "faithfulness.deletion",
                      steps=H * W)["faithfulness.deletion"]
    assert result.extras["probability"] is False
    torch.testing.assert_close(result.curves, by_class.softmax(-1)[..., 1])


@pytest.mark.parametrize(("settings", "argument"), [
    ({"steps": 13}, "steps"),  # 12 locations
    ({"until": 0.01}, "until"),  # none removed
    ({"until": 0.0}, "until"),
    ({"until": float("nan")}, "until"),
    ({"steps": 0}, "steps"),
    ({"steps": 2.0}, "steps"),
    ({"order": "morff"}, "order"),
    ({"fill": float("nan")}, "fill"),
    ({"fill": torch.full((C, H, W), float("inf"))}, "fill"),
    ({"blur_sigma": -1.0}, "blur_sigma"),
    ({"patch": 0}, "patch"),
    ({"probability": "yes"}, "probability"),
    ({"batch_size": 0}, "batch_size"),
    ({"seed": 1.5}, "seed"),
])
def test_pixel_flipping_settings_that_would_give_a_wrong_curve_are_errors(settings, argument):
    model = linear_image_model()
    x = torch.randn(2, C, H, W, dtype=torch.float64)
    with pytest.raises(PellucidError) as error:
        evaluate(model, x, 0, "gradient", "faithfulness.pixel_flipping", **settings)
    assert error.value.argument == argument and argument in str(error.value)


def test_steps_default_to_one_region_per_step_up_to_100():
    model = linear_image_model()
    x = torch.randn(2, C, H, W, dtype=torch.float64)
    result = evaluate(model, x, 0, "gradient", "faithfulness.pixel_flipping")
    assert result["faithfulness.pixel_flipping"].x_axis.tolist() == [
        k / (H * W) for k in range(H * W + 1)]
    big = torch.randn(1, 1, 16, 16, dtype=torch.float64)
    wide = nn.Sequential(nn.Flatten(), nn.Linear(256, 2)).double().eval()
    assert len(evaluate(wide, big, 0, "gradient", "faithfulness.deletion")[
        "faithfulness.deletion"].x_axis) == 101


@pytest.mark.parametrize(("metric", "settings", "argument"), [
    ("faithfulness.correlation", {"subset_size": H * W}, "subset_size"),
    ("faithfulness.correlation", {"subsets": 1}, "subsets"),
    ("faithfulness.correlation", {"subset_size": 0}, "subset_size"),
    ("faithfulness.infidelity", {"perturbations": 0}, "perturbations"),
    ("faithfulness.infidelity", {"perturbations": 1}, "perturbations"),
    ("faithfulness.infidelity", {"noise": float("nan")}, "noise"),
    ("faithfulness.infidelity", {"noise": 0.0}, "noise"),
    ("axiomatic.completeness", {"baseline": float("nan")}, "baseline"),
    ("robustness.max_sensitivity", {"draws": 0}, "draws"),
    ("robustness.avg_sensitivity", {"radius": float("inf")}, "radius"),
    ("robustness.continuity", {"max_shift": H}, "max_shift"),
    ("robustness.continuity", {"max_shift": 0}, "max_shift"),
    ("faithfulness.roar", {"fractions": (0.5, 1.0)}, "fractions"),
    ("faithfulness.roar", {"fractions": ()}, "fractions"),
    ("faithfulness.roar", {"test_fraction": 0.0}, "test_fraction"),
    ("faithfulness.roar", {"train_fn": "train"}, "train_fn"),
])
def test_degenerate_metric_settings_are_errors_naming_the_setting(metric, settings, argument):
    model = linear_image_model()
    x = torch.randn(2, C, H, W, dtype=torch.float64)
    with pytest.raises(PellucidError) as error:
        evaluate(model, x, 0, "gradient", metric, **settings)
    assert error.value.argument == argument and argument in str(error.value)


def test_infidelity_with_one_draw_and_no_scaling_is_the_squared_error_of_that_draw():
    model = linear_image_model(13)
    x = torch.randn(B, C, H, W, dtype=torch.float64)
    attribution = torch.randn(x.shape, dtype=torch.float64)
    result = evaluate(model, x, 0, given(attribution, x), "faithfulness.infidelity",
                      perturbations=1, optimal_scale=False, noise=0.3, seed=4)
    draw = 0.3 * torch.randn((1, C, H, W), generator=torch.Generator().manual_seed(4),
                             dtype=torch.float64)
    w = weights(model, 0)
    expected = ((attribution * draw).flatten(1).sum(1) - (w * draw).sum()).square()
    torch.testing.assert_close(result["faithfulness.infidelity"].scores, expected)
