"""Checks of metric settings, run where a metric is built (its ``__post_init__``).

Each raises a :mod:`pellucid.errors` class naming the setting, the problem and the fix;
counts and real numbers use the shared checks of :mod:`pellucid.checks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from ..checks import check_finite, check_finite_number, check_positive_int
from ..errors import ArgumentError, ArgumentTypeError
from ..registry import suggest
from ..spatial import positive_sizes


def check_choice(value: Any, name: str, options: Sequence[str]) -> None:
    """``value`` must be one of ``options`` (strings); the error suggests close ones."""
    if not isinstance(value, str):
        raise ArgumentTypeError(
            name, f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}"
        )
    if value not in options:
        raise ArgumentError(
            name, f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}."
            f"{suggest(value, list(options))}"
        )


def check_bool(value: Any, name: str, *, none: bool = False) -> None:
    """``value`` must be a bool (or ``None`` where ``none``)."""
    if not isinstance(value, bool) and not (none and value is None):
        allowed = "True, False or None" if none else "True or False"
        raise ArgumentTypeError(name, f"{name} must be {allowed}, got {value!r}")


def check_optional_count(value: Any, name: str, meaning: str = "") -> None:
    """``None`` or a positive int (``batch_size``, an adaptive number of steps)."""
    if value is not None:
        check_positive_int(value, name, meaning)


def check_seed(value: Any, name: str = "seed") -> None:
    """A seed is an int or ``None`` (the global random state)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ArgumentTypeError(name, f"{name} must be an int or None, got {value!r}")


def check_patch(value: Any, name: str = "patch") -> None:
    """``None``, a positive int or a tuple of positive ints (one per spatial dim)."""
    if value is None:
        return
    if not isinstance(value, (int, tuple, list)) or isinstance(value, bool):
        raise ArgumentTypeError(
            name, f"{name} must be a positive int or a tuple of them, got {value!r}"
        )
    try:
        positive_sizes(value, 1, name)
    except ValueError as error:
        raise ArgumentError(name, str(error)) from None


def check_fill(value: Any, name: str = "fill") -> None:
    """A fill or baseline: a name, a finite number or a finite tensor."""
    if isinstance(value, Tensor):
        check_finite(value, f"the {name} tensor", argument=name, fix=f"pass a finite {name}")
        return
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        check_finite_number(value, name)
        return
    if not isinstance(value, str):
        raise ArgumentTypeError(
            name, f"{name} must be a name ('zero', 'mean', 'blur', 'uniform'), a number or a "
            f"tensor, got {type(value).__name__}"
        )


def check_callable(value: Any, name: str, meaning: str) -> None:
    """``None`` or a callable (a ``train_fn``)."""
    if value is not None and (not callable(value) or isinstance(value, type)):
        raise ArgumentTypeError(name, f"{name} must be a callable {meaning}, got {value!r}")


def check_fractions(values: Any, name: str) -> tuple[float, ...]:
    """A non-empty sequence of numbers in (0, 1)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise ArgumentTypeError(
            name, f"{name} must be a non-empty tuple of fractions in (0, 1), got {values!r}"
        )
    return tuple(
        check_finite_number(v, name, 0.0, maximum=1.0, inclusive=False) for v in values
    )

