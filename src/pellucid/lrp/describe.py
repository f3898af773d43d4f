"""``describe``: which rule applies to which operation of a model, and what has none."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from ..guard import preserved
from ..outputs import OutputSelector, select_output
from .canonical import Plan, build_plan
from .composites import RELEVANCE, Composite
from .engine import WEIGHT_CACHE
from .op import Op
from .rules import SignalTakesAll
from .tape import eager_model, record


def describe(model: nn.Module, composite: Composite | None, example_input: Tensor, *,
             output: OutputSelector = None, model_kwargs: Mapping[str, Any] | None = None,
             show: bool = True) -> str:
    """Print (and return) one line per recorded op: index, module, op, kind, rule.

    Ops that relevance can reach but that have no rule are marked ``NO RULE``; folded
    BatchNorms are marked as such. ``composite=None`` shows the defaults of the LRP methods.
    """
    resolved = RELEVANCE if composite is None else composite.over(RELEVANCE)
    kwargs = dict(model_kwargs or {})
    model = eager_model(model)
    with preserved(model):
        recorder, out = record(
            model, lambda v: select_output(model(v, **kwargs), output), example_input.detach()
        )
        plan = build_plan(recorder, resolved, model, weights=WEIGHT_CACHE)
    reached = _reachable(plan, recorder.source_of(out))
    lines = [f"{'#':>4}  {'module':<32} {'op':<22} {'kind':<10} rule"]
    for op in plan.ops[1:]:
        lines.append(
            f"{op.node.index:>4}  {op.label[:32]:<32} {op.node.name[:22]:<22} {op.kind:<10} "
            f"{_rule_text(plan, op, op.node.index in reached)}"
        )
    text = "\n".join(lines)
    if show:
        print(text)
    return text


def _rule_text(plan: Plan, op: Op, reached: bool) -> str:
    if op.kind == "shape":
        return "pass-through (the op's own vector-Jacobian product)"
    if op.kind == "pass":
        return "folded into the layer that feeds it"
    if plan.rule_method(op) is not None:
        return repr(plan.rules[op])
    return "NO RULE (relevance reaches it: explaining raises)" if reached else "no rule (unused)"


def _reachable(plan: Plan, source: Any) -> set[int]:
    """Indices of the ops that the output depends on."""
    if source is None:
        return set()
    reached = {source[0].index}
    for op in reversed(plan.ops):
        if op.node.index in reached:
            inputs = op.node.inputs
            if op.kind == "gate" and isinstance(plan.rules.get(op), SignalTakesAll):
                inputs = [inputs[op.signal]]  # the gate receives nothing
            reached.update(producer.index for _, producer, _ in inputs)
    return reached


__all__ = ["describe"]
