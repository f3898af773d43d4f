"""What a recorded call is, by its function's name: the name sets that the op kinds of
:mod:`.kinds` are recognised by, :func:`gate_signal` (which factor of a product is the
signal) and :func:`activated_factor` (which factor of a product of two signals is a gate for
CP-LRP)."""

from __future__ import annotations

import torch

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

#: element-wise ops that are not linear in their signal: a factor computed through one of them
#: from the other factor's source is a gate of it (see :func:`self_gate`)
NONLINEAR = ACTIVATIONS | EXPS | {"pow", "__pow__", "square", "sqrt", "rsqrt", "reciprocal",
                                  "erf", "erfc"}
#: element-wise ops through which :func:`self_gate` follows a factor back to its sources
ELEMENT_WISE = NONLINEAR | PRODUCTS | QUOTIENTS | {
    "add", "add_", "__add__", "__radd__", "__iadd__", "sub", "sub_", "__sub__", "__rsub__",
    "rsub", "__isub__", "subtract", "neg", "__neg__", "negative"}



#: calls whose outputs are ≥ 0 whatever their inputs
NONNEGATIVE = {"relu", "relu_", "relu6", "sigmoid", "sigmoid_", "hardsigmoid", "softplus",
               *SOFTMAXES, *EXPS, "abs", "abs_", "square"}
#: calls whose outputs are ≥ 0 when all their floating-point inputs are
_KEEP_NONNEGATIVE = (SHAPES - {"alpha_dropout", "feature_alpha_dropout"}) | MAXPOOLS | {
    "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
    "adaptive_avg_pool3d", "mean", "sum"}
_CLAMPS = {"clamp", "clamp_", "clamp_min", "clamp_min_", "clip"}


def nonnegative_outputs(nodes: list[Node]) -> set[int]:
    """The indices of the recorded calls whose outputs are ≥ 0 by the structure of the model
    (a ReLU, a clamp at min ≥ 0, a sigmoid, ..., and what pools, reshapes or selects only
    such outputs), whatever the input; rules then skip terms of negative inputs without
    looking at the values (which would cost a host synchronisation per layer).

    >>> from pellucid.lrp.tape import record
    >>> recorder, _ = record(torch.nn.Identity(), lambda x: x.relu().flatten() * 2, torch.ones(2))
    >>> sorted(nonnegative_outputs(recorder.nodes))  # the input and the product may be < 0
    [1, 2]
    """
    found: set[int] = set()
    for node in nodes:
        if node.func is None:
            continue
        if node.name in NONNEGATIVE or (
                node.name in _CLAMPS and isinstance(low := node.arg(1, "min"), (int, float))
                and low >= 0):
            found.add(node.index)
        elif node.name in _KEEP_NONNEGATIVE:
            tracked = {pos for pos, _, _ in node.inputs}
            floating = [pos for pos, leaf in enumerate(node.leaves)
                        if isinstance(leaf, torch.Tensor) and leaf.is_floating_point()]
            if set(floating) <= tracked and all(p.index in found for _, p, _ in node.inputs):
                found.add(node.index)
    return found


def tracked_positions(node: Node) -> list[int]:
    """The argument positions of a call that hold input-dependent tensors."""
    return [pos for pos, _, _ in node.inputs]


def gate_signal(node: Node) -> int | None:
    """The index (among the input-dependent inputs) of the signal of a gate × signal product,
    or None when the call is no such product.

    - a quotient by an input-dependent normaliser: the numerator;
    - a product (element-wise or matrix) of two input-dependent tensors of which exactly one
      comes out of a gating function (:data:`GATES`, looking through reshapes and dropout):
      the other one;
    - an element-wise product v · g(v) of a signal and a non-linear function of it
      (:func:`self_gate`): v.
    """
    positions = tracked_positions(node)
    if node.name in QUOTIENTS:
        return positions.index(0) if 0 in positions and len(positions) > 1 else None
    if (node.name not in PRODUCTS and node.name not in MATMULS) or len(positions) != 2:
        return None
    gates = [i for i, (_, source, _) in enumerate(node.inputs) if _origin(source).name in GATES]
    if len(gates) == 1:
        return 1 - gates[0]
    return self_gate(node)


def self_gate(node: Node) -> int | None:
    """The index of the signal v of an element-wise product v · g(v) whose other factor is
    an element-wise non-linear function of the same tensor (a scaling of it): GELU written
    out, ``0.5 * x * (1 + tanh(c (x + 0.044715 x³)))`` (GPT-2's ``gelu_new``), SiLU as
    ``x * sigmoid(x)``. Such a product is an element-wise activation of v, and the rules
    hold g constant (the identity rule of AttnLRP). None for any other call."""
    if node.name not in PRODUCTS or len(node.inputs) != 2:
        return None
    for gate in (0, 1):
        _, source, k = node.inputs[1 - gate]
        signal = _scaled_source(source, k)
        sources, nonlinear = _element_wise_sources(node.inputs[gate][1], node.inputs[gate][2])
        if nonlinear and sources == {signal}:
            return 1 - gate
    return None


def _scaled_source(node: Node, k: int) -> tuple[int, int]:
    """(node index, output) of the tensor that a value scales (through products or quotients
    with constants, negation, reshapes)."""
    while len(node.inputs) == 1 and node.name in (PRODUCTS | QUOTIENTS | RESHAPES
                                                   | {"neg", "__neg__", "negative"}):
        _, node, k = node.inputs[0]
    return node.index, k


def _element_wise_sources(node: Node, k: int) -> tuple[set[tuple[int, int]], bool]:
    """The tensors a value is computed from by element-wise ops (and reshapes), and whether
    one of those ops is non-linear (:data:`NONLINEAR`, or a product of two of them)."""
    sources: set[tuple[int, int]] = set()
    nonlinear = False
    stack, seen = [(node, k)], set()
    while stack:
        node, k = stack.pop()
        if (node.index, k) in seen:
            continue
        seen.add((node.index, k))
        if node.func is None or node.name not in ELEMENT_WISE | RESHAPES:
            sources.add((node.index, k))
            continue
        nonlinear = nonlinear or node.name in NONLINEAR or (
            node.name in PRODUCTS | QUOTIENTS and len(node.inputs) == 2)
        stack.extend((source, j) for _, source, j in node.inputs)
    return sources, nonlinear


def gate_name(node: Node) -> str | None:
    """The name of the gating function of a gate × signal product (``softmax``, ``sigmoid``,
    ``rsqrt``, ...), or None for a quotient or no gate."""
    signal = gate_signal(node)
    if signal is None or node.name in QUOTIENTS:
        return None
    return _origin(node.inputs[1 - signal][1]).name


def is_signal_product(node: Node) -> bool:
    """Whether the call is a product of input-dependent tensors that is no gate × signal
    product: a matrix product (``q @ kᵀ``) or an element-wise one (SwiGLU's
    ``silu(gate(x)) * up(x)``, ``h * h``)."""
    if node.name in MATMULS:
        return len(node.inputs) >= 2
    return node.name in PRODUCTS and len(node.inputs) == 2


def activated_factor(node: Node) -> int | None:
    """The index (among the two input-dependent inputs) of the factor of a product that comes
    out of an element-wise activation (SwiGLU's ``silu(gate(x))``, looking through reshapes
    and dropout), when exactly one does; None otherwise."""
    if node.name not in PRODUCTS or len(node.inputs) != 2:
        return None
    found = [i for i, (_, source, _) in enumerate(node.inputs)
             if _origin(source).name in ACTIVATIONS]
    return found[0] if len(found) == 1 else None


def _origin(node: Node) -> Node:
    """The producer of a value, looking through reshapes and dropout."""
    while node.name in RESHAPES and len(node.inputs) == 1:
        node = node.inputs[0][1]
    return node
