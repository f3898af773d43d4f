"""Registered methods by what they require of a model (``Method.requires``)."""

from __future__ import annotations

import pellucid


def methods_without(*requirements: str) -> list[str]:
    """The registered methods that apply to a model lacking ``requirements``, e.g.
    ``methods_without("attention")`` for a CNN."""
    return [m for m in pellucid.list_methods()
            if not pellucid.get_method(m).requires & set(requirements)]
