"""The linear maps that rules propagate through, built from recorded calls.

- :class:`Affine`: an affine layer ``z = L(x; w, b)`` (convolution of any dimension, also
  transposed, ``F.linear``, a per-channel scale and shift) with its vector-Jacobian product.
- :func:`batch_norm_coefficients`: a BatchNorm in eval mode as ``a·x + c`` per channel.
- :func:`linearised_norm`: LayerNorm / GroupNorm with the normaliser held constant, a
  :class:`LinearMap` (the map and its adjoint).
- :func:`average_of_maxpool`: the average pooling over a max pooling's windows.
- :func:`vjp_linear`: the vector-Jacobian product of any linear function.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ArgumentError, ModelError
from .tape import ADAPTIVE_MAXPOOLS, Node
from .weight_cache import WeightCache


@dataclass
class Affine:
    """An affine layer ``z = forward(x, weight, bias)`` as the rules see it.

    ``out`` is the layer's output on the batch (for a layer with a BatchNorm folded into it,
    the BatchNorm's output); ``grad_input(s, w)`` is the vector-Jacobian product of
    ``x ↦ forward(x, w, 0)`` applied to ``s``.
    """

    kind: str  # "conv" | "linear" | "scale"
    x: Tensor
    weight: Tensor
    bias: Tensor | None
    out: Tensor
    forward: Callable[[Tensor, Tensor, Tensor | None], Tensor]
    grad_input: Callable[[Tensor, Tensor], Tensor]
    #: the dimension of ``weight`` that indexes output channels (where BatchNorm folds in)
    out_dim: int = 0
    #: where weights derived by rules (w⁺, w⁻, w², ...) are cached, and for which model;
    #: None for a weight that is new on every call (a lone BatchNorm's scale)
    cache: tuple[WeightCache, nn.Module] | None = None
    #: whether x ≥ 0 by the structure of the model (the output of a ReLU, possibly pooled or
    #: reshaped): rules then leave out the terms of x⁻ without looking at the values
    x_nonnegative: bool = False

    def derived(self, what: Hashable, make: Callable[[Tensor], Tensor]) -> Tensor:
        """``make(weight)``, cached for the model while the weight is unchanged."""
        if self.cache is None:
            return make(self.weight)
        cache, model = self.cache
        return cache.derived(model, what, (self.weight,), lambda: make(self.weight).detach())

    def preactivation(self, with_bias: bool = True) -> Tensor:
        """z = L(x; w, b) (``out``), or z − b = L(x; w, 0) when ``with_bias`` is False."""
        if with_bias or self.bias is None:
            return self.out
        return self.out - self.per_output(self.bias)

    def per_output(self, b: Tensor) -> Tensor:
        """A bias-shaped tensor ``b`` shaped to broadcast over the layer's outputs."""
        if self.kind == "linear":
            return b
        trailing = (self.weight.ndim if self.kind == "conv" else self.out.ndim) - 2
        return b.view(-1, *[1] * trailing)  # channels before the spatial dims


def _tuple(value: int | tuple, n: int) -> list[int]:
    return list(value) if isinstance(value, (tuple, list)) else [value] * n


def conv_affine(node: Node) -> Affine:
    """A recorded ``F.conv*d`` / ``F.conv_transpose*d`` call as an :class:`Affine`."""
    x, weight = node.arg(0, "input"), node.arg(1, "weight")
    bias = node.arg(2, "bias")
    n = weight.ndim - 2
    transposed = node.name.startswith("conv_transpose")
    stride = _tuple(node.arg(3, "stride", 1), n)
    if transposed:
        padding = node.arg(4, "padding", 0)
        output_padding = _tuple(node.arg(5, "output_padding", 0), n)
        groups = node.arg(6, "groups", 1)
        dilation = _tuple(node.arg(7, "dilation", 1), n)
    else:
        padding = node.arg(4, "padding", 0)
        dilation = _tuple(node.arg(5, "dilation", 1), n)
        groups = node.arg(6, "groups", 1)
        output_padding = [0] * n
    func = node.func
    assert func is not None

    if transposed:
        def forward(v: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
            return func(v, w, b, stride, padding, output_padding, groups, dilation)
    else:
        def forward(v: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
            return func(v, w, b, stride, padding, dilation, groups)

    if isinstance(padding, str):  # "same" / "valid": let autograd find the adjoint
        def grad_input(s: Tensor, w: Tensor) -> Tensor:
            return vjp_linear(lambda v: forward(v, w, None), x, s)
    else:
        pad = _tuple(padding, n)

        def grad_input(s: Tensor, w: Tensor) -> Tensor:
            return torch.ops.aten.convolution_backward(
                s, x, w, None, stride, pad, dilation, transposed, output_padding, groups,
                [True, False, False],
            )[0]

    return Affine("conv", x, weight, bias, node.outputs[0], forward, grad_input,
                  out_dim=1 if transposed else 0)


def linear_affine(node: Node) -> Affine:
    """A recorded ``F.linear`` call as an :class:`Affine`."""
    x, weight, bias = node.arg(0, "input"), node.arg(1, "weight"), node.arg(2, "bias")
    return Affine("linear", x, weight, bias, node.outputs[0], F.linear,
                  lambda s, w: s @ w)


def addmm_affine(node: Node) -> Affine:
    """A recorded ``torch.addmm(bias, x, weight)`` (``x @ weight + bias``) as an
    :class:`Affine` whose weight is (in, out)."""
    bias, x, weight = node.arg(0, "input"), node.arg(1, "mat1"), node.arg(2, "mat2")

    def forward(v: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        return v @ w if b is None else torch.addmm(b, v, w)

    return Affine("linear", x, weight, bias, node.outputs[0], forward, lambda s, w: s @ w.T,
                  out_dim=1)


def scale_affine(x: Tensor, scale: Tensor, shift: Tensor, out: Tensor) -> Affine:
    """A per-channel scale and shift ``z = scale·x + shift`` (channels on dimension 1)."""
    shape = (-1,) + (1,) * (x.ndim - 2)

    def forward(v: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        z = v * w.view(shape)
        return z if b is None else z + b.view(shape)

    return Affine("scale", x, scale, shift, out, forward, lambda s, w: s * w.view(shape))


def batch_norm_parameters(node: Node) -> tuple[Tensor | None, ...]:
    """A recorded ``F.batch_norm`` call's (running_mean, running_var, weight, bias)."""
    return (node.arg(1, "running_mean"), node.arg(2, "running_var"), node.arg(3, "weight"),
            node.arg(4, "bias"))


def batch_norm_coefficients(node: Node) -> tuple[Tensor, Tensor]:
    """(a, c) with ``batch_norm(x) = a·x + c`` per channel, for a BatchNorm in eval mode:
    a = γ/√(σ² + ε), c = β − μ·a."""
    mean, var, weight, bias = batch_norm_parameters(node)
    training, eps = node.arg(5, "training", False), node.arg(7, "eps", 1e-5)
    if training or mean is None or var is None:
        raise ModelError(
            "model",
            f"the model's BatchNorm at {node.where()} normalises with batch statistics (train "
            "mode or track_running_stats=False), so it is not a fixed affine map and the rule "
            "engine cannot propagate through it; call model.eval() first",
        )
    a = torch.rsqrt(var + eps)
    if weight is not None:
        a = a * weight
    c = -mean * a
    if bias is not None:
        c = c + bias
    return a.detach(), c.detach()


@dataclass(frozen=True)
class LinearMap:
    """A linear map and its adjoint (the transposed map), so that its vector-Jacobian
    product needs no autograd pass (:func:`vjp_linear`)."""

    apply: Callable[[Tensor], Tensor]
    adjoint: Callable[[Tensor], Tensor]

    def __call__(self, v: Tensor) -> Tensor:
        return self.apply(v)


def linearised_norm(node: Node) -> LinearMap:
    """LayerNorm / GroupNorm with the normalising factor 1/σ held constant (bias excluded).

    ``y = γ ⊙ (x − μ(x)) / σ + β`` becomes the linear map ``x ↦ γ ⊙ (x − μ(x)) / σ₀`` with σ₀
    the value on the batch, so that the ε-rule splits ``y − β`` over the inputs
    (the normaliser-as-constant treatment of Ali et al. 2022, "XAI for Transformers").
    """
    x = node.arg(0, "input")
    if node.name == "layer_norm":
        shape = node.arg(1, "normalized_shape")
        weight, eps = node.arg(2, "weight"), node.arg(4, "eps", 1e-5)
        dims = tuple(range(x.ndim - len(tuple(shape)), x.ndim))

        def centre(v: Tensor) -> Tensor:
            return v - v.mean(dims, keepdim=True)

        inv = torch.rsqrt(x.var(dims, correction=0, keepdim=True) + eps).detach()

        def fn(v: Tensor) -> Tensor:
            y = centre(v) * inv
            return y if weight is None else y * weight

        def adjoint(s: Tensor) -> Tensor:
            g = s * inv if weight is None else (s * weight).mul_(inv)
            return g.sub_(g.mean(dims, keepdim=True))  # the centring is self-adjoint

        return LinearMap(fn, adjoint)
    groups, weight, eps = node.arg(1, "num_groups"), node.arg(2, "weight"), node.arg(4, "eps", 1e-5)
    grouped = (x.shape[0], groups, -1)
    shape = (-1,) + (1,) * (x.ndim - 2)

    def centre_g(v: Tensor) -> Tensor:
        g = v.reshape(grouped)
        return g - g.mean(-1, keepdim=True)

    inv_g = torch.rsqrt(x.reshape(grouped).var(-1, correction=0, keepdim=True) + eps).detach()

    def fn_g(v: Tensor) -> Tensor:
        y = (centre_g(v) * inv_g).reshape(v.shape)
        return y if weight is None else y * weight.view(shape)

    def adjoint_g(s: Tensor) -> Tensor:
        s = s if weight is None else s * weight.view(shape)
        return centre_g(s.reshape(grouped) * inv_g).reshape(x.shape)

    return LinearMap(fn_g, adjoint_g)


def average_of_maxpool(node: Node) -> Callable[[Tensor], Tensor]:
    """The average pooling over the same windows as a recorded max pooling."""
    x = node.arg(0, "input")
    dims = x.ndim - 2
    if node.name.startswith("adaptive") or node.func in ADAPTIVE_MAXPOOLS:
        size = node.arg(1, "output_size")
        adaptive = getattr(F, f"adaptive_avg_pool{dims}d")
        return lambda v: adaptive(v, size)
    kernel = node.arg(1, "kernel_size")
    stride = node.arg(2, "stride", None) or kernel
    padding = node.arg(3, "padding", 0)
    dilation = node.arg(4, "dilation", 1)
    ceil_mode = node.arg(5, "ceil_mode", False)
    if any(d != 1 for d in _tuple(dilation, dims)):
        raise ArgumentError(
            "composite",
            f"the composite's average rule for max pooling needs dilation 1; {node.where()} "
            f"has dilation {dilation}. Use the winner-take-all rule (lrp.WinnerTakeAll)",
        )
    pool = getattr(F, f"avg_pool{dims}d")
    return lambda v: pool(v, kernel, stride, padding, ceil_mode, True)


def vjp_linear(fn: Callable[[Tensor], Tensor], at: Tensor, s: Tensor) -> Tensor:
    """The vector-Jacobian product ``(∂fn/∂x)ᵀ s`` at ``at`` (exact for linear ``fn``; a
    :class:`LinearMap`'s adjoint)."""
    if isinstance(fn, LinearMap):
        return fn.adjoint(s)
    with torch.enable_grad():
        v = at.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(fn(v), v, s)
    return grad
