"""Checks of metric settings, run where a metric is built (its ``__post_init__``).

Each raises a :mod:`pellucid.errors` class naming the setting, the problem and the fix.
Counts, real numbers, choices, switches and seeds use the shared checks of
:mod:`pellucid.checks`, fills and baselines :func:`pellucid.perturb.check_baseline`;
these are the ones only metrics need.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..checks import check_finite_number
from ..errors import ArgumentTypeError
from ..spatial import positive_sizes

__all__ = ["check_callable", "check_fractions", "check_patch"]


def check_patch(value: Any, name: str = "patch") -> None:
    """``None``, a positive int or a tuple of positive ints (one per spatial dim)."""
    if value is not None:
        positive_sizes(value, 1, name)


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

