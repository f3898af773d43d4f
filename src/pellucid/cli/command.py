"""What every ``pellucid`` subcommand is made of: a :class:`Command` and its :class:`UsageError`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

#: the exit status of a usage error
USAGE_ERROR = 2


class UsageError(Exception):
    """A mistake in the command line or its files; shown as one line, without a traceback."""


def positive_int(text: str) -> int:
    """argparse ``type=`` for counts and sizes: an int >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def unit_float(text: str) -> float:
    """argparse ``type=`` for a fraction such as an alpha: a float in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text}")
    return value


@dataclass(frozen=True)
class Command:
    """One subcommand: ``configure`` adds its arguments, ``main`` returns the exit status."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    main: Callable[[argparse.Namespace], int]
    description: str = ""


__all__ = ["USAGE_ERROR", "Command", "UsageError", "positive_int", "unit_float"]
