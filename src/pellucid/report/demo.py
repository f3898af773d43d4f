"""The demo job: explain the shipped models with every registered method, write index.html.

:func:`write_demo_report` loads the demo models (training them with a progress bar if their
weights are missing) into a :class:`~pellucid.report.context.DemoContext`, builds each
section of :data:`~pellucid.report.sections.SECTIONS` and writes one page. Each method runs
once per (model, image set) on the whole batch and is timed; a method that raises is
recorded as failed with its error and a section that raises is shown with its error, never
a crash.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from .. import get_method, list_methods
from .._deprecation import deprecated_names
from .context import DemoContext, MethodResult
from .html import Section, esc, page
from .sections import SECTIONS, SectionBuilder
from .world import load_world

#: the methods of a ``--quick`` demo (those that are registered)
QUICK_METHODS = (
    "gradient",
    "integrated_gradients",
    "expected_gradients",
    "gradcam",
    "occlusion",
    "lrp.epsilon_plus_flat",
)


def select_methods(quick: bool, pattern: str | None = None) -> list[str]:
    """Registered methods for the demo: all, the quick subset, or those matching ``pattern``;
    never those that need self-attention (the demo models are CNNs)."""
    names = [n for n in list_methods(pattern or "*")
             if "attention" not in get_method(n).requires]
    if quick and pattern is None:
        names = [n for n in names if n in QUICK_METHODS]
    return names


def header(ctx: DemoContext) -> str:
    """The page header: title, what was run, and each model's test accuracy."""
    cards = "".join(
        f'<div class="stat"><b>{100 * acc:.1f}%</b><span>{esc(model.name)} · '
        f"{esc(split.replace('_', ' '))}"
        "</span></div>"
        for model in ctx.models.values()
        for split, acc in model.accuracy.items()
    )
    mode = " (quick run)" if ctx.quick else ""
    return (
        f"<h1>pellucid demo report{mode}</h1>"
        f"<p>{len(ctx.methods)} attribution methods on {len(ctx.gallery)} test images of the "
        "generated shapes data, a Clever-Hans model that learned a watermark shortcut, and "
        "token relevance on text with planted evidence.</p>"
        f'<div class="cards">{cards}</div>'
    )


def write_demo_report(
    out: str | Path = "demo-report",
    quick: bool = False,
    methods: str | None = None,
    sections: Sequence[SectionBuilder] | None = None,
) -> Path:
    """Build the demo report in ``out`` and return the path of its index.html.

    ``quick`` takes fewer images and only :data:`QUICK_METHODS`, ``methods`` is a
    shell-style pattern of method names, and ``sections`` replaces :data:`SECTIONS`.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):  # seeded, and the caller's state kept
        torch.random.default_generator.manual_seed(0)
        context = load_world(out, quick, select_methods(quick, methods))
        built = build_sections(context, sections or SECTIONS)
    index = out / "index.html"
    index.write_text(
        page(
            "pellucid demo report",
            header(context),
            built,
            footer=f"pellucid demo · methods: {len(context.methods)}",
        ),
        encoding="utf-8",
    )
    return index


def build_sections(ctx: DemoContext, builders: Sequence[SectionBuilder]) -> list[Section]:
    """Each builder's section; one that raises is shown with its error instead of the page
    failing (as a failed method is), and one that returns None is left out."""
    built = []
    for build in builders:
        try:
            section = build(ctx)
        except Exception as error:  # shown in the report, like a failed method
            title = build.__name__.removesuffix("_section").replace("_", " ").capitalize()
            message = f"{type(error).__name__}: {error}"
            section = Section(title, build.__name__, f'<p class="bad">{esc(message)}</p>',
                              lead="This section could not be built for these models.")
        if section is not None:
            built.append(section)
    return built


__getattr__ = deprecated_names(
    "pellucid.report",
    {
        "run_demo": ("pellucid.report.write_demo_report", lambda: write_demo_report),
        "MethodRun": ("pellucid.report.MethodResult", lambda: MethodResult),
    },
)


__all__ = [
    "QUICK_METHODS",
    "build_sections",
    "header",
    "select_methods",
    "write_demo_report",
]
