"""``pellucid demo``: explain the shipped demo models and write the HTML report."""

from __future__ import annotations

import argparse
from pathlib import Path

from .command import Command, UsageError
from .files import output_folder


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``pellucid demo`` to ``parser``."""
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("demo-report"),
        help="output folder for index.html (default: demo-report)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a reduced run: few images and methods (for tests)"
    )
    parser.add_argument(
        "--methods",
        default=None,
        metavar="PATTERN",
        help="only the methods matching this shell-style pattern",
    )


def main(args: argparse.Namespace) -> int:
    """Write the demo report to ``args.out`` and print its path; the exit status."""
    import pellucid
    from pellucid.report.demo import write_demo_report

    if args.methods is not None and not pellucid.list_methods(args.methods):
        raise UsageError(f"--methods {args.methods!r} matches no method; see 'pellucid methods'")
    page = write_demo_report(output_folder(args.out), quick=args.quick, methods=args.methods)
    print(f"wrote {page}")
    return 0


COMMAND = Command(
    "demo", "train/load the demo models and write an HTML report", configure, main
)

__all__ = ["COMMAND", "configure", "main"]
