"""Canonicalisation by structure: from a recorded tape to ops, each with its rule.

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
- Folded weights are kept in a :class:`~.weight_cache.WeightCache`, derived again when a
  parameter of the layer or of the BatchNorm changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from ..errors import ArgumentError
from .composites import Composite, LayerInfo
from .kinds import GATES, QUOTIENTS, RESHAPES, RULE_METHOD_OF_KIND, classify
from .linear_maps import (
    Affine,
    batch_norm_coefficients,
    batch_norm_parameters,
    conv_affine,
    linear_affine,
    scale_affine,
)
from .op import Op
from .rules import Rule
from .tape import Node, Recorder
from .weight_cache import WeightCache


@dataclass
class Plan:
    """The ops of one recorded forward pass, canonicalised, in execution order, and the rule
    that the composite gives each op of a kind that rules handle (None where it gives none)."""

    ops: list[Op]
    rules: dict[Op, Rule | None]

    def rule_method(self, op: Op) -> Callable[[Op, Tensor], list[Tensor]] | None:
        """The bound method of ``op``'s rule that handles its kind, or None when there is none."""
        rule = self.rules.get(op)
        method = RULE_METHOD_OF_KIND.get(op.kind)
        if rule is None or method is None or not rule.handles(method):
            return None
        return getattr(rule, method)


def build_plan(recorder: Recorder, composite: Composite, model: nn.Module, *,
               weights: WeightCache, baseline: list[Node] | None = None) -> Plan:
    """The ops of a recorded forward pass, canonicalised, each with its rule.

    ``weights`` keeps folded and rule-modified weights for ``model``; ``baseline``: the
    calls recorded on DeepLIFT's baseline input, paired with the ops one to one.
    """
    nodes = recorder.nodes
    kinds = [classify(n) for n in nodes]
    ops = [Op(n, k, _label(n, recorder)) for n, k in zip(nodes, kinds)]
    for op in ops:
        if op.kind == "layer":
            op.affine = conv_affine(op.node) if op.node.name != "linear" else linear_affine(op.node)
            op.affine.cache = (weights, model)
    for op in ops:
        if op.kind == "batch_norm":
            _canonicalise_batch_norm(op, ops, model, weights)
        elif op.kind == "product":
            _canonicalise_product(op)
    _relabel_duplicates(ops)
    layers = [op for op in ops if op.kind == "layer" and op.affine.kind != "scale"]
    first = layers[0] if layers else None
    linears = [op for op in layers if op.affine.kind == "linear"]
    last_linear = linears[-1] if linears else None
    rules: dict[Op, Rule | None] = {}
    for op in ops:
        if op.kind == "layer":
            info = LayerInfo(op.label, _owner(op.node, recorder), op.affine.kind,
                             first=op is first, last_linear=op is last_linear)
            rules[op] = composite.rule_for_layer(info)
        elif op.kind in RULE_METHOD_OF_KIND:
            rules[op] = composite.rule_for(op.kind)
    if baseline is not None:
        _attach_baseline(ops, baseline)
    return Plan(ops, rules)


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


def _canonicalise_batch_norm(op: Op, ops: list[Op], model: nn.Module,
                             weights: WeightCache) -> None:
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
        sources = (feeder.affine.weight, feeder.affine.bias, *batch_norm_parameters(node))
        what = ("batch_norm folded", node.arg(7, "eps", 1e-5))
        weight, bias = weights.derived(model, what, sources, lambda: _folded(feeder.affine, a, c))
        feeder.affine = replace(feeder.affine, weight=weight, bias=bias, out=y)
        op.kind = "pass"
    else:
        op.kind = "layer"
        op.affine = scale_affine(x, a, c, y)  # a is new on every call: nothing to cache


def _folded(aff: Affine, a: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """(w·a, b·a + c): an affine layer followed by the BatchNorm ``a·z + c``, as one layer."""
    w, b = aff.weight, aff.bias
    shape = (-1,) + (1,) * (w.ndim - 1)
    weight = (w * a.view(shape)).detach()
    bias = (c if b is None else b * a + c).detach()
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
        raise ArgumentError(
            "baseline",
            "the model runs different operations on the baseline than on the input "
            f"({len(baseline)} vs {len(ops)} recorded calls), so DeepLIFT cannot pair them; "
            "choose a baseline that takes the same path through the model",
        )
    for op, node in zip(ops, baseline):
        op.baseline = node
