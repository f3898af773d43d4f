"""Streaming statistics merged across batches in float64: memory bounded by one batch.

:class:`Moments` keeps (count, mean, M2) of the finite values and counts NaN apart; two
partial results merge with the parallel formula of Chan, Golub & LeVeque (1979):
n = n_a + n_b, δ = μ_b − μ_a, μ = μ_a + δ·n_b/n, M2 = M2_a + M2_b + δ²·n_a·n_b/n.
:class:`CurveMean` is the same for the mean of curves (B, K), position by position.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

__all__ = ["CurveMean", "Moments"]


@dataclasses.dataclass
class Moments:
    """Count, mean and sum of squared deviations of the non-NaN values seen; ``nan`` counts
    the NaN values.

    Example:
        >>> import numpy as np
        >>> m = Moments().update(np.array([1.0, 2.0]))
        >>> m = m.merge(Moments().update(np.array([3.0, np.nan])))
        >>> m.count, m.mean, m.std, m.nan
        (3, 2.0, 1.0, 1)
    """

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    nan: int = 0

    def update(self, values: np.ndarray) -> Moments:
        """Add a batch of values (any shape); returns self."""
        values = np.asarray(values, dtype=np.float64).ravel()
        finite = values[~np.isnan(values)]
        batch = Moments(count=len(finite), nan=len(values) - len(finite))
        if len(finite):
            batch.mean = float(finite.mean())
            batch.m2 = float(((finite - batch.mean) ** 2).sum())
        return self.merge(batch)

    def merge(self, other: Moments) -> Moments:
        """Merge another partial result into this one (Chan et al.); returns self."""
        n = self.count + other.count
        if other.count:
            delta = other.mean - self.mean
            self.mean += delta * other.count / n
            self.m2 += other.m2 + delta * delta * self.count * other.count / n
        self.count = n
        self.nan += other.nan
        return self

    @property
    def std(self) -> float:
        """The sample standard deviation (ddof 1) of the non-NaN values; 0 for one value,
        NaN for none."""
        if self.count == 0:
            return math.nan
        return math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else 0.0

    @property
    def valid_mean(self) -> float:
        """The mean of the non-NaN values; NaN when there are none."""
        return self.mean if self.count else math.nan


@dataclasses.dataclass
class CurveMean:
    """The mean curve over the rows seen, position by position, leaving out NaN rows.

    Example:
        >>> import numpy as np
        >>> c = CurveMean().update(np.array([[0.0, 2.0]])).update(np.array([[2.0, 4.0]]))
        >>> c.mean.tolist()
        [1.0, 3.0]
    """

    count: np.ndarray | None = None
    total: np.ndarray | None = None

    def update(self, curves: np.ndarray) -> CurveMean:
        """Add curves (B, K); returns self."""
        curves = np.asarray(curves, dtype=np.float64)
        valid = ~np.isnan(curves)
        count, total = valid.sum(0), np.where(valid, curves, 0.0).sum(0)
        self.count = count if self.count is None else self.count + count
        self.total = total if self.total is None else self.total + total
        return self

    @property
    def mean(self) -> np.ndarray:
        """The mean curve (K,); NaN where no row had a value."""
        if self.count is None or self.total is None:
            return np.zeros(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.total / np.maximum(self.count, 1), np.nan)
