"""Canonicalisation by structure: from a recorded tape to ops, each with its rule.

- A BatchNorm whose input is the output of a convolution or linear layer that feeds nothing
  else is folded into that layer, ``w′ = w·a``, ``b′ = b·a + c`` with ``BN(z) = a·z + c``
  (a = γ/√(σ² + ε), c = β − μ·a); the layer's output becomes the BatchNorm's output and the
  BatchNorm passes messages through. A BatchNorm fed by anything else is a layer of its own
  (a per-channel scale and shift). Both are checked on the first batch they see (for each
  version of the BatchNorm's parameters): ``a·z + c`` must reproduce the recorded BatchNorm
  output, otherwise an error names the BatchNorm.
- Every other call has the kind that the registry :data:`.kinds.KINDS` recognises, and the
  rule the composite gives that kind (by kind name; layers by their selectors).
- Folded weights are kept in a :class:`~.weight_cache.WeightCache`, derived again when a
  parameter of the layer or of the BatchNorm changes.
- What structure says about values is put on the ops, so that rules need not look at the
  values (a host synchronisation per layer): whether a layer's input is ≥ 0
  (:func:`.calls.nonnegative_outputs`) and whether its output feeds only a ReLU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from ..checks import check_now_or_deferred
from ..errors import ArgumentError
from .calls import SUMS, nonnegative_outputs
from .composites import Composite, LayerInfo
from .kinds import BATCH_NORM, KINDS, PASS, classify
from .linear_maps import (
    Affine,
    addmm_affine,
    batch_norm_coefficients,
    batch_norm_parameters,
    conv_affine,
    linear_affine,
    scale_affine,
)
from .op import Assumptions, Op
from .recurrent import DEFAULT_LAYER, Recurrent
from .rules import Rule
from .tape import Node, Recorder
from .weight_cache import WeightCache


@dataclass
class Plan:
    """The ops of one recorded forward pass, canonicalised, in execution order, and the rule
    that the composite gives each op of a kind that rules handle (None where it gives none)."""

    ops: list[Op]
    rules: dict[Op, Rule | None]
    #: what the rules' shortcuts assumed, checked at the end of the walk (shared by every op)
    assumptions: Assumptions

    def rule_method(self, op: Op) -> Callable[[Op, Any], list[Tensor | None]] | None:
        """The bound handler of ``op``'s rule for its kind, or None when there is none."""
        rule = self.rules.get(op)
        kind = KINDS.get(op.kind)
        if rule is None or kind is None or kind.handler is None or not rule.handles(kind.handler):
            return None
        return getattr(rule, kind.handler)


def build_plan(recorder: Recorder, composite: Composite, model: nn.Module, *,
               weights: WeightCache, baseline: list[Node] | None = None) -> Plan:
    """The ops of a recorded forward pass, canonicalised, each with its rule.

    ``weights`` keeps folded and rule-modified weights for ``model``; ``baseline``: the
    calls recorded on DeepLIFT's baseline input, paired with the ops one to one.
    """
    nodes = recorder.nodes
    kinds = [classify(n) for n in nodes]
    assumptions = Assumptions()
    ops = [Op(n, k, _label(n, recorder), assumptions=assumptions) for n, k in zip(nodes, kinds)]
    nonnegative = nonnegative_outputs(nodes)
    for op in ops:
        if op.kind == "layer":
            make = {"linear": linear_affine, "addmm": addmm_affine}.get(op.node.name, conv_affine)
            op.affine = make(op.node)
            op.affine.cache = (weights, model)
            op.affine.x_nonnegative = op.node.inputs[0][1].index in nonnegative
        elif op.kind in KINDS:
            op.linearise = KINDS[op.kind].linearise
            if op.kind == "linear" and op.node.name in SUMS:
                op.constant = _constant_added(op.node, recorder)
    outputs = {op.node.index: op.node for op in ops}  # the node whose output is the op's
    for op in ops:
        if op.kind == BATCH_NORM:
            feeder = _canonicalise_batch_norm(op, ops, model, weights, nonnegative,
                                              recorder.computed_in)
            if feeder is not None:
                outputs[feeder.node.index] = op.node
    _mark_relu_fed(ops, outputs)
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
        elif op.kind in KINDS and KINDS[op.kind].handler is not None:
            rules[op] = composite.rule_for(op.kind)
            if op.kind == "recurrent" and isinstance(rules[op], Recurrent):
                rules[op] = _recurrent_rule(op, rules[op], composite, recorder)
    if baseline is not None:
        _attach_baseline(ops, baseline)
    return Plan(ops, rules, assumptions)


def _mark_relu_fed(ops: list[Op], outputs: dict[int, Node]) -> None:
    """Mark the layers whose output (a folded BatchNorm's, if any) feeds only a ReLU."""
    consumers: dict[int, list[Node]] = {}
    for op in ops:
        for _, producer, k in op.node.inputs:
            if k == 0:
                consumers.setdefault(producer.index, []).append(op.node)
    for op in ops:
        if op.kind == "layer":
            fed = consumers.get(outputs[op.node.index].index, [])
            op.relu_fed = len(fed) == 1 and fed[0].name in ("relu", "relu_")


def _recurrent_rule(op: Op, rule: Recurrent, composite: Composite, recorder: Recorder
                    ) -> Recurrent:
    """``rule`` with the composite's rule for the layer in its linear maps, unless ``rule``
    names its own: the layer is selected like a linear layer (by name, module class,
    ``LINEAR``, then ``default``; never ``FIRST`` / ``LAST_LINEAR``)."""
    if rule.layer is not None:
        return rule
    info = LayerInfo(op.label, _owner(op.node, recorder), "linear")
    layer = composite.rule_for_layer(info)
    if layer is None:
        return replace(rule, layer=DEFAULT_LAYER)
    if not layer.handles("layer"):
        raise ArgumentError(
            "composite",
            f"the composite assigns {layer!r} to the model's {op.node.where()}, whose linear "
            "maps need a rule for linear layers; in composite, assign a layer rule there "
            "(e.g. Epsilon(1e-6)) or ops={'recurrent': Recurrent(layer=Epsilon(1e-6))}",
        )
    return replace(rule, layer=layer)


def _constant_added(node: Node, recorder: Recorder) -> str | None:
    """The name of the module (or parameter) whose input-independent output a sum adds to the
    signal (see :meth:`.tape.Recorder.constant_name`), if exactly one."""
    tracked = {pos for pos, _, _ in node.inputs}
    names = [recorder.constant_name(leaf) for pos, leaf in enumerate(node.leaves)
             if pos not in tracked and isinstance(leaf, Tensor)]
    names = [name for name in names if name is not None]
    return names[0] if len(names) == 1 else None


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
        if op.kind in KINDS and KINDS[op.kind].reported:
            seen[op.label] = seen.get(op.label, 0) + 1
            if seen[op.label] > 1:
                op.label = f"{op.label}#{seen[op.label]}"


def _canonicalise_batch_norm(op: Op, ops: list[Op], model: nn.Module, weights: WeightCache,
                             nonnegative: set[int], computed_in: torch.dtype | None
                             ) -> Op | None:
    """Fold the BatchNorm ``op`` into the layer that feeds it (returned), or make it a layer
    of its own (None returned). ``computed_in``: the model's half-precision dtype, when the
    tape was widened to float32."""
    node = op.node
    x, y = node.arg(0, "input"), node.outputs[0]

    def coefficients() -> tuple[Tensor, ...]:
        """(a, c), whether a·x + c misses the recorded output (on the first sample in
        float32, with a tolerance that follows the model's precision: the op is
        F.batch_norm in eval mode, affine by definition, so one check per BatchNorm and
        parameter version suffices; its failure raises on every call), and the running
        statistics they were derived from."""
        a, c = batch_norm_coefficients(node)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        expected = torch.addcmul(c.view(shape).float(), x[:1].float(), a.view(shape).float())
        tolerance = max(1e-5, 16 * torch.finfo(computed_in or y.dtype).eps)
        scale = 1.0 + y[:1].abs().max()
        failed = (expected - y[:1].float()).abs().max() > tolerance * scale
        mean, var = batch_norm_parameters(node)[:2]
        return a, c, failed, mean.clone(), var.clone()

    what = ("batch_norm coefficients", node.arg(5, "training", False), node.arg(7, "eps", 1e-5),
            computed_in)
    a, c, failed, mean, var = weights.derived(model, what, batch_norm_parameters(node),
                                              coefficients)
    check_now_or_deferred(("batch norm folds", node.index), failed, lambda: RuntimeError(
        f"the BatchNorm at {node.where()} does not compute a·x + c with its running "
        "statistics, so it cannot be folded; please report this model"))
    # BatchNorm's kernel updates its running statistics in train mode without bumping their
    # version counters: confirm that the cached fold saw the statistics of this call
    now_mean, now_var = batch_norm_parameters(node)[:2]
    op.assumptions.add((now_mean != mean).any() | (now_var != var).any())
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
        op.kind = PASS
        source.replace_output(k, y)  # the layer's output is now y: the tape drops z
        node.replace_leaf(0, y)
        return feeder
    op.kind = "layer"
    op.affine = scale_affine(x, a, c, y)  # a is new on every call: nothing to cache
    op.affine.x_nonnegative = source.index in nonnegative
    return None


def _folded(aff: Affine, a: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """(w·a, b·a + c): an affine layer followed by the BatchNorm ``a·z + c``, as one layer."""
    w, b = aff.weight, aff.bias
    shape = (-1,) + (1,) * (w.ndim - 1)
    weight = (w * a.view(shape)).detach()
    bias = (c if b is None else b * a + c).detach()
    return weight, bias


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
        if op.kind in _PAIRED:
            op.baseline = node
        else:
            node.release()  # only activations and max poolings compare with the baseline


#: the kinds whose DeepLIFT rules read the baseline's values (Rescale, SplitDifference)
_PAIRED = ("activation", "maxpool")
