"""The rule-based methods, registered for :func:`pellucid.explain`.

Every method is a composite (:mod:`.composites`) run by the one engine (:mod:`.engine`);
``composite=`` lays a custom composite over the method's own. ``extras["layer_relevance"]``
maps ``"output"`` and every layer (dotted module name) to the total message per sample that
arrives at that layer's input: for conservative rules on bias-free networks the same number
at every layer of a sequential network (the conservation report of Montavon et al. 2018).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from .._deprecation import deprecated_names
from ..method import Method, register_method
from ..perturb import BaselineSpec, make_baseline
from ..task import Forward, Task
from . import composites as named
from .composites import Composite
from .engine import propagate
from .tape import record


@dataclass(frozen=True, eq=False)
class _RuleMethod(Method):
    """A composite run by the rule engine; ``composite`` overrides parts of it."""

    start: ClassVar[str] = "relevance"

    def named_composite(self) -> Composite:
        raise NotImplementedError

    def resolved(self) -> Composite:
        """The method's composite with ``composite=`` laid over it."""
        base = self.named_composite()
        custom = getattr(self, "composite", None)
        if custom is not None and not isinstance(custom, Composite):
            raise TypeError(f"composite= must be a pellucid.lrp.Composite, got {custom!r}")
        return custom.over(base) if custom is not None else base

    def first_pass(self, task: Task, x: Tensor) -> Forward:
        """Record the first forward pass, so that ``attribute`` walks it without a second one."""
        recorder, out = record(task.model, task.output, x)
        return Forward(x, out, state=recorder)

    def attribute(self, task: Task, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        propagation = propagate(task, x, self.resolved(), start=self.start)
        return propagation.input_message, propagation.diagnostics()


@register_method("lrp")
@dataclass(frozen=True, eq=False)
class LRP(_RuleMethod):
    """Layer-wise Relevance Propagation with a custom composite (Bach et al. 2015).

    ``composite``: a :class:`pellucid.lrp.Composite`; layers it does not match get LRP-ε
    (ε = 1e-6), activations the pass rule, sums the proportional split, max pooling
    winner-take-all. Without a composite this is LRP-ε everywhere.
    """

    composite: Composite | None = None

    def named_composite(self) -> Composite:
        return named.RELEVANCE


@register_method("lrp.zero")
@dataclass(frozen=True, eq=False)
class LRPZero(_RuleMethod):
    """LRP-0 everywhere (Bach et al. 2015); equals gradient × input on bias-free ReLU nets."""

    composite: Composite | None = None

    def named_composite(self) -> Composite:
        return named.zero()


@register_method("lrp.epsilon")
@dataclass(frozen=True, eq=False)
class LRPEpsilon(_RuleMethod):
    """LRP-ε for every layer (Bach et al. 2015)."""

    epsilon: float = 1e-6
    composite: Composite | None = None

    def named_composite(self) -> Composite:
        return named.epsilon(self.epsilon)


@register_method("lrp.epsilon_plus")
@dataclass(frozen=True, eq=False)
class LRPEpsilonPlus(_RuleMethod):
    """LRP with z⁺ for convolutions and ε for dense layers (Kohlbrenner et al. 2020)."""

    epsilon: float = 1e-6
    composite: Composite | None = None

    def named_composite(self) -> Composite:
        return named.epsilon_plus(self.epsilon)


@register_method("lrp.epsilon_plus_flat")
@dataclass(frozen=True, eq=False)
class LRPEpsilonPlusFlat(_RuleMethod):
    """LRP with flat for the first layer, z⁺ for convolutions, ε for dense layers."""

    epsilon: float = 1e-6
    composite: Composite | None = None

    def named_composite(self) -> Composite:
        return named.epsilon_plus_flat(self.epsilon)


@register_method("lrp.epsilon_gamma_box")
@dataclass(frozen=True, eq=False)
class LRPEpsilonGammaBox(_RuleMethod):
    """LRP with z^B for the first layer, γ for convolutions, ε for dense layers (Montavon 2019).

    ``low``/``high``: input bounds for z^B (scalars or tensors; None = per-sample min/max).
    """

    epsilon: float = 1e-6
    gamma: float = 0.25
    low: float | Tensor | None = None
    high: float | Tensor | None = None
    composite: Composite | None = None

    def named_composite(self) -> Composite:
        return named.epsilon_gamma_box(self.epsilon, self.gamma, self.low, self.high)


@register_method("lrp.epsilon_alpha2_beta1")
@dataclass(frozen=True, eq=False)
class LRPEpsilonAlpha2Beta1(_RuleMethod):
    """LRP with α2β1 for convolutions and ε for dense layers."""

    epsilon: float = 1e-6
    composite: Composite | None = None

    def named_composite(self) -> Composite:
        return named.epsilon_alpha2_beta1(self.epsilon)


@register_method("lrp.epsilon_alpha2_beta1_flat")
@dataclass(frozen=True, eq=False)
class LRPEpsilonAlpha2Beta1Flat(_RuleMethod):
    """LRP with flat for the first layer, α2β1 for convolutions, ε for dense layers."""

    epsilon: float = 1e-6
    composite: Composite | None = None

    def named_composite(self) -> Composite:
        return named.epsilon_alpha2_beta1_flat(self.epsilon)


@register_method("deep_taylor")
@dataclass(frozen=True, eq=False)
class DeepTaylor(_RuleMethod):
    """Deep Taylor Decomposition (Montavon et al. 2017): z^B at the input, z⁺ above.

    ``low``/``high``: input bounds (scalars or tensors; None = per-sample min/max).
    """

    low: float | Tensor | None = None
    high: float | Tensor | None = None
    composite: Composite | None = None

    def named_composite(self) -> Composite:
        return named.deep_taylor(self.low, self.high)


@register_method("excitation_backprop")
@dataclass(frozen=True, eq=False)
class ExcitationBackprop(_RuleMethod):
    """Excitation backprop, c-MWP (Zhang et al. 2016): marginal winning probabilities by z⁺.

    Starts from probability 1 at the target (the attribution sums to 1 for bias-free layers).
    """

    start: ClassVar[str] = "gradient"
    composite: Composite | None = None

    def named_composite(self) -> Composite:
        return named.excitation_backprop()


@register_method("guided_backprop")
@dataclass(frozen=True, eq=False)
class GuidedBackprop(_RuleMethod):
    """Guided backpropagation (Springenberg et al. 2015): the gradient, with only positive
    signals passed back through open activations."""

    start: ClassVar[str] = "gradient"
    composite: Composite | None = None

    def named_composite(self) -> Composite:
        return named.guided_backprop()


@register_method("deconvnet")
@dataclass(frozen=True, eq=False)
class Deconvnet(_RuleMethod):
    """Deconvnet (Zeiler & Fergus 2014): the gradient, rectified at every activation."""

    start: ClassVar[str] = "gradient"
    composite: Composite | None = None

    def named_composite(self) -> Composite:
        return named.deconvnet()


@register_method("deeplift")
@dataclass(frozen=True, eq=False)
class DeepLift(_RuleMethod):
    """DeepLIFT Rescale (Shrikumar et al. 2017): (x − x̄) ⊙ multipliers, Σ = f(x) − f(x̄).

    ``baseline``: zero, a number, mean, blur, uniform or a tensor (see integrated_gradients).
    ``extras["convergence_delta"]`` is Σ attribution − (f(x) − f(x̄)) per sample.
    """

    start: ClassVar[str] = "gradient"
    baseline: BaselineSpec = "zero"
    blur_sigma: float = 5.0
    seed: int = 0
    composite: Composite | None = None

    def named_composite(self) -> Composite:
        return named.deeplift()

    def attribute(self, task: Task, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        reference = make_baseline(self.baseline, x, sigma=self.blur_sigma, seed=self.seed)
        propagation = propagate(task, x, self.resolved(), start=self.start, baseline=reference)
        attribution = (x - reference) * propagation.input_message
        score_x = task.target.score(propagation.output)
        score_ref = task.target.score(propagation.baseline_output)
        delta = attribution.flatten(1).sum(1) - (score_x - score_ref)
        return attribution, {**propagation.diagnostics(), "convergence_delta": delta}


__getattr__ = deprecated_names(__name__, {
    "GuidedBackpropMethod": ("pellucid.lrp.methods.GuidedBackprop", lambda: GuidedBackprop),
    "DeconvnetMethod": ("pellucid.lrp.methods.Deconvnet", lambda: Deconvnet),
})
