"""The one backward walk shared by LRP, Deep Taylor, guided backprop, deconvnet, DeepLIFT and
excitation backprop.

1. Record the forward pass (:mod:`.tape`); the output is the model's own, computed by its own
   operations, so nothing on the side can make it differ.
2. Canonicalise the tape and give every op its rule (:mod:`.canonical`).
3. Walk the tape backwards from the explained output, handing each op the message at its
   outputs and adding the messages it returns at its inputs (fan-out sums).

The starting message is ``output ⊙ ∂score/∂output`` for relevance (exact for a class
target or any score linear in the output), ``∂score/∂output`` for gradient-type methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..task import Task
from .canonical import Op, build_plan
from .composites import Composite
from .tape import Node, Recorder, record

STARTS = ("relevance", "gradient")


@dataclass
class Walk:
    """The result of one backward walk."""

    input_message: Tensor
    layer_relevance: dict[str, Tensor]
    output: Tensor
    baseline_output: Tensor | None = None


def run(task: Task, x: Tensor, composite: Composite, *, start: str = "relevance",
        baseline: Tensor | None = None) -> Walk:
    """Record ``task``'s forward pass at ``x`` and walk it back with ``composite``.

    The call's first forward pass is reused when it was recorded at ``x``
    (see :meth:`_RuleMethod.first_pass`).
    """
    first = task.first_forward_at(x)
    if first is not None and isinstance(first.state, Recorder):
        recorder, out = first.state, first.output
    else:
        recorder, out = record(task.model, task.output, x)
    source = recorder.source_of(out)
    if source is None:
        raise ValueError(
            "the explained output does not depend on the input through torch operations that "
            "pellucid can see; check output= and that the model uses its input"
        )
    with torch.enable_grad():
        leaf = out.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(task.target.score(leaf).sum(), leaf)
    if start not in STARTS:
        raise ValueError(f"start must be one of {STARTS}, got {start!r}")
    message = out * grad if start == "relevance" else grad
    baseline_nodes, baseline_out = None, None
    if baseline is not None:
        baseline_recorder, baseline_out = record(task.model, task.output, baseline)
        baseline_nodes = baseline_recorder.nodes
    with torch.no_grad():
        plan = build_plan(recorder, composite, task.model, baseline_nodes)
        input_message, layers = propagate(plan, source, message)
    layers = {"output": message.flatten(1).sum(1), **layers}
    return Walk(input_message, layers, out, baseline_out)


def propagate(plan: list[Op], source: tuple[Node, int], message: Tensor
              ) -> tuple[Tensor, dict[str, Tensor]]:
    """Walk ``plan`` backwards from ``message`` at output ``source``; (input message, totals)."""
    out_node, k = source
    pending: dict[int, list[Tensor | None]] = {out_node.index: [None] * len(out_node.outputs)}
    pending[out_node.index][k] = message
    totals: dict[str, Tensor] = {}
    for op in reversed(plan):
        messages = pending.pop(op.node.index, None)
        if messages is None or all(m is None for m in messages):
            continue
        if op.kind == "input":
            return _filled(messages[0], op.node.outputs[0]), totals
        backward = step(op, messages)
        if op.kind in ("layer", "norm"):
            totals[op.label] = sum(g.flatten(1).sum(1) for g in backward if g is not None)
        for (_, producer, index), g in zip(op.node.inputs, backward):
            if g is None:
                continue
            slot = pending.setdefault(producer.index, [None] * len(producer.outputs))
            slot[index] = g if slot[index] is None else slot[index] + g
    zero = torch.zeros_like(plan[0].node.outputs[0])
    return zero, totals


def step(op: Op, messages: list[Tensor | None]) -> list[Tensor | None]:
    """The messages at an op's inputs from those at its outputs."""
    if op.kind == "shape":
        return op.vjp(messages)
    if op.kind == "pass":
        return [messages[0]]
    method = op.rule_method()
    if method is None:
        raise NotImplementedError(_no_rule(op))
    op.output_messages = messages
    return method(op, _filled(messages[0], op.output))


def _filled(message: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if message is None else message


def _no_rule(op: Op) -> str:
    where = op.node.where()
    if op.rule is not None:
        return (f"rule {op.rule!r} cannot handle {where} (an op of kind {op.kind!r}); assign "
                f"a rule that handles {op.kind!r} ops in the composite")
    if op.kind == "other":
        hint = (" If it is the model's final (log-)softmax, explain the logits instead "
                "(output= or a model without it)." if "softmax" in op.node.name else "")
        return (
            f"pellucid.lrp has no relevance rule for {where}, and relevance reaches it. "
            "Supported: convolutions, linear layers, BatchNorm/LayerNorm/GroupNorm, element-wise "
            "activations, pooling, sums, gate×signal products, attention, reshapes/cat/indexing. "
            "Gradient-type methods (guided_backprop, deconvnet, deeplift) use the gradient there."
            + hint
        )
    return f"the composite assigns no rule to {where} (kind {op.kind!r})"


def extras(walk: Walk) -> dict[str, Any]:
    """The diagnostics every rule-based method returns."""
    return {"layer_relevance": {k: v.detach() for k, v in walk.layer_relevance.items()}}
