"""evaluate / benchmark on bad and ambiguous input: a correct result or an error naming the
argument, never a silent wrong result (issue 10)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from pellucid import Explanation, benchmark, explain, get_method
from pellucid.errors import ArgumentError, ArgumentTypeError, PellucidError
from pellucid.metrics import MetricResult, evaluate
from pellucid.metrics.faithfulness import PixelFlipping

B = 4


def linear(classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, classes)).double().eval()


def inputs(n: int = B) -> torch.Tensor:
    return torch.randn(n, 3, 2, 2, generator=torch.Generator().manual_seed(1),
                       dtype=torch.float64)


def raises(argument: str, call, error: type[PellucidError] = PellucidError) -> PellucidError:
    """``call()`` raises ``error`` whose argument is ``argument`` and whose message names it."""
    with pytest.raises(error) as caught:
        call()
    assert caught.value.argument == argument, caught.value
    assert argument in str(caught.value)
    return caught.value


# benchmark: one row per distinct method, never a merge

def test_one_method_with_two_settings_gives_two_rows_labelled_by_the_settings():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    model.eval()
    x = inputs()
    ig = type(get_method("integrated_gradients"))
    table = benchmark(model, x, [ig(steps=1), ig(steps=16)], ["complexity.sparseness"],
                      progress=False)
    labels = ["integrated_gradients(steps=1)", "integrated_gradients(steps=16)"]
    assert [r["method"] for r in table.rows] == labels
    for steps, label in zip((1, 16), labels, strict=True):  # each row is its own method's
        alone = evaluate(model, x, None, ig(steps=steps), "complexity.sparseness")
        assert table.value(label, "complexity.sparseness") == pytest.approx(
            alone["complexity.sparseness"].mean)
    assert table.value(labels[0], "complexity.sparseness") != pytest.approx(
        table.value(labels[1], "complexity.sparseness"))


def test_a_method_listed_twice_with_the_same_settings_is_an_error():
    model, x = linear(), inputs()
    error = raises("methods", lambda: benchmark(model, x, ["gradient", "gradient"],
                                                ["complexity.sparseness"], progress=False))
    assert "twice" in str(error)
    ig = type(get_method("integrated_gradients"))
    raises("methods", lambda: benchmark(model, x, [ig(steps=4), "integrated_gradients"],
                                        ["complexity.sparseness"], progress=False,
                                        method_settings={"integrated_gradients": {"steps": 4}}))


def test_one_metric_with_two_settings_gives_two_results():
    model, x = linear(), inputs()
    results = evaluate(model, x, 0, "gradient",
                       [PixelFlipping(steps=4), PixelFlipping(steps=4, order="lerf")])
    morf = results["faithfulness.pixel_flipping(order='morf')"]
    lerf = results["faithfulness.pixel_flipping(order='lerf')"]
    assert (morf.direction, lerf.direction) == ("higher", "lower")
    assert not torch.equal(morf.curves, lerf.curves)
    raises("metrics", lambda: evaluate(model, x, 0, "gradient",
                                       ["complexity.sparseness", "complexity.sparseness"]))


def test_each_method_explains_once_for_all_metrics():
    calls = []
    gradient = type(get_method("gradient"))

    class Counted(gradient):
        def attribute(self, task, x):
            calls.append(len(x))
            return super().attribute(task, x)

    benchmark(linear(), inputs(), [Counted()],
              ["complexity.sparseness", "complexity.entropy", "axiomatic.completeness"],
              progress=False)
    assert calls == [B]


# benchmark: the forms of data, n, method_settings, out_dir

def test_the_accepted_forms_of_data():
    """Each form gives the scores of evaluate on its first 5 samples, labels as the target
    and masks to the metrics (the samples are streamed in batches of 2: the first n are
    taken across batches, the last batch cut)."""
    model, x = linear(), inputs(6)
    labels = torch.arange(6) % 3
    masks = torch.rand(6, 2, 2, generator=torch.Generator().manual_seed(2)) > 0.5
    for data, parts in [
        (x, (x, None, None)),
        ((x,), (x, None, None)),
        ([x, labels], (x, labels, None)),
        ((x, labels, masks), (x, labels, masks)),
        ({"inputs": x, "labels": labels}, (x, labels, None)),
        ({"images": x, "labels": labels}, (x, labels, None)),
        ([(x[:2], labels[:2]), (x[2:], labels[2:])], (x, labels, None)),
        (iter([{"inputs": x[:3]}, {"inputs": x[3:]}]), (x, None, None)),
    ]:
        metrics = ["complexity.sparseness"] + ([] if parts[2] is None else
                                               ["localisation.relevance_mass"])
        table = benchmark(model, data, ["gradient"], metrics, n=5, batch_size=2,
                          progress=False)
        want = evaluate(model, x[:5], None if parts[1] is None else labels[:5], "gradient",
                        metrics, None if parts[2] is None else masks[:5])
        for metric in metrics:
            torch.testing.assert_close(table.scores[("gradient", metric)],
                                       want[metric].scores.double(), equal_nan=True)
    every = benchmark(model, [(x[:2],), (x[2:],)], ["gradient"], ["complexity.sparseness"],
                      n=None, progress=False)
    assert every.rows[0]["n"] == 6  # None: every sample


@pytest.mark.parametrize("data", [
    (inputs(), torch.zeros(B).long(), torch.ones(B, 2, 2), inputs()),  # 4 tensors
    [inputs(), inputs()],  # two batches of inputs read as (inputs, labels)
    (inputs(), torch.zeros(B + 1).long()),
    (inputs(), torch.zeros(B).long(), torch.ones(B + 1, 2, 2)),
    {"inputs": inputs(), "label": torch.zeros(B)},
    [(inputs(),), (inputs(), torch.zeros(B).long())],  # parts differ between batches
    [(inputs(),), (torch.randn(B, 3, 3, 3),)],
    [],
    (inputs(), "labels"),
    [1, 2],
    "images.pt",
    3,
    None,
])
def test_every_other_form_of_data_is_an_error_naming_data(data):
    raises("data", lambda: benchmark(linear(), data, ["gradient"], ["complexity.sparseness"],
                                     progress=False))


def test_float_labels_are_not_taken_as_classes():
    error = raises("data", lambda: benchmark(linear(), (inputs(), torch.rand(B)), ["gradient"],
                                             ["complexity.sparseness"], progress=False))
    assert "target=" in str(error)


@pytest.mark.parametrize("n", [-1, 0, 2.5, "4", True])
def test_n_must_be_a_positive_int_or_none(n):
    raises("n", lambda: benchmark(linear(), inputs(), ["gradient"], ["complexity.sparseness"],
                                  n=n, progress=False))


def test_n_none_takes_every_sample_and_n_keeps_the_last_one():
    x = inputs(5)
    assert benchmark(linear(), x, ["gradient"], ["complexity.sparseness"], n=None,
                     progress=False).rows[0]["n"] == 5
    scores = benchmark(linear(), x, ["gradient"], ["complexity.sparseness"], n=5,
                       progress=False).scores[("gradient", "complexity.sparseness")]
    assert len(scores) == 5


def test_method_settings_must_name_a_listed_method_and_real_settings():
    model, x = linear(), inputs()

    def run(settings, methods=("integrated_gradients",)):
        return benchmark(model, x, list(methods), ["complexity.sparseness"], progress=False,
                         method_settings=settings)

    error = raises("method_settings", lambda: run({"integrated_gradient": {"steps": 4}}))
    assert "Did you mean 'integrated_gradients'" in str(error)
    raises("method_settings", lambda: run({"gradient": {}}))
    raises("method_settings", lambda: run({"integrated_gradients": 4}))
    raises("stepz", lambda: run({"integrated_gradients": {"stepz": 4}}))
    ig = type(get_method("integrated_gradients"))
    raises("stepz", lambda: run({"integrated_gradients": {"stepz": 4}}, [ig()]))
    raises("sed", lambda: run({"random": {"sed": 1}}, ["random"]))
    # "random" takes its own seed from method_settings rather than failing on two seeds
    seeded = run({"random": {"seed": 3}}, ["random"])
    assert seeded.rows[0]["method"] == "random"


@pytest.mark.parametrize(("methods", "argument"), [
    ([None], "methods"), ([type(get_method("gradient"))], "methods"), ([], "methods"),
    (["gradiant"], "methods"),
])
def test_bad_methods_name_the_argument(methods, argument):
    raises(argument, lambda: benchmark(linear(), inputs(), methods, ["complexity.sparseness"],
                                       progress=False))


def test_a_single_method_name_is_one_method_not_its_letters():
    table = benchmark(linear(), inputs(), "gradient", "complexity.sparseness", progress=False)
    assert [r["method"] for r in table.rows] == ["gradient"]


def test_out_dir_is_checked_before_anything_runs(tmp_path):
    calls = []
    gradient = type(get_method("gradient"))

    class Counted(gradient):
        def attribute(self, task, x):
            calls.append(1)
            return super().attribute(task, x)

    a_file = tmp_path / "results"
    a_file.write_text("not a folder")
    raises("out_dir", lambda: benchmark(linear(), inputs(), [Counted()],
                                        ["complexity.sparseness"], out_dir=a_file,
                                        progress=False))
    raises("out_dir", lambda: benchmark(linear(), inputs(), [Counted()],
                                        ["complexity.sparseness"], out_dir=a_file / "inner",
                                        progress=False))
    assert calls == []


# evaluate: targets, explanations, methods, metrics, masks

def test_an_explanation_of_a_target_callable_is_scored_on_that_callable():
    model, x = linear(), inputs()

    def contrast(out):
        return out[:, 2] - out[:, 0]

    explanation = explain(model, x, contrast, "gradient")
    kept = evaluate(model, x, None, explanation, "axiomatic.completeness")
    # gradient × input of a linear score: Σ (w₂ − w₀)⊙x = g(x) − g(0) exactly, but only for g
    grad_x_input = explain(model, x, contrast, "gradient_x_input")
    exact = evaluate(model, x, None, grad_x_input, "axiomatic.completeness")
    assert exact["axiomatic.completeness"].scores.abs().max() < 1e-12
    assert kept["axiomatic.completeness"].scores.shape == (B,)
    lost = Explanation(grad_x_input.attribution, grad_x_input.output, grad_x_input.target,
                       "gradient_x_input", grad_x_input.settings)
    error = raises("target", lambda: evaluate(model, x, None, lost, "axiomatic.completeness"),
                   ArgumentError)
    assert "callable" in str(error)
    same = evaluate(model, x, contrast, lost, "axiomatic.completeness")
    assert same["axiomatic.completeness"].scores.abs().max() < 1e-12


def test_a_method_with_a_target_callable_keeps_it():
    model, x = linear(), inputs()
    result = evaluate(model, x, lambda out: out[:, 1] - out[:, 2], "gradient_x_input",
                      "axiomatic.completeness")
    assert result["axiomatic.completeness"].scores.abs().max() < 1e-12


@pytest.mark.parametrize(("explained", "argument", "error"), [
    (None, "attributions", ArgumentTypeError),
    (type(get_method("gradient")), "attributions", ArgumentTypeError),
    (3, "attributions", ArgumentTypeError),
    ("gradiant", "attributions", ArgumentError),
    (Explanation(torch.ones(B, 12), torch.zeros(B, 3), torch.zeros(B).long(), "x"),
     "attributions", ArgumentError),
    (Explanation(torch.full((B, 3, 2, 2), float("nan")), torch.zeros(B, 3),
                 torch.zeros(B).long(), "x"), "attributions", ArgumentError),
])
def test_bad_explanations_and_methods_name_the_argument(explained, argument, error):
    raises(argument, lambda: evaluate(linear(), inputs(), 0, explained, "complexity.sparseness"),
           error)


def test_method_settings_do_not_silently_skip_an_explanation():
    model, x = linear(), inputs()
    explanation = explain(model, x, 0, "integrated_gradients", steps=4)
    raises("method_settings", lambda: evaluate(model, x, 0, explanation, "complexity.sparseness",
                                               method_settings={"steps": 8}))
    raises("stepz", lambda: evaluate(model, x, 0, "integrated_gradients",
                                     "complexity.sparseness", method_settings={"stepz": 8}))


@pytest.mark.parametrize(("metrics", "settings", "argument"), [
    ("faithfulness.pixel_fliping", {}, "metrics"),
    (PixelFlipping, {}, "metrics"),
    ([None], {}, "metrics"),
    ([], {}, "metrics"),
    ("faithfulness.pixel_flipping", {"step": 4}, "step"),
    ("faithfulness.pixel_flipping", {"steps": "4"}, "steps"),
    ("faithfulness.pixel_flipping", {"order": 1}, "order"),
    ("localisation.pointing_game", {"tolerance": -1}, "tolerance"),
    ("localisation.relevance_mass", {"positive_only": "no"}, "positive_only"),
])
def test_bad_metrics_and_settings_name_the_argument(metrics, settings, argument):
    masks = torch.ones(B, 2, 2)
    raises(argument, lambda: evaluate(linear(), inputs(), 0, "gradient", metrics, masks,
                                      **settings))


@pytest.mark.parametrize("masks", [
    torch.ones(B, 3, 3), torch.ones(B + 1, 2, 2), torch.zeros(B, 2, 2),
    torch.full((B, 2, 2), float("nan")), torch.ones(B, 2, 2, dtype=torch.complex64), "mask",
])
def test_bad_masks_name_masks(masks):
    raises("masks", lambda: evaluate(linear(), inputs(), 0, "gradient",
                                     "localisation.pointing_game", masks))


def test_a_mask_of_the_inputs_shape_is_reduced_over_channels():
    x = inputs()
    masks = torch.zeros(x.shape, dtype=torch.bool)
    masks[:, 1, 0, 0] = True  # one channel marks location (0, 0)
    attribution = torch.zeros(x.shape, dtype=torch.float64)
    attribution[:, 0, 0, 0] = 1.0
    explanation = Explanation(attribution, torch.zeros(B, 3), torch.zeros(B).long(), "x")
    result = evaluate(linear(), x, 0, explanation, "localisation.relevance_mass", masks)
    assert result["localisation.relevance_mass"].scores.tolist() == [1.0] * B


def test_pointing_game_tolerance_dilates_along_a_sequence():
    x = torch.randn(2, 1, 8, dtype=torch.float64)
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 2)).double().eval()
    masks = torch.zeros(2, 8)
    masks[:, 2] = 1
    attribution = torch.zeros_like(x)
    attribution[0, 0, 3] = 1.0  # one location from the mask
    attribution[1, 0, 6] = 1.0  # four locations from it
    explanation = Explanation(attribution, torch.zeros(2, 2), torch.zeros(2).long(), "x")
    hits = evaluate(model, x, 0, explanation, "localisation.pointing_game", masks,
                    tolerance=1)["localisation.pointing_game"].scores
    assert hits.tolist() == [1.0, 0.0]
    tabular = torch.randn(2, 12, dtype=torch.float64)
    raises("tolerance", lambda: evaluate(
        nn.Sequential(nn.Linear(12, 2)).double().eval(), tabular, 0, "gradient",
        "localisation.pointing_game", torch.ones(2, 12), tolerance=1))


# results: NaN is reported, never averaged away

def test_nan_scores_make_the_mean_nan_and_are_counted():
    x = inputs()
    attribution = torch.randn(x.shape, generator=torch.Generator().manual_seed(2),
                              dtype=torch.float64)
    attribution[1] = 0.0  # no relevance: sparseness is 0/0 for this sample
    explanation = Explanation(attribution, torch.zeros(B, 3), torch.zeros(B).long(), "x")
    result = evaluate(linear(), x, 0, explanation, "complexity.sparseness")[
        "complexity.sparseness"]
    assert result.scores[1].isnan() and result.nan_count == 1
    assert torch.isnan(torch.tensor(result.mean)) and torch.isnan(torch.tensor(result.std))
    valid = result.scores[[0, 2, 3]].double()
    assert result.valid_mean == pytest.approx(float(valid.mean()))
    assert result.valid_std == pytest.approx(float(valid.std()))
    assert "1 of 4 NaN" in repr(result)


def test_a_table_shows_and_saves_nan(tmp_path):
    model, x = linear(), inputs()
    zero = type(get_method("gradient"))

    class Zero(zero):
        name = "zero"

        def attribute(self, task, x):
            return torch.zeros_like(x), {}

    table = benchmark(model, x, [Zero(), "gradient"], ["complexity.entropy"], out_dir=tmp_path,
                      progress=False)
    assert table.rows[0]["nan"] == B and table.rows[1]["nan"] == 0
    assert f"({B} NaN)" in str(table)
    saved = json.loads((tmp_path / "benchmark.json").read_text())
    assert saved["rows"][0]["mean"] is None
    assert (tmp_path / "benchmark.csv").read_text().splitlines()[0].split(",") == [
        "method", "metric", "mean", "std", "direction", "n", "nan", "seconds"]


def test_metric_result_of_one_sample_has_zero_spread():
    result = MetricResult("x", torch.tensor([0.5]), "higher")
    assert (result.mean, result.std, result.nan_count) == (0.5, 0.0, 0)


def test_continuity_leaves_out_translations_that_change_nothing():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2)).double().eval()
    x = torch.ones(2, 1, 4, 4, dtype=torch.float64)
    x[1, 0, 0, 0] = 2.0  # moves under a translation; sample 0 is constant
    result = evaluate(model, x, 0, "gradient_x_input", "robustness.continuity", max_shift=1)[
        "robustness.continuity"]
    assert result.scores[0].isnan() and result.curves[0].isnan().all()
    assert result.scores[1].isfinite() and result.nan_count == 1


# ROAR's training function

def test_train_fn_must_return_a_model():
    x = inputs(10)
    labels = torch.arange(10) % 3
    error = raises("train_fn", lambda: evaluate(
        linear(), x, labels, "gradient", "faithfulness.roar", train_fn=lambda a, b: None,
        fractions=(0.5,)))
    assert "nn.Module" in str(error) and "return" in str(error)
    raises("train_fn", lambda: evaluate(linear(), x, labels, "gradient", "faithfulness.roar"))
    flat = nn.Sequential(nn.Flatten(), nn.Linear(12, 1), nn.Flatten(0)).double()
    raises("train_fn", lambda: evaluate(linear(), x, labels, "gradient", "faithfulness.roar",
                                        train_fn=lambda a, b: flat, fractions=(0.5,)))
    raises("test_fraction", lambda: evaluate(linear(), x[:2], labels[:2], "gradient",
                                             "faithfulness.roar", train_fn=lambda a, b: linear(),
                                             test_fraction=0.9))


def test_a_roar_fraction_that_removes_nothing_is_an_error():
    x = inputs(10)  # 4 locations: 0.1 of them rounds to none
    raises("fractions", lambda: evaluate(linear(), x, torch.arange(10) % 3, "gradient",
                                         "faithfulness.roar", train_fn=lambda a, b: linear(),
                                         fractions=(0.1, 0.5)))
