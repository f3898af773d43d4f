"""The report's Text section: tokens coloured by relevance on the planted-evidence data.

Test sequences of :func:`~pellucid.data.text_evidence` (the shipped models' fixed test set)
are explained for their true class by each row of :data:`TEXT_ROWS`: a handful of methods on
the shipped ``text_transformer`` and LRP-ε on ``text_lstm``. Each word is drawn as a span
whose background is the ``bwr`` colour of R / max|R| over the sequence's real tokens (red
positive, blue negative, white zero; padding is not drawn); the key words, the evidence that
decides the class, are boxed. A table gives each row's relevance mass
(Σ max(R, 0)·M / Σ max(R, 0)), relevance rank and pointing game against the key words
(Arras et al. 2022) on the scored sequences, next to the random attribution.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..api import get_method
from ..data.text import TokenSet
from ..errors import ArgumentError, ArgumentTypeError
from ..metrics import RandomAttribution, evaluate
from ..viz.colormaps import get_colormap
from ..viz.heatmap import colorize, normalise
from .context import DemoContext, MethodResult
from .html import Section, esc, table

#: (row label, model role in ``DemoContext.models``, method name, settings)
TEXT_ROWS: tuple[tuple[str, str, str, Mapping[str, Any]], ...] = (
    ("gradient_x_input", "text", "gradient_x_input", {}),
    ('integrated_gradients (baseline="mask")', "text", "integrated_gradients",
     {"baseline": "mask", "steps": 16}),
    ("lrp.attnlrp", "text", "lrp.attnlrp", {}),
    ("lrp.cp_lrp", "text", "lrp.cp_lrp", {}),
    ('occlusion (window=1, fill="mask")', "text", "occlusion",
     {"window": 1, "stride": 1, "fill": "mask"}),
    ("generic_attention", "text", "generic_attention", {}),
    ("lrp.epsilon", "text_recurrent", "lrp.epsilon", {}),
)
#: the localisation metrics of the section's table
TEXT_METRICS = (
    "localisation.relevance_mass",
    "localisation.relevance_rank",
    "localisation.pointing_game",
)
#: the luma weights of RGB: text on a background darker than half is white
LUMA = np.array([0.299, 0.587, 0.114])
#: (sequences drawn, sequences scored), by ``quick``
TEXT_COUNTS = {True: (3, 16), False: (4, 32)}


def token_spans(words: Sequence[str], relevance: Tensor, evidence: Tensor) -> str:
    """The words as HTML spans coloured by relevance: ``bwr`` of R / max|R| (red R > 0,
    blue R < 0, white R = 0), white text on dark colours; words where ``evidence`` is True
    get the class ``key`` (boxed).

    Example:
        >>> import torch
        >>> html = token_spans(["a", "cat"], torch.tensor([-1.0, 2.0]), torch.tensor([0, 1]))
        >>> "background:#8080ff" in html, 'class="tok key" style="background:#ff0000' in html
        (True, True)
    """
    _check_row(words, relevance, evidence)
    maps = relevance.detach().double().cpu()[None, None]
    rgb = colorize(normalise(maps, signed=True), get_colormap("bwr"))[0, 0]
    spans = []
    for word, colour, value, key in zip(words, rgb, relevance.tolist(), evidence.tolist(),
                                        strict=True):
        dark = float(colour @ LUMA) < 128
        klass = "tok key" if key else "tok"
        background = "#" + "".join(f"{int(c):02x}" for c in colour)
        spans.append(
            f'<span class="{klass}" style="background:{background};'
            f'color:{"#fff" if dark else "#000"}" title="R = {value:.3g}">{esc(word)}</span>'
        )
    return " ".join(spans)


def _check_row(words: Sequence[str], relevance: Tensor, evidence: Tensor) -> None:
    """One value and one evidence flag per word, each a 1-D tensor, relevance finite."""
    if isinstance(words, (str, bytes)) or not all(isinstance(w, str) for w in words):
        raise ArgumentTypeError("words", f"words must be a list of strings, got {words!r:.80}")
    for name, value in (("relevance", relevance), ("evidence", evidence)):
        if not isinstance(value, Tensor) or value.shape != (len(words),):
            got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ArgumentError(
                name, f"{name} must be a tensor ({len(words)},), one value per word, got {got}"
            )
    if not bool(torch.isfinite(relevance).all()):
        raise ArgumentError("relevance", "relevance holds NaN or infinite values; pass finite "
                            "values (one per word)")


def text_section(ctx: DemoContext) -> Section | None:
    """Coloured tokens for a few test sequences and the localisation scores of each row."""
    data = ctx.text
    if data is None or not {"text", "text_recurrent"} <= ctx.models.keys():
        return None
    shown, scored = TEXT_COUNTS[ctx.quick]
    data = data.subset(slice(0, scored))
    kwargs = {"attention_mask": data.attention_mask}
    results = [_explain(ctx.models[role].model, data, label, name, settings)
               for label, role, name, settings in TEXT_ROWS]
    transformer = ctx.models["text"].model
    random = RandomAttribution()(transformer, data.input_ids, data.labels, model_kwargs=kwargs)
    rows = []
    for result, role in [(MethodResult("random", random.attribution, 0.0), "text"),
                         *((r, row[1]) for r, row in zip(results, TEXT_ROWS, strict=True))]:
        cells = [f"<b>{esc(result.method)}</b>", esc(ctx.models[role].name)]
        if result.ok:
            scores = evaluate(ctx.models[role].model, data.input_ids, data.labels,
                              result.attribution, list(TEXT_METRICS), data.masks,
                              model_kwargs=kwargs)
            cells += [f"{scores[m].mean:.2f}" for m in TEXT_METRICS]
        else:
            cells += [f'<span class="bad">{esc(result.error)}</span>'] + [""] * (
                len(TEXT_METRICS) - 1)
        rows.append(cells)
    header = ["method", "model", "relevance mass ↑", "relevance rank ↑", "pointing game ↑"]
    body = "".join(_sequence_card(ctx, data, results, k) for k in range(shown))
    body += '<div class="card">' + table(header, rows, numeric=(2, 3, 4)) + "</div>"
    return Section(
        "Text",
        "text",
        body,
        lead=f"Token relevance on {shown} test sequences of the planted-evidence text data "
        "(the class is decided by the <span class=\"tok key\">boxed</span> key words among "
        "decoys and filler words), explaining the true class with the shipped "
        f"<b>{esc(ctx.models['text'].name)}</b> and, in the last row, "
        f"<b>{esc(ctx.models['text_recurrent'].name)}</b>. Red is positive, blue negative, "
        "each row scaled by its largest |R|. The table scores the first "
        f"{len(data)} test sequences against the key words; the random attribution is the "
        "baseline. docs/tasks/text.md has every method on both models.",
    )


def _explain(model: nn.Module, data: TokenSet, label: str, name: str,
             settings: Mapping[str, Any]) -> MethodResult:
    """One row's method on ``data`` for the true classes, timed; an error is kept, not raised."""
    start = time.perf_counter()
    try:
        explanation = get_method(name, **settings)(
            model, data.input_ids, data.labels,
            model_kwargs={"attention_mask": data.attention_mask})
    except Exception as error:  # shown in the report, like a failed method
        return MethodResult(label, None, time.perf_counter() - start,
                            f"{type(error).__name__}: {error}")
    return MethodResult(label, explanation.attribution, time.perf_counter() - start)


def _sequence_card(ctx: DemoContext, data: TokenSet, results: list[MethodResult], k: int) -> str:
    """Sequence ``k``: its label and prediction, then one line of coloured words per row."""
    real = data.attention_mask[k]
    words = data.tokens(k)  # without padding
    with torch.no_grad():
        probability = ctx.models["text"].model(
            data.input_ids[k : k + 1], attention_mask=data.attention_mask[k : k + 1]
        ).softmax(-1)[0]
    names = data.class_names
    rows = []
    for result, (_, role, _, _) in zip(results, TEXT_ROWS, strict=True):
        label = f"<b>{esc(result.method)}</b>"
        if role != "text":
            label += f"<small> · {esc(ctx.models[role].name)}</small>"
        line = (token_spans(words, result.attribution[k][real], data.masks[k][real])
                if result.ok else '<span class="bad">failed</span>')
        rows.append((label, f'<div class="tokens">{line}</div>'))
    return (
        f'<div class="card"><h3>Test sequence {k + 1}<small>true: '
        f"{esc(names[int(data.labels[k])])} · {esc(ctx.models['text'].name)} predicts "
        f"{esc(names[int(probability.argmax())])} (p = {float(probability.max()):.2f})"
        f"</small></h3>{table(['method', 'tokens coloured by relevance'], rows)}</div>"
    )


__all__ = ["TEXT_COUNTS", "TEXT_METRICS", "TEXT_ROWS", "text_section", "token_spans"]
