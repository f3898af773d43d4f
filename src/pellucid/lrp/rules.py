"""Rules: how relevance (or a modified gradient) goes back through one operation.

A rule is a small frozen dataclass with one method per op kind it can handle
(``layer``, ``linear``, ``activation``, ``maxpool``, ``gate``, ``other``; see :mod:`.kinds`).
Each method takes the op (an :class:`~pellucid.lrp.op.Op`) and the message ``m`` at
its output and returns one message per input-dependent input.

For affine layers ``z_k = Σ_j x_j w_jk + b_k`` every LRP rule is a choice of modified terms
(x′, w′, b′), computed with the gradient trick (Montavon et al. 2019, "Layer-wise relevance
propagation: an overview", sec. 10.2.3)::

    z′ = Σ_t L(x′_t; w′_t, b′_t),   s = R / stabilise(z′),   R_j = Σ_t x′_{t,j} · (w′_tᵀ s)_j

where ``w′ᵀ s`` is the vector-Jacobian product of the layer (a transposed convolution for a
convolution). The same code serves Linear, Conv1d/2d/3d, transposed convolutions, folded
Conv+BatchNorm and a lone BatchNorm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .linear_maps import Affine, average_of_maxpool, vjp_linear
from .op import Op

_TINY = 1e-12


def stabilise(z: Tensor, epsilon: float) -> Tensor:
    """z + ε·sign(z), with sign(0) = +1."""
    if epsilon == 0:
        return z
    return z + torch.copysign(torch.tensor(epsilon, dtype=z.dtype, device=z.device), z)


def divide(r: Tensor, denominator: Tensor, epsilon: float = 0.0) -> Tensor:
    """r / denominator, and 0 where the denominator is 0 (which ε > 0 already rules out)."""
    quotient = r / denominator
    return quotient if epsilon > 0 else quotient.masked_fill_(denominator == 0, 0.0)


def _pos(t: Tensor) -> Tensor:
    return t.clamp(min=0)


def _neg(t: Tensor) -> Tensor:
    return t.clamp(max=0)


@dataclass(frozen=True)
class Term:
    """One term (x′, w′, b′) of a rule-modified layer, with a sign."""

    x: Tensor
    weight: Tensor
    bias: Tensor | None = None
    sign: float = 1.0


def propagate_terms(aff: Affine, r: Tensor, terms: list[Term], epsilon: float = _TINY,
                    z: Tensor | None = None) -> Tensor:
    """R_j = Σ_t sign_t x′_t ⊙ (w′_tᵀ s) with s = R / stabilise(Σ_t sign_t L(x′_t; w′_t, b′_t))."""
    if z is None:
        z = _signed_sum([(t.sign, aff.forward(t.x, t.weight, t.bias)) for t in terms])
    s = divide(r, stabilise(z, epsilon), epsilon)
    return _signed_sum([(t.sign, t.x * aff.grad_input(s, t.weight)) for t in terms])


def _signed_sum(parts: list[tuple[float, Tensor]]) -> Tensor:
    """Σ sign·value without extra passes for the common single positive term."""
    sign, total = parts[0]
    total = total if sign == 1 else total * sign
    for sign, value in parts[1:]:
        total = total.add_(value, alpha=sign) if sign in (1, -1) else total + sign * value
    return total


def _nonnegative(x: Tensor) -> bool:
    return bool((x >= 0).all())


def positive_terms(aff: Affine, with_bias: bool = False) -> list[Term]:
    """Terms of the positive contributions (x w)⁺ = x⁺w⁺ + x⁻w⁻ (+ b⁺)."""
    bias = _pos(aff.bias) if with_bias and aff.bias is not None else None
    if _nonnegative(aff.x):
        return [Term(aff.x, aff.derived("w+", _pos), bias)]
    return [Term(_pos(aff.x), aff.derived("w+", _pos), bias),
            Term(_neg(aff.x), aff.derived("w-", _neg))]


def negative_terms(aff: Affine, with_bias: bool = False) -> list[Term]:
    """Terms of the negative contributions (x w)⁻ = x⁺w⁻ + x⁻w⁺ (+ b⁻)."""
    bias = _neg(aff.bias) if with_bias and aff.bias is not None else None
    if _nonnegative(aff.x):
        return [Term(aff.x, aff.derived("w-", _neg), bias)]
    return [Term(_pos(aff.x), aff.derived("w-", _neg), bias),
            Term(_neg(aff.x), aff.derived("w+", _pos))]


class Rule:
    """Base class; subclasses implement the kinds they handle."""

    def handles(self, method: str) -> bool:
        """Whether this rule implements the rule method ``method`` (``layer``, ``linear``, ...)."""
        own = getattr(type(self), method, None)
        return own is not None and own is not getattr(Rule, method, None)

    def layer(self, op: Op, m: Tensor) -> list[Tensor]:
        raise NotImplementedError

    def linear(self, op: Op, m: Tensor) -> list[Tensor]:
        raise NotImplementedError

    def activation(self, op: Op, m: Tensor) -> list[Tensor]:
        raise NotImplementedError

    def maxpool(self, op: Op, m: Tensor) -> list[Tensor]:
        raise NotImplementedError

    def gate(self, op: Op, m: Tensor) -> list[Tensor]:
        raise NotImplementedError

    def other(self, op: Op, m: Tensor) -> list[Tensor]:
        raise NotImplementedError


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
    """

    epsilon: float = 1e-6

    def layer(self, op: Op, m: Tensor) -> list[Tensor]:
        aff = op.affine
        return [propagate_terms(aff, m, [Term(aff.x, aff.weight)], self.epsilon, z=aff.out)]

    def linear(self, op: Op, m: Tensor) -> list[Tensor]:
        s = divide(m, stabilise(op.output, self.epsilon), self.epsilon)
        return [x * g for x, g in zip(op.inputs, op.linear_vjp(s))]


@dataclass(frozen=True)
class Zero(Epsilon):
    """LRP-0 (Bach et al. 2015): R_j = Σ_k x_j w_jk / z_k · R_k (0 where z_k = 0).

    On bias-free ReLU networks LRP-0 equals gradient × input (Montavon et al. 2019, sec. 10.2.1).
    """

    epsilon: float = 0.0


@dataclass(frozen=True)
class Gamma(Rule):
    """LRP-γ (Montavon et al. 2019, eq. 3): favour positive contributions.

    R_j = Σ_k (x_j w_jk + γ (x_j w_jk)⁺) / Σ_j (x_j w_jk + γ (x_j w_jk)⁺) (+ b_k + γ b_k⁺) · R_k.
    For non-negative inputs (x w)⁺ = x w⁺, i.e. w ← w + γ w⁺. γ → ∞ gives z⁺.
    ``epsilon`` stabilises the denominator: in residual networks a unit can receive relevance
    while its own pre-activation is negative, and z + γ z⁺ can then come close to zero.
    """

    gamma: float = 0.25
    epsilon: float = 1e-4

    def layer(self, op: Op, m: Tensor) -> list[Tensor]:
        aff, g = op.affine, self.gamma
        w, b = aff.weight, aff.bias
        if _nonnegative(aff.x):
            bias = None if b is None else b + g * _pos(b)
            terms = [Term(aff.x, aff.derived(f"gamma{g}", lambda v: v + g * _pos(v)), bias)]
        else:
            terms = [Term(aff.x, w, b)] + [
                Term(t.x, g * t.weight, None if t.bias is None else g * t.bias)
                for t in positive_terms(aff, with_bias=True)
            ]
        return [propagate_terms(aff, m, terms, self.epsilon)]


@dataclass(frozen=True)
class AlphaBeta(Rule):
    """LRP-αβ (Bach et al. 2015; Montavon et al. 2018, eq. 60), α − β = 1.

    R_j = Σ_k (α (x_j w_jk)⁺ / Σ_j (x_j w_jk)⁺ − β (x_j w_jk)⁻ / Σ_j (x_j w_jk)⁻) R_k.
    Biases are left out, so that α − β = 1 conserves relevance. α = 1, β = 0 is z⁺.
    """

    alpha: float = 2.0
    beta: float = 1.0

    def __post_init__(self) -> None:
        if abs(self.alpha - self.beta - 1) > 1e-9:
            raise ValueError(
                f"AlphaBeta needs alpha - beta = 1 to conserve relevance; got alpha={self.alpha},"
                f" beta={self.beta} (e.g. AlphaBeta(2, 1) or AlphaBeta(1, 0))"
            )

    def layer(self, op: Op, m: Tensor) -> list[Tensor]:
        aff = op.affine
        r = self.alpha * propagate_terms(aff, m, positive_terms(aff))
        if self.beta:
            r = r - self.beta * propagate_terms(aff, m, negative_terms(aff))
        return [r]


@dataclass(frozen=True)
class ZPlus(Rule):
    """z⁺ rule of Deep Taylor Decomposition (Montavon et al. 2017, eq. 10).

    R_j = Σ_k x_j w_jk⁺ / Σ_j x_j w_jk⁺ · R_k for x ≥ 0; for inputs of any sign the positive
    contributions (x_j w_jk)⁺ = x_j⁺ w_jk⁺ + x_j⁻ w_jk⁻ are used (= LRP-α1β0). Bias ignored.
    Also the c-MWP rule of excitation backprop (Zhang et al. 2016).
    """

    def layer(self, op: Op, m: Tensor) -> list[Tensor]:
        return [propagate_terms(op.affine, m, positive_terms(op.affine))]


@dataclass(frozen=True)
class ZBox(Rule):
    """z^B rule for inputs bounded in [low, high] (Montavon et al. 2017, eq. 14).

    R_i = Σ_j (x_i w_ij − l_i w_ij⁺ − h_i w_ij⁻) / Σ_i (x_i w_ij − l_i w_ij⁺ − h_i w_ij⁻) · R_j.
    ``low``/``high`` are scalars or tensors broadcastable to one sample (e.g. per channel
    C×1×1) or to the batch; ``None`` takes the per-sample minimum / maximum of the input.
    """

    low: float | Tensor | None = None
    high: float | Tensor | None = None

    def layer(self, op: Op, m: Tensor) -> list[Tensor]:
        aff = op.affine
        x, w = aff.x, aff.weight
        low = _bound(self.low, x, torch.amin)
        high = _bound(self.high, x, torch.amax)
        terms = [Term(x, w), Term(low, aff.derived("w+", _pos), sign=-1.0),
                 Term(high, aff.derived("w-", _neg), sign=-1.0)]
        return [propagate_terms(aff, m, terms)]


def _bound(value: Any, x: Tensor, reduce: Any) -> Tensor:
    if value is None:
        per_sample = reduce(x.flatten(1), dim=1).view(-1, *[1] * (x.ndim - 1))
        return per_sample.expand_as(x).contiguous()
    bound = torch.as_tensor(value).to(x)
    try:
        return bound.expand_as(x).contiguous() if bound.ndim == x.ndim else (
            bound.expand(x.shape[1:]).unsqueeze(0).expand_as(x).contiguous()
        )
    except RuntimeError:
        raise ValueError(
            f"a ZBox bound of shape {tuple(bound.shape)} does not broadcast to inputs of shape "
            f"{tuple(x.shape)}; give a scalar, a per-sample shape or the batch shape"
        ) from None


@dataclass(frozen=True)
class WSquare(Rule):
    """w² rule (Montavon et al. 2017, eq. 12): R_i = Σ_j w_ij² / Σ_i w_ij² · R_j (input-free)."""

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

    def maxpool(self, op: Op, m: Tensor) -> list[Tensor]:
        x = op.inputs[0]
        pool = average_of_maxpool(op.node)
        s = divide(m, stabilise(pool(x), self.epsilon), self.epsilon)
        return [x * vjp_linear(pool, x, s)]


@dataclass(frozen=True)
class SignalTakesAll(Rule):
    """Gate × signal: the gate is held constant and all relevance goes to the signal
    (Arras et al. 2017). With the gate g fixed the op is linear in the signal v, and the
    ε-rule splits R over v: R_v = v ⊙ ∂z/∂vᵀ (R / (z + ε sign z)). For an element-wise
    product this is R_v = R; for a quotient by a normaliser likewise; for attention weights
    times values (Ali et al. 2022's AH-rule) it splits R over the values in proportion to
    their weighted contributions."""

    epsilon: float = 1e-9

    def gate(self, op: Op, m: Tensor) -> list[Tensor]:
        s = divide(m, stabilise(op.output, self.epsilon), self.epsilon)
        messages = op.vjp([s], only=op.signal)
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

    def other(self, op: Op, m: Tensor) -> list[Tensor]:
        return op.vjp(op.output_messages)


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

    def activation(self, op: Op, m: Tensor) -> list[Tensor]:
        if op.baseline is None:
            raise RuntimeError("the Rescale rule needs the baseline's forward pass (deeplift)")
        x, y = op.inputs[0], op.output
        x0, y0 = op.baseline.input_values()[0], op.baseline.outputs[0]
        dx, dy = x - x0, y - y0
        close = dx.abs() < self.tolerance
        rescaled = m * dy / dx.masked_fill(close, 1.0)
        if not bool(close.any()):
            return [rescaled]
        (grad,) = op.vjp([m])
        return [torch.where(close, grad, rescaled)]
