"""``--setting KEY=VALUE`` arguments as a dict of settings."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import Any

from .command import UsageError


def parse_settings(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings to a dict; values are Python literals, else strings."""
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"--setting {pair!r} is not KEY=VALUE (e.g. --setting steps=16)")
        try:
            settings[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            settings[key] = value
    return settings


__all__ = ["parse_settings"]
