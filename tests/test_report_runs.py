"""The report on the runner: the evaluation through ``pellucid.runs.run``, the SpRAy section
on the Clever-Hans data, and the report written from a run's store."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import pellucid
from pellucid.errors import ArgumentError, ArgumentTypeError
from pellucid.report import spray as spray_module
from pellucid.report.context import demo_method
from pellucid.report.evaluation import DEMO_METRICS, evaluation_run, evaluation_section
from pellucid.report.sections import SECTIONS
from pellucid.report.spray import adjusted_rand_index, spray_section
from pellucid.report.store_report import class_means, write_store_report
from pellucid.report.world import spray_images
from pellucid.runs import Run, run
from tests.helpers.report import tiny_context

# ---------------------------------------------------------------- evaluation on the runner


def test_evaluation_scores_equal_a_direct_evaluate(tmp_path):
    ctx = tiny_context(tmp_path, ["gradient", "integrated_gradients", "no_such_method"])
    data, model = ctx.gallery, ctx.models["main"].model
    scored = evaluation_run(ctx)
    assert scored.methods == ["random", "gradient", "integrated_gradients"]  # failed one out
    summary = {(r["method"], r["metric"]): r for r in scored.summary().rows}
    method = demo_method("integrated_gradients", data.images, ctx.references)
    explanation = method(model, data.images)  # the predicted class, as the section explains
    for metric, settings in DEMO_METRICS.items():
        direct = pellucid.evaluate(model, data.images, None, explanation, [metric], data.masks,
                                   **settings)[metric]
        row = summary[("integrated_gradients", metric)]
        assert row["nan"] == direct.nan_count == 0 and row["n"] == len(data)
        assert row["mean"] == pytest.approx(direct.mean, rel=1e-9, abs=1e-12)
        assert row["std"] == pytest.approx(direct.std, rel=1e-9, abs=1e-12)
    body = evaluation_section(ctx).body
    row = summary[("integrated_gradients", "faithfulness.deletion")]
    assert f"{row['mean']:.3f} ± {row['std']:.3f}" in body
    assert body.count("<tr>") == 1 + 3  # header, random and the two methods


def test_evaluation_shows_a_method_that_fails_on_the_runner(tmp_path, monkeypatch):
    ctx = tiny_context(tmp_path, ["gradient"])
    ctx.explain("main", "gallery", ctx.gallery.images)  # gradient works for the gallery ...

    class Broken(nn.Module):  # ... but the runner meets a model that raises on every sample
        def forward(self, x):
            raise RuntimeError("broken model")

    from pellucid.report import evaluation

    original = evaluation.run
    monkeypatch.setattr(evaluation, "run",
                        lambda model, *a, **k: original(Broken().eval(), *a, **k))
    body = evaluation_section(ctx).body
    # random and gradient: every sample failed, so each metric's cell shows the error
    assert body.count("RuntimeError: broken model") == 2 * len(DEMO_METRICS)


# ---------------------------------------------------------------- the SpRAy section


def shortcut_context(tmp_path, count: int):
    """The tiny context with the shipped Clever-Hans model and ``count`` of its test images
    of the shortcut class, every other one watermarked."""
    from pellucid.models import demo_test_sets, load_pretrained

    sets = demo_test_sets("clever_hans_vgg")
    ctx = tiny_context(tmp_path, ["gradient"])
    model = load_pretrained("clever_hans_vgg", progress=False).eval()
    cls = int(sets["test_moved"].labels[~sets["test_moved"].has_watermark][0])
    ctx.models["shortcut"] = type(ctx.models["shortcut"])("clever_hans_vgg", model, "")
    ctx.shortcut_class = cls
    ctx.spray = spray_images(sets["test"], sets["test_watermarked"], cls, count)
    return ctx


def test_spray_images_alternate_watermarked_and_clean():
    from pellucid.data import clever_hans

    data = clever_hans(0, n_test=60, size=32, seed=3)
    mixed = spray_images(data.test, data.test_watermarked, data.shortcut_class, 8)
    index = (data.test.labels == data.shortcut_class).nonzero().flatten()[:8]
    marked = torch.arange(8) % 2 == 0
    assert torch.equal(mixed.has_watermark, marked)
    assert torch.equal(mixed.images[marked], data.test_watermarked.images[index][marked])
    assert torch.equal(mixed.images[~marked], data.test.images[index][~marked])
    assert not mixed.watermark_masks[~marked].any()


def test_spray_section_separates_the_watermarked_images(tmp_path):
    ctx = shortcut_context(tmp_path, 40)
    section = spray_section(ctx)
    body = section.body
    k = int(re.search(r"Eigengap k = <b>(\d+)</b>", body).group(1))
    ari = float(re.search(r"watermark presence: <b>([\d.]+)</b>", body).group(1))
    assert k == 2 and ari >= 0.8  # issue 13's acceptance, on 40 images
    cells = [[int(c) for c in row] for row in re.findall(
        r"<td>cluster \d+</td><td class=\"num\">(\d+)</td><td class=\"num\">(\d+)</td>", body)]
    assert len(cells) == k
    assert sum(n for n, _ in cells) == 40 and sum(w for _, w in cells) == 20
    assert sorted(w / n for n, w in cells) == pytest.approx([0.0, 1.0], abs=0.1)
    assert re.findall(r'<img[^>]* src="data:image/png;base64,', body)
    assert spray_section in SECTIONS
    assert SECTIONS.index(spray_section) == SECTIONS.index(
        __import__("pellucid.report.clever_hans", fromlist=["x"]).clever_hans_section) + 1


def test_adjusted_rand_index_closed_forms():
    truth = torch.tensor([0, 0, 1, 1])
    assert adjusted_rand_index(truth, torch.tensor([5, 5, 2, 2])) == 1.0  # same partition
    # one cluster: the Rand index equals its expectation, ARI = 0
    assert adjusted_rand_index(truth, torch.zeros(4, dtype=torch.long)) == 0.0
    # {0,1},{2,3} vs {0,2},{1,3}: no pair agrees beyond chance, ARI = (0 − 1/3)/(2 − 1/3) = −0.5
    assert adjusted_rand_index(truth, torch.tensor([0, 1, 0, 1])) == pytest.approx(-0.5)


def test_spray_sections_say_why_without_scikit_learn(tmp_path, monkeypatch):
    monkeypatch.setattr(spray_module, "sklearn_missing", lambda: True)
    ctx = tiny_context(tmp_path, ["gradient"])
    ctx.spray = ctx.clever_hans
    assert "SpRAy needs scikit-learn: pip install 'pellucid[analysis]'" in spray_section(ctx).body
    assert spray_section(tiny_context(tmp_path, ["gradient"])) is None  # no images: no section


# ---------------------------------------------------------------- the report from a store


class Fragile(nn.Module):
    """A linear model that raises for any sample whose first value is 99."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Sequential(nn.Flatten(), nn.Linear(48, 3))

    def forward(self, x):
        if bool((x.flatten(1)[:, 0] == 99).any()):
            raise RuntimeError("marked sample")
        return self.inner(x)


METHODS = ["random", "gradient", "gradient_x_input"]
METRICS = ["complexity.sparseness", "faithfulness.deletion"]


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    torch.manual_seed(0)
    x, y = torch.rand(50, 3, 4, 4), torch.tensor([0, 1, 2, 2, 2] * 10)  # class 2: 30 samples
    x[5, 0, 0, 0] = 99.0
    path = tmp_path_factory.mktemp("run") / "store"
    run(Fragile().eval(), (x, y), METHODS, metrics=METRICS, target="labels", store=path,
        batch_size=16, progress=False)
    return path


def sections_of(page: str) -> dict[str, str]:
    return dict(re.findall(r'<section id="([\w-]+)">(.*?)</section>', page, re.S))


def test_store_report_holds_the_summary_failures_and_heatmaps(stored, tmp_path):
    index = write_store_report(stored, tmp_path / "report", samples=6)
    assert index == tmp_path / "report" / "index.html"
    page = index.read_text()
    found = sections_of(page)
    assert list(found) == ["run", "summary", "classes", "failures", "heatmaps", "spray"]
    r = Run.open(stored)
    assert r.fingerprint in found["run"] and ">50<" in found["run"]
    for name in METHODS + METRICS:
        assert name in found["summary"] and name in found["classes"]
    for row in r.summary().rows:  # every number is the summary's
        cells = (f"<b>{row['method']}</b></td><td>{row['metric']} ",
                 f"{row['mean']:.4g} ± {row['std']:.3g}</td><td class=\"num\">{row['nan']}</td>"
                 f"<td class=\"num\">{row['n']}</td>")
        assert cells[0] in found["summary"] and cells[1] in found["summary"]
        assert row["nan"] == 1  # sample 5 failed for every method
    rows = re.findall(r'<td class="num">(\d+)</td><td>([\w.]+)</td><td>([^<]*)</td>',
                      found["failures"])
    assert rows == [("5", m, "RuntimeError: marked sample") for m in METHODS]
    # heatmaps: 6 samples per method, sample 5 failed for each
    assert found["heatmaps"].count("<figure") == 6 * len(METHODS)
    assert found["heatmaps"].count('class="failed"') == len(METHODS)
    images = re.findall(r'<img[^>]* src="([^"]*)"', page)
    assert images and all(src.startswith("data:image/png;base64,") for src in images)
    assert "http" not in page.split("<body>")[1].replace("http-equiv", "")


def test_store_report_per_class_means_by_hand(stored):
    r = Run.open(stored)
    counts, means = class_means(r)
    targets = r.targets
    assert counts.tolist() == [int((targets == c).sum()) for c in range(3)] == [9, 10, 30]
    for method in METHODS:
        for metric, scores in r.scores(method).items():
            for c in range(3):
                picked = scores[(targets == c) & ~scores.isnan()]
                assert means[(method, metric)][c] == pytest.approx(float(picked.mean()))


def test_store_report_spray_for_classes_with_enough_samples(stored, tmp_path, monkeypatch):
    spray = sections_of(write_store_report(Run.open(stored), tmp_path / "a").read_text())["spray"]
    assert "class 2" in spray and "class 0" not in spray and "class 1" not in spray
    assert "gradient's heatmaps" in spray  # the first method that is not random
    match = re.search(r"(\d+) heatmaps · eigengap k = (\d+) · cluster sizes ([\d, ]+)", spray)
    assert match.group(1) == "30"  # class 2's samples (the failed one, 5, is of class 0)
    sizes = [int(n) for n in match.group(3).split(",")]
    assert sum(sizes) == 30 and len(sizes) == int(match.group(2))
    monkeypatch.setattr(spray_module, "sklearn_missing", lambda: True)
    from pellucid.report import store_report

    monkeypatch.setattr(store_report, "sklearn_missing", lambda: True)
    skipped = sections_of(write_store_report(stored, tmp_path / "b").read_text())["spray"]
    assert "Skipped: SpRAy needs scikit-learn" in skipped


def test_store_report_from_memory_and_sequences(tmp_path):
    model = nn.Linear(4, 2).eval()
    r = run(model, torch.randn(5, 4), ["gradient"], progress=False)  # no metrics, (N, 4)
    page = write_store_report(r, tmp_path, samples=10).read_text()
    found = sections_of(page)
    assert "classes" not in found and "The run has no metrics." in found["summary"]
    assert found["heatmaps"].count("<figure") == 5  # samples capped by the run's length
    assert "No sample failed." in found["failures"]


@pytest.mark.parametrize(
    ("kwargs", "error", "argument"),
    [
        ({"store": 123}, ArgumentTypeError, "store"),
        ({"store": "missing"}, ArgumentError, "store"),
        ({"samples": 0}, ArgumentError, "samples"),
        ({"samples": 2.5}, ArgumentTypeError, "samples"),
        ({"out": 7}, ArgumentTypeError, "out"),
    ],
)
def test_store_report_bad_arguments(stored, tmp_path, kwargs, error, argument):
    call = {"store": stored, "out": tmp_path / "out", **kwargs}
    if call["store"] == "missing":
        call["store"] = tmp_path / "missing"
    with pytest.raises(error) as raised:
        write_store_report(call.pop("store"), call.pop("out"), **call)
    assert raised.value.argument == argument and argument in str(raised.value)


def test_store_report_out_must_not_be_a_file(stored, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArgumentError, match="out") as raised:
        write_store_report(stored, tmp_path / "file")
    assert raised.value.argument == "out"



def test_store_report_of_a_store_without_batches(tmp_path):
    from pellucid.runs.runner import open_store, prepare

    plan = prepare(["gradient"], ["complexity.sparseness"])
    open_store(nn.Linear(3, 2), plan, tmp_path / "store", True)  # killed before its 1st batch
    found = sections_of(write_store_report(tmp_path / "store", tmp_path / "out").read_text())
    assert "The run holds no samples yet." in found["heatmaps"]
    assert "spray" not in found and "No sample failed." in found["failures"]
