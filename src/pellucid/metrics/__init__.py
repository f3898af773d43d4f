"""Explanation-quality metrics, batched in torch, and the ``evaluate`` API (``benchmark``, on
the dataset runner, is :func:`pellucid.benchmark`).

Every metric is registered by name (``faithfulness.pixel_flipping``, ``localisation.
pointing_game``, ...); see :func:`list_metrics` and docs/metrics.md.
"""

from . import (  # noqa: F401  (importing registers the metrics)
    axiomatic,
    complexity,
    faithfulness,
    localisation,
    randomisation,
    roar,
    robustness,
)
from .base import (
    METRICS,
    Case,
    Metric,
    MetricResult,
    Scores,
    get_metric,
    list_metrics,
    register_metric,
)
from .evaluate import evaluate
from .external import CallableMethod
from .harness import Table
from .random_attribution import RandomAttribution

__all__ = [
    "METRICS",
    "CallableMethod",
    "Case",
    "Metric",
    "MetricResult",
    "RandomAttribution",
    "Scores",
    "Table",
    "evaluate",
    "get_metric",
    "list_metrics",
    "register_metric",
]
