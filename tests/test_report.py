"""The demo report: its sections, the Clever-Hans fraction, method budgets, and the quick demo."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

from pellucid import get_method
from pellucid.metrics.localisation import relevance_mass
from pellucid.report.context import EVALUATIONS, demo_method
from pellucid.report.demo import build_sections
from tests.helpers.report import render, tiny_context


def test_relevance_mass_by_hand():
    r = torch.tensor([[[[3.0, -5.0], [1.0, 0.0]]], [[[-1.0, 0.0], [0.0, 0.0]]]])  # (2,1,2,2)
    mask = torch.tensor([[True, True], [False, False]]).expand(2, 2, 2)
    fraction = relevance_mass(r, mask)
    assert fraction[0].item() == pytest.approx(3 / 4)  # positive mass 3 + 1, inside 3
    assert fraction[1].isnan()  # no positive relevance at all


def test_report_has_every_section_and_inlines_its_images(tmp_path):
    ctx = tiny_context(tmp_path, ["expected_gradients", "gradient", "no_such_method"])
    html = render(ctx)
    for anchor in ("methods", "explanations", "clever-hans"):
        assert f'<section id="{anchor}">' in html
    # 3 gallery images and 2 Clever-Hans examples, each: input, mask, 3 method tiles
    attributions = html.split('<section id="evaluation">')[0]
    assert attributions.count("<figure") == (3 + 2) * (2 + 3)
    assert attributions.count('class="failed"') == 3 + 2
    assert "UnknownNameError: unknown method &#x27;no_such_method&#x27;" in html
    assert "ms/img" in html and "20.0%" in html  # a method time and a model accuracy
    images = re.findall(r'<img[^>]* src="([^"]*)"', html)
    assert images and all(src.startswith("data:image/png;base64,") for src in images)
    assert "http" not in html.split("<body>")[1].replace("http-equiv", "")


def test_clever_hans_fractions_match_the_models(tmp_path):
    ctx = tiny_context(tmp_path, ["gradient"])
    masks = ctx.clever_hans.watermark_masks
    (shortcut,) = ctx.explain("shortcut", "clever_hans", ctx.clever_hans.images, ctx.shortcut_class)
    (control,) = ctx.explain("main", "clever_hans", ctx.clever_hans.images, ctx.shortcut_class)
    # gradient of Σ x·W is W: all on the stamp for the shortcut model, uniform for the control
    assert relevance_mass(shortcut.attribution, masks).tolist() == [1.0] * 3
    area = masks.flatten(1).float().mean(1)
    fraction = relevance_mass(control.attribution, masks)
    assert torch.allclose(fraction, area.to(fraction.dtype))
    html = render(ctx)
    assert ">100%</span>" in html and f">{100 * float(area.mean()):.0f}%</span>" in html


def test_demo_methods_get_their_cheap_budget_and_the_references():
    x, refs = torch.zeros(1, 3, 4, 4), torch.zeros(2, 3, 4, 4)
    assert demo_method("expected_gradients", x, refs).references is refs
    assert demo_method("integrated_gradients", x, refs).steps == EVALUATIONS
    gradient = demo_method("gradient", x, refs)
    assert type(gradient) is type(get_method("gradient"))
    assert gradient.settings() == get_method("gradient").settings()


def test_quick_demo_writes_index_html(tmp_path, capsys):
    from pellucid.cli import main
    from pellucid.models import DEMO_MODELS
    from pellucid.models.pretrained import WEIGHTS_DIR

    cache = Path(os.environ.get("PELLUCID_CACHE", Path.home() / ".cache" / "pellucid"))
    if not all(any((d / f"{n}.pt").is_file() for d in (WEIGHTS_DIR, cache)) for n in DEMO_MODELS):
        pytest.skip("the demo weights are not there (training them takes minutes)")
    assert main(["demo", "--out", str(tmp_path / "report"), "--quick"]) == 0
    html = (tmp_path / "report" / "index.html").read_text()
    assert str(tmp_path / "report" / "index.html") in capsys.readouterr().out
    for anchor in ("methods", "explanations", "clever-hans"):
        assert f'<section id="{anchor}">' in html
    assert "integrated_<wbr>gradients" in html and "shapes_vgg" in html


def test_a_failing_section_is_shown_not_raised(tmp_path):
    ctx = tiny_context(tmp_path, ["gradient"])

    def broken_section(ctx):
        raise RuntimeError("boom")

    (section,) = build_sections(ctx, [broken_section, lambda ctx: None])
    assert section.title == "Broken" and "RuntimeError: boom" in section.body


def test_renamed_names_still_work_with_a_deprecation_warning():
    import pellucid.report as report
    from pellucid.report import demo

    with pytest.warns(DeprecationWarning, match="write_demo_report"):
        assert report.run_demo is report.write_demo_report
    with pytest.warns(DeprecationWarning, match="MethodResult"):
        assert demo.MethodRun is report.MethodResult
    with pytest.raises(AttributeError):
        report.no_such_name  # noqa: B018
