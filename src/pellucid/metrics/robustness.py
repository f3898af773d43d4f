"""Robustness: how much the explanation moves when the input barely does.

- ``robustness.max_sensitivity`` and ``robustness.avg_sensitivity`` (Yeh et al. 2019):
  max (or mean) over y with ‖y − x‖∞ ≤ r of ‖Φ(y) − Φ(x)‖₂, estimated with ``draws``
  uniform samples of the ball (the same offsets for every sample); ``normalise`` divides
  by ‖Φ(x)‖₂.
- ``robustness.continuity`` (Montavon et al. 2018, section on explanation continuity):
  max over translations x' of x by 1..``max_shift`` locations of ‖R(x) − R(x')‖₁ / ‖x − x'‖₂,
  the Lipschitz quotient that a continuous explanation keeps small.

All of them re-run the method on the perturbed inputs, ``batch_size`` rows at a time.
None applies to token ids: they raise an ArgumentError naming ``metrics``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .._seeding import generator
from ..batching import check_batch_size
from ..checks import check_bool, check_count, check_finite_number, check_seed
from ..errors import ArgumentError
from .base import Case, Metric, Scores, register_metric
from .stats import wide


@dataclass(frozen=True, eq=False)
class _Sensitivity(Metric):
    direction = "lower"
    radius: float = 0.02
    draws: int = 10
    normalise: bool = False
    batch_size: int | None = None
    seed: int | None = 0

    def __post_init__(self) -> None:
        check_finite_number(self.radius, "radius", 0.0, inclusive=False,
                            meaning="the half-width of the input perturbation")
        check_count(self.draws, "draws", "perturbed inputs per sample")
        check_bool(self.normalise, "normalise")
        check_batch_size(self.batch_size)
        check_seed(self.seed)

    def reduce(self, distances: Tensor) -> Tensor:
        raise NotImplementedError

    def compute(self, case: Case) -> Scores:
        case.refuse_tokens(self.name, "it moves the inputs by small real offsets, which token "
                           "ids do not take")
        x = case.forward.inputs
        draws = torch.rand((self.draws, *x.shape[1:]), generator=generator(self.seed),
                           dtype=wide(x).dtype)  # the same draws whatever the model's dtype
        offsets = ((2 * draws - 1) * self.radius).to(x)
        reference = case.attribution.flatten(1)

        def distance(sample: Tensor, draw: Tensor) -> Tensor:
            moved = case.explain(x[sample] + offsets[draw], sample, batch_size=self.batch_size,
                                 metric=self.name)
            return wide(moved.flatten(1) - reference[sample]).norm(dim=1)

        distances = case.grid_values(self.draws, distance, self.batch_size)
        if self.normalise:
            distances = distances / wide(reference).norm(dim=1, keepdim=True)
        return Scores(self.reduce(distances), distances.sort(1).values)


@register_metric("robustness.max_sensitivity")
@dataclass(frozen=True, eq=False)
class MaxSensitivity(_Sensitivity):
    """Max-sensitivity (Yeh et al. 2019): max_{‖y−x‖∞≤r} ‖Φ(y) − Φ(x)‖₂, Monte Carlo."""

    def reduce(self, distances: Tensor) -> Tensor:
        return distances.amax(1)


@register_metric("robustness.avg_sensitivity")
@dataclass(frozen=True, eq=False)
class AvgSensitivity(_Sensitivity):
    """Average sensitivity (Yeh et al. 2019): E_{‖y−x‖∞≤r} ‖Φ(y) − Φ(x)‖₂, Monte Carlo."""

    def reduce(self, distances: Tensor) -> Tensor:
        return distances.mean(1)


def translate(x: Tensor, shift: int, dim: int) -> Tensor:
    """``x`` moved by ``shift`` locations along ``dim``, the border repeated into the gap."""
    size = x.shape[dim]
    index = (torch.arange(size, device=x.device) - shift).clamp(0, size - 1)
    return x.index_select(dim, index)


@register_metric("robustness.continuity")
@dataclass(frozen=True, eq=False)
class Continuity(Metric):
    """Continuity (Montavon et al. 2018): max over small translations x' of
    ‖R(x) − R(x')‖₁ / ‖x − x'‖₂; lower is more continuous.

    A translation that leaves x unchanged (x' = x) has no quotient (NaN in the curve) and
    is left out of the max; a sample without any is NaN.
    """

    direction = "lower"
    max_shift: int = 2
    batch_size: int | None = None

    def __post_init__(self) -> None:
        check_count(self.max_shift, "max_shift", "the largest translation, in locations")
        check_batch_size(self.batch_size)

    def compute(self, case: Case) -> Scores:
        case.refuse_tokens(self.name, "its quotient divides by the distance ‖x − x′‖₂ of the "
                           "inputs, which token ids do not have")
        x = case.forward.inputs
        if x.ndim < 3:
            raise ArgumentError(
                "inputs",
                f"{self.name} translates along spatial dims; inputs of shape {tuple(x.shape)} "
                "(tabular) have none: choose another metric",
            )
        smallest = min(x.shape[2:])
        if self.max_shift >= smallest:
            raise ArgumentError(
                "max_shift",
                f"max_shift={self.max_shift} would translate the inputs by their whole size "
                f"({smallest} locations along a spatial dim); pass max_shift < {smallest}",
            )
        shifts = [(s, d) for d in range(2, x.ndim) for s in range(-self.max_shift,
                                                                    self.max_shift + 1) if s]
        moved = torch.cat([translate(x, s, d) for s, d in shifts])
        sample = torch.arange(len(x), device=x.device).repeat(len(shifts))
        explained = case.explain(moved, sample, batch_size=self.batch_size, metric=self.name)
        change = wide((explained - case.attribution[sample]).flatten(1)).abs().sum(1)
        step = wide((moved - x[sample]).flatten(1)).norm(dim=1)
        quotient = torch.where(step > 0, change / step, torch.nan).view(len(shifts), len(x)).T
        best = quotient.nan_to_num(-torch.inf, posinf=torch.inf).amax(1)
        return Scores(best.where(best > -torch.inf, torch.nan), quotient,
                      torch.tensor([float(s) for s, _ in shifts]),
                      {"shifts": [(s, d) for s, d in shifts]})


