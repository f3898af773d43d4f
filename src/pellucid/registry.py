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

from .errors import ArgumentError, ArgumentTypeError, UnknownNameError

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


def check_settings(cls: Any, settings: dict[str, Any], what: str) -> None:
    """Every key of ``settings`` must be a field of the dataclass ``cls`` (``what`` names it);
    an ``ArgumentTypeError`` (a ``TypeError``) naming the first unknown one otherwise."""
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(settings) - valid)
    if unknown:
        hint = suggest(unknown[0], sorted(valid))
        raise ArgumentTypeError(
            unknown[0],
            f"{what} has no setting {', '.join(map(repr, unknown))}.{hint} "
            f"Its settings are: {', '.join(sorted(valid)) or 'none'}",
        )


class Registry(Generic[T]):
    """Names to objects, for one kind of thing (``kind`` appears in error messages)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, description: str | None = None) -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``name``; the description defaults to its docstring."""

        def decorate(obj: T) -> T:
            if name in self._entries:
                raise ArgumentError(
                    "name", f"a {self.kind} named {name!r} is already registered; choose "
                    "another name for yours (registered names cannot be replaced)",
                )
            text = description if description is not None else first_line(obj.__doc__)
            self._entries[name] = Entry(name, obj, text)
            return obj

        return decorate

    def get(self, name: str, argument: str | None = None) -> T:
        """The object registered as ``name``.

        Raises :class:`~pellucid.errors.UnknownNameError` (a ``KeyError``) with close-match
        suggestions for an unknown name, and ``ArgumentTypeError`` for a name that is not a
        string; ``argument`` (default: the registry's kind) names the argument in both.
        """
        argument = argument or self.kind
        if not isinstance(name, str):
            shown = f"the class {name.__name__}" if isinstance(name, type) else repr(name)
            raise ArgumentTypeError(
                argument,
                f"{argument} must be the name of a {self.kind} (a str, see "
                f"pellucid.list_{self.kind}s()), got {shown}",
            )
        try:
            return self._entries[name].obj
        except KeyError:
            hint = suggest(name, list(self._entries))
            raise UnknownNameError(
                argument,
                f"unknown {argument} {name!r}.{hint} "
                f"See pellucid.list_{self.kind}s() for all names.",
            ) from None

    def build(self, name: str, **settings: Any) -> Any:
        """An instance of the dataclass registered as ``name``, configured with ``settings``.

        An unknown setting raises an ``ArgumentTypeError`` (a ``TypeError``) naming it,
        with close matches, and listing the valid ones.
        """
        cls = self.get(name)
        check_settings(cls, settings, f"{self.kind} {name!r}")
        return cls(**settings)  # type: ignore[operator]

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style pattern, sorted."""
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def entries(self, pattern: str = "*") -> list[Entry[T]]:
        """Registered entries matching a shell-style pattern, sorted by name."""
        return [self._entries[n] for n in self.names(pattern)]

    def __contains__(self, name: object) -> bool:
        return name in self._entries


__all__: list[str] = ["Entry", "Registry", "check_settings", "first_line", "suggest"]
