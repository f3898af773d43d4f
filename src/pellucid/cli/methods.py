"""``pellucid methods``: the registered methods with a one-line description."""

from __future__ import annotations

import argparse

from .command import Command, UsageError


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``pellucid methods`` to ``parser``."""
    parser.add_argument(
        "pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'lrp.*' (default: all)"
    )


def main(args: argparse.Namespace) -> int:
    """Print each method matching ``args.pattern`` with its description; the exit status."""
    import pellucid

    described = pellucid.describe_methods(args.pattern)
    if not described:
        raise UsageError(f"no method matches {args.pattern!r}; try 'pellucid methods'")
    width = max(map(len, described))
    for name, text in described.items():
        print(f"{name:<{width}}  {text}")
    return 0


COMMAND = Command(
    "methods", "list the registered methods with a one-line description", configure, main
)

__all__ = ["COMMAND", "configure", "main"]
