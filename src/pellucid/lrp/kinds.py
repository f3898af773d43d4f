"""Op kinds: what a recorded call is, recognised by its function's name and its arguments.

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
  ``F.scaled_dot_product_attention``), resolved from ``product`` in :mod:`.canonical`.
- ``shape``: cat, split, reshape, flatten, permute, indexing, padding, dropout in eval mode:
  relevance (or gradient) goes back by the op's own vector-Jacobian product.
- ``other``: everything else; an error names it if relevance reaches it.

:func:`classify` also returns the kinds that :mod:`.canonical` resolves further:
``batch_norm`` (folded into the layer that feeds it, then ``pass``, or a ``layer`` of its own),
``product`` (``gate`` or ``other``), and ``input`` for the root of the tape.
"""

from __future__ import annotations

import torch.nn.functional as F

from .tape import Node

CONVOLUTIONS = {"conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                "conv_transpose3d"}
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
RESHAPES = {"view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "contiguous",
            "clone", "view_as", "reshape_as", "detach", "to", "type", "float", "double", "half",
            "bfloat16", "cpu", "cuda",
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

#: the kinds a rule handles, each with the name of the rule method that handles it (a
#: normalisation is linear once its normaliser is held constant); a composite names the rule
#: of every kind but ``layer`` in the slot of the same name
RULE_METHOD_OF_KIND = {
    "layer": "layer", "linear": "linear", "norm": "linear", "activation": "activation",
    "maxpool": "maxpool", "gate": "gate", "other": "other",
}


def classify(node: Node) -> str:
    """The op kind of a recorded call (products are refined in :mod:`.canonical`)."""
    name = node.name
    if node.func is None:
        return "input"
    if name in CONVOLUTIONS or name == "linear":
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
