"""The demo job: explain the shipped models with every registered method, write index.html.

``run_demo`` loads the demo models (training them with a progress bar if their weights are
missing), builds a :class:`DemoContext` and renders the page from a list of section builders
(:data:`~pellucid.report.sections.SECTIONS`); a later issue adds its section by appending a
builder. Each method runs once per (model, image set) on the whole batch and is timed; a
method that raises is recorded as failed with its error and shown as such, never a crash.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import list_methods
from ..api import get_method
from ..data.imageset import ImageSet
from .settings import QUICK_METHODS, demo_settings


@dataclass(frozen=True)
class ReportModel:
    """A demo model with what the header shows about it."""

    name: str
    model: nn.Module
    description: str
    accuracy: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class MethodRun:
    """One method on one batch: the attribution (None if it failed), seconds, error."""

    method: str
    attribution: Tensor | None
    seconds: float
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.attribution is not None


@dataclass
class DemoContext:
    """What the section builders draw from; :meth:`explain` caches runs per image set."""

    out: Path
    quick: bool
    methods: list[str]
    models: dict[str, ReportModel]
    gallery: ImageSet
    references: Tensor
    clever_hans: ImageSet | None = None
    shortcut_class: int | None = None
    _runs: dict[tuple[str, str], list[MethodRun]] = field(default_factory=dict, repr=False)

    def explain(
        self, model_key: str, data_key: str, images: Tensor, target: int | Tensor | None = None
    ) -> list[MethodRun]:
        """Every method on ``images`` for ``models[model_key]``, cached under ``data_key``."""
        key = (model_key, data_key)
        if key not in self._runs:
            model = self.models[model_key]
            self._runs[key] = explain_all(
                model.model,
                images,
                target,
                self.methods,
                self.references,
                f"{model.name}: {data_key}",
            )
        return self._runs[key]


def explain_all(
    model: nn.Module,
    images: Tensor,
    target: int | Tensor | None,
    methods: Sequence[str],
    references: Tensor,
    label: str,
) -> list[MethodRun]:
    """Run each method on the batch, timing it; failures are recorded, not raised."""
    from tqdm.auto import tqdm

    runs = []
    for name in tqdm(methods, desc=label, unit="method", leave=False):
        start = time.perf_counter()
        try:
            method = get_method(name, **demo_settings(name, references))
            attribution = method(model, images, target).attribution
            runs.append(MethodRun(name, attribution, time.perf_counter() - start))
        except Exception as error:  # any failure is shown in the report
            message = f"{type(error).__name__}: {error}"
            runs.append(MethodRun(name, None, time.perf_counter() - start, message))
    return runs


def select_methods(quick: bool, pattern: str | None = None) -> list[str]:
    """Registered methods for the demo: all, the quick subset, or those matching ``pattern``."""
    names = list_methods(pattern or "*")
    if quick and pattern is None:
        names = [n for n in names if n in QUICK_METHODS]
    return names


def run_demo(
    out: str | Path = "demo-report",
    quick: bool = False,
    methods: str | None = None,
    sections: Sequence[Callable[[DemoContext], Any]] | None = None,
) -> Path:
    """Build the demo report in ``out`` and return the path of its index.html."""
    from .html import page
    from .sections import SECTIONS, header
    from .world import load_world

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
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


def build_sections(ctx: DemoContext, builders: Sequence[Callable[[DemoContext], Any]]) -> list:
    """Each builder's section; one that raises is shown with its error instead of the page
    failing (as a failed method is), and one that returns None is left out."""
    from .html import Section, esc

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


__all__ = [
    "DemoContext",
    "MethodRun",
    "ReportModel",
    "build_sections",
    "explain_all",
    "run_demo",
    "select_methods",
]
