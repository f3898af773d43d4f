"""The report's Evaluation section: faithfulness and localisation of every method.

It scores the attributions the report already computed for the gallery (no method runs
twice) with region perturbation (AOPC, MoRF; Samek et al. 2017), deletion (Petsiuk et al.
2018), and the pointing game and relevance mass accuracy against the object masks (Arras
et al. 2022), next to the random attribution that every method has to beat.
"""

from __future__ import annotations

import torch

from ..explanation import Explanation
from ..metrics import METRICS, RandomAttribution, evaluate
from .context import DemoContext, MethodResult
from .html import Section, esc, table

#: (metric, settings): regions of 4×4 pixels, one per step over the first fifth of the image
DEMO_METRICS = {
    "faithfulness.region_perturbation": {"patch": 4, "until": 0.2},
    "faithfulness.deletion": {"patch": 4, "steps": 32},
    "localisation.pointing_game": {},
    "localisation.relevance_mass": {},
}


def evaluation_section(ctx: DemoContext) -> Section | None:
    """A table of metric means ± standard deviations per method on the gallery images."""
    data = ctx.gallery
    if data.masks is None:
        return None
    model = ctx.models["main"].model
    with torch.no_grad():
        output = model(data.images)
    target = output.argmax(1)
    results = [r for r in ctx.explain("main", "gallery", data.images) if r.ok]
    random = RandomAttribution()(model, data.images, target)
    rows = []
    for result in [MethodResult("random", random.attribution, 0.0), *results]:
        explanation = Explanation(result.attribution, output, target, result.method)
        cells = [f"<b>{esc(result.method)}</b>"]
        for metric, settings in DEMO_METRICS.items():
            result = evaluate(model, data.images, target, explanation, [metric], data.masks,
                              **settings)[metric]
            cells.append(f"{result.mean:.3f} ± {result.std:.3f}")
        rows.append(cells)
    arrows = {"higher": "↑", "lower": "↓"}
    header = ["method"] + [f"{m} {arrows[METRICS.get(m).direction]}" for m in DEMO_METRICS]
    return Section(
        "Evaluation",
        "evaluation",
        '<div class="card">' + table(header, rows, numeric=range(1, len(header))) + "</div>",
        lead=f"How good is each explanation of the predicted class on these {len(data)} images? "
        "Region perturbation removes 4×4 regions in order of relevance (uniform-noise fill) "
        "and reports the area over the score curve (AOPC, higher is better); deletion is the "
        "area under the class-probability curve as regions are set to zero (lower is "
        "better); the pointing game and relevance mass are measured against the object "
        "masks. The random attribution is the baseline every method has to beat. "
        "docs/evaluation.md has the full study with sanity checks.",
    )


__all__ = ["DEMO_METRICS", "evaluation_section"]
