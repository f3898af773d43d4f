"""Op kinds as a registry: one definition per kind (recogniser, handler, default rule),
composites that choose rules by kind name (``ops=``), rules that receive their messages as
arguments, and ``describe`` asking each rule which inputs it feeds."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

import pellucid
import pellucid.lrp
from pellucid.errors import ArgumentError, ArgumentTypeError, UnknownNameError
from pellucid.lrp import ChainRule, Composite, Epsilon, Rule, SignalTakesAll, Zero
from pellucid.lrp.canonical import build_plan
from pellucid.lrp.composites import GRADIENT, RELEVANCE
from pellucid.lrp.engine import WEIGHT_CACHE, walk_back
from pellucid.lrp.kinds import KINDS, OpKind, classify, register_kind, rule_kinds
from pellucid.lrp.tape import record

# ----------------------------------------------------------------------------------------------
# the registry
# ----------------------------------------------------------------------------------------------


def test_every_kind_has_a_recogniser_a_handler_and_a_default():
    assert list(KINDS)[-1] == "other"  # the catch-all is tried last
    for name, kind in KINDS.items():
        assert kind.name == name and callable(kind.recognise)
        if kind.handler is None:  # moves values: its own vector-Jacobian product, no rule
            assert name == "shape"
            continue
        if kind.default is None:  # relevance reaching it is an error unless a rule is given
            assert name == "other"
        else:
            assert kind.default.handles(kind.handler), name
        assert RELEVANCE.rule_for(name) is kind.default
        assert GRADIENT.rule_for(name).handles(kind.handler)
    assert set(rule_kinds()) == set(KINDS) - {"shape"}


def test_classify_uses_the_registry_in_order():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)
            self.norm = nn.LayerNorm(3)

        def forward(self, x):
            h = self.norm(self.fc(x))
            g = torch.relu(h) * torch.sigmoid(h)  # gate × signal
            return (g + h).reshape(-1, 3).max(dim=1).values * (h * h).sum(1)

    model = Net().eval()
    recorder, _ = record(model, model, torch.randn(2, 3))
    kinds = [(n.name, classify(n)) for n in recorder.nodes]
    assert kinds[0][1] == "input"
    assert [k for n, k in kinds if n != "mul"][1:] == [
        "layer", "norm", "activation", "activation", "linear", "shape", "maxpool", "linear"]
    assert [k for n, k in kinds if n == "mul"] == ["gate", "product", "product"]


# ----------------------------------------------------------------------------------------------
# composites by op kind name
# ----------------------------------------------------------------------------------------------


class Residual(nn.Module):
    """y = w · (A x + x): two bias-free layers and one parameter-free sum (a ``linear`` op)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(4, 4, bias=False)
        self.head = nn.Linear(4, 1, bias=False)

    def forward(self, x):
        return self.head(self.inner(x) + x)


def test_ops_puts_a_rule_on_one_kind_only_checked_by_hand():
    torch.manual_seed(0)
    model = Residual().double().eval()
    x = torch.randn(3, 4, dtype=torch.float64)
    composite = Composite(default=Zero(), ops={"linear": Epsilon(0.5)})
    e = pellucid.explain(model, x, target=0, method="lrp", composite=composite)
    a, w = model.inner.weight, model.head.weight[0]
    h = x @ a.T
    s = h + x
    r_s = s * w  # LRP-0 at the head: R_k = s_k w_k / y · y
    share = r_s / (s + 0.5 * torch.where(s >= 0, 1.0, -1.0))  # ε = 0.5 at the sum only
    r_h, r_direct = h * share, x * share
    r_x = x * ((r_h / h) @ a) + r_direct  # LRP-0 at the inner layer
    torch.testing.assert_close(e.attribution, r_x)
    # ε = 0.5 absorbs relevance at the sum, so the attribution no longer sums to the logit
    assert float((e.attribution.sum(1) - (s * w).sum(1)).abs().min()) > 1e-6


def test_ops_and_keyword_slots_are_the_same_rule():
    torch.manual_seed(1)
    model = Residual().eval()
    x = torch.randn(2, 4)

    def run(composite):
        return pellucid.explain(model, x, target=0, method="lrp", composite=composite).attribution

    by_ops = run(Composite(ops={"layer": Zero(), "linear": Epsilon(0.5)}))
    by_slots = run(Composite(default=Zero(), linear=Epsilon(0.5)))
    plain = run(Composite(default=Zero()))
    torch.testing.assert_close(by_ops, by_slots)
    assert not torch.allclose(by_ops, plain)
    assert Composite(ops={"gate": ChainRule()}).rule_for("gate") == ChainRule()
    assert "ops={'linear': Epsilon(" in repr(Composite(ops={"linear": Epsilon(0.5)}))


def test_ops_laid_over_a_named_method_wins_over_its_slot():
    torch.manual_seed(2)
    model = Residual().eval()
    x = torch.randn(2, 4)
    over = pellucid.explain(model, x, target=0, method="lrp.zero",
                            composite=Composite(ops={"linear": Epsilon(0.5)})).attribution
    same = pellucid.explain(model, x, target=0, method="lrp",
                            composite=Composite(default=Zero(), linear=Epsilon(0.5))).attribution
    torch.testing.assert_close(over, same)


@pytest.mark.parametrize(("make", "error", "text"), [
    (lambda: Composite(ops={"linaer": Epsilon()}), UnknownNameError, "'linear'"),
    (lambda: Composite(ops={"shape": Epsilon()}), UnknownNameError, "ops"),
    (lambda: Composite(ops={3: Epsilon()}), ArgumentTypeError, "ops"),
    (lambda: Composite(ops={"linear": Epsilon}), ArgumentTypeError, "not a rule"),
    (lambda: Composite(ops=[Epsilon()]), ArgumentTypeError, "mapping"),
    (lambda: Composite(linear=Zero(), ops={"linear": Epsilon()}), ArgumentError, "twice"),
    (lambda: Composite(default=Zero(), ops={"layer": Epsilon()}), ArgumentError, "default="),
])
def test_bad_ops_name_the_argument(make, error, text):
    with pytest.raises(error, match=text) as info:
        make()
    assert info.value.argument == "ops" and "ops" in str(info.value)


# ----------------------------------------------------------------------------------------------
# messages as arguments; describe asks the rule which inputs it feeds
# ----------------------------------------------------------------------------------------------


def test_the_walk_only_releases_the_tensors_it_is_done_with():
    """Ops keep what they are (kind, label, rules); the walk drops each op's tensors once it
    has passed it, as autograd frees saved tensors, and marks the tape used up."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    recorder, out = record(model, model, torch.randn(2, 3))
    plan = build_plan(recorder, GRADIENT, model, weights=WEIGHT_CACHE)
    kept = ("node", "kind", "label", "baseline", "linearise", "constant", "assumptions",
            "relu_fed")
    before = [{k: getattr(op, k) for k in kept} for op in plan.ops]
    with torch.no_grad():
        walk_back(plan, recorder.source_of(out), torch.ones_like(out))
    assert before == [{k: getattr(op, k) for k in kept} for op in plan.ops]
    walked = plan.ops[1:]  # all but the input, where the walk returns
    assert all(op.affine is None for op in walked)
    assert all(t is None for op in walked for t in op.node.outputs + op.node.leaves)


def test_a_rule_for_several_outputs_gets_every_message():
    """``torch.sort`` is an ``other`` op; ChainRule gets the message at its values and sends it
    back through the permutation: R_x[perm_i] = sorted_i · w_i (LRP-0 at the head)."""

    class Sorted(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(4, 1, bias=False)

        def forward(self, x):
            return self.head(torch.sort(x, dim=1).values)

    torch.manual_seed(4)
    model = Sorted().double().eval()
    x = torch.randn(3, 4, dtype=torch.float64)
    e = pellucid.explain(model, x, target=0, method="lrp.zero",
                         composite=Composite(other=ChainRule()))
    values, perm = torch.sort(x, dim=1)
    expected = torch.zeros_like(x).scatter(1, perm, values * model.head.weight[0])
    torch.testing.assert_close(e.attribution, expected)


class SquaredGate(nn.Module):
    """signal · sigmoid(cumprod(z)): the gate's path has an op without a relevance rule."""

    def __init__(self) -> None:
        super().__init__()
        self.signal = nn.Linear(2, 2)
        self.gate = nn.Linear(2, 2)

    def forward(self, x):
        z = self.gate(x)
        return self.signal(x) * torch.sigmoid(torch.cumprod(z, dim=1))


def test_describe_asks_the_rule_which_inputs_it_feeds():
    model, x = SquaredGate().eval(), torch.randn(2, 2)
    assert SignalTakesAll().feeds is not Rule.feeds
    default = pellucid.lrp.describe(model, None, x, show=False)
    square = [line for line in default.splitlines() if " cumprod " in line and " other " in line]
    assert len(square) == 1 and "no rule (unused)" in square[0]
    chain = pellucid.lrp.describe(model, Composite(ops={"gate": ChainRule()}), x, show=False)
    square = [line for line in chain.splitlines() if " cumprod " in line and " other " in line]
    assert "NO RULE (relevance reaches it" in square[0]
    e = pellucid.explain(model, x, target=0, method="lrp.epsilon")  # the gate gets nothing
    assert torch.isfinite(e.attribution).all()


# ----------------------------------------------------------------------------------------------
# a new kind is one registration plus a handler
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HalfEach(Rule):
    """A rule for squares h·h: each factor gets half the relevance."""

    def square(self, op, m):
        return [m / 2, m / 2]


def test_a_new_kind_is_one_registration():
    class Square(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2, bias=False)
            self.head = nn.Linear(2, 1, bias=False)

        def forward(self, x):
            h = self.fc(x)
            return self.head(h * h)

    def is_square(node):
        return node.name == "mul" and len(node.inputs) == 2 and \
            node.inputs[0][1] is node.inputs[1][1] and node.inputs[0][2] == node.inputs[1][2]

    torch.manual_seed(5)
    model = Square().double().eval()
    x = torch.randn(3, 3, dtype=torch.float64)
    with pytest.raises(pellucid.lrp.UnsupportedOpError):
        pellucid.explain(model, x, target=0, method="lrp.zero")
    register_kind(OpKind("square", is_square, "square", None), before="gate")
    try:
        e = pellucid.explain(model, x, target=0, method="lrp.zero",
                             composite=Composite(ops={"square": HalfEach()}))
    finally:
        del KINDS["square"]
    h = x @ model.fc.weight.T
    r_h = h * h * model.head.weight[0]  # LRP-0 at the head; the square passes it to h
    expected = x * ((r_h / h) @ model.fc.weight)
    torch.testing.assert_close(e.attribution, expected)
    assert "square" not in rule_kinds()
