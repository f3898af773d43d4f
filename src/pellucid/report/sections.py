"""The sections of the demo report, in page order.

Each builder maps a :class:`~pellucid.report.context.DemoContext` to a
:class:`~pellucid.report.html.Section`, or to None when the context lacks what it needs.
A page with other sections passes them to :func:`~pellucid.report.demo.write_demo_report`,
e.g. ``sections=(*SECTIONS, my_section)``.
"""

from __future__ import annotations

from collections.abc import Callable

from .clever_hans import clever_hans_section
from .context import DemoContext
from .evaluation import evaluation_section
from .gallery import gallery_section
from .html import Section
from .method_table import methods_section
from .prototypes import prototypes_section
from .spray import spray_section
from .tcav import tcav_section
from .text import text_section

#: a section builder: the section for a context, or None to leave it out
SectionBuilder = Callable[[DemoContext], Section | None]

#: the demo report's sections, in page order
SECTIONS: tuple[SectionBuilder, ...] = (
    methods_section,
    gallery_section,
    clever_hans_section,
    spray_section,
    evaluation_section,
    text_section,
    prototypes_section,
    tcav_section,
)

__all__ = ["SECTIONS", "SectionBuilder"]
