"""Canonicalisation by structure: from a recorded tape to ops with their rules.

- A BatchNorm whose input is the output of a convolution or linear layer that feeds nothing
  else is folded into that layer, ``w′ = w·a``, ``b′ = b·a + c`` with ``BN(z) = a·z + c``
  (a = γ/√(σ² + ε), c = β − μ·a); the layer's output becomes the BatchNorm's output and the
  BatchNorm passes messages through. A BatchNorm fed by anything else is a layer of its own
  (a per-channel scale and shift). Both are checked on the batch: ``a·z + c`` must reproduce
  the recorded BatchNorm output, otherwise an error names the BatchNorm.
- A product of two input-dependent tensors is a gate times a signal when exactly one factor
  comes out of a gating function (sigmoid, hard sigmoid, softmax, rsqrt, reciprocal); a
  quotient by an input-dependent tensor is a signal over a normaliser. Anything else is an
  ``other`` op without a relevance rule.
- Folded weights are cached per model, keyed on the parameters' identities and versions and
  the BatchNorm statistics, so a changed model is folded again.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from .composites import Composite, LayerInfo
from .ops import (
    GATES,
    QUOTIENTS,
    RESHAPES,
    Affine,
    batch_norm_coefficients,
    classify,
    conv_affine,
    linear_affine,
    linearised_norm,
    scale_affine,
    vjp_linear,
)
from .rules import Rule
from .tape import Node, Recorder

#: op kind -> the composite slot (and rule method) that handles it
SLOTS = {"activation": "activation", "linear": "linear", "norm": "norm", "maxpool": "maxpool",
         "gate": "gate", "other": "other"}
METHOD_OF_SLOT = {"norm": "linear"}


@dataclass(eq=False)
class Op:
    """A recorded call with what its rule needs (see :mod:`.rules`)."""

    node: Node
    kind: str
    label: str
    rule: Rule | None = None
    affine: Affine | None = None
    signal: int = 0
    baseline: Node | None = None
    output_messages: list[Tensor | None] = field(default_factory=list)

    @property
    def inputs(self) -> list[Tensor]:
        return self.node.input_values()

    @property
    def output(self) -> Tensor:
        return self.node.outputs[0]

    def vjp(self, messages: list[Tensor | None], only: int | None = None) -> list[Tensor | None]:
        """The op's own vector-Jacobian product for messages at its outputs.

        ``only``: the index of the one input to differentiate for (the others held constant,
        their messages None).
        """
        node = self.node
        values = node.input_values()
        if len(values) == 1 and len(messages) == 1 and messages[0] is not None:
            m, x = messages[0], values[0]
            if node.name in RESHAPES and m.numel() == x.numel():
                return [m.reshape(x.shape).to(x)]
            if node.name in ("relu", "relu_") and m.shape == x.shape:
                return [m * (node.outputs[0] > 0)]  # relu(x) > 0 exactly where x > 0
        with torch.enable_grad():
            leaves = {}
            wrt = []
            for i, (pos, _, _) in enumerate(node.inputs):
                v = node.leaves[pos].detach()
                if only is None or i == only:
                    v.requires_grad_(True)
                    wrt.append(v)
                leaves[pos] = v.clone() if node.inplace else v
            if node.inplace and 0 not in leaves and isinstance(node.leaves[0], Tensor):
                leaves[0] = node.leaves[0].clone()  # never write into the recorded value
            outs = node.rerun(leaves)
            pairs = [(o, m) for o, m in zip(outs, messages) if m is not None and o.requires_grad]
            if pairs:
                grads = torch.autograd.grad([o for o, _ in pairs], wrt, [m for _, m in pairs],
                                            allow_unused=True)
            else:
                grads = (None,) * len(wrt)
        full = [torch.zeros_like(v) if g is None else g for v, g in zip(wrt, grads)]
        if only is None:
            return full
        return [full[0] if i == only else None for i in range(len(node.inputs))]

    def linear_vjp(self, s: Tensor) -> list[Tensor]:
        """The vector-Jacobian product of the op's linear part (normaliser held constant)."""
        if self.kind == "norm":
            x = self.inputs[0]
            return [vjp_linear(linearised_norm(self.node), x, s)]
        return self.vjp([s])

    def rule_method(self) -> Callable[[Op, Tensor], list[Tensor]] | None:
        """The bound rule method for this op's kind, or None when there is none."""
        slot = "layer" if self.kind == "layer" else SLOTS.get(self.kind)
        if self.rule is None or slot is None:
            return None
        method = METHOD_OF_SLOT.get(slot, slot)
        return getattr(self.rule, method) if self.rule.handles(method) else None


def build_plan(recorder: Recorder, composite: Composite, model: nn.Module,
               baseline: list[Node] | None = None) -> list[Op]:
    """The ops of a recorded forward pass, canonicalised, each with its rule."""
    nodes = recorder.nodes
    kinds = [classify(n) for n in nodes]
    ops = [Op(n, k, _label(n, recorder)) for n, k in zip(nodes, kinds)]
    store = _DERIVED.setdefault(model, {})
    for op in ops:
        if op.kind == "layer":
            op.affine = conv_affine(op.node) if op.node.name != "linear" else linear_affine(op.node)
            op.affine.store = store
    for op in ops:
        if op.kind == "batch_norm":
            _canonicalise_batch_norm(op, ops, model)
        elif op.kind == "product":
            _canonicalise_product(op)
    _relabel_duplicates(ops)
    layers = [op for op in ops if op.kind == "layer" and op.affine.kind != "scale"]
    first = layers[0] if layers else None
    linears = [op for op in layers if op.affine.kind == "linear"]
    last_linear = linears[-1] if linears else None
    for op in ops:
        if op.kind == "layer":
            info = LayerInfo(op.label, _owner(op.node, recorder), op.affine.kind,
                             first=op is first, last_linear=op is last_linear)
            op.rule = composite.rule_for_layer(info)
        elif op.kind in SLOTS:
            op.rule = composite.rule_for(SLOTS[op.kind])
    if baseline is not None:
        _attach_baseline(ops, baseline)
    return ops


def _label(node: Node, recorder: Recorder) -> str:
    if node.func is None:
        return "input"
    weight = node.arg(1, "weight") if node.name in ("linear",) or "conv" in node.name else None
    owned = recorder.owner_of(weight) if weight is not None else None
    return owned[0] if owned is not None else (node.module or "<model>")


def _owner(node: Node, recorder: Recorder) -> nn.Module | None:
    weight = node.arg(1, "weight")
    owned = recorder.owner_of(weight) if isinstance(weight, Tensor) else None
    return owned[1] if owned is not None else node.owner


def _relabel_duplicates(ops: list[Op]) -> None:
    """Layers called more than once (reused modules) get '#2', '#3', ... labels."""
    seen: dict[str, int] = {}
    for op in ops:
        if op.kind in ("layer", "norm"):
            seen[op.label] = seen.get(op.label, 0) + 1
            if seen[op.label] > 1:
                op.label = f"{op.label}#{seen[op.label]}"


def _canonicalise_batch_norm(op: Op, ops: list[Op], model: nn.Module) -> None:
    node = op.node
    a, c = batch_norm_coefficients(node)
    x, y = node.arg(0, "input"), node.outputs[0]
    shape = (1, -1) + (1,) * (x.ndim - 2)
    # checked on the first sample: the op is F.batch_norm in eval mode, affine by definition
    expected = torch.addcmul(c.view(shape), x[:1], a.view(shape))
    if float((expected - y[:1]).abs().max()) > 1e-5 * (1.0 + float(y[:1].abs().max())):
        raise RuntimeError(
            f"the BatchNorm at {node.where()} does not compute a·x + c with its running "
            "statistics on this batch, so it cannot be folded; please report this model"
        )
    _, source, k = node.inputs[0]
    feeder = ops[source.index]
    foldable = (
        feeder.kind == "layer" and feeder.affine is not None and feeder.affine.out_dim == 0
        and source.uses[k] == 1 and len(node.inputs) == 1
        and feeder.affine.out.shape == y.shape
        and (feeder.affine.kind == "conv" or y.ndim == 2)  # BatchNorm's channels = out features
    )
    if foldable:
        weight, bias = _folded(model, feeder.affine, a, c)
        feeder.affine = replace(feeder.affine, weight=weight, bias=bias, out=y)
        op.kind = "pass"
    else:
        op.kind = "layer"
        op.affine = scale_affine(x, a, c, y)  # a is fresh each call: no store


_FOLD_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[Any, Any]] = weakref.WeakKeyDictionary()
_DERIVED: weakref.WeakKeyDictionary[nn.Module, dict[Any, Any]] = weakref.WeakKeyDictionary()


def _folded(model: nn.Module, aff: Affine, a: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """(w·a, b·a + c) for an affine layer followed by a BatchNorm, cached per model."""
    w, b = aff.weight, aff.bias
    cache = _FOLD_CACHE.setdefault(model, {})
    key = (id(w), id(b))
    stamp = (w._version, None if b is None else b._version)
    hit = cache.get(key)
    if hit is not None and hit[0] == stamp and torch.equal(hit[1], a) and torch.equal(hit[2], c):
        return hit[3], hit[4]
    shape = (-1,) + (1,) * (w.ndim - 1)
    weight = (w * a.view(shape)).detach()
    bias = (c if b is None else b * a + c).detach()
    cache[key] = (stamp, a, c, weight, bias)
    return weight, bias


def _canonicalise_product(op: Op) -> None:
    """Gate × signal, signal / normaliser, attention weights × values; else ``other``."""
    node = op.node
    positions = [pos for pos, _, _ in node.inputs]
    if node.name in QUOTIENTS:
        op.kind, op.signal = "gate", positions.index(0)
        return
    if node.name == "scaled_dot_product_attention":
        value = node.arg(2, "value")
        found = [i for i, pos in enumerate(positions) if node.leaves[pos] is value]
        if found:
            op.kind, op.signal = "gate", found[0]
        else:
            op.kind = "other"
        return
    gates = [i for i, (_, source, _) in enumerate(node.inputs) if _origin(source).name in GATES]
    if len(node.inputs) == 2 and len(gates) == 1:
        op.kind, op.signal = "gate", 1 - gates[0]
    else:
        op.kind = "other"


def _origin(node: Node) -> Node:
    """The producer of a value, looking through reshapes and dropout."""
    while node.name in RESHAPES and len(node.inputs) == 1:
        node = node.inputs[0][1]
    return node


def _attach_baseline(ops: list[Op], baseline: list[Node]) -> None:
    names = [op.node.name for op in ops]
    if names != [n.name for n in baseline]:
        raise RuntimeError(
            "the model runs different operations on the baseline than on the input "
            f"({len(baseline)} vs {len(ops)} recorded calls), so DeepLIFT cannot pair them; "
            "choose a baseline that takes the same path through the model"
        )
    for op, node in zip(ops, baseline):
        op.baseline = node
