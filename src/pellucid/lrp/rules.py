"""Rules: how relevance (or a modified gradient) goes back through one operation.

A rule is a small frozen dataclass with one handler method per op kind it can handle
(``layer``, ``linear``, ``activation``, ``maxpool``, ``gate``, ``other``: the handler names of
the kinds registered in :mod:`.kinds`). Each handler takes the op (an
:class:`~pellucid.lrp.op.Op`) and the message ``m`` at its output (``other``: the messages at
all its outputs) and returns one message per input-dependent input.

For affine layers ``z_k = Σ_j x_j w_jk + b_k`` every LRP rule is a choice of modified terms
(x′, w′, b′), computed with the gradient trick (Montavon et al. 2019, "Layer-wise relevance
propagation: an overview", sec. 10.2.3)::

    z′ = Σ_t L(x′_t; w′_t, b′_t),   s = R / (z′ + ε sign z′),   R_j = Σ_t x′_{t,j} · (w′_tᵀ s)_j

where ``w′ᵀ s`` is the vector-Jacobian product of the layer (a transposed convolution for a
convolution). The same code serves Linear, Conv1d/2d/3d, transposed convolutions, folded
Conv+BatchNorm and a lone BatchNorm.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import torch
from torch import Tensor

from ..checks import check_choice, check_finite, check_finite_number, check_now_or_deferred
from ..errors import ArgumentError, ArgumentTypeError
from .calls import NORMALISERS, activated_factor, gate_name, self_gate
from .linear_maps import Affine, average_of_maxpool, vjp_linear
from .op import Op
from .tape import UnsupportedOpError

_TINY = 1e-12

#: the bias conventions of the rules that modify contributions (see docs/lrp.md):
#: "none" leaves the bias out; "split" treats it as one more contribution, its positive part
#: with the positive contributions and its negative part with the negative ones (Zennit, the
#: LRP toolbox); "signed" adds it whole to the rule-modified layer's output (Captum)
BIAS_CONVENTIONS = ("none", "split", "signed")


def divide(r: Tensor, denominator: Tensor, epsilon: float = 0.0) -> Tensor:
    """r / denominator, and 0 where the denominator is 0 (which ε > 0 already rules out)."""
    quotient = r / denominator
    return quotient if epsilon > 0 else quotient.masked_fill_(denominator == 0, 0.0)


def ratio(r: Tensor, z: Tensor, epsilon: float, scale: float = 1.0) -> Tensor:
    """s = r / (scale · (z + ε·sign(z))) with sign(0) = +1, the ε-rule's message at a layer's
    output (0 where the denominator is 0, which ε > 0 rules out). The denominator and the
    quotient are written into one new tensor: the element-wise passes over large activations
    are a good part of a transformer's LRP cost.

    >>> ratio(torch.tensor([1.0, 1.0]), torch.tensor([1.0, -1.0]), 1.0, scale=2)
    tensor([ 0.2500, -0.2500])
    """
    if epsilon == 0:
        return divide(r, z if scale == 1 else z * scale)
    d = z.abs().add_(epsilon).copysign_(z)  # (|z| + ε)·sign z: the fastest form measured
    if scale != 1:
        d.mul_(scale)
    if d.shape != r.shape or d.dtype != r.dtype or r.requires_grad or z.requires_grad:
        return r / d
    return torch.div(r, d, out=d)


def _pos(t: Tensor) -> Tensor:
    return t.clamp(min=0)


def _neg(t: Tensor) -> Tensor:
    return t.clamp(max=0)


def _check_epsilon(value: Any, rule: str) -> float:
    return check_finite_number(value, "epsilon", 0.0,
                               meaning=f"the stabiliser of {rule}'s denominator")


def _check_bias(value: Any, rule: str, allowed: tuple[str, ...] = BIAS_CONVENTIONS) -> str:
    return check_choice(
        value, "bias", allowed,
        f"the bias conventions of {rule}; 'none' leaves the bias out, 'split' adds b⁺ to the "
        "positive and b⁻ to the negative contributions (Zennit, LRP toolbox), 'signed' adds b "
        "whole (Captum); see docs/lrp.md",
    )


@dataclass(frozen=True)
class Term:
    """One term (x′, w′, b′) of a rule-modified layer, with a sign."""

    x: Tensor
    weight: Tensor
    bias: Tensor | None = None
    sign: float = 1.0


def propagate_terms(aff: Affine, r: Tensor, terms: list[Term], epsilon: float = _TINY,
                    z: Tensor | None = None) -> Tensor:
    """R_j = Σ_t sign_t x′_t ⊙ (w′_tᵀ s) with s = R / (z′ ± ε),
    z′ = Σ_t sign_t L(x′_t; w′_t, b′_t) (or ``z``, where the caller has it)."""
    if z is None:
        z = _signed_sum([(t.sign, aff.forward(t.x, t.weight, t.bias)) for t in terms])
    s = ratio(r, z, epsilon)
    return _signed_sum([(t.sign, _times(aff.grad_input(s, t.weight), t.x)) for t in terms])


def _times(g: Tensor, x: Tensor) -> Tensor:
    """g ⊙ x, written into g (a new tensor: a layer's vector-Jacobian product) where the
    shapes and dtypes allow: one large allocation less per layer."""
    if g.shape == x.shape and g.dtype == x.dtype and not g.requires_grad:
        return g.mul_(x)
    return g * x


def _signed_sum(parts: list[tuple[float, Tensor]]) -> Tensor:
    """Σ sign·value without extra passes for the common single positive term."""
    sign, total = parts[0]
    total = total if sign == 1 else total * sign
    for sign, value in parts[1:]:
        total = total.add_(value, alpha=sign) if sign in (1, -1) else total + sign * value
    return total


def _bias(aff: Affine, convention: str, part: Callable[[Tensor], Tensor]) -> Tensor | None:
    """The bias that joins the ``part`` (positive or negative) contributions: None, b or b^±."""
    if convention == "none" or aff.bias is None:
        return None
    return aff.bias if convention == "signed" else part(aff.bias)


def positive_terms(aff: Affine, bias: Tensor | None = None) -> list[Term]:
    """Terms of the positive contributions (x w)⁺ = x⁺w⁺ + x⁻w⁻ (+ ``bias``); the x⁻ term is
    left out where x ≥ 0 by structure (:attr:`.Affine.x_nonnegative`), where it is 0."""
    if aff.x_nonnegative:
        return [Term(aff.x, aff.derived("w+", _pos), bias)]
    return [Term(_pos(aff.x), aff.derived("w+", _pos), bias),
            Term(_neg(aff.x), aff.derived("w-", _neg))]


def negative_terms(aff: Affine, bias: Tensor | None = None) -> list[Term]:
    """Terms of the negative contributions (x w)⁻ = x⁺w⁻ + x⁻w⁺ (+ ``bias``)."""
    if aff.x_nonnegative:
        return [Term(aff.x, aff.derived("w-", _neg), bias)]
    return [Term(_pos(aff.x), aff.derived("w-", _neg), bias),
            Term(_neg(aff.x), aff.derived("w+", _pos))]


class Rule:
    """Base class: a rule handles the op kinds whose handler method it defines (see
    :data:`.kinds.KINDS`: ``layer``, ``linear``, ``activation``, ``maxpool``, ``gate``,
    ``other``). A handler takes the op and the message at its output (for a kind with
    ``all_outputs``, the list of messages at its outputs) and returns one message per
    input-dependent input (None for an input that receives nothing)."""

    def handles(self, method: str) -> bool:
        """Whether this rule implements the handler method ``method`` (``layer``, ...).

        >>> Epsilon().handles("layer"), Pass().handles("layer")
        (True, False)
        """
        return callable(getattr(self, method, None))

    def feeds(self, op: Op) -> list[int]:
        """The indices of the op's input-dependent inputs that this rule sends messages to
        (all of them unless a rule says otherwise): ``describe`` follows them to show which
        ops relevance reaches.

        >>> import torch
        >>> from pellucid.lrp.canonical import build_plan
        >>> from pellucid.lrp.composites import RELEVANCE
        >>> from pellucid.lrp.engine import WEIGHT_CACHE
        >>> from pellucid.lrp.tape import record
        >>> gated = lambda x: x * torch.sigmoid(x.flip(1))
        >>> recorder, _ = record(torch.nn.Identity(), gated, torch.randn(1, 2))
        >>> plan = build_plan(recorder, RELEVANCE, torch.nn.Identity(), weights=WEIGHT_CACHE)
        >>> product = plan.ops[-1]
        >>> Pass().feeds(product), SignalTakesAll().feeds(product)
        ([0, 1], [0])
        """
        return list(range(len(op.node.inputs)))


# ----------------------------------------------------------------------------------------------
# LRP rules for layers
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Epsilon(Rule):
    """LRP-ε (Bach et al. 2015; Montavon et al. 2019, eq. 2).

    R_j = Σ_k x_j w_jk / (z_k + ε·sign(z_k)) · R_k, with z_k = Σ_j x_j w_jk + b_k.
    ε absorbs weak or contradictory relevance; ε → 0 gives LRP-0. On parameter-free linear
    ops (sums, means, average pooling, LayerNorm with constant normaliser) the same formula
    splits relevance in proportion to the contributions.
    ``bias``: ``"signed"`` (b_k in z_k, as every library does) or ``"none"`` (z_k without
    b_k: the layer conserves relevance).
    """

    epsilon: float = 1e-6
    bias: str = "signed"

    def __post_init__(self) -> None:
        name = type(self).__name__
        object.__setattr__(self, "epsilon", _check_epsilon(self.epsilon, name))
        object.__setattr__(self, "bias", _check_bias(self.bias, name, ("signed", "none")))

    def layer(self, op: Op, m: Tensor) -> list[Tensor]:
        aff = op.affine
        z = aff.preactivation(with_bias=self.bias == "signed")
        return [propagate_terms(aff, m, [Term(aff.x, aff.weight)], self.epsilon, z=z)]

    def linear(self, op: Op, m: Tensor) -> list[Tensor]:
        s = ratio(m, op.output, self.epsilon)
        grads = op.linear_vjp(s)
        if op.linearise is not None:  # new tensors of the linearised map's adjoint
            return [_times(g, x) for x, g in zip(op.inputs, grads)]
        return [x * g for x, g in zip(op.inputs, grads)]


@dataclass(frozen=True)
class Zero(Epsilon):
    """LRP-0 (Bach et al. 2015): R_j = Σ_k x_j w_jk / z_k · R_k (0 where z_k = 0).

    On bias-free ReLU networks LRP-0 equals gradient × input (Montavon et al. 2019, sec. 10.2.1).
    """

    epsilon: float = 0.0


@dataclass(frozen=True)
class Gamma(Rule):
    """The generalised LRP-γ rule (Montavon et al. 2019, eq. 3; Andéol et al. 2021; Zennit's
    ``Gamma``): favour the contributions of the pre-activation's own sign.

    With c_jk = x_j w_jk, z_k = Σ_j c_jk + b_k and s_k = sign(z_k) (+ for z_k = 0):

        R_j = Σ_k (c_jk + γ c_jk^{s_k}) / (z_k + γ (Σ_j c_jk^{s_k} + b_k^{s_k}) ± ε) · R_k

    (c⁺ = max(c, 0), c⁻ = min(c, 0)). The denominator has the sign of z_k and |·| ≥ |z_k|, so
    it never crosses zero, also for units with z_k < 0 that receive relevance after a residual
    sum (where z + γ(x w)⁺ does). For x ≥ 0 and z_k > 0 it is w ← w + γ w⁺; γ → ∞ gives z⁺.
    ``bias``: ``"split"`` (above, Zennit), ``"signed"`` (b_k without γ b_k^{s}, as Captum's
    weight-only γ), ``"none"`` (b_k left out of z_k as well).
    """

    gamma: float = 0.25
    epsilon: float = 1e-6
    bias: str = "split"

    def __post_init__(self) -> None:
        object.__setattr__(self, "gamma", check_finite_number(
            self.gamma, "gamma", 0.0, meaning="how much Gamma favours same-sign contributions"))
        object.__setattr__(self, "epsilon", _check_epsilon(self.epsilon, "Gamma"))
        object.__setattr__(self, "bias", _check_bias(self.bias, "Gamma"))

    def layer(self, op: Op, m: Tensor) -> list[Tensor]:
        aff = op.affine
        up = aff.preactivation(with_bias=self.bias != "none") >= 0
        if op.relu_fed and op.assumptions.shortcuts:  # nothing arrives where z < 0: confirm it
            op.assumptions.add((~up & (m != 0)).any())
            return [propagate_terms(aff, m * up, self._terms(aff, _pos, _neg), self.epsilon)]
        if aff.x_nonnegative:
            return [self._both_signs(aff, m, up)]
        r = propagate_terms(aff, m * up, self._terms(aff, _pos, _neg), self.epsilon)
        return [r + propagate_terms(aff, m * ~up, self._terms(aff, _neg, _pos), self.epsilon)]

    def _both_signs(self, aff: Affine, m: Tensor, up: Tensor) -> Tensor:
        """Both signs of z for x ≥ 0 from one modified forward pass: with P = L(x; w⁺) and
        w + γ w⁻ = (1 + γ) w − γ w⁺, the denominators are z + γ P (+ b′₊) and
        (1 + γ) z − γ P (+ b′₋) (z without bias), and
        R = x ⊙ [wᵀ (s₊ + (1 + γ) s₋) + γ w⁺ᵀ (s₊ − s₋)]: two transposed maps, as before,
        but one modified forward pass instead of two."""
        g = self.gamma
        bias_up, bias_down = self._bias(aff, _pos), self._bias(aff, _neg)
        w_pos = aff.derived("w+", _pos)
        z = aff.preactivation(with_bias=False)
        p = aff.forward(aff.x, w_pos, None)
        z_up, z_down = torch.add(z, p, alpha=g), torch.sub(z * (1 + g), p, alpha=g)
        if bias_up is not None:
            z_up = z_up.add_(aff.per_output(bias_up))
        if bias_down is not None:
            z_down = z_down.add_(aff.per_output(bias_down))
        s_up, s_down = ratio(m * up, z_up, self.epsilon), ratio(m * ~up, z_down, self.epsilon)
        shared = aff.grad_input(torch.add(s_up, s_down, alpha=1 + g), aff.weight)
        shared.add_(aff.grad_input(s_up.sub_(s_down), w_pos), alpha=g)
        return _times(shared, aff.x)

    def _bias(self, aff: Affine, part: Callable[[Tensor], Tensor]) -> Tensor | None:
        """The bias of the sign ``part`` keeps: b + γ b^s (split), b (signed) or None."""
        bias = _bias(aff, self.bias, part)
        if bias is not None and self.bias == "split":
            bias = aff.bias + self.gamma * bias
        return bias

    def _terms(self, aff: Affine, part: Callable[[Tensor], Tensor],
               other: Callable[[Tensor], Tensor]) -> list[Term]:
        """Terms of Σ_j (c_j + γ c_j^s) (+ bias) for the sign s that ``part`` keeps:
        x⁺ (w + γ w^s) + x⁻ (w + γ w^{−s})."""
        g = self.gamma
        bias = self._bias(aff, part)
        same = aff.derived(("gamma", g, part.__name__), lambda w: w + g * part(w))
        if aff.x_nonnegative:
            return [Term(aff.x, same, bias)]
        flipped = aff.derived(("gamma", g, other.__name__), lambda w: w + g * other(w))
        return [Term(_pos(aff.x), same, bias), Term(_neg(aff.x), flipped)]


@dataclass(frozen=True)
class AlphaBeta(Rule):
    """LRP-αβ (Bach et al. 2015; Montavon et al. 2018, eq. 60), α − β = 1.

    R_j = Σ_k (α (x_j w_jk)⁺ / (Σ_j (x_j w_jk)⁺ + b⁺_k) − β (x_j w_jk)⁻ / (Σ_j (x_j w_jk)⁻ + b⁻_k))
    R_k. ``bias``: ``"none"`` (b⁺ = b⁻ = 0, the default: α − β = 1 then conserves relevance),
    ``"split"`` (b⁺ = max(b, 0), b⁻ = min(b, 0): Zennit, the LRP toolbox), ``"signed"``
    (b⁺ = b⁻ = b: iNNvestigate's αβ rules with bias, Captum's ``Alpha1_Beta0_Rule``).
    α = 1, β = 0 is z⁺.
    """

    alpha: float = 2.0
    beta: float = 1.0
    bias: str = "none"

    def __post_init__(self) -> None:
        alpha = check_finite_number(self.alpha, "alpha", 1.0,
                                    meaning="the weight of positive contributions")
        beta = check_finite_number(self.beta, "beta", 0.0,
                                   meaning="the weight of negative contributions")
        if abs(alpha - beta - 1) > 1e-9:
            raise ArgumentError(
                "alpha",
                f"AlphaBeta needs alpha - beta = 1 to conserve relevance; got alpha={alpha}, "
                f"beta={beta} (e.g. AlphaBeta(2, 1) or AlphaBeta(1, 0))",
            )
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "beta", beta)
        object.__setattr__(self, "bias", _check_bias(self.bias, "AlphaBeta"))

    def layer(self, op: Op, m: Tensor) -> list[Tensor]:
        aff = op.affine
        positive = positive_terms(aff, _bias(aff, self.bias, _pos))
        if not self.beta:
            return [propagate_terms(aff, m, positive)]
        negative = negative_terms(aff, _bias(aff, self.bias, _neg))
        z_pos, z_neg = None, None
        if aff.x_nonnegative:  # x w⁻ = x w − x w⁺: one modified forward pass instead of two
            (p,), (n,) = positive, negative
            z_pos = aff.forward(aff.x, p.weight, None)
            z_neg = aff.preactivation(with_bias=False) - z_pos
            z_pos = z_pos if p.bias is None else z_pos + aff.per_output(p.bias)
            z_neg = z_neg if n.bias is None else z_neg.add_(aff.per_output(n.bias))
        r = propagate_terms(aff, m, positive, z=z_pos).mul_(self.alpha)
        return [r.sub_(propagate_terms(aff, m, negative, z=z_neg), alpha=self.beta)]


@dataclass(frozen=True)
class ZPlus(Rule):
    """z⁺ rule of Deep Taylor Decomposition (Montavon et al. 2017, eq. 10).

    R_j = Σ_k x_j w_jk⁺ / (Σ_j x_j w_jk⁺ + b⁺_k) · R_k for x ≥ 0; for inputs of any sign the
    positive contributions (x_j w_jk)⁺ = x_j⁺ w_jk⁺ + x_j⁻ w_jk⁻ are used (= LRP-α1β0).
    ``bias``: ``"none"`` (b⁺ = 0, the default, as Deep Taylor and iNNvestigate's z⁺),
    ``"split"`` (b⁺ = max(b, 0): Zennit), ``"signed"`` (b⁺ = b: Captum).
    Also the rule of excitation backprop (Zhang et al. 2016).
    """

    bias: str = "none"

    def __post_init__(self) -> None:
        object.__setattr__(self, "bias", _check_bias(self.bias, "ZPlus"))

    def layer(self, op: Op, m: Tensor) -> list[Tensor]:
        aff = op.affine
        return [propagate_terms(aff, m, positive_terms(aff, _bias(aff, self.bias, _pos)))]


@dataclass(frozen=True)
class ZBox(Rule):
    """z^B rule for inputs bounded in [low, high] (Montavon et al. 2017, eq. 14).

    R_i = Σ_j (x_i w_ij − l_i w_ij⁺ − h_i w_ij⁻) / Σ_i (x_i w_ij − l_i w_ij⁺ − h_i w_ij⁻) · R_j.
    ``low``/``high`` are scalars or tensors broadcastable to one sample (e.g. per channel
    C×1×1) or to the batch; ``None`` takes the per-sample minimum / maximum of the input.
    Every term is ≥ 0 only for low ≤ x ≤ high, so inputs outside the bounds are an error.
    The bias is left out (as in Zennit, where b, b⁺ and b⁻ cancel).
    """

    low: float | Tensor | None = None
    high: float | Tensor | None = None

    def __post_init__(self) -> None:
        low, high = _check_bound(self.low, "low"), _check_bound(self.high, "high")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        if low is None or high is None:
            return
        low_t, high_t = torch.as_tensor(low), torch.as_tensor(high)
        try:
            above = low_t.double() > high_t.double()
        except RuntimeError:
            raise ArgumentError(
                "low",
                f"ZBox's low (shape {tuple(low_t.shape)}) and high (shape "
                f"{tuple(high_t.shape)}) do not broadcast together; give both as scalars or "
                "with the same per-channel shape (e.g. C×1×1)",
            ) from None
        if bool(above.any()):
            raise ArgumentError(
                "low",
                f"ZBox needs low ≤ high everywhere; low > high at {int(above.sum())} of "
                f"{above.numel()} elements (low={_show(low)}, high={_show(high)}): swap them "
                "or give the bounds of the input domain",
            )

    def layer(self, op: Op, m: Tensor) -> list[Tensor]:
        aff = op.affine
        x, w = aff.x, aff.weight
        low = _bound(self.low, x, torch.amin, "low")
        high = _bound(self.high, x, torch.amax, "high")
        _check_inside(op, x, low, high)
        terms = [Term(x, w), Term(low, aff.derived("w+", _pos), sign=-1.0),
                 Term(high, aff.derived("w-", _neg), sign=-1.0)]
        return [propagate_terms(aff, m, terms)]


def _show(bound: float | Tensor) -> str:
    return repr(bound) if not isinstance(bound, Tensor) else f"tensor of shape {tuple(bound.shape)}"


def _check_bound(value: Any, name: str) -> float | Tensor | None:
    """A ZBox bound: None, a finite real number or a finite real tensor."""
    if value is None:
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return check_finite_number(value, name, meaning=f"ZBox's {name} input bound")
    if not isinstance(value, Tensor) or value.is_complex() or value.dtype == torch.bool:
        got = f"a {value.dtype} tensor" if isinstance(value, Tensor) else type(value).__name__
        raise ArgumentTypeError(
            name,
            f"ZBox's {name} must be a real number, a real tensor (e.g. per channel, shape "
            f"C×1×1) or None (the per-sample {'minimum' if name == 'low' else 'maximum'} of "
            f"the input), got {got}",
        )
    check_finite(value, f"ZBox's {name} bound", argument=name,
                 fix="give the finite bounds of the input domain")
    return value


def _bound(value: Any, x: Tensor, reduce: Any, name: str) -> Tensor:
    if value is None:
        per_sample = reduce(x.flatten(1), dim=1).view(-1, *[1] * (x.ndim - 1))
        return per_sample.expand_as(x).contiguous()
    bound = torch.as_tensor(value).to(x)
    try:
        return bound.expand_as(x).contiguous() if bound.ndim == x.ndim else (
            bound.expand(x.shape[1:]).unsqueeze(0).expand_as(x).contiguous()
        )
    except RuntimeError:
        raise ArgumentError(
            name,
            f"ZBox's {name} has shape {tuple(bound.shape)}, which does not broadcast to the "
            f"layer's inputs of shape {tuple(x.shape)}; give a scalar, a per-sample shape "
            f"(e.g. per channel {(x.shape[1],) + (1,) * (x.ndim - 2)}) or the batch shape",
        ) from None


def _check_inside(op: Op, x: Tensor, low: Tensor, high: Tensor) -> None:
    """z^B is defined for low ≤ x ≤ high (up to rounding); outside, its terms change sign."""
    slack = 64 * torch.finfo(x.dtype).eps
    for name, outside in (("low", x < low - slack * (1 + low.abs())),
                          ("high", x > high + slack * (1 + high.abs()))):
        check_now_or_deferred(("ZBox bounds", name, op.node.index), outside.any(),
                              lambda name=name, outside=outside: _outside(name, outside,
                                                                          op.label))


def _outside(name: str, outside: Tensor, where: str) -> ArgumentError:
    side = "below low" if name == "low" else "above high"
    return ArgumentError(
        name,
        f"{int(outside.sum())} of {outside.numel()} inputs of the ZBox layer {where!r} lie "
        f"{side}; the z^B rule needs low ≤ x ≤ high. Give the bounds of the input "
        f"domain (e.g. the normalised values of pixels 0 and 255), or {name}=None for "
        f"the per-sample {'minimum' if name == 'low' else 'maximum'}",
    )


@dataclass(frozen=True)
class WSquare(Rule):
    """w² rule (Montavon et al. 2017, eq. 12): R_i = Σ_j w_ij² / Σ_i w_ij² · R_j (input-free).

    The bias is left out, as in the LRP toolbox (Zennit adds b² to the denominator)."""

    def layer(self, op: Op, m: Tensor) -> list[Tensor]:
        aff = op.affine
        squared = Term(torch.ones_like(aff.x), aff.derived("w2", torch.square))
        return [propagate_terms(aff, m, [squared])]


@dataclass(frozen=True)
class Flat(Rule):
    """Flat rule (Lapuschkin et al. 2019): w² with all weights 1, R_i = Σ_j R_j / |receptive j|."""

    def layer(self, op: Op, m: Tensor) -> list[Tensor]:
        aff = op.affine
        ones = Term(torch.ones_like(aff.x), aff.derived("ones", torch.ones_like))
        return [propagate_terms(aff, m, [ones])]


# ----------------------------------------------------------------------------------------------
# Rules for activations, pooling and gates
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pass(Rule):
    """Pass rule for element-wise activations: R_in = R_out (Montavon et al. 2019, sec. 10.2)."""

    def activation(self, op: Op, m: Tensor) -> list[Tensor]:
        return [m.expand_as(op.inputs[0]) if m.shape != op.inputs[0].shape else m]


@dataclass(frozen=True)
class WinnerTakeAll(Rule):
    """Max pooling: all relevance of a window goes to its maximum (Montavon et al. 2018)."""

    def maxpool(self, op: Op, m: Tensor) -> list[Tensor]:
        return op.vjp([m])


@dataclass(frozen=True)
class Average(Rule):
    """Max pooling treated as average pooling: R_j = Σ_k x_j / Σ_{j∈k} x_j · R_k (ε-stabilised)."""

    epsilon: float = 1e-9

    def __post_init__(self) -> None:
        object.__setattr__(self, "epsilon", _check_epsilon(self.epsilon, "Average"))

    def maxpool(self, op: Op, m: Tensor) -> list[Tensor]:
        x = op.inputs[0]
        reduction = op.node.name in ("max", "amax")
        pool = _reduction_sum(op) if reduction else average_of_maxpool(op.node)
        s = ratio(m, pool(x), self.epsilon)
        return [x * vjp_linear(pool, x, s)]


def _reduction_sum(op: Op) -> Callable[[Tensor], Tensor]:
    """The sum over the dims a ``max``/``amax`` reduces: the window of that "pooling" (the
    ratio x_j / Σ x is the same with the sum as with the mean)."""
    node = op.node
    dim = node.arg(1, "dim", None)
    if len(op.inputs) != 1 or isinstance(dim, Tensor):
        raise ArgumentError(
            "composite",
            f"Average splits a pooling window in proportion to its inputs, but the model's "
            f"{node.where()} is the element-wise maximum of two tensors; give composite "
            "WinnerTakeAll() for max ops (maxpool=WinnerTakeAll()) instead",
        )
    keepdim = bool(node.arg(2, "keepdim", False))
    return lambda v: v.sum(dim=tuple(range(v.ndim)) if dim in (None, (), []) else dim,
                           keepdim=keepdim)


@dataclass(frozen=True)
class SignalTakesAll(Rule):
    """Gate × signal: the gate is held constant and all relevance goes to the signal
    (Arras et al. 2017). With the gate g fixed the op is linear in the signal v, and the
    ε-rule splits R over v: R_v = v ⊙ ∂z/∂vᵀ (R / (z + ε sign z)). For an element-wise
    product this is R_v = R; for a quotient by a normaliser likewise; for attention weights
    times values (Ali et al. 2022's AH-rule) it splits R over the values in proportion to
    their weighted contributions."""

    epsilon: float = 1e-9

    def __post_init__(self) -> None:
        object.__setattr__(self, "epsilon", _check_epsilon(self.epsilon, "SignalTakesAll"))

    def gate(self, op: Op, m: Tensor) -> list[Tensor | None]:
        return signal_takes_all(op, m, op.signal, self.epsilon)

    def feeds(self, op: Op) -> list[int]:
        """Only the signal: the gate receives nothing."""
        return [op.signal]


def signal_takes_all(op: Op, m: Tensor, signal: int, epsilon: float) -> list[Tensor | None]:
    """The ε-rule with every input but ``signal`` held constant:
    R_signal = v ⊙ ∂z/∂vᵀ (R / (z + ε sign z)), nothing to the others."""
    s = ratio(m, op.output, epsilon)
    messages = op.vjp([s], only=signal)
    return [g if g is None else g * x for g, x in zip(messages, op.inputs)]


# ----------------------------------------------------------------------------------------------
# Gradient-type rules: guided backprop, deconvnet, DeepLIFT
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainRule(Rule):
    """The plain gradient: the message goes back by the chain rule, through the op's own
    vector-Jacobian product."""

    def layer(self, op: Op, m: Tensor) -> list[Tensor]:
        return [op.affine.grad_input(m, op.affine.weight)]

    def linear(self, op: Op, m: Tensor) -> list[Tensor]:
        return op.vjp([m])

    def activation(self, op: Op, m: Tensor) -> list[Tensor]:
        return op.vjp([m])

    def maxpool(self, op: Op, m: Tensor) -> list[Tensor]:
        return op.vjp([m])

    def gate(self, op: Op, m: Tensor) -> list[Tensor]:
        return op.vjp([m])

    def softmax(self, op: Op, m: Tensor) -> list[Tensor]:
        return op.vjp([m])

    def product(self, op: Op, m: Tensor) -> list[Tensor]:
        return op.vjp([m])

    def other(self, op: Op, messages: list[Tensor | None]) -> list[Tensor | None]:
        return op.vjp(messages)

    def recurrent(self, op: Op, messages: list[Tensor | None]) -> list[Tensor | None]:
        return op.vjp(messages)


@dataclass(frozen=True)
class RectifiedGradient(ChainRule):
    """Guided backpropagation's rule (Springenberg et al. 2015): at an activation, only
    positive messages go back, through the activation's gradient (open units of a ReLU):
    g_in = f′(z) · max(g_out, 0)."""

    def activation(self, op: Op, m: Tensor) -> list[Tensor]:
        return op.vjp([m.clamp(min=0)])


@dataclass(frozen=True)
class RectifiedPass(ChainRule):
    """Deconvnet's rule (Zeiler & Fergus 2014): at an activation the message is rectified on
    its way back, regardless of the forward pass: g_in = max(g_out, 0)."""

    def activation(self, op: Op, m: Tensor) -> list[Tensor]:
        return [m.clamp(min=0).expand_as(op.inputs[0])]


@dataclass(frozen=True)
class Rescale(ChainRule):
    """DeepLIFT Rescale (Shrikumar et al. 2017): multipliers m_in = m_out · Δy/Δx at an
    element-wise activation (y = f(x), Δ against the baseline's forward pass), the gradient
    where |Δx| < ``tolerance``; linear ops pass multipliers by the chain rule."""

    tolerance: float = 1e-7

    def __post_init__(self) -> None:
        object.__setattr__(self, "tolerance", _check_tolerance(self.tolerance))

    def activation(self, op: Op, m: Tensor) -> list[Tensor]:
        baseline = _baseline_of(op, self)
        x, y = op.inputs[0], op.output
        x0, y0 = baseline.input_values()[0], baseline.outputs[0]
        return [_rescaled(op, m, m * (y - y0), x - x0, self.tolerance)]


@dataclass(frozen=True)
class SplitDifference(ChainRule):
    """DeepLIFT for max pooling with summation-to-delta for any baseline: each window's
    difference Δy = y − ȳ is split into (max(y, ȳ) − ȳ), given to the window's maximum at
    the input, and (y − max(y, ȳ)), given to its maximum at the baseline; the multiplier of
    an input is its share / Δx (the gradient where |Δx| < ``tolerance``, where the share
    is 0). As Captum's DeepLift. The chain rule (the gradient w.r.t. the maximum) gives
    Σ m·Δx = y − x̄_argmax instead, which is Δy only when x̄ peaks where x does."""

    tolerance: float = 1e-7

    def __post_init__(self) -> None:
        object.__setattr__(self, "tolerance", _check_tolerance(self.tolerance))

    def maxpool(self, op: Op, m: Tensor) -> list[Tensor]:
        baseline = _baseline_of(op, self)
        y, y0 = op.output, baseline.outputs[0]
        top = torch.maximum(y, y0)
        at_input = op.vjp([m * (top - y0)])  # to the maxima of the input's windows
        at_baseline = Op(baseline, op.kind, op.label).vjp([m * (y - top)])  # the baseline's
        return [
            _rescaled(op, m, a + b, x - x0, self.tolerance, only=i)
            for i, (a, b, x, x0) in enumerate(
                zip(at_input, at_baseline, op.inputs, baseline.input_values())
            )
        ]


def _check_tolerance(value: Any) -> float:
    return check_finite_number(value, "tolerance", 0.0,
                               meaning="the |Δx| below which DeepLIFT uses the gradient")


def _baseline_of(op: Op, rule: Rule) -> Any:
    if op.baseline is None:
        raise ArgumentError(
            "composite",
            f"{type(rule).__name__} needs the forward pass at the baseline, which only the "
            "deeplift method records; in composite, use it with method='deeplift' only",
        )
    return op.baseline


def _rescaled(op: Op, m: Tensor, share: Tensor, dx: Tensor, tolerance: float,
              only: int | None = None) -> Tensor:
    """share / Δx, and the gradient (of input ``only``) where |Δx| < ``tolerance``; ``share``
    and ``dx`` are new tensors of the caller's, written in place."""
    close = dx.abs() < tolerance
    rescaled = share.div_(dx.masked_fill_(close, 1.0))
    grad = op.vjp([m], only=only)[only or 0]  # always: deciding would cost a synchronisation
    return torch.where(close, grad, rescaled)


# ----------------------------------------------------------------------------------------------
# Excitation backprop
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DualContrast(Rule):
    """Contrastive MWP at the classifier layer (Zhang et al. 2016, contrastive top-down
    attention): the winning probabilities of the target unit minus those of its dual, the
    unit with negated input weights. With (−w)⁺ = −w⁻ the dual's z⁺ shares are the unit's
    shares of the negative contributions:

    P_j = Σ_k [(x_j w_jk)⁺ / Σ_i (x_i w_ik)⁺ − (x_j w_jk)⁻ / Σ_i (x_i w_ik)⁻] · P_k.

    Below this layer z⁺ is linear in P, so one walk gives MWP(target) − MWP(dual). Bias
    ignored (as z⁺); a unit without negative (positive) contributions gives its dual
    (itself) probability 0.
    """

    def layer(self, op: Op, m: Tensor) -> list[Tensor]:
        aff = op.affine
        return [propagate_terms(aff, m, positive_terms(aff))
                - propagate_terms(aff, m, negative_terms(aff))]


# ----------------------------------------------------------------------------------------------
# Attention: AttnLRP (Achtibat et al. 2024) and CP-LRP (Ali et al. 2022)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoRule(Rule):
    """The default rule of the ``softmax``, ``product`` and ``exp`` op kinds: relevance
    reaching such an op is an error that names the composites giving it a rule (as for
    ``other`` ops; gradient-type methods use the chain rule there)."""

    def __repr__(self) -> str:
        return "NoRule() (relevance reaching it raises: give it a rule)"

    def softmax(self, op: Op, m: Tensor) -> NoReturn:
        _no_rule(op)

    def product(self, op: Op, m: Tensor) -> NoReturn:
        _no_rule(op)

    def activation(self, op: Op, m: Tensor) -> NoReturn:
        _no_rule(op)


def _no_rule(op: Op) -> NoReturn:
    hint = (" If it is the model's final softmax, explain the logits instead (output= or a "
            "model without it).") if op.kind == "softmax" else ""
    raise UnsupportedOpError(
        "model",
        f"relevance reaches the model's {op.node.where()} (op kind {op.kind!r}), which the "
        "LRP composites of CNNs give no rule. For attention, pass composite="
        "pellucid.lrp.composites.attnlrp() or cp_lrp() (with method='lrp'), or give one "
        f"with Composite(ops={{{op.kind!r}: rule}})." + hint,
    )


@dataclass(frozen=True)
class SoftmaxTaylor(Rule):
    """AttnLRP's softmax rule (Achtibat et al. 2024, Prop. 3.1): the first-order Taylor
    decomposition of s = softmax(x) at x itself, bias included,

        R_in = x ⊙ Jᵀ (R / s) = x ⊙ (R − s ⊙ Σ R)   (Σ over the softmax dimension).

    The relevance does not sum to that of the output: the bias term absorbs the rest.
    Masked inputs (−∞) count as 0, as in ``lxt``."""

    def softmax(self, op: Op, m: Tensor) -> list[Tensor]:
        x = op.inputs[0]
        (g,) = op.vjp([divide(m, op.output)])
        return [torch.where(torch.isneginf(x), 0.0, x) * g]


@dataclass(frozen=True)
class HoldConstant(Rule):
    """CP-LRP (Ali et al. 2022): the attention weights (the softmax output) are held
    constant, so no relevance flows into the softmax branch (q, k); the value path gets it all
    (:class:`SignalTakesAll` at ``attention @ v``)."""

    def softmax(self, op: Op, m: Tensor) -> list[Tensor | None]:
        return [None]

    def feeds(self, op: Op) -> list[int]:
        """Nothing: the softmax input receives no relevance."""
        return []


@dataclass(frozen=True)
class UniformProduct(Rule):
    """AttnLRP's rule for the product of n input-dependent factors (Achtibat et al. 2024,
    Prop. 3.2 element-wise, 3.3 matrix products): the ε-rule with each factor in turn held
    constant, the relevance split uniformly,

        R_i = x_i ⊙ ∂z/∂x_iᵀ (R / (n (z + ε sign z))),

    e.g. R_a = a ⊙ (S bᵀ), R_b = b ⊙ (aᵀ S) with S = R / (2 (z ± ε)) for z = a @ b, and
    R_a = R_b = R/2 element-wise. Σ_i R_i = R z / (z ± ε). At a gate × signal product the
    attention weights (softmax) and sigmoid gates count as factors; a normaliser (a quotient,
    ``rsqrt``, ``reciprocal``: RMSNorm) is held constant, the identity rule of Prop. 3.4, and
    so is the gate of an activation written out as v · g(v) (GELU, SiLU: the identity rule
    of AttnLRP's element-wise non-linearities; see :func:`.calls.self_gate`)."""

    epsilon: float = 1e-9

    def __post_init__(self) -> None:
        object.__setattr__(self, "epsilon", _check_epsilon(self.epsilon, "UniformProduct"))

    def product(self, op: Op, m: Tensor) -> list[Tensor]:
        n = len(op.inputs)
        s = ratio(m, op.output, self.epsilon, scale=n)
        return [x * g for x, g in zip(op.inputs, op.vjp([s]))]

    def gate(self, op: Op, m: Tensor) -> list[Tensor | None]:
        if self._normalises(op):
            return signal_takes_all(op, m, op.signal, self.epsilon)
        return self.product(op, m)

    def feeds(self, op: Op) -> list[int]:
        """The signal only at a normaliser, every factor otherwise."""
        return [op.signal] if op.kind == "gate" and self._normalises(op) else super().feeds(op)

    @staticmethod
    def _normalises(op: Op) -> bool:
        """A normaliser, or the gate of a self-gated activation v · g(v) (the identity rule)."""
        name = gate_name(op.node)
        return name is None or name in NORMALISERS or self_gate(op.node) is not None


@dataclass(frozen=True)
class HoldGate(UniformProduct):
    """CP-LRP's rule for products of two signals: in an element-wise product of which exactly
    one factor comes out of an element-wise activation (SwiGLU, GeGLU: act(gate(x)) ⊙ up(x)),
    that factor is a gate and held constant, and the other takes all,
    R_up = up ⊙ ∂z/∂upᵀ (R / (z ± ε)) = R z/(z ± ε), as lxt's CP-LRP (``cp_gated_mlp_forward``,
    which extends Ali et al. 2022's attention weights held constant to gates). Any other
    product of two signals splits uniformly (:class:`UniformProduct`).

    >>> import torch, pellucid
    >>> class SwiGLU(torch.nn.Module):
    ...     def forward(self, x):
    ...         return torch.nn.functional.silu(x[:, :2]) * x[:, 2:]
    >>> x = torch.tensor([[1.0, -1.0, 2.0, 3.0]])
    >>> e = pellucid.explain(SwiGLU().eval(), x, target=lambda out: out.sum(1),
    ...                      method="lrp.cp_lrp")
    >>> e.attribution  # the gate gets nothing, the up factor all: silu(g) ⊙ u
    tensor([[ 0.0000,  0.0000,  1.4621, -0.8068]])
    """

    def product(self, op: Op, m: Tensor) -> list[Tensor | None]:
        gate = activated_factor(op.node)
        if gate is None:
            return super().product(op, m)
        return signal_takes_all(op, m, 1 - gate, self.epsilon)

    def feeds(self, op: Op) -> list[int]:
        """The factor that is no gate, at an activation-gated product."""
        gate = activated_factor(op.node) if op.kind == "product" else None
        return super().feeds(op) if gate is None else [1 - gate]
