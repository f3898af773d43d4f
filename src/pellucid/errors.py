"""The errors pellucid raises on purpose: each names what to change and how.

Every error a user can cause is a :class:`PellucidError`. Its ``argument`` is the name of
the argument to change (``"inputs"``, ``"target"``, ``"model"``, a setting's name, …), and
its message names that argument, the problem and the fix. The classes also derive from the
built-in exception a Python user would expect (``ValueError``, ``TypeError``,
``RuntimeError``), so ``except ValueError`` keeps working.

>>> from pellucid.errors import ArgumentError, PellucidError
>>> try:
...     raise ArgumentError("steps", "steps must be a positive int, got 0")
... except PellucidError as error:
...     print(error.argument, "|", error)
steps | steps must be a positive int, got 0
"""

from __future__ import annotations

__all__ = [
    "ArgumentError",
    "ArgumentTypeError",
    "ModelError",
    "PellucidError",
    "UnknownNameError",
    "UnsupportedModelError",
]


class PellucidError(Exception):
    """Base class: ``argument`` names the argument the user should change."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(message)
        self.argument = argument

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # pickles (e.g. from a worker process) as the class with its two arguments
        return type(self), (self.argument, Exception.__str__(self))


class ArgumentError(PellucidError, ValueError):
    """An argument or setting has a bad value: wrong shape, range, NaN, inconsistent."""


class UnknownNameError(ArgumentError, KeyError):
    """A name (of a method, metric, layer, colormap, …) that is not registered; the message
    suggests close names. Also a ``KeyError``, so ``except KeyError`` keeps working."""

    __str__ = Exception.__str__  # not KeyError's repr-quoting


class ArgumentTypeError(PellucidError, TypeError):
    """An argument or setting has the wrong type (a class for an object, a str for an int)."""


class UnsupportedModelError(PellucidError, TypeError):
    """The model's form cannot be explained this way (TorchScript, compiled, lazy, meta);
    the message points to the form that can (the eager module)."""


class ModelError(PellucidError, RuntimeError):
    """The model itself failed or misbehaved during a call: it raised, returned NaN, ran
    without gradients. ``argument`` is ``"model"`` (or ``"target"`` when the target
    callable is to blame)."""
