"""The ``pellucid`` command line: one subparser per entry of :data:`COMMANDS`.

Each subcommand is a module of :mod:`pellucid.cli` with ``configure(parser)``, ``main(args)``
and ``COMMAND = Command(name, help, configure, main)``; adding one is writing that module
and naming its ``COMMAND`` here. A :class:`~pellucid.cli.command.UsageError` raised anywhere
becomes a one-line message on stderr and exit status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import demo, evaluate, explain, methods
from .command import USAGE_ERROR, Command, UsageError

#: the subcommands, in the order ``pellucid --help`` lists them
COMMANDS: tuple[Command, ...] = (methods.COMMAND, explain.COMMAND, demo.COMMAND, evaluate.COMMAND)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subparser per entry of :data:`COMMANDS`."""
    from pellucid import __version__

    parser = argparse.ArgumentParser(
        prog="pellucid", description="Explain PyTorch models: attribution, LRP, reports."
    )
    parser.add_argument("--version", action="version", version=f"pellucid {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        sub = subparsers.add_parser(
            command.name,
            help=command.help,
            description=command.description or command.help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.configure(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line on ``argv`` (default: ``sys.argv``); returns the exit status."""
    args = build_parser().parse_args(argv)
    command = next(c for c in COMMANDS if c.name == args.command)
    try:
        return command.main(args)
    except UsageError as error:
        print(f"pellucid {args.command}: error: {error}", file=sys.stderr)
        return USAGE_ERROR


__all__ = ["COMMANDS", "build_parser", "main"]
