"""The report's Methods section: every method's description, time per image and status."""

from __future__ import annotations

from ..api import describe_methods
from .cards import time_per_image
from .context import DemoContext
from .html import Section, esc, table


def methods_section(ctx: DemoContext) -> Section:
    """A table of the methods: description, time per image, and status or error."""
    results = ctx.explain("main", "gallery", ctx.gallery.images)
    described = describe_methods()
    rows = [
        (
            f"<b>{esc(r.method)}</b>",
            esc(described.get(r.method, "")),
            time_per_image(r, len(ctx.gallery)),
            '<span class="ok">ok</span>' if r.ok else f'<span class="bad">{esc(r.error)}</span>',
        )
        for r in results
    ]
    return Section(
        "Methods",
        "methods",
        table(["method", "what it computes", "time", "status"], rows, numeric=(2,)),
        lead=f"Every registered method, run on the batch of {len(ctx.gallery)} images with "
        f"the model <b>{esc(ctx.models['main'].name)}</b>. Failed methods are listed with "
        "their error.",
    )


__all__ = ["methods_section"]
