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

import functools
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._seeding import generator
from ..batching import broadcast_like, check_batch_size, expanded_rows
from ..checks import as_tensor, check_choice, check_count, check_finite_number, check_seed
from ..errors import ArgumentError, ArgumentTypeError
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


#: ``steps="auto"``: the intervals of the first grid; each refinement cuts them in three
FIRST_LEVEL = 8
#: the rule of ``steps="auto"``: the midpoint rule on grids of 3× more intervals reuses every
#: node, and never evaluates the baseline itself (where a ReLU network's gradient is degenerate)
NESTED = "riemann_middle"
#: :func:`nodes_on`'s name for the nodes of :func:`new_midpoints`
REFINED = "new_midpoints"
#: the rule of a fixed step count when none is given (Captum's default)
DEFAULT_RULE = "gauss_legendre"


def check_rule(rule: str | None, steps: int | str) -> None:
    """``steps`` is a positive int (or ``"auto"``) and ``rule`` one of :data:`RULES` that
    can use it (None: the default for the steps)."""
    if rule is not None:
        check_choice(rule, "rule", RULES)
    if steps == "auto":
        if rule not in (None, NESTED):
            raise ArgumentError(
                "rule", f"steps='auto' refines on grids that reuse every earlier node, which "
                f"rule={rule!r} does not have; leave rule unset (or rule={NESTED!r})",
            )
        return
    if isinstance(steps, str):
        raise ArgumentTypeError(
            "steps", f"steps={steps!r} is not a step count; give an int ≥ 1, or 'auto' to "
            "refine until the completeness gap is below tolerance",
        )
    check_count(steps, "steps", "integration steps")
    if rule == "riemann_trapezoid" and steps < 2:
        raise ArgumentError("steps", "the trapezoid rule needs steps >= 2 (both ends of the path)")


def new_midpoints(intervals: int) -> tuple[Tensor, Tensor]:
    """The midpoints of 3n intervals that are not midpoints of n, (k + 1/6)/n and
    (k + 5/6)/n, with equal weights 1/(2n): M₃ₙ = Mₙ/3 + (2/3) Σ wₖ g(αₖ)."""
    k = torch.arange(intervals, dtype=torch.float64)
    alphas = torch.cat([(k + 1 / 6) / intervals, (k + 5 / 6) / intervals])
    return alphas, torch.full((2 * intervals,), 1 / (2 * intervals), dtype=torch.float64)


@functools.lru_cache(maxsize=64)
def nodes_on(rule: str | None, steps: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The nodes and weights of :func:`quadrature` (or, for ``rule=REFINED``, of
    :func:`new_midpoints`) as one (2, steps) tensor on ``device`` in ``dtype``. Kept per
    device (a few kilobytes), so that repeated calls, such as a noise wrapper's chunks of
    Integrated Gradients, copy nothing to the device: no host synchronisation.

    >>> nodes_on("riemann_left", 4, torch.device("cpu"), torch.float64)[0]
    tensor([0.0000, 0.2500, 0.5000, 0.7500], dtype=torch.float64)
    """
    nodes = new_midpoints(steps) if rule == REFINED else quadrature(rule, steps)
    return torch.stack(nodes).to(device, dtype)


def quadrature(rule: str | None, steps: int) -> tuple[Tensor, Tensor]:
    """Nodes αₖ in [0, 1] and weights wₖ (Σ wₖ = 1) of a quadrature rule, in float64
    (``rule=None``: Gauss–Legendre)."""
    rule = DEFAULT_RULE if rule is None else rule
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

    ``rule=None`` is Gauss–Legendre for a fixed step count. ``steps="auto"`` refines per
    sample until it is exact to ``tolerance``: the midpoint rule on 8, 24, 72, … intervals
    (up to ``max_steps``), each grid reusing every gradient of the one before, M₃ₙ = Mₙ/3 +
    (1/3n) Σ_new ∂f; a sample stops at the first grid whose |gap| ≤ ``tolerance`` ·
    |f(x) − f(x̄)| (or below float round-off, 1e-6 · (1 + |f(x)|)), and only the samples not
    yet exact go on. ``extras["steps"]`` is the intervals each sample stopped at (one
    gradient each, ``extras["evaluations"]``), ``extras["converged"]`` whether it met the
    tolerance (a warning says when one did not).
    """

    steps: int | str = 32
    rule: str | None = None
    baseline: BaselineSpec = "zero"
    blur_sigma: float = 5.0
    seed: int = 0
    batch_size: int | None = None
    tolerance: float = 0.01
    max_steps: int = 256

    def __post_init__(self) -> None:
        check_rule(self.rule, self.steps)
        check_baseline(self.baseline, tokens=True)
        check_sigma(self.blur_sigma)
        check_seed(self.seed)
        check_batch_size(self.batch_size)
        check_finite_number(self.tolerance, "tolerance", 0, inclusive=False,
                            meaning="the completeness gap allowed, relative to f(x) − f(x̄)")
        check_count(self.max_steps, "max_steps", "the most integration steps of steps='auto'")
        if self.steps == "auto" and self.max_steps < FIRST_LEVEL:
            raise ArgumentError(
                "max_steps", f"max_steps={self.max_steps} is below the first refinement level "
                f"({FIRST_LEVEL} steps) of steps='auto'; give max_steps ≥ {FIRST_LEVEL}",
            )

    def budget(
        self, x: Tensor, evaluations: int, references: Tensor | None
    ) -> dict[str, Any]:
        """``steps = evaluations`` (one gradient per step)."""
        return {"steps": evaluations}

    def attribute(self, task: Task, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        baseline = make_baseline(self.baseline, x, sigma=self.blur_sigma, seed=self.seed)
        delta = x - baseline
        with torch.no_grad():
            first = task.first_forward_at(x)
            score_x = task.target.score(first.output) if first else task.score(x)
            score_base = task.score(baseline)
        change = score_x - score_base
        if self.steps != "auto":
            nodes = nodes_on(self.rule, self.steps, delta.device, delta.dtype)
            attribution = self._path_integral(task, baseline, delta, nodes)
            gap = attribution.flatten(1).sum(1) - change
            return attribution, {"completeness_gap": gap, "baseline_score": score_base}
        attribution, extras = self._refined(task, baseline, delta, score_x, change)
        return attribution, extras | {"baseline_score": score_base}

    def _path_integral(self, task: Task, baseline: Tensor, delta: Tensor,
                       nodes: Tensor, samples: Tensor | None = None) -> Tensor:
        """(x − x̄) ⊙ Σₖ wₖ ∂f(x̄ + αₖ(x − x̄)) for the nodes (αₖ, wₖ) (a (2, K) tensor on
        the device, :func:`nodes_on`) and the rows ``samples`` (all when None)."""
        if samples is not None:
            task, baseline, delta = task.take(samples, PATH), baseline[samples], delta[samples]
        alphas, weights = nodes
        steps = len(alphas)
        path_grad = torch.zeros_like(delta)
        for sample, step in expanded_rows(len(delta), steps, self.batch_size, delta.device):
            points = baseline[sample] + broadcast_like(alphas[step], delta) * delta[sample]
            grad, _ = task.take(sample, PATH).gradient(points)
            check_finite_values(grad, self.name, "gradients", PATH)
            path_grad.index_add_(0, sample, grad * broadcast_like(weights[step], delta))
        return delta * path_grad

    def _refined(self, task: Task, baseline: Tensor, delta: Tensor, score_x: Tensor,
                 change: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """``steps="auto"``: cut the midpoint rule's intervals in three for the samples whose
        gap is still too large, adding only the new midpoints."""
        n = len(delta)
        gap = torch.full((n,), float("nan"), dtype=change.dtype, device=change.device)
        stopped = torch.zeros(n, dtype=torch.long, device=delta.device)
        allowed = self.tolerance * change.abs() + 1e-6 * (1 + score_x.abs())
        active = torch.arange(n, device=delta.device)
        steps = FIRST_LEVEL
        # the midpoint sums Mₙ as (x − x̄) ⊙ Σ wₖ ∂f, one per sample
        attribution = self._path_integral(
            task, baseline, delta, nodes_on(NESTED, steps, delta.device, delta.dtype))
        while True:
            gap[active] = attribution[active].flatten(1).sum(1) - change[active]
            stopped[active] = steps
            active = active[gap[active].abs() > allowed[active]]  # the round's one host sync
            if not len(active) or 3 * steps > self.max_steps:
                break
            added = self._path_integral(
                task, baseline, delta, nodes_on(REFINED, steps, delta.device, delta.dtype), active)
            attribution[active] = attribution[active] / 3 + added * (2 / 3)
            steps *= 3
        converged = gap.abs() <= allowed
        if not bool(converged.all()):
            warnings.warn(
                f"integrated_gradients: {int((~converged).sum())} of {n} samples did not reach "
                f"a completeness gap of {self.tolerance:g}·|f(x) − f(x̄)| within "
                f"max_steps={self.max_steps}; raise max_steps or tolerance",
                stacklevel=2,
            )
        return attribution, {"completeness_gap": gap, "steps": stopped,
                             "evaluations": stopped, "converged": converged}


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
