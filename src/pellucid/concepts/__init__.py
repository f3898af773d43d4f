"""Concept activation vectors and TCAV (Kim et al. 2018): how much a concept matters.

Train the CAVs once per layer (``train_cavs``: each concept against N random sets, and
random against random for the null), then test classes with ``tcav``: the report holds
per concept the per-run scores, their mean, the p-value and the verdict; ``report.plot()``.
See docs/concepts.md for a runnable example.

Needs scikit-learn (the ``concepts`` extra) for the classifiers and scipy for the test.
"""

from .activations import layer_activations
from .cav import CAV, CLASSIFIERS, CAVSet, train_cav, train_cavs
from .plot import plot_tcav
from .tcav import TCAVReport, TCAVResult, directional_derivatives, tcav, tcav_scores

__all__ = [
    "CAV",
    "CLASSIFIERS",
    "CAVSet",
    "TCAVReport",
    "TCAVResult",
    "directional_derivatives",
    "layer_activations",
    "plot_tcav",
    "tcav",
    "tcav_scores",
    "train_cav",
    "train_cavs",
]
