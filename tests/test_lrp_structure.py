"""What the rule engine reads from a model's structure instead of its values (issue 15: no
host synchronisation per layer): inputs that are ≥ 0 by construction, layers that feed only a
ReLU, and the checks it defers to one synchronisation at the end of a walk; each shortcut
gives exactly the result of the general path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pellucid
import pellucid.lrp.engine as engine
from pellucid.lrp import AlphaBeta, Composite, Epsilon, Flat, Gamma, ZPlus
from pellucid.lrp.calls import nonnegative_outputs
from pellucid.lrp.canonical import build_plan
from pellucid.lrp.composites import RELEVANCE
from pellucid.lrp.op import Assumptions
from pellucid.lrp.tape import record


def _names(fn, x):
    recorder, _ = record(nn.Identity(), fn, x)
    found = nonnegative_outputs(recorder.nodes)
    return {n.name: n.index in found for n in recorder.nodes[1:]}


@pytest.mark.parametrize(("fn", "expected"), [
    (lambda x: torch.relu(x).flatten(1), {"relu": True, "flatten": True}),
    (lambda x: nn.functional.max_pool2d(x.relu(), 2), {"relu": True, "max_pool2d": True}),
    (lambda x: x.clamp(min=0.0).mean(1), {"clamp": True, "mean": True}),
    (lambda x: x.clamp(min=-1.0), {"clamp": False}),
    (lambda x: x.sigmoid() - 0.5, {"sigmoid": True, "sub": False, "__sub__": False}),
    (lambda x: torch.cat([x.relu(), -torch.ones(1, 2, 4, 4)], 1), {"relu": True, "cat": False}),
    (lambda x: torch.cat([x.relu(), x.exp()], 1), {"relu": True, "exp": True, "cat": True}),
    (lambda x: x.tanh().flatten(1), {"tanh": False, "flatten": False}),
])
def test_outputs_that_are_nonnegative_by_construction(fn, expected):
    got = _names(fn, torch.randn(1, 2, 4, 4))
    assert {k: v for k, v in got.items() if k in expected} == {
        k: v for k, v in expected.items() if k in got}


def _plan(model, x, composite=RELEVANCE):
    recorder, _ = record(model, model, x)
    return build_plan(recorder, composite, model, weights=engine.WEIGHT_CACHE)


def test_layers_know_which_inputs_are_nonnegative_and_which_feed_a_relu():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(inplace=True),
                          nn.Conv2d(4, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 2)).eval()
    plan = _plan(model, torch.randn(2, 3, 8, 8))
    layers = [op for op in plan.ops if op.kind == "layer"]
    assert [op.affine.x_nonnegative for op in layers] == [False, True, True]
    assert [op.relu_fed for op in layers] == [True, True, False]  # BN folded into layer 1


class TwoLayers(nn.Module):
    """conv → ReLU (written as ``relu`` or as a clamp) → conv: the same function."""

    def __init__(self, relu: bool) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.a, self.b = nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(3, 2, 3, padding=1)
        self.relu = relu

    def forward(self, x):
        h = self.a(x)
        h = h.relu() if self.relu else h.clamp(min=0.0)
        return self.b(h).flatten(1)


@pytest.mark.parametrize("above", [Epsilon(1e-6), Flat()], ids=["epsilon", "flat"])
def test_gamma_skips_relevance_below_zero_only_where_a_check_confirms_none_arrives(
        above, monkeypatch):
    """A γ layer that feeds a ReLU skips the relevance arriving where z < 0 and checks at the
    end of the walk that none did. Below an ε rule none does (one walk); below the flat rule,
    which gives zero activations relevance, the check fails and the walk is repeated without
    the shortcut. Both equal the general path (the ReLU written as a clamp, which has no
    shortcut) to rounding."""
    walks = []
    walk = engine.walk_back
    monkeypatch.setattr(engine, "walk_back", lambda *a: walks.append(1) or walk(*a))
    composite = Composite(layers={"a": Gamma(0.5), "b": above})
    x = torch.randn(2, 2, 6, 6)
    shortcut = pellucid.explain(TwoLayers(True).eval(), x, target=0, method="lrp",
                                composite=composite)
    assert len(walks) == (1 if isinstance(above, Epsilon) else 2)
    general = pellucid.explain(TwoLayers(False).eval(), x, target=0, method="lrp",
                               composite=composite)
    torch.testing.assert_close(shortcut.attribution, general.attribution)
    assert general.attribution.abs().sum() > 0


@pytest.mark.parametrize("rule", [
    ZPlus(), ZPlus(bias="split"), Gamma(0.25), Gamma(0.5, bias="signed"), Gamma(1.0, bias="none"),
    AlphaBeta(2, 1), AlphaBeta(2, 1, bias="split"), AlphaBeta(2, 1, bias="signed"),
    AlphaBeta(1, 0)],
    ids=["zplus", "zplus-split", "gamma", "gamma-signed", "gamma-none", "a2b1", "a2b1-split",
         "a2b1-signed", "a1b0"])
@pytest.mark.parametrize("conv", [False, True], ids=["linear", "conv"])
def test_inputs_nonnegative_by_structure_give_the_two_term_result(rule, conv):
    """Where x ≥ 0 by structure the x⁻ terms are left out (and αβ and γ take x w⁻ = x w − x w⁺
    from one modified forward pass); the general path (the ReLU's output times 1, which
    structure does not follow) computes every term."""
    class Net(nn.Module):
        def __init__(self, known: bool) -> None:
            super().__init__()
            torch.manual_seed(4)
            if conv:
                self.a, self.b = nn.Conv2d(2, 3, 3), nn.Conv2d(3, 2, 3)
            else:
                self.a, self.b = nn.Linear(5, 6), nn.Linear(6, 2)
            self.known = known

        def forward(self, x):
            h = self.a(x).relu()
            return self.b(h if self.known else h * 1.0).flatten(1)

    composite = Composite(layers={"a": Epsilon(), "b": rule})
    x = torch.randn(4, 2, 5, 5) if conv else torch.randn(4, 5)
    known = pellucid.explain(Net(True).eval(), x, target=1, method="lrp", composite=composite)
    unknown = pellucid.explain(Net(False).eval(), x, target=1, method="lrp", composite=composite)
    assert known.attribution.abs().sum() > 0
    torch.testing.assert_close(known.attribution, unknown.attribution, rtol=1e-5, atol=1e-6)


def test_assumptions_fail_when_one_check_does():
    assumptions = Assumptions()
    assert not assumptions.failed()
    assumptions.add(torch.tensor(False))
    assert not assumptions.failed()
    assumptions.add(torch.tensor(True))
    assert assumptions.failed()


def test_a_batchnorm_that_is_not_affine_on_the_batch_is_an_error(monkeypatch):
    """The fold is checked on the first sample (at the end of the call, one synchronisation
    with the other checks): a BatchNorm whose recorded output is not a·x + c is refused."""
    import pellucid.lrp.canonical as canonical

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.LazyLinear(2)).eval()
    x = torch.randn(2, 3, 6, 6)
    model(x)
    real = canonical.batch_norm_coefficients
    monkeypatch.setattr(canonical, "batch_norm_coefficients",
                        lambda node: tuple(t * 1.5 for t in real(node)))
    with pytest.raises(RuntimeError, match="cannot be folded"):
        pellucid.explain(model, x, target=0, method="lrp.epsilon")


def test_cached_batchnorm_coefficients_do_not_hide_train_mode():
    """The coefficients a, c are cached per BatchNorm (keyed on its parameters and its mode):
    after an eval-mode call, the same model in train mode is still refused."""
    from pellucid.errors import ModelError

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(64, 2)).eval()
    x = torch.randn(2, 3, 6, 6)
    pellucid.explain(model, x, target=0, method="lrp.epsilon")
    model.train()
    with pytest.warns(UserWarning, match="train mode"), pytest.raises(ModelError,
                                                                      match="batch statistics"):
        pellucid.explain(model, x, target=0, method="lrp.epsilon")


def test_deeplift_records_a_constant_reference_once_for_the_batch():
    """A constant baseline gives every sample the same reference pass: DeepLIFT records it
    on one row and broadcasts it; the result equals the per-sample reference (the same
    zeros given as a tensor, which is not known to be constant) to rounding, and the
    summation-to-delta holds."""
    from tests.helpers.models import ResNetish, randomise_batchnorm

    model = randomise_batchnorm(ResNetish(), seed=2).eval()
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    rows = []
    hook = model.register_forward_pre_hook(lambda m, args: rows.append(len(args[0])))
    try:
        shared = pellucid.explain(model, x, target=1, method="deeplift", baseline=0.0)
        assert rows[1:] == [1]  # the first pass at x, then the reference on one row
        rows.clear()
        each = pellucid.explain(model, x, target=1, method="deeplift",
                                baseline=torch.zeros_like(x))
        assert rows[1:] == [3]
    finally:
        hook.remove()
    torch.testing.assert_close(shared.attribution, each.attribution)
    assert shared.extras["convergence_delta"].abs().max() < 1e-4


def test_batchnorm_statistics_changed_without_a_version_bump_are_folded_again():
    """BatchNorm's kernel (and ``.data`` writes) change running statistics without bumping
    their version counters, which key the weight cache: the fold is confirmed against the
    statistics of each call, and derived again when they moved."""
    from tests.helpers.models import VGGish, randomise_batchnorm

    model = randomise_batchnorm(VGGish(), seed=4).eval()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    pellucid.explain(model, x, target=0, method="lrp.epsilon")  # fold cached
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    version = bn.running_var._version
    bn.running_var.data.mul_(3.0)  # a write that bumps no counter: the fold's scale moves
    assert bn.running_var._version == version
    after = pellucid.explain(model, x, target=0, method="lrp.epsilon").attribution
    engine.WEIGHT_CACHE.forget(model)
    fresh = pellucid.explain(model, x, target=0, method="lrp.epsilon").attribution
    torch.testing.assert_close(after, fresh)


def test_an_input_no_relevance_reaches_gets_zeros_after_the_walk_released_the_tape():
    """The walk releases every op it passes; the input's record stays, for the zero message
    of an input that no relevance reaches (a softmax held constant feeds nothing)."""
    from pellucid.lrp.rules import HoldConstant

    x = torch.randn(2, 3)
    e = pellucid.explain(nn.Softmax(-1), x, target=0, method="lrp",
                         composite=Composite(ops={"softmax": HoldConstant()}))
    assert e.attribution.shape == x.shape and not e.attribution.any()
