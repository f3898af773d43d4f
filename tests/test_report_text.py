"""The report's Text section: token colours by sign, every row rendered, scores, failures."""

from __future__ import annotations

import html
import re

import pytest
import torch

from pellucid.errors import PellucidError
from pellucid.models import demo_test_sets, load_pretrained
from pellucid.report import ReportModel
from pellucid.report.sections import SECTIONS
from pellucid.report.text import TEXT_COUNTS, TEXT_ROWS, text_section, token_spans
from pellucid.report.world import TEXT_ROLES
from tests.helpers.report import tiny_context

SPAN = re.compile(r'<span class="(tok(?: key)?)" style="background:#(\w{6});color:#(\w+)" '
                  r'title="R = ([^"]+)">([^<]*)</span>')


def spans(markup: str) -> list[tuple[str, tuple[int, int, int], str, float, str]]:
    """(class, background rgb, text colour, R, word) of each token span."""
    return [
        (klass, tuple(int(rgb[i: i + 2], 16) for i in (0, 2, 4)), text, float(r),
         html.unescape(word))
        for klass, rgb, text, r, word in SPAN.findall(markup)
    ]


def bwr(v: float) -> tuple[float, float, float]:
    """Blue-white-red at v ∈ [−1, 1] in closed form: white fades to red (v > 0) or blue."""
    fade = 255 * (1 - abs(v))
    return (255.0, fade, fade) if v >= 0 else (fade, fade, 255.0)


def test_token_spans_colour_by_sign_and_box_the_evidence():
    r = torch.tensor([2.0, -1.0, 0.0, -2.0, 0.5])
    words = ["cat", "<b>", "the", "dogma", "of"]
    found = spans(token_spans(words, r, torch.tensor([True, False, False, False, True])))
    assert [w for *_, w in found] == words  # escaped in the markup, the words when read
    assert [k for k, *_ in found] == ["tok key", "tok", "tok", "tok", "tok key"]
    assert [f[3] for f in found] == r.tolist()
    for (_, rgb, text, _, _), value in zip(found, (r / r.abs().max()).tolist(), strict=True):
        assert rgb == pytest.approx(bwr(value), abs=1.5)  # 257 entries: ±½ step, rounded
        assert text == ("fff" if value in (1.0, -1.0) else "000")
    assert found[0][1] == (255, 0, 0) and found[3][1] == (0, 0, 255)
    assert found[2][1] == (255, 255, 255)


def test_an_all_zero_row_is_white():
    found = spans(token_spans(["a", "b"], torch.zeros(2), torch.zeros(2, dtype=torch.bool)))
    assert [f[1] for f in found] == [(255, 255, 255)] * 2


@pytest.mark.parametrize(
    ("words", "relevance", "evidence", "argument"),
    [
        (["a", "b"], torch.ones(3), torch.zeros(2), "relevance"),
        (["a", "b"], torch.ones(1, 2), torch.zeros(2), "relevance"),
        (["a", "b"], [1.0, 2.0], torch.zeros(2), "relevance"),
        (["a", "b"], torch.tensor([1.0, float("nan")]), torch.zeros(2), "relevance"),
        (["a", "b"], torch.ones(2), torch.zeros(3), "evidence"),
        ("ab", torch.ones(2), torch.zeros(2), "words"),
        (["a", 2], torch.ones(2), torch.zeros(2), "words"),
    ],
)
def test_token_spans_name_the_bad_argument(words, relevance, evidence, argument):
    with pytest.raises(PellucidError, match=argument) as error:
        token_spans(words, relevance, evidence)
    assert error.value.argument == argument


@pytest.fixture(scope="module")
def text_context(tmp_path_factory):
    ctx = tiny_context(tmp_path_factory.mktemp("text"), ["gradient"])
    for name, role in TEXT_ROLES.items():
        ctx.models[role] = ReportModel(name, load_pretrained(name), role, {"test": 0.99})
    ctx.text = demo_test_sets("text_transformer")["test"]
    return ctx


@pytest.fixture(scope="module")
def section(text_context):
    return text_section(text_context)


def test_section_shows_every_method_and_the_tokens(text_context, section):
    shown, scored = TEXT_COUNTS[True]
    data = text_context.text
    body = section.body
    assert section.anchor == "text" and 'class="bad"' not in body
    for label, *_ in TEXT_ROWS:
        assert f"<b>{html.escape(label)}</b>" in body
    assert "<b>random</b>" in body and "text_lstm" in body
    found = spans(body)
    words = [w for k in range(shown) for _ in TEXT_ROWS for w in data.tokens(k)]
    assert [f[4] for f in found] == words  # every real token once per row, no padding
    keys = [bool(m) for k in range(shown) for _ in TEXT_ROWS
            for m in data.masks[k][data.attention_mask[k]]]
    assert [f[0] == "tok key" for f in found] == keys
    assert f"scores the first {scored} test sequences" in section.lead
    # the scores are fractions and ranks in [0, 1]: 8 rows × 3 metrics
    table = body.split("relevance mass ↑")[1]
    scores = [float(s) for s in re.findall(r'<td class="num">([-\d.]+)</td>', table)]
    assert len(scores) == 3 * (1 + len(TEXT_ROWS)) and all(0 <= s <= 1 for s in scores)


def test_span_colours_follow_gradient_x_input_by_hand(text_context, section):
    """Row gradient_x_input of sequence 1: R_t = Σ_d h_td ∂f_y/∂h_td with h = E[ids]."""
    model = text_context.models["text"].model
    data = text_context.text
    ids, mask, label = data.input_ids[:1], data.attention_mask[:1], int(data.labels[0])
    h = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    handle = model.get_input_embeddings().register_forward_hook(lambda *_: h)
    try:
        model(ids, attention_mask=mask)[0, label].backward()
    finally:
        handle.remove()
    relevance = (h * h.grad).sum(-1)[0][mask[0]]
    first_row = section.body.split("<b>gradient_x_input</b>")[1].split("</tr>")[0]
    found = spans(first_row)
    assert len(found) == len(relevance)
    torch.testing.assert_close(torch.tensor([f[3] for f in found]), relevance,
                               rtol=5e-3, atol=1e-6)  # the title holds R to 3 digits
    for (_, rgb, *_), value in zip(found, (relevance / relevance.abs().max()).tolist(),
                                   strict=True):
        assert rgb == pytest.approx(bwr(value), abs=1.5)
        if value > 0.05:  # red: full red channel, less blue
            assert rgb[0] == 255 and rgb[2] < 255
        elif value < -0.05:
            assert rgb[2] == 255 and rgb[0] < 255


def test_a_failing_method_is_shown_in_its_row(text_context):
    ctx = tiny_context(text_context.out, ["gradient"])
    lstm = text_context.models["text_recurrent"]
    ctx.models.update(text=lstm, text_recurrent=lstm)  # no attention: generic_attention fails
    ctx.text = text_context.text
    body = text_section(ctx).body
    row = body.split("<b>generic_attention</b>")[1].split("</tr>")[0]
    assert '<span class="bad">failed</span>' in row
    assert "ArgumentError" in body.split("relevance mass ↑")[1]
    assert "<b>lrp.cp_lrp</b>" in body  # the other rows are drawn


def test_the_page_has_the_section_only_with_text(tmp_path):
    assert text_section in SECTIONS
    assert text_section(tiny_context(tmp_path, ["gradient"])) is None  # no text models


def test_the_text_benchmark_runs_each_applicable_method_with_mask_references():
    from benchmarks.text import methods_for

    ids = torch.zeros(2, 8, dtype=torch.long)
    rows = {
        model: dict(methods_for(model, ids, 4, ids)) for model in ("text_transformer", "text_lstm")
    }
    assert "generic_attention" in rows["text_transformer"]
    assert not any("attention" in m.requires for m in rows["text_lstm"].values())
    for methods in rows.values():
        assert methods["occlusion (window=1)"].window == 1
        assert methods['integrated_gradients (baseline="pad")'].baseline == "pad"
        assert methods['integrated_gradients (baseline="mask")'].steps == 4
        assert all(m.settings().get("fill", "mask") == "mask" for m in methods.values())
        assert methods["deeplift"].baseline == "mask" and "random" in methods
