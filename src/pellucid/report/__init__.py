"""Self-contained HTML reports and the demo (needs the ``viz`` extra).

``write_demo_report(out)`` writes ``out/index.html``. The modules point one way:
:mod:`~pellucid.report.html` (page, tables, figures) and :mod:`~pellucid.report.context`
(the models, images and every method's result; loaded by :mod:`~pellucid.report.world`)
are used by the sections (one module each, listed in :data:`~pellucid.report.sections.SECTIONS`),
which :mod:`~pellucid.report.demo` puts on the page.
"""

from .context import DemoContext, MethodResult, ReportModel
from .demo import (
    __getattr__,  # noqa: F401  (the deprecated names run_demo and MethodRun)
    write_demo_report,
)
from .html import Section

__all__ = ["DemoContext", "MethodResult", "ReportModel", "Section", "write_demo_report"]
