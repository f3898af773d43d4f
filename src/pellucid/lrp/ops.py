"""What a recorded call is, by structure: op kinds, affine layers and linearised normalisers.

Kinds (the keys a composite assigns rules to):

- ``layer``: a convolution of any dimension (also transposed) or ``F.linear``, with weights;
  a BatchNorm that no such layer feeds is a ``layer`` too (a per-channel scale and shift).
- ``norm``: ``F.layer_norm`` and ``F.group_norm``, linearised with the normaliser constant.
- ``activation``: element-wise non-linearities (ReLU family, GELU, SiLU, ELU, tanh, ...).
- ``maxpool``: max pooling of any dimension, adaptive or not.
- ``linear``: parameter-free linear ops: sums of input-dependent tensors (``+``, ``+=``,
  ``torch.add``, ``sum``, ``-``), means, average pooling, interpolation, and products or
  quotients with a constant (e.g. layer scale) or matrix products with a constant matrix.
- ``gate``: an element-wise product of a gate and a signal, a quotient by an
  input-dependent normaliser, attention weights times values (``softmax(q kᵀ) @ v``,
  ``F.scaled_dot_product_attention``), resolved in :mod:`.canonical`.
- ``shape``: cat, split, reshape, flatten, permute, indexing, padding, dropout in eval mode:
  relevance (or gradient) goes back by the op's own vector-Jacobian product.
- ``other``: everything else; an error names it if relevance reaches it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .tape import Node

CONV = {"conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"}
ACTIVATIONS = {
    "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "leaky_relu", "leaky_relu_", "elu",
    "elu_", "selu", "selu_", "celu", "celu_", "gelu", "silu", "mish", "softplus", "tanh", "tanh_",
    "sigmoid", "sigmoid_", "hardsigmoid", "hardswish", "threshold", "threshold_", "prelu",
    "rrelu", "logsigmoid", "softsign", "tanhshrink", "clamp", "clamp_", "clamp_min", "clip",
}
#: activations after which the value acts as a gate when it multiplies a signal
GATES = {"sigmoid", "sigmoid_", "hardsigmoid", "softmax", "rsqrt", "reciprocal"}
RECTIFIERS = {"relu", "relu_", "relu6", "hardtanh", "hardtanh_", "leaky_relu", "leaky_relu_",
              "threshold", "threshold_", "rrelu"}
MAXPOOLS = {"max_pool1d", "max_pool2d", "max_pool3d", "adaptive_max_pool1d",
            "adaptive_max_pool2d", "adaptive_max_pool3d", "max_pool1d_with_indices",
            "max_pool2d_with_indices", "max_pool3d_with_indices", "max", "amax"}
SUMS = {"add", "add_", "__add__", "__radd__", "__iadd__", "sub", "sub_", "__sub__", "__rsub__",
        "rsub", "__isub__", "subtract", "neg", "__neg__", "negative", "sum", "mean", "avg_pool1d",
        "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
        "adaptive_avg_pool3d", "interpolate", "upsample", "upsample_nearest",
        "upsample_bilinear", "cumsum", "trace"}
PRODUCTS = {"mul", "mul_", "__mul__", "__rmul__", "__imul__", "multiply"}
QUOTIENTS = {"div", "div_", "__truediv__", "__itruediv__", "__div__", "true_divide", "divide"}
MATMULS = {"matmul", "__matmul__", "__rmatmul__", "mm", "bmm", "einsum", "tensordot", "mv"}
RESHAPES = {"view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "contiguous",
            "clone", "view_as", "reshape_as", "detach", "to", "type", "float", "double",
            "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
            "feature_alpha_dropout", "identity"}
SHAPES = RESHAPES | {
    "permute", "transpose", "t", "T", "mT", "swapaxes", "swapdims", "movedim", "moveaxis",
    "expand", "expand_as", "broadcast_to", "repeat", "tile", "repeat_interleave", "cat", "concat",
    "concatenate", "stack", "hstack", "vstack", "split", "split_with_sizes", "chunk", "unbind",
    "tensor_split", "__getitem__", "narrow", "select", "index_select", "gather", "flip", "roll",
    "pad", "unfold", "pixel_shuffle", "pixel_unshuffle", "channel_shuffle", "masked_select",
    "where", "masked_fill",
}

ADAPTIVE_MAXPOOLS = (F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d)
MAXPOOL_FUNCS = (F.max_pool1d, F.max_pool2d, F.max_pool3d, *ADAPTIVE_MAXPOOLS)


def classify(node: Node) -> str:
    """The op kind of a recorded call (products are refined in :mod:`.canonical`)."""
    name = node.name
    if node.func is None:
        return "input"
    if name in CONV or name == "linear":
        # a layer whose weights depend on the input (dynamic filters) has no layer rule
        return "layer" if [pos for pos, _, _ in node.inputs] == [0] else "other"
    if name == "batch_norm":
        return "batch_norm"
    if name in ("layer_norm", "group_norm"):
        return "norm"
    if name in ACTIVATIONS:
        return "activation"
    if name in MAXPOOLS or node.func in MAXPOOL_FUNCS:
        return "maxpool"
    if name in ("dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout") and bool(
        node.arg(2, "training", True)
    ):
        return "other"  # random masks: the model is in train mode
    if name in SHAPES:
        return "shape"
    if name in SUMS:
        return "linear"
    if name == "scaled_dot_product_attention":
        return "product"
    if name in PRODUCTS or name in MATMULS:
        return "linear" if len(node.inputs) == 1 else "product"
    if name in QUOTIENTS:
        denominator_tracked = any(pos != 0 for pos, _, _ in node.inputs)
        if not denominator_tracked:
            return "linear"
        return "product" if any(pos == 0 for pos, _, _ in node.inputs) else "other"
    return "other"


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
    #: a per-model store for weights derived by rules (w⁺, w⁻, w², ...), see ``derived``
    store: dict | None = None

    def derived(self, tag: str, make: Callable[[Tensor], Tensor]) -> Tensor:
        """``make(weight)``, cached per model while the weight keeps its identity and version."""
        if self.store is None:
            return make(self.weight)
        key = (id(self.weight), tag)
        hit = self.store.get(key)
        if hit is not None and hit[0] is self.weight and hit[1] == self.weight._version:
            return hit[2]
        value = make(self.weight).detach()
        self.store[key] = (self.weight, self.weight._version, value)
        return value


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


def scale_affine(x: Tensor, scale: Tensor, shift: Tensor, out: Tensor) -> Affine:
    """A per-channel scale and shift ``z = scale·x + shift`` (channels on dimension 1)."""
    shape = (-1,) + (1,) * (x.ndim - 2)

    def forward(v: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        z = v * w.view(shape)
        return z if b is None else z + b.view(shape)

    return Affine("scale", x, scale, shift, out, forward, lambda s, w: s * w.view(shape))


def batch_norm_coefficients(node: Node) -> tuple[Tensor, Tensor]:
    """(a, c) with ``batch_norm(x) = a·x + c`` per channel, for a BatchNorm in eval mode."""
    mean, var = node.arg(1, "running_mean"), node.arg(2, "running_var")
    weight, bias = node.arg(3, "weight"), node.arg(4, "bias")
    training, eps = node.arg(5, "training", False), node.arg(7, "eps", 1e-5)
    if training or mean is None or var is None:
        raise ValueError(
            f"the BatchNorm at {node.where()} normalises with batch statistics (train mode "
            "or track_running_stats=False), so it is not a fixed affine map; call model.eval()"
        )
    a = torch.rsqrt(var + eps)
    if weight is not None:
        a = a * weight
    c = -mean * a
    if bias is not None:
        c = c + bias
    return a.detach(), c.detach()


def linearised_norm(node: Node) -> Callable[[Tensor], Tensor]:
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

        inv = torch.rsqrt(centre(x).square().mean(dims, keepdim=True) + eps).detach()

        def fn(v: Tensor) -> Tensor:
            y = centre(v) * inv
            return y if weight is None else y * weight

        return fn
    groups, weight, eps = node.arg(1, "num_groups"), node.arg(2, "weight"), node.arg(4, "eps", 1e-5)
    grouped = (x.shape[0], groups, -1)
    shape = (-1,) + (1,) * (x.ndim - 2)

    def centre_g(v: Tensor) -> Tensor:
        g = v.reshape(grouped)
        return g - g.mean(-1, keepdim=True)

    inv_g = torch.rsqrt(centre_g(x).square().mean(-1, keepdim=True) + eps).detach()

    def fn_g(v: Tensor) -> Tensor:
        y = (centre_g(v) * inv_g).reshape(v.shape)
        return y if weight is None else y * weight.view(shape)

    return fn_g


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
        raise NotImplementedError(
            f"the average rule for max pooling needs dilation 1; {node.where()} has "
            f"dilation {dilation}. Use the winner-take-all rule"
        )
    pool = getattr(F, f"avg_pool{dims}d")
    return lambda v: pool(v, kernel, stride, padding, ceil_mode, True)


def vjp_linear(fn: Callable[[Tensor], Tensor], at: Tensor, s: Tensor) -> Tensor:
    """The vector-Jacobian product ``(∂fn/∂x)ᵀ s`` at ``at`` (exact for linear ``fn``)."""
    with torch.enable_grad():
        v = at.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(fn(v), v, s)
    return grad
