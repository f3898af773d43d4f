"""Composites: which rule applies where.

A :class:`Composite` maps layer selectors to rules and op kinds (by name, see
:data:`.kinds.KINDS`) to rules::

    Composite({"features.0": ZBox(low=-3, high=3), nn.Conv2d: Gamma(0.25),
               nn.Linear: Epsilon(0.25)}, ops={"linear": Epsilon(0.5)})

``ops`` maps kind names to rules; the keywords ``activation=``, ``linear=``, ``norm=``,
``maxpool=``, ``gate=`` and ``other=`` are the same as ``ops={name: rule}``, and ``default=``
is ``ops={"layer": rule}``: the rule of layers that no selector matches.

Layer selectors, in order of precedence:

1. an exact dotted module name (``"features.0"``);
2. a position: :data:`FIRST` (the first convolution or linear layer executed) or
   :data:`LAST_LINEAR` (the last ``F.linear`` executed);
3. a shell-style pattern of dotted names (``"layer4.*.conv?"``);
4. a module class (``nn.Conv2d``), matched with ``isinstance`` on the module that owns the
   layer's weight (the module whose forward made the call otherwise);
5. a structural kind: :data:`CONV` (any convolution), :data:`LINEAR` (``F.linear``),
   :data:`BATCHNORM` (a BatchNorm that no layer feeds, treated as its own layer);
6. ``default``.

A composite passed as ``composite=`` to a named method is laid over that method's
composite: its selectors are tried first and its slots that are set win.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from torch import nn

from ..checks import check_choice
from ..errors import ArgumentError, ArgumentTypeError
from .kinds import KINDS, check_kind_name
from .rules import (
    AlphaBeta,
    ChainRule,
    DualContrast,
    Epsilon,
    Flat,
    Gamma,
    HoldConstant,
    HoldGate,
    Pass,
    RectifiedGradient,
    RectifiedPass,
    Rescale,
    Rule,
    SoftmaxTaylor,
    SplitDifference,
    UniformProduct,
    ZBox,
    Zero,
    ZPlus,
)


@dataclass(frozen=True)
class Selector:
    """A structural layer selector (see the module docstring)."""

    name: str

    def __repr__(self) -> str:
        return self.name.upper()


FIRST = Selector("first")
LAST_LINEAR = Selector("last_linear")
CONV = Selector("conv")
LINEAR = Selector("linear")
BATCHNORM = Selector("batchnorm")
_POSITIONS = (FIRST, LAST_LINEAR)
_KINDS = {CONV: "conv", LINEAR: "linear", BATCHNORM: "scale"}


@dataclass(frozen=True)
class LayerInfo:
    """What a composite may select a layer by."""

    name: str
    module: nn.Module | None
    kind: str  # "conv" | "linear" | "scale"
    first: bool = False
    last_linear: bool = False


@dataclass(frozen=True, eq=False)
class Composite:
    """Rules for layers (by name, position, pattern, type or kind) and for op kinds.

    >>> from pellucid.lrp import Composite, Epsilon
    >>> Composite(ops={"linear": Epsilon(0.5)}).rule_for("linear")
    Epsilon(epsilon=0.5, bias='signed')
    """

    layers: Mapping[Any, Rule] = field(default_factory=dict)
    default: Rule | None = None
    activation: Rule | None = None
    linear: Rule | None = None
    norm: Rule | None = None
    maxpool: Rule | None = None
    gate: Rule | None = None
    other: Rule | None = None
    base: Composite | None = None
    ops: Mapping[str, Rule] = field(default_factory=dict)
    #: the rule of each op kind named here (``ops`` and the keyword slots), built on creation
    _kind_rules: dict[str, Rule] = field(init=False, repr=False, compare=False,
                                         default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.layers, Mapping):
            raise ArgumentTypeError(
                "layers",
                f"Composite's layers must be a mapping from layer selectors to rules, e.g. "
                f"{{nn.Conv2d: Gamma(0.25)}}, got {type(self.layers).__name__}",
            )
        for key, rule in self.layers.items():
            if not isinstance(rule, Rule):
                raise ArgumentTypeError(
                    "layers",
                    f"Composite's layers entry {key!r} maps to {rule!r}, which is not a rule; "
                    "give a rule object such as Epsilon(1e-6) or Gamma(0.25) (a class needs ())",
                )
            if not (isinstance(key, (str, Selector)) or
                    (isinstance(key, type) and issubclass(key, nn.Module))):
                raise ArgumentTypeError(
                    "layers",
                    f"Composite's layers key {key!r} is not a dotted name, a pattern, a module "
                    "class or a selector (FIRST, LAST_LINEAR, CONV, LINEAR, BATCHNORM)",
                )
        for slot in _SLOTS:
            rule = getattr(self, slot)
            if rule is not None and not isinstance(rule, Rule):
                raise ArgumentTypeError(
                    slot,
                    f"Composite's {slot} must be a rule object (e.g. Epsilon(1e-6)) or None, "
                    f"got {rule!r}",
                )
        if self.base is not None and not isinstance(self.base, Composite):
            raise ArgumentTypeError(
                "base", f"Composite's base must be a Composite or None, got {self.base!r}"
            )
        object.__setattr__(self, "_kind_rules", self._check_ops())

    def _check_ops(self) -> dict[str, Rule]:
        """The rule of each op kind this composite names: ``ops`` and the keyword slots."""
        if not isinstance(self.ops, Mapping):
            raise ArgumentTypeError(
                "ops",
                f"Composite's ops must be a mapping from op kind names to rules, e.g. "
                f"{{'linear': Epsilon(0.5)}}, got {type(self.ops).__name__}",
            )
        rules = {_SLOT_KINDS[slot]: getattr(self, slot) for slot in _SLOTS
                 if getattr(self, slot) is not None}
        for name, rule in self.ops.items():
            check_kind_name(name)
            if not isinstance(rule, Rule):
                raise ArgumentTypeError(
                    "ops",
                    f"Composite's ops entry {name!r} maps to {rule!r}, which is not a rule; "
                    "give a rule object such as Epsilon(1e-6) (a class needs ())",
                )
            if name in rules:
                slot = next(s for s in _SLOTS if _SLOT_KINDS[s] == name)
                raise ArgumentError(
                    "ops",
                    f"Composite gets a rule for the op kind {name!r} twice, as ops[{name!r}] "
                    f"and as {slot}=; give it once",
                )
            rules[name] = rule
        return rules

    def over(self, base: Composite) -> Composite:
        """This composite laid over ``base`` (this one's selectors and slots win)."""
        return replace(self, base=base if self.base is None else self.base.over(base))

    def rule_for_layer(self, info: LayerInfo) -> Rule | None:
        """The rule for a layer, by the precedence in the module docstring."""
        matched = self._match_chain(info)
        return matched if matched is not None else self.rule_for("layer")

    def _match_chain(self, info: LayerInfo) -> Rule | None:
        own = self._match(info)
        if own is None and self.base is not None:
            return self.base._match_chain(info)
        return own

    def rule_for(self, kind: str) -> Rule | None:
        """The rule for an op kind by its name (``activation``, ``linear``, ...; ``layer``:
        the rule of layers that no selector matches), from this composite or its base."""
        rule = self._kind_rules.get(kind)
        if rule is None and self.base is not None:
            return self.base.rule_for(kind)
        return rule

    def _match(self, info: LayerInfo) -> Rule | None:
        layers = self.layers
        if info.name in layers:
            return layers[info.name]
        for position in _POSITIONS:
            if position in layers and getattr(info, position.name):
                return layers[position]
        for key, rule in layers.items():
            if isinstance(key, str) and fnmatch.fnmatchcase(info.name, key):
                return rule
        if info.module is not None:
            for cls in type(info.module).__mro__:
                if cls in layers:
                    return layers[cls]
        for selector, kind in _KINDS.items():
            if selector in layers and info.kind == kind:
                return layers[selector]
        return None

    def __repr__(self) -> str:
        parts = [f"{_key(k)}: {v!r}" for k, v in self.layers.items()]
        slots = [f"{name}={getattr(self, name)!r}" for name in _SLOTS
                 if getattr(self, name) is not None]
        if self.ops:
            slots.append(f"ops={dict(self.ops)!r}")
        return f"Composite({{{', '.join(parts)}}}{''.join(', ' + s for s in slots)})"


#: the keyword slots, each the rule of the op kind of the same name (``default``: ``layer``)
_SLOT_KINDS = {"default": "layer", "activation": "activation", "linear": "linear",
               "norm": "norm", "maxpool": "maxpool", "gate": "gate", "other": "other"}
_SLOTS = tuple(_SLOT_KINDS)


def _key(key: Any) -> str:
    return key.__name__ if isinstance(key, type) else repr(key)


#: the defaults every relevance composite builds on: each op kind's default rule
RELEVANCE = Composite(ops={name: kind.default for name, kind in KINDS.items()
                           if kind.default is not None})
#: the defaults every gradient-type composite builds on (the plain gradient everywhere)
GRADIENT = Composite(ops=dict.fromkeys(
    (name for name, kind in KINDS.items() if kind.handler is not None), ChainRule()))


def zero() -> Composite:
    """LRP-0 everywhere (equals gradient × input on bias-free ReLU networks)."""
    return Composite(default=Zero(), linear=Zero(), norm=Zero(), base=RELEVANCE)


def epsilon(eps: float = 1e-6) -> Composite:
    """LRP-ε for every layer."""
    return Composite(default=Epsilon(eps), base=RELEVANCE)


# ``bias`` of the composites below is the bias convention of their z⁺, αβ and γ rules
# ("none", "split", "signed"; see rules.BIAS_CONVENTIONS); ε keeps the signed bias.


def epsilon_plus(eps: float = 1e-6, bias: str = "none") -> Composite:
    """z⁺ for convolutions, ε for dense layers (Kohlbrenner et al. 2020)."""
    return Composite({CONV: ZPlus(bias)}, default=Epsilon(eps), base=RELEVANCE)


def epsilon_plus_flat(eps: float = 1e-6, bias: str = "none") -> Composite:
    """Flat for the first layer, z⁺ for convolutions, ε for dense layers."""
    return Composite({FIRST: Flat(), CONV: ZPlus(bias)}, default=Epsilon(eps), base=RELEVANCE)


def epsilon_gamma_box(eps: float = 1e-6, gamma: float = 0.25, low: Any = None,
                      high: Any = None, bias: str = "split") -> Composite:
    """z^B for the first layer, γ for convolutions, ε for dense layers (Montavon et al. 2019)."""
    return Composite({FIRST: ZBox(low, high), CONV: Gamma(gamma, bias=bias)},
                     default=Epsilon(eps), base=RELEVANCE)


def epsilon_alpha2_beta1(eps: float = 1e-6, bias: str = "none") -> Composite:
    """α2β1 for convolutions, ε for dense layers."""
    return Composite({CONV: AlphaBeta(2.0, 1.0, bias)}, default=Epsilon(eps), base=RELEVANCE)


def epsilon_alpha2_beta1_flat(eps: float = 1e-6, bias: str = "none") -> Composite:
    """Flat for the first layer, α2β1 for convolutions, ε for dense layers."""
    return Composite({FIRST: Flat(), CONV: AlphaBeta(2.0, 1.0, bias)}, default=Epsilon(eps),
                     base=RELEVANCE)


def deep_taylor(low: Any = None, high: Any = None, bias: str = "none") -> Composite:
    """Deep Taylor Decomposition: z^B for the (bounded) input layer, z⁺ above (Montavon 2017)."""
    return Composite({FIRST: ZBox(low, high)}, default=ZPlus(bias), base=RELEVANCE)


def excitation_backprop() -> Composite:
    """Excitation backprop, marginal winning probabilities (MWP; Zhang et al. 2016): z⁺ for
    every layer."""
    return Composite(default=ZPlus(), base=RELEVANCE)


def guided_backprop() -> Composite:
    """Guided backprop: gradients, rectified at activations and gated by the forward pass."""
    return Composite(activation=RectifiedGradient(), base=GRADIENT)


def deconvnet() -> Composite:
    """Deconvnet: gradients, rectified at activations regardless of the forward pass."""
    return Composite(activation=RectifiedPass(), base=GRADIENT)


#: DeepLIFT's rules for max pooling: the gradient w.r.t. each window's maximum, or
#: :class:`~.rules.SplitDifference` (summation-to-delta for any baseline)
DEEPLIFT_MAXPOOL = ("gradient", "split")


def deeplift(maxpool: str = "gradient") -> Composite:
    """DeepLIFT Rescale: multipliers Δy/Δx at activations, the chain rule elsewhere.

    ``maxpool``: ``"gradient"`` (the chain rule, as DeepLIFT's reference implementation)
    or ``"split"`` (:class:`~.rules.SplitDifference`, as Captum).
    """
    check_choice(
        maxpool, "maxpool", DEEPLIFT_MAXPOOL,
        "'gradient' passes multipliers to each window's maximum, 'split' splits the window's "
        "difference from the baseline so that the attribution sums to f(x) - f(baseline) "
        "(see docs/methods/deeplift.md)",
    )
    pool = SplitDifference() if maxpool == "split" else None
    return Composite(activation=Rescale(), maxpool=pool, base=GRADIENT)


def excitation_backprop_contrastive(classifier: str | None = None) -> Composite:
    """Contrastive MWP (Zhang et al. 2016): :class:`~.rules.DualContrast` at the classifier
    layer (the dotted name ``classifier``, or the last linear layer), z⁺ everywhere else."""
    if classifier is not None and (not isinstance(classifier, str) or not classifier):
        raise ArgumentTypeError(
            "classifier",
            f"classifier must be the dotted name of the classifier layer (e.g. 'fc') or None "
            f"for the last linear layer, got {classifier!r}",
        )
    key = LAST_LINEAR if classifier is None else classifier
    return Composite({key: DualContrast()}, default=ZPlus(), base=RELEVANCE)


def attnlrp(eps: float = 1e-6) -> Composite:
    """AttnLRP (Achtibat et al. 2024): softmax by its Taylor linearisation at x
    (:class:`~.rules.SoftmaxTaylor`), products of two signals (q·kᵀ, attention·v, gates) by
    the uniform ε rule (:class:`~.rules.UniformProduct`), LayerNorm/RMSNorm with the
    normaliser held constant (the identity rule on 1/σ), GELU, SiLU and exp by the identity
    rule, LRP-ε for every layer.

    >>> import pellucid.lrp.composites as c
    >>> c.attnlrp().rule_for("softmax")
    SoftmaxTaylor()
    """
    uniform = UniformProduct()
    return Composite(default=Epsilon(eps), base=RELEVANCE, ops={
        "softmax": SoftmaxTaylor(), "product": uniform, "gate": uniform, "exp": Pass()})


def cp_lrp(eps: float = 1e-6) -> Composite:
    """CP-LRP (Ali et al. 2022): attention weights and normalisers held constant
    (:class:`~.rules.HoldConstant` at the softmax, :class:`~.rules.SignalTakesAll` at
    attention·v and at quotients), so relevance flows through the value path only; the
    activated gate of a SwiGLU/GeGLU product held constant (:class:`~.rules.HoldGate`, as
    lxt's CP-LRP); LRP-ε for every layer.

    >>> import pellucid.lrp.composites as c
    >>> c.cp_lrp().rule_for("softmax")
    HoldConstant()
    """
    return Composite(default=Epsilon(eps), base=RELEVANCE, ops={
        "softmax": HoldConstant(), "product": HoldGate(), "exp": Pass()})
