"""``describe``: which rule applies to which operation of a model, and what has none."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from ..errors import ArgumentTypeError
from ..guard import preserved
from ..outputs import OutputSelector, select_output
from .canonical import Plan, build_plan
from .composites import RELEVANCE, Composite
from .engine import WEIGHT_CACHE
from .kinds import KINDS, PASS
from .op import Op
from .tape import eager_model, record


def describe(model: nn.Module, composite: Composite | None, example_input: Tensor, *,
             output: OutputSelector = None, model_kwargs: Mapping[str, Any] | None = None,
             show: bool = True) -> str:
    """Print (and return) one line per recorded op: index, module, op, kind, rule.

    The module is the full dotted name from ``model.named_modules()`` (``layer1.0.conv2``;
    ``name#2`` for a module's second call; ``<model>`` for calls in the model's own
    ``forward``), never shortened: the columns are as wide as their longest entry. Ops that
    relevance can reach but that have no rule are marked ``NO RULE``; folded BatchNorms are
    marked as such. ``composite=None`` shows the defaults of the LRP methods.
    """
    if composite is not None and not isinstance(composite, Composite):
        raise ArgumentTypeError(
            "composite",
            f"composite must be a pellucid.lrp.Composite or None (the LRP defaults), got "
            f"{composite!r}; for a named composite call it, e.g. pellucid.lrp.epsilon_plus()",
        )
    resolved = RELEVANCE if composite is None else composite.over(RELEVANCE)
    kwargs = dict(model_kwargs or {})
    model = eager_model(model)
    with preserved(model):
        recorder, out = record(
            model, lambda v: select_output(model(v, **kwargs), output), example_input.detach()
        )
        plan = build_plan(recorder, resolved, model, weights=WEIGHT_CACHE)
    reached = _reachable(plan, recorder.source_of(out))
    rows = [(str(op.node.index), op.label, op.node.name, op.kind,
             _rule_text(plan, op, op.node.index in reached)) for op in plan.ops[1:]]
    text = _table(("#", "module", "op", "kind", "rule"), rows)
    if show:
        print(text)
    return text


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Columns as wide as their longest entry (the index right-aligned, the last unpadded)."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]

    def line(row: tuple[str, ...]) -> str:
        cells = [row[0].rjust(widths[0])] + [c.ljust(w) for c, w in zip(row[1:-1], widths[1:])]
        return "  ".join([*cells, row[-1]])

    return "\n".join(line(row) for row in [header, *rows])


def _rule_text(plan: Plan, op: Op, reached: bool) -> str:
    if op.kind == PASS:
        return "folded into the layer that feeds it"
    if KINDS[op.kind].handler is None:
        return "pass-through (the op's own vector-Jacobian product)"
    if plan.rule_method(op) is not None:
        return repr(plan.rules[op])
    return "NO RULE (relevance reaches it: explaining raises)" if reached else "no rule (unused)"


def _reachable(plan: Plan, source: Any) -> set[int]:
    """Indices of the ops that the output depends on, through the inputs each op's rule feeds."""
    if source is None:
        return set()
    reached = {source[0].index}
    for op in reversed(plan.ops):
        if op.node.index in reached:
            inputs = op.node.inputs
            rule = plan.rules.get(op)
            if rule is not None and plan.rule_method(op) is not None:
                inputs = [inputs[i] for i in rule.feeds(op)]
            reached.update(producer.index for _, producer, _ in inputs)
    return reached


__all__ = ["describe"]
