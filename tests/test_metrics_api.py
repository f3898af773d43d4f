"""evaluate / benchmark / registry, ROAR end to end, and the model-untouched guarantee."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from pellucid import Explanation, benchmark
from pellucid.errors import ArgumentError
from pellucid.metrics import (
    METRICS,
    Metric,
    RandomAttribution,
    Scores,
    evaluate,
    get_metric,
    list_metrics,
)

NEEDS_TRAINING = {"faithfulness.roar", "randomisation.data"}


def tiny_cnn(classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, classes)).eval()


def logistic_regression(x: torch.Tensor, y: torch.Tensor, classes: int = 2) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(x[0].numel(), classes))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(60):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()
    return model.eval()


def test_every_category_is_registered_with_a_direction():
    names = list_metrics()
    assert {n.split(".")[0] for n in names} == {
        "faithfulness", "robustness", "localisation", "complexity", "axiomatic", "randomisation"}
    for entry in METRICS.entries():
        assert entry.obj.direction in ("higher", "lower")
        assert entry.description, entry.name
    assert list_metrics("localisation.*") == [
        "localisation.pointing_game", "localisation.relevance_mass", "localisation.relevance_rank"]


@pytest.mark.parametrize("name", [n for n in list_metrics()])
def test_model_and_inputs_are_untouched_by_every_metric(name, snapshot, untouched):
    model = tiny_cnn()
    x = torch.rand(3, 3, 8, 8)
    x_before = x.clone()
    masks = torch.zeros(3, 8, 8)
    masks[:, 2:5, 2:5] = 1
    settings = {"train_fn": lambda a, b: tiny_cnn()} if name in NEEDS_TRAINING else {}
    if name.startswith("faithfulness") and name != "faithfulness.roar":
        settings["steps" if "correlation" not in name and "infidelity" not in name
                 else "batch_size"] = 4  # region perturbation: 4 patches of 4×4
    before = snapshot(model)
    result = evaluate(model, x, torch.tensor([0, 1, 2]), "gradient", name, masks=masks,
                      **settings)[name]
    untouched(model, before)
    assert torch.equal(x, x_before)
    assert result.scores.ndim == 1 and result.direction in ("higher", "lower")
    # one direction, whoever reads it: the registry, a metric object, the result
    assert result.direction == get_metric(name).direction == METRICS.get(name).direction


def test_a_direction_that_depends_on_a_setting_reaches_every_consumer():
    model = tiny_cnn()
    x = torch.rand(4, 3, 8, 8)
    labels = torch.tensor([0, 1, 2, 0])
    for name in ("faithfulness.pixel_flipping", "faithfulness.region_perturbation"):
        assert METRICS.get(name).direction == get_metric(name).direction == "higher"  # MoRF
        lerf = get_metric(name, order="lerf")
        assert lerf.direction == "lower"
        result = evaluate(model, x, labels, "gradient", lerf, steps=4)[name]
        assert result.direction == "lower"
        table = benchmark(model, (x, labels), ["gradient"], [lerf], n=4, progress=False,
                          steps=4)
        assert table.rows[0]["direction"] == "lower" and "↓" in str(table)
        with pytest.warns(DeprecationWarning, match="direction"):
            assert lerf.better() == "lower"


def test_model_is_restored_when_a_metric_raises(snapshot, untouched):
    model = tiny_cnn()
    before = snapshot(model)

    def failing_train_fn(x, y):
        raise RuntimeError("training failed")

    with pytest.raises(RuntimeError, match="training failed"):
        evaluate(model, torch.rand(2, 3, 8, 8), 0, "gradient", "randomisation.data",
                 train_fn=failing_train_fn)
    untouched(model, before)


def test_errors_name_the_problem():
    model = tiny_cnn()
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(KeyError, match="pixel_flipping"):
        evaluate(model, x, 0, "gradient", "faithfulness.pixel_fliping")
    with pytest.raises(TypeError, match="no chosen metric has the setting"):
        evaluate(model, x, 0, "gradient", "complexity.sparseness", steps=3)
    handmade = Explanation(torch.rand(2, 3, 8, 8), torch.zeros(2, 3), torch.zeros(2).long(), "x")
    with pytest.raises(ArgumentError, match="re-runs the explanation method") as error:
        evaluate(model, x, 0, handmade, "robustness.max_sensitivity")
    assert error.value.argument == "method"
    with pytest.raises(ArgumentError, match=r"\(attributions\) have shape") as error:
        evaluate(model, x[:1], 0, handmade, "complexity.sparseness")
    assert error.value.argument == "attributions"


def test_roar_on_data_whose_class_lives_in_a_known_region():
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(120) % 2
    x = 0.1 * torch.randn(120, 1, 8, 8, generator=gen)
    x[:, 0, 3:5, 3:5] += (2.0 * labels - 1).view(-1, 1, 1)  # the only evidence
    oracle = torch.zeros_like(x)
    oracle[:, 0, 3:5, 3:5] = 1.0
    oracle += 1e-3 * torch.rand(x.shape, generator=gen)
    explanation = Explanation(oracle, torch.zeros(120, 2), labels, "oracle")
    model = logistic_regression(x, labels)
    result = evaluate(model, x, labels, explanation, "faithfulness.roar",
                      train_fn=logistic_regression, fractions=(0.1, 0.5))["faithfulness.roar"]
    assert result.curves.shape == (36, 2)
    # removing the top 10 % (6 of 64 locations) takes all the evidence: chance accuracy
    assert result.extras["accuracy"][0] < 0.75
    assert result.extras["random_accuracy"][0] > 0.9
    assert result.direction == "lower"


def test_roar_runs_on_the_generated_shapes_data():
    from pellucid.data import shapes

    data = shapes(40, size=16, classes=2, seed=0, distractors=0)
    model = logistic_regression(data.images, data.labels)
    result = evaluate(model, data.images, data.labels, "gradient", "faithfulness.roar",
                      train_fn=logistic_regression, fractions=(0.2, 0.6))["faithfulness.roar"]
    accuracy = result.extras["accuracy"]
    assert accuracy.shape == (2,) and ((accuracy >= 0) & (accuracy <= 1)).all()
    torch.testing.assert_close(result.scores.mean(), accuracy.mean())


def test_benchmark_table_files_and_plots(tmp_path):
    model = tiny_cnn()
    x = torch.rand(6, 3, 8, 8)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    table = benchmark(model, (x, labels), ["random", "gradient"],
                      ["faithfulness.pixel_flipping", "complexity.sparseness"], n=4,
                      out_dir=tmp_path, progress=False, steps=4)
    assert [(r["method"], r["metric"]) for r in table.rows] == [
        ("random", "faithfulness.pixel_flipping"), ("random", "complexity.sparseness"),
        ("gradient", "faithfulness.pixel_flipping"), ("gradient", "complexity.sparseness")]
    assert all(r["n"] == 4 for r in table.rows)
    assert (tmp_path / "benchmark.csv").read_text().startswith("method,metric,mean")
    saved = json.loads((tmp_path / "benchmark.json").read_text())
    assert len(saved["rows"]) == 4 and len(saved["curves"]) == 2
    assert (tmp_path / "faithfulness.pixel_flipping.png").exists()
    assert "gradient" in str(table) and "↑" in str(table)
    direct = evaluate(model, x[:4], labels[:4], "gradient", "complexity.sparseness")
    assert table.value("gradient", "complexity.sparseness") == pytest.approx(
        direct["complexity.sparseness"].mean)


def test_renamed_names_still_work_with_a_deprecation_warning():
    from pellucid.metrics import baseline

    with pytest.warns(DeprecationWarning, match="pellucid.metrics.RandomAttribution"):
        assert baseline.RandomAttribution is RandomAttribution

    @dataclass(frozen=True, eq=False)
    class ReadsTheOldNames(Metric):
        def compute(self, case):
            with pytest.warns(DeprecationWarning, match="case.forward.inputs"):
                assert case.inputs is case.forward.inputs
            with pytest.warns(DeprecationWarning, match="case.task.model"):
                assert case.model is case.task.model
            with pytest.warns(DeprecationWarning, match="case.task.target"):
                assert case.target is case.task.target
            return Scores(case.forward.output[:, 0])

    model = tiny_cnn()
    evaluate(model, torch.rand(2, 3, 8, 8), 0, "gradient", ReadsTheOldNames())


def test_command_line_evaluate(tmp_path, capsys):

    from pellucid.cli import main

    factory = tmp_path / "factory.py"
    factory.write_text(
        "import torch\n"
        "def make():\n"
        "    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 5))\n"
    )
    assert main([
        "evaluate", "--model", f"{factory}:make", "--data", "shapes", "--size", "16", "-n", "6",
        "--methods", "random", "gradient_x_input", "--metrics", "localisation.relevance_mass",
        "--out", str(tmp_path / "out"),
    ]) == 0
    printed = capsys.readouterr().out
    assert "gradient_x_input" in printed and "localisation.relevance_mass" in printed
    assert (tmp_path / "out" / "benchmark.csv").exists()
