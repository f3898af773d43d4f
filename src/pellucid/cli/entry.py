"""The ``pellucid`` command line: one subparser per entry of :data:`COMMANDS`.

Each subcommand is a module of :mod:`pellucid.cli` with ``configure(parser)``, ``main(args)``
and ``COMMAND = Command(name, help, configure, main)``; adding one is writing that module
and naming its ``COMMAND`` here. Every user mistake ends as one line on stderr,
``pellucid <command>: error: <message>``, and exit status 2, without a traceback: a bad
argument (argparse), a :class:`~pellucid.cli.command.UsageError` raised by a command, a
:class:`~pellucid.errors.PellucidError` raised by the library, and an exception raised inside
the user's model ("model failed: <ExceptionType>: <message>"). ``--traceback`` re-raises
instead, for debugging; any other exception is a bug in pellucid and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import demo, evaluate, explain, methods, report, run
from .command import USAGE_ERROR, Command, UsageError
from .model_loading import model_failed

#: the subcommands, in the order ``pellucid --help`` lists them
COMMANDS: tuple[Command, ...] = (
    methods.COMMAND, explain.COMMAND, demo.COMMAND, evaluate.COMMAND, run.COMMAND,
    report.COMMAND,
)


class _ParseError(UsageError):
    """An argparse mistake, with the program (``pellucid explain``) it concerns."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(f"{message} (see '{prog} --help')")
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose mistakes raise :class:`_ParseError` instead of printing the
    usage and exiting, so that :func:`main` shows them as one line and returns 2."""

    def error(self, message: str):  # type: ignore[override]
        raise _ParseError(self.prog, message)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subparser per entry of :data:`COMMANDS`."""
    from pellucid import __version__

    parser = _Parser(
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
        sub.add_argument(
            "--traceback",
            action="store_true",
            help="on an error, show the Python traceback instead of one line (for debugging)",
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line on ``argv`` (default: ``sys.argv``); returns the exit status."""
    from pellucid.errors import PellucidError

    try:
        args = build_parser().parse_args(argv)
    except _ParseError as error:
        return _fail(error.prog, str(error))
    except SystemExit as done:  # --help and --version
        return done.code if isinstance(done.code, int) else 0
    command = next(c for c in COMMANDS if c.name == args.command)
    prog = f"pellucid {args.command}"
    try:
        return command.main(args)
    except (UsageError, PellucidError) as error:
        if args.traceback:
            raise
        return _fail(prog, str(error))
    except Exception as error:
        if args.traceback or not _raised_in_model(error):
            raise  # a bug in pellucid: the traceback is what to report
        model = getattr(args, "model", None)
        named = f"--model {model}: " if model else ""
        return _fail(prog, f"{named}{model_failed(error)} (rerun with --traceback to see where)")


def _fail(prog: str, message: str) -> int:
    """Print ``message`` as one line ``<prog>: error: <message>``; the usage error status."""
    line = "; ".join(part.strip() for part in message.splitlines() if part.strip())
    print(f"{prog}: error: {line}", file=sys.stderr)
    return USAGE_ERROR


def _raised_in_model(error: BaseException) -> bool:
    """Whether ``error`` was raised inside a call of a torch module (the user's model)."""
    from torch import nn

    calls = {nn.Module._call_impl.__code__, nn.Module._wrapped_call_impl.__code__}
    frame = error.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code in calls:
            return True
        frame = frame.tb_next
    return False


__all__ = ["COMMANDS", "build_parser", "main"]
