"""Self-contained HTML reports and the demo (needs the ``viz`` extra).

``write_demo_report(out)`` writes ``out/index.html``. The modules point one way:
:mod:`~pellucid.report.html` (page, tables, figures) and :mod:`~pellucid.report.context`
(the models, images and every method's result; loaded by :mod:`~pellucid.report.world`)
are used by the sections (one module each, listed in :data:`~pellucid.report.sections.SECTIONS`),
which :mod:`~pellucid.report.demo` puts on the page. ``write_store_report(store, out)``
(:mod:`~pellucid.report.store_report`) writes a page from a run's store (pellucid.runs).
"""

from .context import DemoContext, MethodResult, ReportModel
from .demo import (
    __getattr__,  # noqa: F401  (the deprecated names run_demo and MethodRun)
    write_demo_report,
)
from .html import Section
from .store_report import write_store_report

__all__ = [
    "DemoContext",
    "MethodResult",
    "ReportModel",
    "Section",
    "write_demo_report",
    "write_store_report",
]
