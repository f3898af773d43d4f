"""Noise wrappers over any registered method: SmoothGrad, SmoothGrad², VarGrad.

With noisy copies x + εₙ, εₙ ∼ N(0, σ²), σ = ``noise`` · (max x − min x) per sample
(Smilkov et al. 2017), and A the wrapped ("base") method:

- SmoothGrad:  (1/N) Σₙ A(x + εₙ)          (Smilkov et al. 2017)
- SmoothGrad²: (1/N) Σₙ A(x + εₙ)²         (Hooker et al. 2019)
- VarGrad:     (1/N) Σₙ A(x + εₙ)² − SmoothGrad²   (Adebayo et al. 2018)

The noise draws ε₁..ε_N are shared by all samples of a batch (scaled by each sample's σ),
so the result for a sample does not depend on the rest of the batch. The N·B noisy rows
are evaluated in chunks of ``batch_size`` rows, each one batched call of the base method
(one forward and one backward pass for gradients); only the moments that the statistic
needs are accumulated, and checked for NaN/Inf once per call. The draws are made and the
sums accumulated in float32 at least, whatever the model's dtype (a float16 sum of squares
overflows past 65504); the result is cast to the inputs' dtype.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from .._seeding import generator
from ..batching import broadcast_like, check_batch_size, expanded_rows
from ..checks import check_count, check_finite_number, check_seed
from ..errors import ArgumentError, ArgumentTypeError
from ..method import METHODS, Method, register_method
from ..task import Task
from .rows import check_finite_values

NOISY = "noisy copies"


@dataclass(frozen=True, eq=False)
class _NoiseWrapper(Method):
    base: str | Method = "gradient"
    samples: int = 16
    noise: float = 0.15
    seed: int = 0
    batch_size: int | None = None
    base_settings: Mapping[str, Any] = field(default_factory=dict)

    #: the fewest noisy copies whose statistic means something
    min_samples: ClassVar[int] = 1

    def __post_init__(self) -> None:
        if not isinstance(self.base, (str, Method)):
            raise ArgumentTypeError(
                "base",
                f"base must be a method name (e.g. 'gradient') or a method object (e.g. "
                f"pellucid.get_method('gradient')), got {self.base!r}",
            )
        if not isinstance(self.base_settings, Mapping):
            raise ArgumentTypeError(
                "base_settings",
                f"base_settings must be a mapping of the base method's settings, got "
                f"{type(self.base_settings).__name__}",
            )
        if isinstance(self.base, str):
            METHODS.get(self.base, "base")  # an unknown name, with close names
        self.base_method()  # an unknown or bad base setting fails here, by name
        check_count(self.samples, "samples", "noisy copies per sample")
        if self.samples < self.min_samples:
            raise ArgumentError(
                "samples",
                f"{self.name} needs samples >= {self.min_samples}: the variance of a single "
                "noisy copy is zero everywhere; use e.g. samples=16",
            )
        check_finite_number(self.noise, "noise", 0, meaning="σ as a fraction of the input range")
        check_seed(self.seed)
        check_batch_size(self.batch_size)

    #: the moments of the base attributions that the statistic needs: 1 (their mean),
    #: 2 (their mean square); only those are accumulated
    moments: ClassVar[tuple[int, ...]] = (1,)

    def combine(self, mean: Tensor | None, mean_square: Tensor | None) -> Tensor:
        """The statistic from the moments it needs (the others are None)."""
        raise NotImplementedError

    def base_method(self) -> Method:
        """The wrapped method object, configured with ``base_settings``."""
        from ..api import as_method

        return as_method(self.base, **self.base_settings)

    def budget(
        self, x: Tensor, evaluations: int, references: Tensor | None
    ) -> dict[str, Any]:
        """``samples = evaluations`` noisy copies, each explained by the base method with
        its own budget for ``evaluations`` (which joins ``base_settings``)."""
        base_budget = self.base_method().budget(x, evaluations, references)
        return {"samples": evaluations, "base_settings": {**self.base_settings, **base_budget}}

    def attribute(self, task: Task, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """Each chunk of noisy rows is one batched call of the base method; the moments are
        accumulated with ``index_add_`` and checked for NaN/Inf once, at the end (a NaN or
        Inf in any base attribution reaches the sums), so nothing reads a device value per
        chunk."""
        base = self.base_method()
        flat = x.flatten(1)
        spread = flat.amax(1) - flat.amin(1)
        if self.noise > 0 and bool((spread == 0).any()):
            constant = (spread == 0).nonzero().flatten().tolist()
            raise ArgumentError(
                "inputs",
                f"inputs: sample(s) {constant[:8]} hold one constant value, so the noise "
                f"σ = noise·(max − min) is 0 there and {self.name} would return the base map "
                "unsmoothed (VarGrad: zero everywhere); explain such samples with the base "
                f"method ({self.base!r}) instead",
            )
        sigma = broadcast_like(self.noise * spread, x)
        gen = generator(self.seed)
        wide = torch.promote_types(x.dtype, torch.float32)  # draws and sums: float32 at least
        eps = torch.randn((self.samples, *x.shape[1:]), generator=gen, dtype=wide)
        eps = eps.to(x.device, x.dtype)  # the same draws whatever the model's dtype
        sums = {k: torch.zeros_like(x, dtype=wide) for k in self.moments}
        for sample, draw in expanded_rows(len(x), self.samples, self.batch_size, x.device):
            noisy = x[sample] + sigma[sample] * eps[draw]
            attribution, _ = base.attribute(task.take(sample, NOISY), noisy)
            attribution = attribution.to(wide)
            for k, total in sums.items():
                total.index_add_(0, sample, attribution if k == 1 else attribution.square())
        for total in sums.values():
            check_finite_values(total, self.name, f"{base.name} attributions", NOISY)
        mean, mean_square = (sums[k] / self.samples if k in sums else None for k in (1, 2))
        return self.combine(mean, mean_square).to(x.dtype), {"base": base.name}


@register_method("smoothgrad")
@dataclass(frozen=True, eq=False)
class SmoothGrad(_NoiseWrapper):
    """SmoothGrad: the mean of a base method over noisy copies (Smilkov et al. 2017)."""

    def combine(self, mean: Tensor | None, mean_square: Tensor | None) -> Tensor:
        return mean


@register_method("smoothgrad_squared")
@dataclass(frozen=True, eq=False)
class SmoothGradSquared(_NoiseWrapper):
    """SmoothGrad²: the mean square of a base method over noisy copies (Hooker et al. 2019)."""

    moments = (2,)

    def combine(self, mean: Tensor | None, mean_square: Tensor | None) -> Tensor:
        return mean_square


@register_method("vargrad")
@dataclass(frozen=True, eq=False)
class VarGrad(_NoiseWrapper):
    """VarGrad: the variance of a base method over noisy copies (Adebayo et al. 2018).

    Needs ``samples >= 2`` and ``noise > 0``: otherwise the variance is zero everywhere.
    """

    min_samples = 2
    moments = (1, 2)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_finite_number(self.noise, "noise", 0, inclusive=False,
                            meaning="without noise the variance is zero")

    def combine(self, mean: Tensor | None, mean_square: Tensor | None) -> Tensor:
        return (mean_square - mean.square()).clamp_min(0)
