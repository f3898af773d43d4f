"""Path methods: Integrated Gradients and Expected Gradients.

Integrated Gradients (Sundararajan et al. 2017):
    IGᵢ(x) = (xᵢ − x̄ᵢ) ∫₀¹ ∂f(x̄ + α(x − x̄))/∂xᵢ dα,
with completeness Σᵢ IGᵢ = f(x) − f(x̄). The integral is a quadrature Σₖ wₖ ∂f(x̄ + αₖ(x − x̄))
whose weights sum to one, so IG is exact for linear models at any step count.

Expected Gradients (Erion et al. 2021; GradientSHAP in Lundberg & Lee 2017):
    EGᵢ(x) = E_{x̄∼D, α∼U(0,1)} [(xᵢ − x̄ᵢ) ∂f(x̄ + α(x − x̄))/∂xᵢ],
estimated with random references from a reference set D and random interpolation points.

Both evaluate the (step, sample) grid in chunks of ``batch_size`` rows, so memory is
bounded whatever ``steps`` or ``samples`` is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._seeding import generator
from ..batching import broadcast_like, check_batch_size, expanded_rows
from ..checks import as_tensor, check_choice, check_count, check_seed
from ..errors import ArgumentError
from ..method import Method, register_method
from ..perturb import BaselineSpec, check_baseline, make_baseline
from ..task import Task
from .rows import check_finite_values
from .validation import check_sigma

RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gauss_legendre")
#: the rows the path methods create, as their errors name them
PATH, DRAWS = "integration points", "points between random references and the inputs"
#: what the ``references`` setting of expected_gradients holds
REFERENCES = "a tensor (R, ...) of reference inputs"


def check_rule(rule: str, steps: int) -> None:
    """``steps`` is a positive int and ``rule`` one of :data:`RULES` that can use it."""
    check_count(steps, "steps", "integration steps")
    check_choice(rule, "rule", RULES)
    if rule == "riemann_trapezoid" and steps < 2:
        raise ArgumentError("steps", "the trapezoid rule needs steps >= 2 (both ends of the path)")


def quadrature(rule: str, steps: int) -> tuple[Tensor, Tensor]:
    """Nodes αₖ in [0, 1] and weights wₖ (Σ wₖ = 1) of a quadrature rule, in float64."""
    check_rule(rule, steps)
    k = np.arange(steps, dtype=np.float64)
    weights = np.full(steps, 1.0 / steps)
    if rule == "riemann_left":
        alphas = k / steps
    elif rule == "riemann_right":
        alphas = (k + 1) / steps
    elif rule == "riemann_middle":
        alphas = (k + 0.5) / steps
    elif rule == "riemann_trapezoid":
        alphas = k / (steps - 1)
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] *= 0.5
    else:  # gauss_legendre
        nodes, w = np.polynomial.legendre.leggauss(steps)
        alphas, weights = (nodes + 1) / 2, w / 2
    return torch.from_numpy(alphas), torch.from_numpy(weights)


@register_method("integrated_gradients")
@dataclass(frozen=True, eq=False)
class IntegratedGradients(Method):
    """Integrated Gradients (Sundararajan et al. 2017), with a completeness check.

    Settings: ``steps``; ``rule`` (riemann_left/right/middle, riemann_trapezoid,
    gauss_legendre); ``baseline`` (zero, a number, mean, blur, uniform, or a tensor);
    ``blur_sigma`` for the blurred baseline; ``seed`` for the uniform one; ``batch_size``
    rows per forward pass. ``extras["completeness_gap"]`` is Σ IG − (f(x) − f(x̄)) per sample.
    """

    steps: int = 32
    rule: str = "gauss_legendre"
    baseline: BaselineSpec = "zero"
    blur_sigma: float = 5.0
    seed: int = 0
    batch_size: int | None = None

    def __post_init__(self) -> None:
        check_rule(self.rule, self.steps)
        check_baseline(self.baseline, tokens=True)
        check_sigma(self.blur_sigma)
        check_seed(self.seed)
        check_batch_size(self.batch_size)

    def budget(
        self, x: Tensor, evaluations: int, references: Tensor | None
    ) -> dict[str, Any]:
        """``steps = evaluations`` (one gradient per step)."""
        return {"steps": evaluations}

    def attribute(self, task: Task, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        alphas, weights = (t.to(x) for t in quadrature(self.rule, self.steps))
        baseline = make_baseline(self.baseline, x, sigma=self.blur_sigma, seed=self.seed)
        delta = x - baseline
        path_grad = torch.zeros_like(x)
        for sample, step in expanded_rows(len(x), self.steps, self.batch_size, x.device):
            points = baseline[sample] + broadcast_like(alphas[step], x) * delta[sample]
            grad, _ = task.take(sample, PATH).gradient(points)
            check_finite_values(grad, self.name, "gradients", PATH)
            path_grad.index_add_(0, sample, grad * broadcast_like(weights[step], x))
        attribution = delta * path_grad
        with torch.no_grad():
            first = task.first_forward_at(x)
            score_x = task.target.score(first.output) if first else task.score(x)
            score_base = task.score(baseline)
        gap = attribution.flatten(1).sum(1) - (score_x - score_base)
        return attribution, {"completeness_gap": gap, "baseline_score": score_base}


@register_method("expected_gradients")
@dataclass(frozen=True, eq=False)
class ExpectedGradients(Method):
    """Expected Gradients / GradientSHAP: IG averaged over random references (Erion 2021).

    ``references`` is a tensor (R, ...) of reference inputs (e.g. training samples);
    each of ``samples`` draws picks a random reference and a random α ∈ U(0, 1).
    The draws are shared by all samples of a batch, so results do not depend on batching.
    """

    references: Tensor | None = None
    samples: int = 32
    seed: int = 0
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.references is not None:
            references = as_tensor(self.references, "references", REFERENCES)
            if references.ndim < 2 or len(references) == 0:
                raise ArgumentError(
                    "references",
                    f"references must be a batch (R, ...) of R >= 1 reference inputs, got "
                    f"shape {tuple(references.shape)}",
                )
            check_baseline(references, "references")
        check_count(self.samples, "samples", "random references drawn per sample")
        check_seed(self.seed)
        check_batch_size(self.batch_size)

    def budget(
        self, x: Tensor, evaluations: int, references: Tensor | None
    ) -> dict[str, Any]:
        """``samples = evaluations`` (one gradient per draw); ``references`` replace the
        method's own when given."""
        return {"samples": evaluations} | ({} if references is None else {"references": references})

    def attribute(self, task: Task, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        refs = self._references(x)
        gen = generator(self.seed)
        pick = torch.randint(len(refs), (self.samples,), generator=gen).to(x.device)
        alphas = torch.rand(self.samples, generator=gen, dtype=torch.float64).to(x)
        total = torch.zeros_like(x)
        for sample, draw in expanded_rows(len(x), self.samples, self.batch_size, x.device):
            ref = refs[pick[draw]]
            delta = x[sample] - ref
            points = ref + broadcast_like(alphas[draw], x) * delta
            grad, _ = task.take(sample, DRAWS).gradient(points)
            check_finite_values(grad, self.name, "gradients", DRAWS)
            total.index_add_(0, sample, grad * delta)
        return total / self.samples, {}

    def _references(self, x: Tensor) -> Tensor:
        if self.references is None:
            raise ArgumentError(
                "references",
                "expected_gradients needs references=<tensor (R, ...)>, e.g. a batch of "
                "training inputs, to draw baselines from",
            )
        refs = as_tensor(self.references, "references", REFERENCES)
        refs = refs.to(device=x.device, dtype=x.dtype)
        if refs.shape[1:] != x.shape[1:]:
            raise ArgumentError(
                "references",
                f"references have sample shape {tuple(refs.shape[1:])} but the inputs have "
                f"{tuple(x.shape[1:])}; give references of shape (R, *inputs.shape[1:])",
            )
        return refs
