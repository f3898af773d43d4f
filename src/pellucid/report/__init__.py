"""Self-contained HTML reports and the demo (needs the ``viz`` extra).

``run_demo(out)`` writes ``out/index.html``; its sections are the builders in
:data:`pellucid.report.sections.SECTIONS`.
"""

from .demo import DemoContext, MethodRun, ReportModel, run_demo
from .html import Section

__all__ = ["DemoContext", "MethodRun", "ReportModel", "Section", "run_demo"]
