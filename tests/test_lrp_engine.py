"""The rule engine: canonicalisation, functional and in-place ops, gradient-type rules,
DeepLIFT, composites and selectors, diagnostics, errors, and the untouched model."""

from __future__ import annotations

import gc

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pellucid
import pellucid.lrp
from pellucid.errors import ModelError
from pellucid.lrp import (
    CONV,
    FIRST,
    LAST_LINEAR,
    Average,
    Composite,
    Epsilon,
    Flat,
    Gamma,
    ZPlus,
)
from pellucid.lrp.canonical import build_plan
from pellucid.lrp.composites import RELEVANCE
from pellucid.lrp.engine import WEIGHT_CACHE
from pellucid.lrp.tape import record
from pellucid.lrp.weight_cache import WeightCache
from tests.helpers.models import VGGish, randomise_batchnorm


def _sums(e):
    return e.attribution.flatten(1).sum(1)


def _logit(model, x, c):
    with torch.no_grad():
        return model(x)[:, c]


# ----------------------------------------------------------------------------------------------
# canonicalisation: BatchNorm folding
# ----------------------------------------------------------------------------------------------


def test_folding_reproduces_batchnorm_outputs_with_random_statistics():
    model = randomise_batchnorm(VGGish(), seed=3).eval()
    x = torch.randn(2, 3, 16, 16)
    recorder, out = record(model, model, x)
    plan = build_plan(recorder, RELEVANCE, model, weights=WeightCache())
    passes = [op for op in plan.ops if op.kind == "pass"]
    folded = [plan.ops[op.node.inputs[0][1].index] for op in passes]
    assert len(folded) == 2 and all(op.kind == "layer" for op in folded)  # both conv+BN pairs
    for op, bn in zip(folded, passes):
        aff = op.affine
        # the tape keeps the BatchNorm's output as the layer's, not the convolution's
        assert op.node.outputs[0] is aff.out is bn.node.outputs[0] is bn.node.leaves[0]
        torch.testing.assert_close(aff.forward(aff.x, aff.weight, aff.bias), aff.out,
                                   rtol=1e-5, atol=1e-5)
    assert sum(op.kind == "pass" for op in plan.ops) == 2
    torch.testing.assert_close(out, model(x))


class PreActivation(nn.Module):
    """BN-ReLU-conv (DenseNet order): the BatchNorm has no layer feeding it."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(3)
        self.conv = nn.Conv2d(3, 4, 3, bias=False)
        self.fc = nn.Linear(4, 2, bias=False)

    def forward(self, x):
        return self.fc(self.conv(F.relu(self.bn(x))).mean((2, 3)))


def test_lone_batchnorm_is_its_own_layer_matching_its_affine_map():
    model = randomise_batchnorm(PreActivation(), seed=1).double().eval()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    e = pellucid.explain(model, x, target=0, method="lrp.zero")
    assert "bn" in e.extras["layer_relevance"]
    # LRP-0 through a per-channel affine map: R_in = a·x / (a·x + c) · R_out; for ReLU nets
    # LRP-0 still equals gradient × input
    gxi = pellucid.explain(model, x, target=0, method="gradient_x_input").attribution
    torch.testing.assert_close(e.attribution, gxi)


def test_batchnorm_in_train_mode_is_a_clear_error():
    model = VGGish().train()
    with pytest.warns(UserWarning, match="train mode"), pytest.raises(ModelError) as error:
        pellucid.explain(model, torch.randn(2, 3, 16, 16), target=0, method="lrp.epsilon")
    assert error.value.argument == "model" and "model.eval()" in str(error.value)


def test_fold_cache_follows_changes_to_the_model():
    model = randomise_batchnorm(VGGish(), seed=0).eval()
    x = torch.randn(2, 3, 16, 16)
    first = pellucid.explain(model, x, target=0, method="lrp.epsilon_plus").attribution
    randomise_batchnorm(model, seed=5)
    with torch.no_grad():
        model.features[0].weight.mul_(-1.0)
    second = pellucid.explain(model, x, target=0, method="lrp.epsilon_plus").attribution
    fresh_model = randomise_batchnorm(VGGish(), seed=0).eval()
    fresh_model.load_state_dict(model.state_dict())
    fresh = pellucid.explain(fresh_model, x, target=0, method="lrp.epsilon_plus").attribution
    assert not torch.allclose(first, second)
    torch.testing.assert_close(second, fresh)


def test_weight_cache_serves_until_a_source_changes_and_clears():
    cache, model = WeightCache(), nn.Linear(3, 2)
    calls = []

    def positive():
        calls.append(1)
        return model.weight.clamp(min=0).detach()

    first = cache.derived(model, "w+", (model.weight,), positive)
    assert cache.derived(model, "w+", (model.weight,), positive) is first
    assert len(calls) == 1 and len(cache) == 1
    with torch.no_grad():
        model.weight.mul_(-1.0)  # in place: a new version counter
    changed = cache.derived(model, "w+", (model.weight,), positive)
    torch.testing.assert_close(changed, model.weight.clamp(min=0))
    model.double()  # new data under the same Parameter, same version counter
    assert cache.derived(model, "w+", (model.weight,), positive).dtype == torch.float64
    assert len(calls) == 3 and len(cache) == 1
    cache.clear()
    assert len(cache) == 0


def test_weight_cache_forgets_a_deleted_model():
    cache, model = WeightCache(), nn.Linear(3, 2)
    weight = model.weight
    cache.derived(model, "w+", (weight,), lambda: weight.clamp(min=0).detach())
    assert len(cache) == 1
    del model
    gc.collect()
    assert len(cache) == 0


def test_clear_weight_cache_empties_the_engines_cache():
    model = randomise_batchnorm(VGGish(), seed=0).eval()
    pellucid.explain(model, torch.randn(2, 3, 16, 16), target=0, method="lrp.epsilon_plus")
    assert len(WEIGHT_CACHE) > 0  # folded BatchNorms and w⁺, w⁻
    pellucid.lrp.clear_weight_cache()
    assert len(WEIGHT_CACHE) == 0


def test_explaining_a_model_converted_after_an_explanation():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16, 2)).eval()
    x = torch.randn(2, 3, 4, 4)
    pellucid.explain(model, x, target=0, method="lrp.epsilon_plus")
    model.double()
    e = pellucid.explain(model, x.double(), target=0, method="lrp.epsilon_plus")
    assert e.attribution.dtype == torch.float64


@pytest.mark.parametrize("old, new", [("Gradient", "ChainRule"),
                                      ("GuidedBackprop", "RectifiedGradient"),
                                      ("Deconvnet", "RectifiedPass")])
def test_renamed_rules_are_deprecated_aliases(old, new):
    with pytest.warns(DeprecationWarning, match=f"pellucid.lrp.{new}"):
        rule = getattr(pellucid.lrp, old)
    assert rule is getattr(pellucid.lrp, new)


@pytest.mark.parametrize("old, new", [("GuidedBackpropMethod", "GuidedBackprop"),
                                      ("DeconvnetMethod", "Deconvnet")])
def test_renamed_method_classes_are_deprecated_aliases(old, new):
    with pytest.warns(DeprecationWarning, match=new):
        method = getattr(pellucid.lrp.methods, old)
    assert method is getattr(pellucid.lrp.methods, new)
    assert method is type(pellucid.get_method(method.name))


# ----------------------------------------------------------------------------------------------
# residual, dense and functional structure
# ----------------------------------------------------------------------------------------------


class Residual(nn.Module):
    """Bias-free: in-place `+=`, `torch.add`, `sum`, functional and in-place ReLUs, a reused
    module, GELU/SiLU/ReLU6 activations."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)  # used twice
        self.other = nn.Conv2d(4, 4, 1, bias=False)
        self.act = nn.ReLU(inplace=True)
        self.fc = nn.Linear(4, 3, bias=False)

    def forward(self, x):
        x = self.act(self.stem(x))
        out = self.conv(x)
        out += x
        out.relu_()
        y = torch.add(F.relu(self.conv(out)), out)
        y = sum([y, F.relu6(self.other(y)), torch.relu(self.other(x))])
        return self.fc(y.mean((2, 3)))


class Dense(nn.Module):
    """DenseNet-style: features concatenated, bias-free."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.c2 = nn.Conv2d(7, 4, 3, padding=1, bias=False)
        self.c3 = nn.Conv2d(11, 5, 1, bias=False)
        self.fc = nn.Linear(5 * 9, 2, bias=False)

    def forward(self, x):
        feats = [x]
        feats.append(F.relu(self.c1(torch.cat(feats, 1))))
        feats.append(F.relu(self.c2(torch.cat(feats, 1))))
        y = F.avg_pool2d(F.relu(self.c3(torch.cat(feats, 1))), 2)
        return self.fc(torch.flatten(y, 1))


@pytest.mark.parametrize("net", [Residual, Dense])
def test_residual_and_dense_nets_conserve_and_match_gradient_times_input(net):
    torch.manual_seed(0)
    model = net().eval()
    x = torch.randn(3, 3, 6, 6)
    e = pellucid.explain(model, x, target=1, method="lrp.epsilon", epsilon=1e-9)
    torch.testing.assert_close(_sums(e), _logit(model, x, 1), rtol=1e-5, atol=1e-6)
    e0 = pellucid.explain(model.double(), x.double(), target=1, method="lrp.zero")
    gxi = pellucid.explain(model, x.double(), target=1, method="gradient_x_input")
    torch.testing.assert_close(e0.attribution, gxi.attribution, rtol=1e-8, atol=1e-10)


def test_residual_split_is_proportional_to_contributions():
    class Add(nn.Module):
        def forward(self, x):
            return (x[:, :2] * 3.0 + x[:, 2:]).sum(1, keepdim=True)

    x = torch.tensor([[1.0, 2.0, 3.0, 5.0]])
    e = pellucid.explain(Add().eval(), x, target=0, method="lrp.zero")
    # z = (3, 6) + (3, 5) = (6, 11); each addend keeps its own contribution
    torch.testing.assert_close(e.attribution, torch.tensor([[3.0, 6.0, 3.0, 5.0]]))


class Gated(nn.Module):
    """A squeeze-excitation-like gate: signal from the first 3 features, gate from the rest."""

    def __init__(self) -> None:
        super().__init__()
        self.signal = nn.Linear(3, 4, bias=False)
        self.gate = nn.Linear(2, 4)
        self.out = nn.Linear(4, 2, bias=False)

    def forward(self, x):
        return self.out(self.signal(x[:, :3]) * torch.sigmoid(self.gate(x[:, 3:])))


def test_gate_times_signal_gives_relevance_to_the_signal():
    torch.manual_seed(1)
    model = Gated().eval()
    x = torch.randn(4, 5)
    e = pellucid.explain(model, x, target=0, method="lrp.epsilon", epsilon=1e-9)
    assert torch.equal(e.attribution[:, 3:], torch.zeros(4, 2))
    torch.testing.assert_close(_sums(e), _logit(model, x, 0), rtol=1e-5, atol=1e-6)


class ManualLayerNorm(nn.Module):
    """LayerNorm over the last dimension written by hand, as in HF ConvNeXt (channels first)."""

    def __init__(self, weight):
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x):
        u = x.mean(-1, keepdim=True)
        s = (x - u).pow(2).mean(-1, keepdim=True)
        return self.weight * ((x - u) / torch.sqrt(s + 1e-5))


def test_layer_norm_rule_conserves_and_equals_handwritten_layer_norm():
    torch.manual_seed(2)
    weight = torch.rand(6) + 0.5
    lin1, lin2 = nn.Linear(4, 6, bias=False), nn.Linear(6, 3, bias=False)
    builtin = nn.LayerNorm(6, elementwise_affine=True, bias=False)
    with torch.no_grad():
        builtin.weight.copy_(weight)
    a = nn.Sequential(lin1, builtin, lin2).double().eval()
    b = nn.Sequential(lin1, ManualLayerNorm(weight.clone()), lin2).double().eval()
    x = torch.randn(3, 4, dtype=torch.float64)
    tiny = Composite(norm=Epsilon(1e-12), linear=Epsilon(1e-12))
    ea = pellucid.explain(a, x, target=2, method="lrp.epsilon", epsilon=1e-12, composite=tiny)
    eb = pellucid.explain(b, x, target=2, method="lrp.epsilon", epsilon=1e-12, composite=tiny)
    torch.testing.assert_close(_sums(ea), _logit(a, x, 2))
    torch.testing.assert_close(ea.attribution, eb.attribution)


def test_group_norm_rule_conserves_and_matches_its_linearised_map():
    """GroupNorm with 1/σ held constant is linear: LRP-0 through it equals gradient × input
    of the same network with σ detached, and a bias-free network conserves relevance."""
    torch.manual_seed(5)

    class Net(nn.Module):
        def __init__(self, detach=False):
            super().__init__()
            self.conv = nn.Conv2d(2, 4, 3, bias=False)
            self.norm = nn.GroupNorm(2, 4)
            self.fc = nn.Linear(4, 3, bias=False)
            self.detach = detach

        def forward(self, x):
            h = self.conv(x)
            if self.detach:  # the rule's linearisation, written out
                g = h.reshape(len(h), 2, -1)
                centred = g - g.mean(-1, keepdim=True)
                sigma = torch.sqrt(centred.square().mean(-1, keepdim=True) + 1e-5).detach()
                h = (centred / sigma).reshape(h.shape) * self.norm.weight.view(-1, 1, 1)
            else:
                h = self.norm(h)
            return self.fc(F.relu(h).mean((2, 3)))

    model = Net().double().eval()
    with torch.no_grad():
        model.norm.weight.uniform_(0.5, 1.5)
        model.norm.bias.zero_()
    linearised = Net(detach=True).double().eval()
    linearised.load_state_dict(model.state_dict())
    x = torch.randn(3, 2, 5, 5, dtype=torch.float64)
    e = pellucid.explain(model, x, target=1, method="lrp.zero")
    gxi = pellucid.explain(linearised, x, target=1, method="gradient_x_input")
    torch.testing.assert_close(e.attribution, gxi.attribution)
    torch.testing.assert_close(_sums(e), _logit(model, x, 1))


def test_maxpool_average_option_splits_by_contribution():
    model = nn.Sequential(nn.MaxPool1d(2)).eval()
    x = torch.tensor([[[1.0, 3.0, 4.0, 2.0]]])
    wta = pellucid.explain(model, x, target=0, method="lrp.zero")
    torch.testing.assert_close(wta.attribution, torch.tensor([[[0.0, 3.0, 4.0, 0.0]]]))
    avg = pellucid.explain(model, x, target=0, method="lrp",
                           composite=Composite(maxpool=Average()))
    # window (1, 3) carries 3: split 1/4, 3/4; window (4, 2) carries 4: split 4/6, 2/6
    torch.testing.assert_close(avg.attribution, torch.tensor([[[0.75, 2.25, 8 / 3, 4 / 3]]]))


# ----------------------------------------------------------------------------------------------
# gradient-type rules and DeepLIFT
# ----------------------------------------------------------------------------------------------


class _GuidedReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g.clamp(min=0) * (x > 0)


class _DeconvReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        return g.clamp(min=0)


class SmallNet(nn.Module):
    def __init__(self, relu=F.relu):
        super().__init__()
        self.c1 = nn.Conv2d(2, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(16, 3)
        self.relu = relu

    def forward(self, x):
        x = F.max_pool2d(self.relu(self.c1(x)), 2)
        x = self.relu(self.c2(x)) + x
        return self.fc(self.relu(F.adaptive_avg_pool2d(x, 2).flatten(1)))


@pytest.mark.parametrize("method, fn", [("guided_backprop", _GuidedReLU),
                                        ("deconvnet", _DeconvReLU)])
def test_guided_backprop_and_deconvnet_match_their_definitions(method, fn):
    torch.manual_seed(3)
    model = SmallNet().eval()
    reference = SmallNet(relu=fn.apply).eval()
    reference.load_state_dict(model.state_dict())
    x = torch.randn(3, 2, 8, 8)
    e = pellucid.explain(model, x, target=[0, 1, 2], method=method)
    xr = x.clone().requires_grad_(True)
    out = reference(xr)
    (grad,) = torch.autograd.grad(out[torch.arange(3), torch.tensor([0, 1, 2])].sum(), xr)
    torch.testing.assert_close(e.attribution, grad)


def test_deeplift_rescale_sums_to_difference_and_matches_closed_form():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 7), nn.ReLU(),
                          nn.Linear(7, 3)).double().eval()
    x = torch.randn(4, 5, dtype=torch.float64)
    base = torch.randn(1, 5, dtype=torch.float64)
    e = pellucid.explain(model, x, target=2, method="deeplift", baseline=base)
    diff = _logit(model, x, 2) - _logit(model, base, 2)
    torch.testing.assert_close(_sums(e), diff, rtol=1e-10, atol=1e-10)
    assert e.extras["convergence_delta"].abs().max() < 1e-10
    # closed form for the Rescale rule: multipliers Δa/Δz at each ReLU, chain rule elsewhere
    w1, w2, w3 = model[0].weight, model[2].weight, model[4].weight
    with torch.no_grad():
        z1, z1b = model[0](x), model[0](base)
        a1, a1b = z1.relu(), z1b.relu()
        z2, z2b = model[2](a1), model[2](a1b)
        m2 = torch.where((z2 - z2b).abs() > 1e-7, (z2.relu() - z2b.relu()) / (z2 - z2b),
                         (z2 > 0).double())
        m1 = torch.where((z1 - z1b).abs() > 1e-7, (a1 - a1b) / (z1 - z1b), (z1 > 0).double())
        mult = ((w3[2] * m2) @ w2 * m1) @ w1
    torch.testing.assert_close(e.attribution, (x - base) * mult)


# ----------------------------------------------------------------------------------------------
# composites, selectors, describe, errors, the model untouched
# ----------------------------------------------------------------------------------------------


def test_composite_precedence_name_position_type():
    model = randomise_batchnorm(VGGish()).eval()
    x = torch.randn(1, 3, 16, 16)
    composite = Composite({"features.4": Flat(), FIRST: ZPlus(), nn.Conv2d: Gamma(0.5),
                           LAST_LINEAR: Epsilon(0.3), "classifier.*": Epsilon(0.2),
                           nn.Linear: Epsilon(0.1)})
    text = pellucid.lrp.describe(model, composite, x, show=False)
    lines = {line.split()[1]: line for line in text.splitlines()[1:] if " layer " in line}
    assert "ZPlus" in lines["features.0"]
    assert "Flat" in lines["features.4"]
    assert "epsilon=0.2" in lines["classifier.0"]  # a pattern wins over a type
    assert "epsilon=0.3" in lines["classifier.3"]
    text = pellucid.lrp.describe(model, Composite({CONV: Gamma(0.5)}), x, show=False)
    assert text.count("Gamma(gamma=0.5") == 2


def test_custom_composite_overrides_a_named_one():
    model = randomise_batchnorm(VGGish()).eval()
    x = torch.randn(2, 3, 16, 16)
    plain = pellucid.explain(model, x, target=0, method="lrp.epsilon_plus")
    same = pellucid.explain(model, x, target=0, method="lrp.epsilon_plus",
                            composite=Composite({"nothing.here": Flat()}))
    changed = pellucid.explain(model, x, target=0, method="lrp.epsilon_plus",
                               composite=Composite({nn.Conv2d: Gamma(0.25)}))
    gamma = pellucid.explain(model, x, target=0, method="lrp",
                             composite=Composite({nn.Conv2d: Gamma(0.25)}, default=Epsilon(1e-6)))
    torch.testing.assert_close(plain.attribution, same.attribution)
    torch.testing.assert_close(changed.attribution, gamma.attribution)
    assert not torch.allclose(plain.attribution, changed.attribution)


def test_describe_names_ops_without_rules():
    class CumProd(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            h = self.fc(x)
            return torch.cumprod(h, dim=1)

    text = pellucid.lrp.describe(CumProd().eval(), None, torch.randn(2, 3), show=False)
    assert "NO RULE" in text and "cumprod" in text
    assert "Epsilon(epsilon=1e-06" in text


def test_describe_shows_full_dotted_module_names():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.a_convolution_with_a_very_long_name = nn.Conv2d(2, 2, 3, padding=1)

        def forward(self, x):
            return torch.relu(self.a_convolution_with_a_very_long_name(x)) + x

    class Nested(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Sequential(nn.Sequential(Block(), Block()))
            self.head = nn.Linear(2, 3)

        def forward(self, x):
            h = self.encoder(x)
            return self.head(self.head(h.mean((2, 3))).narrow(1, 0, 2))  # head called twice

    model = Nested().eval()
    composite = Composite({"encoder.0.1.*": Flat()})
    text = pellucid.lrp.describe(model, composite, torch.randn(1, 2, 4, 4), show=False)
    header, *rows = text.splitlines()
    assert header.split() == ["#", "module", "op", "kind", "rule"]
    start = header.index("module")
    modules = [row[start:].split()[0] for row in rows]
    layers = [m for m, row in zip(modules, rows) if " layer " in row]
    assert layers == ["encoder.0.0.a_convolution_with_a_very_long_name",
                      "encoder.0.1.a_convolution_with_a_very_long_name", "head", "head#2"]
    names = dict(model.named_modules())
    assert all(m.split("#")[0] in names or m == "<model>" for m in modules)
    assert "Flat" in rows[modules.index("encoder.0.1.a_convolution_with_a_very_long_name")]
    assert "Flat" not in rows[modules.index("encoder.0.0.a_convolution_with_a_very_long_name")]


def test_op_without_rule_raises_naming_op_and_module(snapshot, untouched):
    class Inner(nn.Module):
        def forward(self, x):
            return torch.sort(x, dim=1).values

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)
            self.block = Inner()

        def forward(self, x):
            return self.block(self.fc(x))

    model = Outer().eval()
    before = snapshot(model)
    with pytest.raises(NotImplementedError, match=r"'sort' in block"):
        pellucid.explain(model, torch.randn(2, 3), target=0, method="lrp.epsilon")
    untouched(model, before)
    # gradient-type methods use the gradient there
    pellucid.explain(model, torch.randn(2, 3), target=0, method="guided_backprop")


def test_batch_equals_concatenation_of_single_samples():
    model = randomise_batchnorm(VGGish()).eval()
    x = torch.randn(3, 3, 16, 16)
    for method in ("lrp.epsilon_gamma_box", "deep_taylor", "deeplift"):
        whole = pellucid.explain(model, x, target=1, method=method).attribution
        parts = torch.cat([pellucid.explain(model, x[i:i + 1], target=1, method=method).attribution
                           for i in range(3)])
        torch.testing.assert_close(whole, parts, rtol=1e-4, atol=1e-6)


def test_model_and_inputs_untouched_and_output_is_the_models(snapshot, untouched):
    model = Residual().eval()
    x = torch.randn(2, 3, 6, 6)
    x_before = x.clone()
    before = snapshot(model)
    e = pellucid.explain(model, x, target=0, method="lrp.epsilon_plus")
    untouched(model, before)
    assert torch.equal(x, x_before)
    torch.testing.assert_close(e.output, model(x))
    assert not torch.nn.modules.module._global_forward_hooks
    assert not torch.nn.modules.module._global_forward_pre_hooks


def test_lrp_method_defaults_to_epsilon_and_rejects_non_composites():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    x = torch.randn(2, 3)
    plain = pellucid.explain(model, x, target=0, method="lrp").attribution
    eps = pellucid.explain(model, x, target=0, method="lrp.epsilon").attribution
    torch.testing.assert_close(plain, eps)
    with pytest.raises(TypeError, match="Composite"):
        pellucid.explain(model, x, target=0, method="lrp", composite={nn.Linear: Flat()})


class IdentityThenInPlace(nn.Module):
    """Dropout in eval mode returns its input object; the in-place ops that follow must still
    leave the recorded values of every earlier op intact."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4, bias=False)
        self.b = nn.Linear(4, 2, bias=False)

    def forward(self, x):
        h = self.a(x)
        y = F.dropout(h, 0.5, training=False)
        y += x
        y.relu_()
        return self.b(y)


class AliasingWrite(nn.Module):
    """An in-place op on a view changes its base, which an earlier op recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4, bias=False)
        self.b = nn.Linear(4, 2, bias=False)

    def forward(self, x):
        h = self.a(x)
        first = self.b(h)
        h.view(-1, 2, 2).relu_()
        return first + self.b(h)


def test_in_place_after_identity_ops_and_aliasing_writes():
    x = torch.randn(3, 4)
    model = IdentityThenInPlace().eval()
    e = pellucid.explain(model, x, target=0, method="lrp.zero")
    gxi = pellucid.explain(model, x, target=0, method="gradient_x_input")
    torch.testing.assert_close(e.attribution, gxi.attribution)
    with pytest.raises(NotImplementedError, match="through a view"):
        pellucid.explain(AliasingWrite().eval(), x, target=0, method="lrp.zero")


class HomeMade(nn.Module):
    """Functional patterns: chunk + gated linear unit, einsum with a weight, max over a dim,
    in-place scaling, interpolation, Python-level reuse of a layer."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv1d(2, 8, 3, padding=1, bias=False)
        self.weight = nn.Parameter(torch.randn(4, 3))

    def forward(self, x):
        signal, gate = self.proj(x).chunk(2, dim=1)
        h = signal * torch.sigmoid(gate)  # GLU
        h = F.interpolate(h, scale_factor=2.0, mode="linear")
        h *= 0.5
        h = h.max(dim=-1).values  # (B, 4)
        return torch.einsum("bi,ij->bj", F.relu(h), self.weight)


def test_home_made_functional_patterns_conserve():
    torch.manual_seed(6)
    model = HomeMade().double().eval()
    x = torch.randn(3, 2, 7, dtype=torch.float64)
    e = pellucid.explain(model, x, target=2, method="lrp.zero")
    torch.testing.assert_close(_sums(e), _logit(model, x, 2))
    text = pellucid.lrp.describe(model, None, x, show=False)
    assert "NO RULE" not in text
    assert "SignalTakesAll" in text and "WinnerTakeAll" in text
