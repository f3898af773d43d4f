"""Deprecated names: one module ``__getattr__`` that warns and hands out the replacement.

A module that renamed a public name keeps the old one working for a while::

    __getattr__ = deprecated_names(__name__, {"OldName": ("pellucid.x.NewName", lambda: NewName)})
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

#: old name -> (what to use instead, as the user should write it; the object, made lazily)
Aliases = Mapping[str, tuple[str, Callable[[], Any]]]


def deprecated_names(module: str, aliases: Aliases) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` that serves ``aliases`` with a DeprecationWarning."""

    def __getattr__(name: str) -> Any:
        if name not in aliases:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        replacement, get = aliases[name]
        warnings.warn(
            f"{module}.{name} is deprecated; use {replacement}", DeprecationWarning, stacklevel=2
        )
        return get()

    return __getattr__
