"""The report's Evaluation section: faithfulness and localisation of every method.

It scores each method that explained the gallery with region perturbation (AOPC, MoRF;
Samek et al. 2017), deletion (Petsiuk et al. 2018), and the pointing game and relevance
mass accuracy against the object masks (Arras et al. 2022), next to the random attribution
that every method has to beat. The scores come from the one data loop,
:func:`pellucid.runs.run` (in memory): each method (with the demo's budget, as in the
gallery) explains the gallery once and every metric scores that explanation.
"""

from __future__ import annotations

from ..metrics import METRICS, RandomAttribution, get_metric
from ..metrics.harness import Table
from ..runs import Run, run
from .context import DemoContext, demo_method
from .html import Section, esc, table

#: (metric, settings): regions of 4×4 pixels, one per step over the first fifth of the image
DEMO_METRICS = {
    "faithfulness.region_perturbation": {"patch": 4, "until": 0.2},
    "faithfulness.deletion": {"patch": 4, "steps": 32},
    "localisation.pointing_game": {},
    "localisation.relevance_mass": {},
}


def evaluation_run(ctx: DemoContext) -> Run | None:
    """The random attribution and every method that explained the gallery, scored with
    :data:`DEMO_METRICS` by :func:`pellucid.runs.run` for the predicted class (one batch,
    in memory); None when the gallery has no masks."""
    data = ctx.gallery
    if data.masks is None:
        return None
    names = [r.method for r in ctx.explain("main", "gallery", data.images) if r.ok]
    methods = [RandomAttribution(), *(demo_method(n, data.images, ctx.references) for n in names)]
    metrics = [get_metric(name, **settings) for name, settings in DEMO_METRICS.items()]
    return run(ctx.models["main"].model, (data.images, data.labels, data.masks), methods,
               metrics=metrics, progress=False, batch_size=len(data))


def score_cells(summary: Table, failures: dict[str, str], method: str) -> list[str]:
    """``mean ± std`` of each metric for ``method`` (NaN scores left out and counted), or the
    method's error where no sample was scored."""
    rows = {(row["method"], row["metric"]): row for row in summary.rows}
    cells = []
    for metric in DEMO_METRICS:
        row = rows[(method, metric)]
        if row["nan"] == row["n"]:
            cells.append(f'<span class="bad">{esc(failures.get(method, "no score"))}</span>')
            continue
        nan = f" <small>({row['nan']} NaN)</small>" if row["nan"] else ""
        cells.append(f"{row['mean']:.3f} ± {row['std']:.3f}{nan}")
    return cells


def evaluation_section(ctx: DemoContext) -> Section | None:
    """A table of metric means ± standard deviations per method on the gallery images."""
    scored = evaluation_run(ctx)
    if scored is None:
        return None
    summary = scored.summary()
    failures = {f.method: f"{f.error}: {f.message}" for f in scored.failures}
    rows = [[f"<b>{esc(m)}</b>", *score_cells(summary, failures, m)] for m in scored.methods]
    arrows = {"higher": "↑", "lower": "↓"}
    header = ["method"] + [f"{m} {arrows[METRICS.get(m).direction]}" for m in DEMO_METRICS]
    return Section(
        "Evaluation",
        "evaluation",
        '<div class="card">' + table(header, rows, numeric=range(1, len(header))) + "</div>",
        lead=f"How good is each explanation of the predicted class on these "
        f"{len(ctx.gallery)} images? "
        "Region perturbation removes 4×4 regions in order of relevance (uniform-noise fill) "
        "and reports the area over the score curve (AOPC, higher is better); deletion is the "
        "area under the class-probability curve as regions are set to zero (lower is "
        "better); the pointing game and relevance mass are measured against the object "
        "masks. The random attribution is the baseline every method has to beat. "
        "docs/evaluation.md has the full study with sanity checks.",
    )


__all__ = ["DEMO_METRICS", "evaluation_run", "evaluation_section", "score_cells"]
