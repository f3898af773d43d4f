"""One registry mapping string names to objects (methods, metrics).

Every name a user can type (``"integrated_gradients"``, ``"lrp.epsilon_plus"``,
``"faithfulness.pixel_flipping"``) is resolved here, with close-match suggestions
when a name is mistyped.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object with its public name and a one-line description."""

    name: str
    obj: T
    description: str


def first_line(doc: str | None) -> str:
    """The first non-empty line of a docstring, or an empty string."""
    for line in (doc or "").strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def suggest(name: str, candidates: list[str], n: int = 3) -> str:
    """A ' Did you mean ...?' hint for ``name`` among ``candidates`` (empty if none is close)."""
    close = difflib.get_close_matches(name, candidates, n=n, cutoff=0.5)
    if not close:
        close = [c for c in candidates if name.lower() in c.lower()][:n]
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


class Registry(Generic[T]):
    """Names to objects, for one kind of thing (``kind`` appears in error messages)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, description: str | None = None) -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``name``; the description defaults to its docstring."""

        def decorate(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            text = description if description is not None else first_line(obj.__doc__)
            self._entries[name] = Entry(name, obj, text)
            return obj

        return decorate

    def get(self, name: str) -> T:
        """The object registered as ``name``; a ``KeyError`` with suggestions otherwise."""
        try:
            return self._entries[name].obj
        except KeyError:
            hint = suggest(name, list(self._entries))
            raise KeyError(
                f"unknown {self.kind} {name!r}.{hint} "
                f"See pellucid.list_{self.kind}s() for all names."
            ) from None

    def build(self, name: str, **settings: Any) -> Any:
        """An instance of the dataclass registered as ``name``, configured with ``settings``.

        An unknown setting raises a ``TypeError`` that lists the valid ones.
        """
        cls = self.get(name)
        valid = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(settings) - valid)
        if unknown:
            raise TypeError(
                f"{self.kind} {name!r} has no setting {', '.join(map(repr, unknown))}; "
                f"its settings are: {', '.join(sorted(valid)) or 'none'}"
            )
        return cls(**settings)  # type: ignore[operator]

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style pattern, sorted."""
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def entries(self, pattern: str = "*") -> list[Entry[T]]:
        """Registered entries matching a shell-style pattern, sorted by name."""
        return [self._entries[n] for n in self.names(pattern)]

    def __contains__(self, name: object) -> bool:
        return name in self._entries


__all__: list[str] = ["Entry", "Registry", "first_line", "suggest"]
