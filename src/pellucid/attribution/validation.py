"""Checks of method settings, run where a setting is built (a method's ``__post_init__``).

Each raises a :mod:`pellucid.errors` class whose ``argument`` is the setting's name and
whose message names the setting, the problem and the fix. The checks every package shares
live in core (:mod:`pellucid.checks`: counts, real numbers, choices, switches, seeds;
:func:`pellucid.batching.check_batch_size`; :func:`pellucid.spatial.positive_sizes`) and
:func:`pellucid.perturb.check_baseline`; these are the ones only methods need.
"""

from __future__ import annotations

from typing import Any

from ..checks import check_finite_number
from ..perturb import MASK_FILLS, check_baseline


def check_fill_settings(fill: Any, blur_sigma: Any) -> None:
    """The fill of a perturbation method (:data:`pellucid.perturb.MASK_FILLS`, a finite
    number or tensor) and the blurred fill's σ > 0 (σ = 0 would fill with the input)."""
    check_baseline(fill, "fill", MASK_FILLS, tokens=True)
    check_sigma(blur_sigma)


def check_sigma(blur_sigma: Any) -> None:
    """``blur_sigma`` > 0: the σ of the blurred baseline or fill, in elements."""
    check_finite_number(blur_sigma, "blur_sigma", 0, inclusive=False,
                        meaning="the σ of the blur in elements; 0 would not blur")


__all__ = [
    "check_fill_settings",
    "check_sigma",
]
