"""The report's TCAV section: is the Clever-Hans watermark a concept of the model?

:func:`watermark_tcav` builds the concept from generated examples (shapes images with the
watermark stamped on, :func:`pellucid.data.add_watermark`), random sets of plain shapes
images, and clean test images of every class, and tests the concept for each class at the
model's last spatial layer. The test is one-sided (``alternative="greater"``): does the
watermark direction raise the class score more often than random directions do?
:func:`tcav_section` renders it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .._seeding import offset_seed
from ..concepts import TCAVResult, tcav, train_cavs
from ..layers import last_spatial_layer
from .context import DemoContext
from .html import Section, bar, esc, table


def watermark_tcav(
    model: nn.Module,
    class_names: Sequence[str],
    size: int,
    per_class: int = 40,
    random_sets: int = 10,
    per_set: int = 30,
    per_concept_run: int = 20,
    layer: str | None = None,
    seed: int = 2024,
) -> tuple[str, dict[int, TCAVResult]]:
    """(layer, {class index: TCAVResult of the "watermark" concept}) on generated data.

    All images come from :func:`pellucid.data.shapes` with seeds unused by training
    (``seed`` and up): ``per_class`` clean images of each class, ``random_sets`` sets of
    ``per_set`` plain images, and ``per_concept_run`` fresh images with the watermark
    stamped on for each run (``split_concepts``: independent runs for the t-test).
    """
    from ..data import add_watermark, shapes

    classes = tuple(class_names)
    n_random = random_sets * per_set
    n_concept = random_sets * per_concept_run
    pool = shapes(n_random + n_concept, size=size, classes=classes, seed=seed)
    stamped = pool.subset(slice(n_random, None))
    concept = add_watermark(stamped, torch.ones(len(stamped), dtype=torch.bool)).images
    randoms = [pool.images[i * per_set : (i + 1) * per_set] for i in range(random_sets)]
    test = shapes(per_class * len(classes), size=size, classes=classes, seed=offset_seed(seed, 1))
    layer = layer or last_spatial_layer(model, pool.images[:2])
    cavs = train_cavs(model, layer, {"watermark": concept}, randoms, split_concepts=True)
    results = {
        k: tcav(model, test.images[test.labels == k], k, cavs, alternative="greater")["watermark"]
        for k in range(len(classes))
    }
    return layer, results


def tcav_table(results: dict[int, TCAVResult], class_names: Sequence[str], shortcut: int) -> str:
    """An HTML table: per class the TCAV score (bar, tick = random mean), p-value, verdict."""
    rows = []
    for k, r in results.items():
        name = esc(class_names[k]) + (" <small>(shortcut class)</small>" if k == shortcut else "")
        verdict = (
            '<b class="bad">significant</b>' if r.significant else '<span class="ok">no</span>'
        )
        rows.append(
            (
                name,
                f'<div style="display:flex;gap:8px;align-items:center">'
                f"{bar(r.mean, r.random_mean)}<span>{r.mean:.2f} ± {r.std:.2f}</span></div>",
                f"{r.random_mean:.2f} ± {r.random_std:.2f}",
                f"{r.p_value:.2g}",
                verdict,
            )
        )
    header = ["class", "TCAV score (tick: random)", "random CAVs", "p (one-sided)", "significant"]
    return table(header, rows, numeric=(2, 3))


def tcav_section(ctx: DemoContext) -> Section | None:
    """The watermark concept tested for every class of the shortcut model."""
    if ctx.clever_hans is None or "shortcut" not in ctx.models or ctx.shortcut_class is None:
        return None
    names = ctx.clever_hans.class_names
    size = ctx.clever_hans.images.shape[-1]
    per_class, sets = (20, 12) if ctx.quick else (40, 20)
    model = ctx.models["shortcut"].model
    layer, results = watermark_tcav(model, names, size, per_class=per_class, random_sets=sets)
    compared = len(next(iter(results.values())).scores)
    body = '<div class="card">' + tcav_table(results, names, ctx.shortcut_class) + "</div>"
    return Section(
        "Concepts (TCAV)",
        "tcav",
        body,
        lead=f"Kim et al. (2018): a concept activation vector for <b>watermark</b> at layer "
        f"<code>{esc(layer)}</code> of {esc(ctx.models['shortcut'].name)}, learned from "
        "generated images with the watermark stamped on against plain ones. The TCAV score is "
        "the fraction of clean test images of a class whose class score rises along that "
        f"direction; it is compared over {compared} random sets with random-vs-random directions "
        "by a one-sided t-test (α = 0.05). The watermark should matter to the shortcut class "
        "only.",
    )


__all__ = ["tcav_section", "tcav_table", "watermark_tcav"]
