"""What a recorded call is, by its function's name: the name sets that the op kinds of
:mod:`.kinds` are recognised by, and :func:`gate_signal` (which factor of a product is the
signal)."""

from __future__ import annotations

import torch.nn.functional as F

from .tape import Node

CONVOLUTIONS = {"conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                "conv_transpose3d"}
NORMS = {"layer_norm", "group_norm"}
ACTIVATIONS = {
    "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "leaky_relu", "leaky_relu_", "elu",
    "elu_", "selu", "selu_", "celu", "celu_", "gelu", "silu", "mish", "softplus", "tanh", "tanh_",
    "sigmoid", "sigmoid_", "hardsigmoid", "hardswish", "threshold", "threshold_", "prelu",
    "rrelu", "logsigmoid", "softsign", "tanhshrink", "clamp", "clamp_", "clamp_min", "clip",
}
#: activations after which the value acts as a gate when it multiplies a signal
GATES = {"sigmoid", "sigmoid_", "hardsigmoid", "softmax", "rsqrt", "reciprocal"}
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
SOFTMAXES = {"softmax", "_softmax"}
EXPS = {"exp", "exp_"}
#: gating functions that normalise the signal they multiply (RMSNorm's x · rsqrt(mean x²))
NORMALISERS = {"rsqrt", "reciprocal"}
#: the fused recurrent calls of nn.LSTM, nn.GRU and nn.RNN (see :mod:`.recurrent`)
RECURRENTS = {"lstm", "gru", "rnn_tanh", "rnn_relu"}
DROPOUTS = {"dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout"}
RESHAPES = {"view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "contiguous",
            "clone", "view_as", "reshape_as", "detach", "to", "type", "float", "double", "half",
            "bfloat16", "cpu", "cuda", *DROPOUTS, "feature_alpha_dropout", "identity"}
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


def tracked_positions(node: Node) -> list[int]:
    """The argument positions of a call that hold input-dependent tensors."""
    return [pos for pos, _, _ in node.inputs]


def gate_signal(node: Node) -> int | None:
    """The index (among the input-dependent inputs) of the signal of a gate × signal product,
    or None when the call is no such product.

    - a quotient by an input-dependent normaliser: the numerator;
    - ``F.scaled_dot_product_attention``: the values;
    - a product (element-wise or matrix) of two input-dependent tensors of which exactly one
      comes out of a gating function (:data:`GATES`, looking through reshapes and dropout):
      the other one.
    """
    positions = tracked_positions(node)
    if node.name in QUOTIENTS:
        return positions.index(0) if 0 in positions and len(positions) > 1 else None
    if node.name == "scaled_dot_product_attention":
        value = node.arg(2, "value")
        found = [i for i, pos in enumerate(positions) if node.leaves[pos] is value]
        return found[0] if found else None
    if (node.name not in PRODUCTS and node.name not in MATMULS) or len(positions) != 2:
        return None
    gates = [i for i, (_, source, _) in enumerate(node.inputs) if _origin(source).name in GATES]
    return 1 - gates[0] if len(gates) == 1 else None


def gate_name(node: Node) -> str | None:
    """The name of the gating function of a gate × signal product (``softmax``, ``sigmoid``,
    ``rsqrt``, ...), or None for a quotient, ``scaled_dot_product_attention`` or no gate."""
    signal = gate_signal(node)
    if signal is None or node.name in QUOTIENTS or node.name == "scaled_dot_product_attention":
        return None
    return _origin(node.inputs[1 - signal][1]).name


def _origin(node: Node) -> Node:
    """The producer of a value, looking through reshapes and dropout."""
    while node.name in RESHAPES and len(node.inputs) == 1:
        node = node.inputs[0][1]
    return node
