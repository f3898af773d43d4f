"""Deprecated module: :class:`RandomAttribution` lives in ``pellucid.metrics.random_attribution``.

A "baseline" in pellucid is a reference input x̄ (``pellucid.perturb``); the
random attribution that benchmarks compare against is not one.
"""

from __future__ import annotations

from .._deprecation import deprecated_names


def _random_attribution() -> type:
    from .random_attribution import RandomAttribution

    return RandomAttribution


__getattr__ = deprecated_names(
    __name__,
    {"RandomAttribution": ("pellucid.metrics.RandomAttribution", _random_attribution)},
)
