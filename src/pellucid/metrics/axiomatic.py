"""Axiomatic: completeness (Sundararajan et al. 2017) and conservation (Bach et al. 2015)."""

from __future__ import annotations

from dataclasses import dataclass

from ..checks import check_bool, check_finite
from ..perturb import BaselineSpec, check_baseline
from .base import Case, Metric, Scores, register_metric
from .stats import wide


@register_metric("axiomatic.completeness")
@dataclass(frozen=True, eq=False)
class Completeness(Metric):
    """Completeness gap |Σᵢ aᵢ − (f(x) − f(x̄))|; with ``baseline=None`` the LRP conservation
    gap |Σᵢ Rᵢ − f(x)| (Bach et al. 2015). ``relative`` divides by |f(x) − f(x̄)| (Inf or
    NaN for a sample where that is 0). For token ids the baseline is a token (``"pad"``,
    ``"mask"`` or an id): x̄ is every non-padding token replaced by it.
    """

    direction = "lower"
    baseline: BaselineSpec | None = "zero"
    relative: bool = False

    def __post_init__(self) -> None:
        if self.baseline is not None:
            check_baseline(self.baseline, tokens=True)
        check_bool(self.relative, "relative")

    def compute(self, case: Case) -> Scores:
        x = case.forward.inputs
        explained = case.scores(x)
        if self.baseline is not None:
            reference = case.fill(self.baseline, "baseline")
            check_finite(reference, "the baseline", argument="baseline",
                         fix="pass a finite baseline")
            explained = explained - case.scores(reference)
        gap = (wide(case.attribution.flatten(1)).sum(1) - wide(explained)).abs()
        return Scores(gap / explained.abs() if self.relative else gap)
