"""Surrogate-model attributions over feature groups: LIME and KernelSHAP.

Both draw coalitions z ∈ {0, 1}^G of the G feature groups (shared by all samples of a
batch, seeded), evaluate the model on inputs that keep the groups with zₖ = 1 and fill
the others, and fit a weighted linear model s(z) ≈ φ₀ + Σₖ φₖ zₖ to the scores. The
regressions share their design matrix across the batch, so one ``torch.linalg.lstsq``
with one right-hand side per sample solves them all. Every element of a group carries
the group's coefficient φₖ.

- LIME (Ribeiro et al. 2016): z i.i.d. Bernoulli(½) (the first row all ones), weights
  π(z) = exp(−d(z)²/σ²) with d the cosine distance between z and the all-ones vector,
  d = 1 − √(|z|/G); a ridge regression with an unpenalised intercept.
- KernelSHAP (Lundberg & Lee 2017): the Shapley kernel π(z) = (G − 1)/(C(G, |z|) |z| (G − |z|));
  φ₀ = f(all filled) and Σφ = f(x) − f(all filled) are enforced exactly by eliminating
  φ_G, so that it is exact on linear models. All 2^G − 2 coalitions are enumerated when
  ``samples`` allows; otherwise sizes are drawn ∝ (G − 1)/(|z| (G − |z|)), each coalition
  with its complement, and weighted equally.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from .._seeding import generator
from ..batching import check_batch_size
from ..checks import check_count, check_finite_number, check_seed
from ..errors import ArgumentError
from ..method import Method, register_method
from ..perturb import BaselineSpec, check_group_settings, feature_groups, make_fill
from ..spatial import positive_sizes
from ..task import Task
from .masking import masked_scores, score_at_input
from .validation import check_fill_settings

#: coalitions per model evaluation budgeted by ``cheap``
COALITIONS_PER_EVALUATION = 8


@dataclass(frozen=True)
class Fit:
    """A fitted surrogate per sample: coefficients (B, G), intercepts (B,), extra outputs."""

    coef: Tensor
    intercept: Tensor
    extras: dict[str, Any]


@dataclass(frozen=True, eq=False)
class _Surrogate(Method):
    """Groups, coalitions, the model on the coalitions, and one linear fit per sample."""

    per_position: ClassVar[bool] = True
    feature_mask: Tensor | None = None
    patch: int | tuple[int, ...] | None = None
    samples: int = 256
    fill: BaselineSpec = "zero"
    blur_sigma: float = 5.0
    seed: int = 0
    batch_size: int | None = None

    def __post_init__(self) -> None:
        check_group_settings(self.feature_mask, self.patch)
        if self.patch is not None:
            positive_sizes(self.patch, 1, "patch")
        check_count(self.samples, "samples", "the number of coalitions")
        check_fill_settings(self.fill, self.blur_sigma)
        check_seed(self.seed)
        check_batch_size(self.batch_size)

    def budget(
        self, x: Tensor, evaluations: int, references: Tensor | None
    ) -> dict[str, Any]:
        """``samples = 8 · evaluations`` coalitions (128 for 16). Without a ``feature_mask``,
        inputs with d spatial dims get k patches per dim, k the largest with kᵈ ≤ samples / 2,
        so that the G ≤ samples / 2 groups leave KernelSHAP's complementary pairs enough
        equations (patches of 8 on 64×64 images for 16)."""
        samples = COALITIONS_PER_EVALUATION * evaluations
        spatial = x.shape[2:]
        patch = self.patch
        if spatial and self.feature_mask is None:
            per_dim = integer_root(samples // 2, len(spatial))
            patch = tuple(math.ceil(n / per_dim) for n in spatial)
        return {"samples": samples, "patch": patch}

    def coalitions(self, groups: int) -> tuple[Tensor, Tensor]:
        """Coalitions z (N, G) and regression weights (N,), float64 on the CPU."""
        raise NotImplementedError

    def fit(self, z: Tensor, weights: Tensor, scores: Tensor, full: Tensor, empty: Tensor) -> Fit:
        """The surrogate for scores (B, N), given f(x) (``full``) and f(all filled) (``empty``)."""
        raise NotImplementedError

    def attribute(self, task: Task, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        groups = feature_groups(x, self.feature_mask, self.patch)
        if groups.count < 2:
            blame = ("feature_mask" if self.feature_mask is not None
                     else "patch" if self.patch is not None else "inputs")
            raise ArgumentError(
                blame,
                f"{self.name} found a single feature group in inputs of shape "
                f"{tuple(x.shape)} ({blame}={_short(getattr(self, blame, None))}), so every "
                "element would get the same value; give a feature_mask with at least two "
                "labels or a patch smaller than the inputs",
            )
        z, weights = self.coalitions(groups.count)
        fill = make_fill(self.fill, x, self.blur_sigma)
        on_device = z.to(x)

        def coalition_masks(index: Tensor) -> Tensor:
            """Masks (n, *labels.shape): 1 on the elements of the groups in the coalition."""
            return on_device[index][:, groups.labels]

        scores, _ = masked_scores(task, x, fill, coalition_masks, len(z), self.batch_size)
        with torch.no_grad():
            empty = task.score(fill)
        observed = (scores, score_at_input(task, x), empty)
        fit = self.fit(z, weights, *moved(observed, "cpu", torch.float64))
        per_sample = {"group_attribution": fit.coef, "intercept": fit.intercept,
                      **{k: v for k, v in fit.extras.items() if isinstance(v, Tensor)}}
        results = dict(zip(per_sample, moved(list(per_sample.values()), x.device, x.dtype),
                           strict=True))
        extras = {
            **results,
            "groups": groups.names,
            "baseline_score": empty,
            **{k: v for k, v in fit.extras.items() if not isinstance(v, Tensor)},
        }
        coef = results["group_attribution"]
        return coef[:, groups.labels].expand_as(x).contiguous(), extras


def moved(tensors: Sequence[Tensor], device: torch.device | str, dtype: torch.dtype
          ) -> list[Tensor]:
    """Per-sample tensors (B, ...), detached, on ``device`` in ``dtype``, with one copy
    between devices (one host synchronisation on a GPU instead of one per tensor).

    >>> moved([torch.ones(2, 3), torch.zeros(2)], "cpu", torch.float64)[1]
    tensor([0., 0.], dtype=torch.float64)
    """
    joined = torch.cat([t.detach().to(dtype).reshape(len(t), -1) for t in tensors], 1)
    parts = joined.to(device).split([math.prod(t.shape[1:]) for t in tensors], 1)
    return [p.reshape(t.shape) for p, t in zip(parts, tensors, strict=True)]


def _short(value: Any) -> str:
    """A setting's value for a message: a tensor by its shape."""
    return f"<tensor {tuple(value.shape)}>" if isinstance(value, Tensor) else repr(value)


def integer_root(n: int, degree: int) -> int:
    """The largest k ≥ 1 with k^degree ≤ n (1 when n < 2)."""
    k = max(1, round(n ** (1 / degree)))
    while k > 1 and k**degree > n:
        k -= 1
    while (k + 1) ** degree <= n:
        k += 1
    return k


def weighted_ridge(
    design: Tensor, weights: Tensor, targets: Tensor, ridge: float, intercept: bool
) -> tuple[Tensor, Tensor]:
    """argmin_β Σₙ wₙ (yₙ − β₀ − xₙ·β)² + ridge |β|² for every row of ``targets`` (B, N).

    ``design`` (N, K) and ``weights`` (N,) are shared; returns (β (B, K), β₀ (B,)), with
    β₀ = 0 when ``intercept`` is false. Solved as one least-squares problem with B
    right-hand sides, on the CPU (rank-deficient designs get the minimum-norm solution).
    """
    total = weights.sum()
    x_mean = weights @ design / total if intercept else design.new_zeros(design.shape[1])
    y_mean = targets @ weights / total if intercept else targets.new_zeros(len(targets))
    root = weights.sqrt().unsqueeze(1)
    a = root * (design - x_mean)
    b = root * (targets - y_mean.unsqueeze(1)).T
    if ridge > 0:
        a = torch.cat([a, math.sqrt(ridge) * torch.eye(design.shape[1], dtype=a.dtype)])
        b = torch.cat([b, b.new_zeros(design.shape[1], b.shape[1])])
    # SVD-based: the minimum-norm solution, column by column the same whatever the batch
    coef = torch.linalg.lstsq(a, b, driver="gelsd").solution.T
    return coef, y_mean - coef @ x_mean


@register_method("lime")
@dataclass(frozen=True, eq=False)
class Lime(_Surrogate):
    """LIME (Ribeiro et al. 2016): a kernel-weighted ridge regression on group coalitions.

    Settings: groups from ``feature_mask`` or ``patch``; ``samples`` coalitions;
    ``kernel_width`` σ of π(z) = exp(−d²/σ²) on the cosine distance d to all-ones;
    ``ridge`` penalty (1.0 as in the reference implementation); ``fill``, ``blur_sigma``,
    ``seed``, ``batch_size``. ``extras["r2"]`` is the weighted R² of each fit.
    """

    kernel_width: float = 0.25
    ridge: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.samples < 2:
            raise ArgumentError(
                "samples",
                "lime needs samples >= 2: the first coalition is the input itself, and one "
                "coalition gives a fit without slope (every coefficient 0); use e.g. 256",
            )
        check_finite_number(self.kernel_width, "kernel_width", 0, inclusive=False,
                            meaning="σ of the LIME kernel")
        check_finite_number(self.ridge, "ridge", 0, meaning="the ridge penalty")

    def coalitions(self, groups: int) -> tuple[Tensor, Tensor]:
        z = (torch.rand(self.samples, groups, generator=generator(self.seed)) < 0.5).double()
        z[0] = 1
        distance = 1 - (z.sum(1) / groups).sqrt()
        weights = torch.exp(-distance.square() / self.kernel_width**2)
        if len(torch.unique(z[weights > 0], dim=0)) < 2:
            tiny = len(torch.unique(z, dim=0)) > 1
            raise ArgumentError(
                "kernel_width" if tiny else "samples",
                f"lime: the {self.samples} coalitions over {groups} groups leave "
                + ("only the input itself with a weight > 0 (kernel_width "
                   f"{self.kernel_width} underflows exp(−d²/σ²)); use a larger kernel_width"
                   if tiny else "a single distinct coalition; use more samples")
                + ", or every coefficient would be 0",
            )
        return z, weights

    def fit(self, z: Tensor, weights: Tensor, scores: Tensor, full: Tensor, empty: Tensor) -> Fit:
        coef, intercept = weighted_ridge(z, weights, scores, self.ridge, intercept=True)
        residual = scores - intercept.unsqueeze(1) - coef @ z.T
        mean = scores @ weights / weights.sum()
        spread = (scores - mean.unsqueeze(1)).square() @ weights
        r2 = torch.where(spread > 0, 1 - residual.square() @ weights / spread, 1.0)
        return Fit(coef, intercept, {"r2": r2})


@register_method("kernel_shap")
@dataclass(frozen=True, eq=False)
class KernelShap(_Surrogate):
    """KernelSHAP (Lundberg & Lee 2017): Shapley values of the groups by weighted regression.

    Exact (all 2^G − 2 coalitions, ``extras["exact"]``) when 2^G − 2 ≤ ``samples``;
    otherwise ``samples`` (rounded up to even) coalitions drawn from the Shapley kernel in
    complementary pairs. Efficiency Σφ = f(x) − f(all filled) holds exactly;
    ``extras["efficiency_gap"]`` reports Σφ − (f(x) − f(all filled)) and the intercept
    is f(all filled).
    """

    def exhaustive(self, groups: int) -> bool:
        """Whether all 2^G − 2 proper, non-empty coalitions fit in ``samples``."""
        return 2**groups - 2 <= self.samples

    def coalitions(self, groups: int) -> tuple[Tensor, Tensor]:
        if self.exhaustive(groups):
            codes = torch.arange(1, 2**groups - 1).unsqueeze(1)
            z = ((codes >> torch.arange(groups)) & 1).double()
            size = z.sum(1).long()
            kernel = [(groups - 1) / (math.comb(groups, k) * k * (groups - k)) if 0 < k < groups
                      else 0.0 for k in range(groups + 1)]
            return z, torch.tensor(kernel, dtype=torch.float64)[size]
        gen = generator(self.seed)
        sizes = torch.arange(1, groups, dtype=torch.float64)
        pairs = math.ceil(self.samples / 2)
        if pairs < groups - 1:
            warnings.warn(
                f"kernel_shap: {2 * pairs} coalitions in complementary pairs give {pairs} "
                f"equations for {groups - 1} unknowns, so the fit is underdetermined; use "
                f"samples >= {2 * (groups - 1)} (or fewer groups)",
                stacklevel=2,
            )
        size = 1 + torch.multinomial(1 / (sizes * (groups - sizes)), pairs, True, generator=gen)
        permutation = torch.rand(pairs, groups, generator=gen).argsort(1)
        half = (permutation < size.unsqueeze(1)).double()  # a uniform subset of each size
        z = torch.stack([half, 1 - half], 1).reshape(2 * pairs, groups)
        return z, torch.ones(len(z), dtype=torch.float64)

    def fit(self, z: Tensor, weights: Tensor, scores: Tensor, full: Tensor, empty: Tensor) -> Fit:
        gain = full - empty
        if z.shape[1] == 1:
            coef = gain.unsqueeze(1)
        else:  # φ_G = gain − Σ_{k<G} φₖ turns the constraint into a smaller free regression
            design = z[:, :-1] - z[:, -1:]
            targets = scores - empty.unsqueeze(1) - z[:, -1] * gain.unsqueeze(1)
            rest, _ = weighted_ridge(design, weights, targets, 0.0, intercept=False)
            coef = torch.cat([rest, (gain - rest.sum(1)).unsqueeze(1)], 1)
        gap = coef.float().sum(1) - gain.float()
        return Fit(coef, empty, {"efficiency_gap": gap, "exact": self.exhaustive(z.shape[1])})
