"""Checks of method settings, run where a setting is built (a method's ``__post_init__``).

Each raises a :mod:`pellucid.errors` class whose ``argument`` is the setting's name and
whose message names the setting, the problem and the fix. Counts, real numbers and batch
sizes use the shared checks of core (:func:`pellucid.checks.check_positive_int`,
:func:`pellucid.checks.check_finite_number`, :func:`pellucid.batching.check_batch_size`),
sizes :func:`pellucid.spatial.positive_sizes`, baselines and fills
:func:`pellucid.perturb.check_baseline`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from ..checks import check_eager, check_finite_number
from ..errors import ArgumentError, ArgumentTypeError
from ..perturb import MASK_FILLS, check_baseline
from ..registry import suggest
from ..spatial import interpolations


def check_choice(value: Any, name: str, choices: Sequence[str]) -> None:
    """``value`` must be one of the names ``choices``; a typo gets the closest names."""
    listed = ", ".join(map(repr, choices))
    if not isinstance(value, str):
        raise ArgumentTypeError(name, f"{name} must be one of {listed}; got {value!r}")
    if value not in choices:
        hint = suggest(value, list(choices))
        raise ArgumentError(name, f"unknown {name} {value!r}.{hint} Use one of {listed}")


def check_bool(value: Any, name: str) -> None:
    """A switch must be ``True`` or ``False`` (a truthy string or number is a mistake)."""
    if not isinstance(value, bool):
        raise ArgumentTypeError(name, f"{name} must be True or False, got {value!r}")


def check_seed(value: Any, name: str = "seed") -> None:
    """A seed is an int (``None`` draws a fresh one)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ArgumentTypeError(name, f"{name} must be an int or None, got {value!r}")


def check_interpolation(mode: str, dims: int) -> None:
    """``interpolation`` fits maps with ``dims`` spatial dims (``spatial.interpolations``)."""
    allowed = interpolations(dims)
    if mode not in allowed:
        raise ArgumentError(
            "interpolation",
            f"interpolation {mode!r} does not fit maps with {dims} spatial dims; use one of "
            f"{', '.join(map(repr, allowed))}",
        )


def check_eager_layers(model: nn.Module, method: str) -> None:
    """:func:`pellucid.checks.check_eager` for the model and every submodule: the graph of a
    compiled or TorchScript submodule skips the hooks that record its layers, so their
    terms would be lost silently."""
    for name, module in model.named_modules():
        inside = f" (at its submodule {name!r})" if name else ""
        check_eager(module, f"the layer hooks of {method}{inside}")


def check_fill_settings(fill: Any, blur_sigma: Any) -> None:
    """The fill of a perturbation method (:data:`pellucid.perturb.MASK_FILLS`, a finite
    number or tensor) and the blurred fill's σ > 0 (σ = 0 would fill with the input)."""
    check_baseline(fill, "fill", MASK_FILLS)
    check_sigma(blur_sigma)


def check_sigma(blur_sigma: Any) -> None:
    """``blur_sigma`` > 0: the σ of the blurred baseline or fill, in elements."""
    check_finite_number(blur_sigma, "blur_sigma", 0, inclusive=False,
                        meaning="the σ of the blur in elements; 0 would not blur")


__all__ = [
    "check_bool",
    "check_choice",
    "check_eager_layers",
    "check_fill_settings",
    "check_interpolation",
    "check_seed",
    "check_sigma",
]
