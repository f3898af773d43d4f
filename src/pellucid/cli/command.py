"""What every ``pellucid`` subcommand is made of: a :class:`Command` and its :class:`UsageError`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

#: the exit status of a usage error
USAGE_ERROR = 2


class UsageError(Exception):
    """A mistake in the command line or its files; shown as one line, without a traceback."""


@dataclass(frozen=True)
class Command:
    """One subcommand: ``configure`` adds its arguments, ``main`` returns the exit status."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    main: Callable[[argparse.Namespace], int]
    description: str = ""


__all__ = ["USAGE_ERROR", "Command", "UsageError"]
