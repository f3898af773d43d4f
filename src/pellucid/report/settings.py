"""Settings for the methods in the demo: what they need (references) and a smaller budget.

The demo runs every registered method on 64×64 images on a CPU in a few minutes, so the
sampling methods get fewer samples than their defaults, and methods that need data get it
here (``expected_gradients`` draws its baselines from training images). A method missing
from the table runs with its defaults; settings a method does not have are dropped, so the
table may name settings of methods that are not registered yet.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from torch import Tensor

from ..method import METHODS

SettingsFor = Callable[[Tensor], dict[str, Any]]

#: method name -> settings, given the reference (training) images
DEMO_SETTINGS: dict[str, SettingsFor] = {
    "integrated_gradients": lambda refs: {"steps": 16},
    "expected_gradients": lambda refs: {"references": refs, "samples": 16},
    "smoothgrad": lambda refs: {"samples": 8},
    "smoothgrad_squared": lambda refs: {"samples": 8},
    "vargrad": lambda refs: {"samples": 8},
    "occlusion": lambda refs: {"window": 8, "stride": 4},
    "rise": lambda refs: {"samples": 400, "cells": 6},
    "lime": lambda refs: {"patch": 8, "samples": 128},
    "kernel_shap": lambda refs: {"patch": 8, "samples": 128},
}

#: the methods of a ``--quick`` demo (those that are registered)
QUICK_METHODS = (
    "gradient",
    "integrated_gradients",
    "expected_gradients",
    "gradcam",
    "occlusion",
    "lrp.epsilon_plus_flat",
)


def demo_settings(name: str, references: Tensor) -> dict[str, Any]:
    """The demo's settings for method ``name``, restricted to the settings it has."""
    make = DEMO_SETTINGS.get(name)
    if make is None:
        return {}
    valid = {f.name for f in dataclasses.fields(METHODS.get(name))}
    return {key: value for key, value in make(references).items() if key in valid}


__all__ = ["DEMO_SETTINGS", "QUICK_METHODS", "demo_settings"]
