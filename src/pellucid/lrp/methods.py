"""The rule-based methods, registered for :func:`pellucid.explain`.

Every method is a composite (:mod:`.composites`) run by the one engine (:mod:`.engine`);
``composite=`` lays a custom composite over the method's own. Settings are checked when the
method is built: its composite is built then, and every rule checks its own settings (an
error names the setting). ``bias`` is the bias convention of the method's z⁺, αβ and γ rules
(``"none"``, ``"split"``, ``"signed"``; see docs/lrp.md). ``extras["layer_relevance"]``
maps ``"output"`` and every layer (dotted module name) to the total message per sample that
arrives at that layer's input: for conservative rules on bias-free networks the same number
at every layer of a sequential network (the conservation report of Montavon et al. 2018).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from .._deprecation import deprecated_names
from ..checks import check_finite_number, check_seed
from ..errors import ArgumentError, ArgumentTypeError
from ..method import Method, register_method
from ..perturb import BaselineSpec, check_baseline, make_baseline
from ..task import Forward, Task
from . import composites as named
from .composites import Composite
from .engine import Propagation, eager_task, propagate
from .rules import DualContrast
from .tape import record


@dataclass(frozen=True, eq=False)
class _RuleMethod(Method):
    """A composite run by the rule engine; ``composite`` overrides parts of it."""

    start: ClassVar[str] = "relevance"

    def __post_init__(self) -> None:
        custom = getattr(self, "composite", None)
        if custom is not None and not isinstance(custom, Composite):
            raise ArgumentTypeError(
                "composite",
                f"composite must be a pellucid.lrp.Composite or None, got {custom!r}; build "
                "one with Composite({layer selector: rule, ...})",
            )
        self.named_composite()  # its rules check the method's settings

    def named_composite(self) -> Composite:
        raise NotImplementedError

    def resolved(self) -> Composite:
        """The method's composite with ``composite=`` laid over it."""
        base = self.named_composite()
        custom = getattr(self, "composite", None)
        return custom.over(base) if custom is not None else base

    def first_pass(self, task: Task, x: Tensor) -> Forward:
        """Record the first forward pass, so that ``attribute`` walks it without a second one."""
        task = eager_task(task)
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


@register_method("lrp.attnlrp")
@dataclass(frozen=True, eq=False)
class LRPAttn(_RuleMethod):
    """AttnLRP for transformers (Achtibat et al. 2024): softmax by its Taylor linearisation,
    products of two signals by the uniform ε rule, LRP-ε for every layer."""

    epsilon: float = 1e-6
    composite: Composite | None = None

    def named_composite(self) -> Composite:
        return named.attnlrp(self.epsilon)


@register_method("lrp.cp_lrp")
@dataclass(frozen=True, eq=False)
class LRPConservativePropagation(_RuleMethod):
    """CP-LRP for transformers (Ali et al. 2022): attention weights and normalisers held
    constant, relevance through the value path only, LRP-ε for every layer."""

    epsilon: float = 1e-6
    composite: Composite | None = None

    def named_composite(self) -> Composite:
        return named.cp_lrp(self.epsilon)


@register_method("lrp.epsilon_plus")
@dataclass(frozen=True, eq=False)
class LRPEpsilonPlus(_RuleMethod):
    """LRP with z⁺ for convolutions and ε for dense layers (Kohlbrenner et al. 2020)."""

    epsilon: float = 1e-6
    bias: str = "none"
    composite: Composite | None = None

    def named_composite(self) -> Composite:
        return named.epsilon_plus(self.epsilon, self.bias)


@register_method("lrp.epsilon_plus_flat")
@dataclass(frozen=True, eq=False)
class LRPEpsilonPlusFlat(_RuleMethod):
    """LRP with flat for the first layer, z⁺ for convolutions, ε for dense layers."""

    epsilon: float = 1e-6
    bias: str = "none"
    composite: Composite | None = None

    def named_composite(self) -> Composite:
        return named.epsilon_plus_flat(self.epsilon, self.bias)


@register_method("lrp.epsilon_gamma_box")
@dataclass(frozen=True, eq=False)
class LRPEpsilonGammaBox(_RuleMethod):
    """LRP with z^B for the first layer, γ for convolutions, ε for dense layers (Montavon 2019).

    ``low``/``high``: input bounds for z^B (scalars or tensors; None = per-sample min/max).
    ``bias``: the γ rule's bias convention (default ``"split"``, as Zennit).
    """

    epsilon: float = 1e-6
    gamma: float = 0.25
    low: float | Tensor | None = None
    high: float | Tensor | None = None
    bias: str = "split"
    composite: Composite | None = None

    def named_composite(self) -> Composite:
        return named.epsilon_gamma_box(self.epsilon, self.gamma, self.low, self.high, self.bias)


@register_method("lrp.epsilon_alpha2_beta1")
@dataclass(frozen=True, eq=False)
class LRPEpsilonAlpha2Beta1(_RuleMethod):
    """LRP with α2β1 for convolutions and ε for dense layers."""

    epsilon: float = 1e-6
    bias: str = "none"
    composite: Composite | None = None

    def named_composite(self) -> Composite:
        return named.epsilon_alpha2_beta1(self.epsilon, self.bias)


@register_method("lrp.epsilon_alpha2_beta1_flat")
@dataclass(frozen=True, eq=False)
class LRPEpsilonAlpha2Beta1Flat(_RuleMethod):
    """LRP with flat for the first layer, α2β1 for convolutions, ε for dense layers."""

    epsilon: float = 1e-6
    bias: str = "none"
    composite: Composite | None = None

    def named_composite(self) -> Composite:
        return named.epsilon_alpha2_beta1_flat(self.epsilon, self.bias)


@register_method("deep_taylor")
@dataclass(frozen=True, eq=False)
class DeepTaylor(_RuleMethod):
    """Deep Taylor Decomposition (Montavon et al. 2017): z^B at the input, z⁺ above.

    ``low``/``high``: input bounds (scalars or tensors; None = per-sample min/max).
    """

    low: float | Tensor | None = None
    high: float | Tensor | None = None
    bias: str = "none"
    composite: Composite | None = None

    def named_composite(self) -> Composite:
        return named.deep_taylor(self.low, self.high, self.bias)


@register_method("excitation_backprop")
@dataclass(frozen=True, eq=False)
class ExcitationBackprop(_RuleMethod):
    """Excitation backprop (Zhang et al. 2016): marginal winning probabilities (MWP) by z⁺.

    P(a_j) = Σ_k a_j w_jk⁺ / Σ_i a_i w_ik⁺ · P(a_k), from probability 1 at the target: the
    attribution is non-negative and sums to 1 on bias-free layers with non-negative inputs.
    """

    start: ClassVar[str] = "gradient"
    composite: Composite | None = None

    def named_composite(self) -> Composite:
        return named.excitation_backprop()


@register_method("excitation_backprop.contrastive")
@dataclass(frozen=True, eq=False)
class ContrastiveExcitationBackprop(_RuleMethod):
    """Contrastive MWP (Zhang et al. 2016): the MWP map of the target minus the MWP map of
    its dual, the classifier unit with negated input weights, in one walk (rule
    :class:`~pellucid.lrp.DualContrast` at the classifier, z⁺ below, linear in P).

    Signed: Σ = 0 on bias-free layers; the paper shows max(Σ_channels, 0).
    ``classifier``: the dotted name of the classifier layer; None = the last linear layer.
    """

    start: ClassVar[str] = "gradient"
    classifier: str | None = None
    composite: Composite | None = None

    def named_composite(self) -> Composite:
        return named.excitation_backprop_contrastive(self.classifier)

    def attribute(self, task: Task, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        propagation = propagate(task, x, self.resolved(), start=self.start)
        _check_one_classifier(propagation, self.classifier, self.composite is not None)
        return propagation.input_message, propagation.diagnostics()


def _check_one_classifier(propagation: Propagation, classifier: str | None,
                          custom: bool) -> None:
    """The dual is taken at exactly one layer: a model without it would silently give MWP."""
    assert propagation.plan is not None
    plan = propagation.plan
    found = [op.label for op, rule in plan.rules.items() if isinstance(rule, DualContrast)]
    if len(found) == 1:
        return
    layers = [op.label for op in plan.ops if op.kind == "layer"]
    if found:
        problem = f"classifier={classifier!r} matches {len(found)} layer calls ({found})"
    elif classifier is None:
        problem = "the model runs no linear layer (F.linear) to take as the classifier"
    else:
        problem = f"the model runs no convolution or linear layer named {classifier!r}"
    if not found and custom:
        problem += " (or composite assigns that layer another rule)"
    raise ArgumentError(
        "classifier",
        f"contrastive excitation backprop negates the classifier, but {problem}; set "
        f"classifier to the dotted name of the one layer that computes the class scores "
        f"(layers of this model: {layers})",
    )


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
    """DeepLIFT Rescale (Shrikumar et al. 2017): (x − x̄) ⊙ multipliers.

    Σ attribution = f(x) − f(x̄) (summation-to-delta) where every op's multipliers are exact:
    linear ops, element-wise activations (Rescale) and, with ``maxpool="split"``, max
    pooling for any baseline. With ``maxpool="gradient"`` (default, the reference
    implementation's rule) it holds through max pooling only when the baseline's activations
    peak where the input's do in every window (e.g. are constant there).
    ``baseline``: zero, a number, mean, blur, uniform or a tensor (see integrated_gradients).
    ``extras["convergence_delta"]`` is Σ attribution − (f(x) − f(x̄)) per sample.
    """

    start: ClassVar[str] = "gradient"
    baseline: BaselineSpec = "zero"
    blur_sigma: float = 5.0
    seed: int = 0
    maxpool: str = "gradient"
    composite: Composite | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_baseline(self.baseline, tokens=True)
        check_finite_number(self.blur_sigma, "blur_sigma", 0.0, inclusive=False,
                            meaning="the standard deviation of the blur baseline")
        check_seed(self.seed)

    def named_composite(self) -> Composite:
        return named.deeplift(self.maxpool)

    def attribute(self, task: Task, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        reference = make_baseline(self.baseline, x, sigma=self.blur_sigma, seed=self.seed)
        shared = self._shared_reference(task)
        propagation = propagate(task, x, self.resolved(), start=self.start,
                                baseline=reference[:1] if shared else reference)
        attribution = (x - reference) * propagation.input_message
        score_x = task.target.score(propagation.output)
        baseline_output = propagation.baseline_output
        assert baseline_output is not None
        if shared:
            baseline_output = baseline_output.expand(len(x), *baseline_output.shape[1:])
        score_ref = task.target.score(baseline_output)
        delta = attribution.flatten(1).sum(1) - (score_x - score_ref)
        return attribution, {**propagation.diagnostics(), "convergence_delta": delta}


    def _shared_reference(self, task: Task) -> bool:
        """Whether every sample's reference pass is the same, so that one row of it serves
        the batch (a forward pass B times cheaper, its activations broadcast in Rescale):
        a constant baseline ("zero" or a number), no per-sample model arguments or token
        entry, and the default rules (Rescale broadcasts; ``maxpool="split"`` reads the
        reference's maxima per sample)."""
        constant = (isinstance(self.baseline, str) and self.baseline == "zero") or (
            isinstance(self.baseline, (int, float)) and not isinstance(self.baseline, bool))
        return (constant and self.maxpool == "gradient" and self.composite is None
                and not task.model_kwargs and task.entry is None)


__getattr__ = deprecated_names(__name__, {
    "GuidedBackpropMethod": ("pellucid.lrp.methods.GuidedBackprop", lambda: GuidedBackprop),
    "DeconvnetMethod": ("pellucid.lrp.methods.Deconvnet", lambda: Deconvnet),
})
