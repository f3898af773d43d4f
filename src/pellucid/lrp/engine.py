"""The one backward walk shared by LRP, Deep Taylor, guided backprop, deconvnet, DeepLIFT and
excitation backprop.

1. Record the forward pass (:mod:`.tape`); the output is the model's own, computed by its own
   operations, so nothing on the side can make it differ.
2. Canonicalise the tape and give every op its rule (:mod:`.canonical`).
3. Walk the tape backwards from the explained output, handing each op the message at its
   outputs and adding the messages it returns at its inputs (fan-out sums).

The starting message is ``output ⊙ ∂score/∂output`` for relevance (exact for a class
target or any score linear in the output), ``∂score/∂output`` for gradient-type methods.
An output of shape (B,) (a regressor) is one score per sample like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, NoReturn

import torch
from torch import Tensor

from ..checks import check_choice
from ..errors import ArgumentError, ModelError
from ..task import Task
from .canonical import Plan, build_plan
from .composites import Composite
from .kinds import INPUT, KINDS, PASS
from .op import Op
from .rules import Rule
from .tape import Node, Recorder, UnsupportedOpError, eager_model, record
from .weight_cache import WeightCache

STARTS = ("relevance", "gradient")

#: folded and rule-modified weights of every model the engine has explained
WEIGHT_CACHE = WeightCache()


def clear_weight_cache() -> None:
    """Forget the folded BatchNorms and rule-modified weights kept for every model.

    They are derived again on the next call; the cache already drops a model's entries when
    the model is deleted and rebuilds an entry when a parameter changes.
    """
    WEIGHT_CACHE.clear()


@dataclass
class Propagation:
    """The messages of one modified backward pass, and the forward outputs it started from."""

    #: the message arriving at the input (relevance, or a modified gradient)
    input_message: Tensor
    #: ``{"output": total at the output, "<layer>": total arriving at its input, ...}``
    layer_relevance: dict[str, Tensor]
    output: Tensor
    #: the output at the baseline input (DeepLIFT)
    baseline_output: Tensor | None = None
    #: the canonicalised ops and the rule of each
    plan: Plan | None = None
    #: per sample, what ops took out of the flow: constants added by a module (position
    #: embeddings, by the module's name) and non-conservative rules (the softmax's Taylor
    #: bias, by the softmax's module)
    absorbed: dict[str, Tensor] = field(default_factory=dict)

    def diagnostics(self) -> dict[str, Any]:
        """The extras every rule-based method returns: ``{"layer_relevance": ...}``, and
        ``"absorbed"`` where an op absorbed relevance (see :attr:`absorbed`)."""
        extras = {"layer_relevance": {k: v.detach() for k, v in self.layer_relevance.items()}}
        if self.absorbed:
            extras["absorbed"] = {k: v.detach() for k, v in self.absorbed.items()}
        return extras


def eager_task(task: Task) -> Task:
    """``task`` on the eager module of its model (see :func:`.tape.eager_model`)."""
    model = eager_model(task.model)
    return task if model is task.model else replace(task, model=model)


def propagate(task: Task, x: Tensor, composite: Composite, *, start: str = "relevance",
              baseline: Tensor | None = None) -> Propagation:
    """Record ``task``'s forward pass at ``x`` and propagate the start message back to the
    input with ``composite``'s rules.

    The call's first forward pass is reused when it was recorded at ``x`` (a rule-based
    method's ``first_pass`` records it).
    """
    check_choice(start, "start", STARTS)
    task = eager_task(task)
    first = task.first_forward_at(x)
    if first is not None and isinstance(first.state, Recorder) and not first.state.released:
        recorder, out = first.state, first.output
    else:
        recorder, out = record(task.model, task.output, x)
    source = recorder.source_of(out)
    if source is None:
        raise ModelError(
            "model",
            "the explained output of the model does not depend on its input through torch "
            "operations that pellucid.lrp can see: the forward pass leaves torch (NumPy, "
            ".item(), .tolist(), a C extension) or returns a constant. Keep the forward pass "
            "in torch operations, or check output=",
        )
    with torch.enable_grad():
        leaf = out.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(task.target.score(leaf).sum(), leaf)
    message = out * grad if start == "relevance" else grad
    if message.dtype in (torch.float16, torch.bfloat16):
        message = message.float()  # half-precision models: rules compute in float32
    plan, (input_message, layers, absorbed), baseline_out = _walk(
        task, recorder, source, message, composite, baseline, shortcuts=True)
    if plan.assumptions.failed():  # a shortcut's or the cache's assumption failed:
        WEIGHT_CACHE.forget(task.model)  # derive again, and walk without shortcuts
        recorder, again = record(task.model, task.output, x)
        plan, (input_message, layers, absorbed), baseline_out = _walk(
            task, recorder, recorder.source_of(again), message, composite, baseline,
            shortcuts=False)
    layers = {"output": per_sample_total(message), **layers}
    return Propagation(input_message.to(x.dtype), layers, out, baseline_out, plan, absorbed)


def _walk(task: Task, recorder: Recorder, source: tuple[Node, int], message: Tensor,
          composite: Composite, baseline: Tensor | None, shortcuts: bool
          ) -> tuple[Plan, tuple[Tensor, dict[str, Tensor], dict[str, Tensor]], Tensor | None]:
    """Build the plan of a recorded tape and walk it (which uses the tape up)."""
    baseline_nodes, baseline_out = None, None
    if baseline is not None:
        baseline_recorder, baseline_out = record(task.model, task.output, baseline)
        _in_float32(baseline_recorder, task.model)
        baseline_nodes = baseline_recorder.nodes
    _in_float32(recorder, task.model)
    recorder.released = True
    with torch.no_grad():
        plan = build_plan(recorder, composite, task.model, weights=WEIGHT_CACHE,
                          baseline=baseline_nodes)
        plan.assumptions.shortcuts = shortcuts
        return plan, walk_back(plan, source, message), baseline_out


def _in_float32(recorder: Recorder, model: torch.nn.Module) -> None:
    """Half-precision tapes computed in float32 (:meth:`.Recorder.widen`): the float32 copies
    of parameters and buffers are kept in :data:`WEIGHT_CACHE`."""
    recorder.widen(lambda p: WEIGHT_CACHE.derived(model, "float32", (p,), p.float))


def per_sample_total(t: Tensor, batch_dim: int = 0) -> Tensor:
    """Σ over everything but the batch dimension ``batch_dim``: one number per sample, for any
    shape (a recurrent layer's initial states carry the batch at dimension 1).

    >>> per_sample_total(torch.ones(3, 2, 4), batch_dim=1)
    tensor([12., 12.])
    """
    if t.ndim < 2:
        return t.reshape(t.shape[batch_dim], -1).sum(1)
    return t.sum([d for d in range(t.ndim) if d != batch_dim % t.ndim])  # no copy of a view


def walk_back(plan: Plan, source: tuple[Node, int], message: Tensor
              ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
    """Walk ``plan`` backwards from ``message`` at output ``source``: each op gets the message
    at its outputs, and the messages it returns at its inputs add up (fan-out sums).

    Returns (the message at the input, the total message per sample arriving at each layer,
    what absorbing ops took out per sample: see :attr:`Propagation.absorbed`). A constant
    added by a module appears in both dictionaries under the module's name.
    """
    out_node, k = source
    pending: dict[int, list[Tensor | None]] = {out_node.index: [None] * len(out_node.outputs)}
    pending[out_node.index][k] = message
    totals: dict[str, Tensor] = {}
    absorbed: dict[str, Tensor] = {}
    for op in reversed(plan.ops):
        messages = pending.pop(op.node.index, None)
        if messages is None or all(m is None for m in messages):
            if op.kind != INPUT:  # its output gives the zero message of an unreached input
                op.release()
            continue
        if op.kind == INPUT:
            return _filled(messages[0], op.node.outputs[0]), totals, absorbed
        backward = input_messages(plan, op, messages)
        kind = KINDS.get(op.kind)
        if kind is not None and kind.reported:
            dims = [0] * len(backward) if kind.batch_dims is None else kind.batch_dims(op.node)
            totals[op.label] = sum(per_sample_total(g, d) for g, d in zip(backward, dims)
                                   if g is not None)
        name = op.constant or (op.label if kind is not None and kind.absorbs else None)
        if name is not None:
            taken = per_sample_total(_filled(messages[0], op.output)) - sum(
                per_sample_total(g) for g in backward if g is not None)
            absorbed[name] = absorbed[name] + taken if name in absorbed else taken
            if op.constant is not None:
                totals[name] = absorbed[name]
        for (_, producer, index), g in zip(op.node.inputs, backward):
            if g is None:
                continue
            slot = pending.setdefault(producer.index, [None] * len(producer.outputs))
            slot[index] = g if slot[index] is None else slot[index] + g
        op.release()
    zero = torch.zeros_like(plan.ops[0].node.outputs[0])
    return zero, totals, absorbed


def input_messages(plan: Plan, op: Op, messages: list[Tensor | None]) -> list[Tensor | None]:
    """The messages at an op's inputs from those at its outputs, by the op's rule: its kind's
    handler gets the message at the output (or, for a kind with ``all_outputs``, the list of
    messages at all outputs). Ops of a kind without a handler move values: their messages go
    back by the op's own vector-Jacobian product; a folded BatchNorm passes them on."""
    if op.kind == PASS:
        return [messages[0]]
    kind = KINDS[op.kind]
    if kind.handler is None:
        return op.vjp(messages)
    method = plan.rule_method(op)
    if method is None:
        _raise_no_rule(op, plan.rules.get(op))
    return method(op, messages if kind.all_outputs else _filled(messages[0], op.output))


def _filled(message: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if message is None else message


def _raise_no_rule(op: Op, rule: Rule | None) -> NoReturn:
    where = op.node.where()
    if rule is not None:
        raise ArgumentError(
            "composite",
            f"the composite assigns {rule!r} to the model's {where}, an op of kind "
            f"{op.kind!r} that this rule cannot handle; in composite, assign a rule that "
            f"handles {op.kind!r} ops there",
        )
    if KINDS[op.kind].default is not None:
        raise ArgumentError(
            "composite",
            f"the composite assigns no rule to the model's {where} (kind {op.kind!r}); give "
            f"composite a rule for the {op.kind!r} slot (ops={{{op.kind!r}: rule}})",
        )
    hint = ""
    if "softmax" in op.node.name:
        hint = (" If it is the model's final (log-)softmax, explain the logits instead "
                "(output= or a model without it).")
    elif "dropout" in op.node.name:
        hint = " Dropout draws random masks because the model is in train mode: call model.eval()."
    raise UnsupportedOpError(
        "model",
        f"pellucid.lrp has no relevance rule for the model's {where}, and relevance reaches "
        "it. Supported: convolutions, linear layers, BatchNorm/LayerNorm/GroupNorm, "
        "element-wise activations, pooling, sums, gate×signal products, attention, "
        "reshapes/cat/indexing. Gradient-type methods (guided_backprop, deconvnet, deeplift) "
        "use the gradient there; Composite(other=pellucid.lrp.ChainRule()) passes the "
        "message through it by the chain rule (not conservative)." + hint,
    )
