"""Perturbing inputs: baselines and fills, Gaussian blur, and feature groups.

Shared by the perturbation methods (:mod:`pellucid.attribution`), the reference inputs
of path methods and DeepLIFT (:mod:`pellucid.lrp`) and the perturbation metrics
(:mod:`pellucid.metrics`). The package builds only on the core modules.

- :mod:`.baselines`: reference inputs x̄ (``make_baseline``), fills (``make_fill``), and
  the check of a baseline setting where it is built (``check_baseline``), and
  the fill of token ids (``token_fill``).
- :mod:`.blur`: the separable Gaussian blur over the spatial dimensions.
- :mod:`.groups`: feature groups from a feature mask or a grid of patches.
"""

from .baselines import (
    BASELINES,
    MASK_FILLS,
    BaselineSpec,
    check_baseline,
    make_baseline,
    make_fill,
    token_fill,
)
from .blur import gaussian_blur
from .groups import Groups, check_group_settings, feature_groups

__all__ = [
    "BASELINES",
    "MASK_FILLS",
    "BaselineSpec",
    "Groups",
    "check_baseline",
    "check_group_settings",
    "feature_groups",
    "gaussian_blur",
    "make_baseline",
    "make_fill",
    "token_fill",
]
