"""The rule-based methods: excitation backprop (MWP and contrastive MWP), DeepLIFT through
max pooling, the rule engine's errors on odd models, regressors, and settings checked where
a method is built."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pellucid
import pellucid.lrp
from pellucid.errors import (
    ArgumentError,
    ArgumentTypeError,
    ModelError,
    PellucidError,
    UnsupportedModelError,
)
from pellucid.lrp import FIRST, ChainRule, Composite, Rescale, SplitDifference, ZBox, ZPlus
from pellucid.lrp.tape import UnsupportedOpError

RULE_METHODS = sorted(
    name for name in pellucid.list_methods()
    if name.startswith(("lrp", "excitation_backprop")) or name in (
        "deep_taylor", "guided_backprop", "deconvnet", "deeplift")
)


def _hand_net() -> nn.Module:
    """x (2) → W1 (no bias) → ReLU → W2 (no bias) → 2 classes, the weights of the hand cases."""
    first, last = nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[1.0, 1.0], [1.0, -0.25]]))
        last.weight.copy_(torch.tensor([[1.0, 2.0], [-1.0, 1.0]]))
    return nn.Sequential(first, nn.ReLU(), last).double().eval()


def _conv_net(bias: bool = True, pool: nn.Module | None = None) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, bias=bias), nn.ReLU(),
        pool if pool is not None else nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1, bias=bias), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10, bias=bias),
    ).double().eval()


def _sums(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).sum(1)


def _raises(error_class, argument, call):
    with pytest.raises(error_class) as info:
        call()
    assert isinstance(info.value, PellucidError)
    assert info.value.argument == argument
    assert argument in str(info.value)
    return info.value


# ----------------------------------------------------------------------------------------------
# excitation backprop: marginal winning probabilities (MWP)
# ----------------------------------------------------------------------------------------------


def test_mwp_by_hand():
    # x = (1, 2): hidden a = relu((3, 1 - 0.5)) = (3, 0.5).
    # target 0, w⁺ = (1, 2): P(a) = (3, 1)/4; unit 1 splits (1, 2)/3, unit 2 (1, 0)/1:
    # P(x) = 3/4·(1/3, 2/3) + 1/4·(1, 0) = (1/2, 1/2).
    # target 1, w⁺ = (0, 1): P(a) = (0, 1), P(x) = (1, 0).
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    model = _hand_net()
    for target, expected in [(0, [0.5, 0.5]), (1, [1.0, 0.0])]:
        e = pellucid.explain(model, x, target=target, method="excitation_backprop")
        torch.testing.assert_close(e.attribution, torch.tensor([expected], dtype=torch.float64))


def test_mwp_is_a_probability_on_bias_free_nets():
    model = _conv_net(bias=False)
    x = torch.rand(4, 3, 8, 8, dtype=torch.float64)  # non-negative inputs
    e = pellucid.explain(model, x, target=[0, 3, 5, 9], method="excitation_backprop")
    assert (e.attribution >= 0).all()
    torch.testing.assert_close(_sums(e.attribution), torch.ones(4, dtype=torch.float64))


# ----------------------------------------------------------------------------------------------
# contrastive MWP
# ----------------------------------------------------------------------------------------------


def test_contrastive_mwp_by_hand():
    # target 1: MWP = (1, 0) (above). Its dual has weights (1, -1): (-w)⁺ = (1, 0), so
    # P(a) = (1, 0) and P(x) = (1/3, 2/3). Contrastive: (1 - 1/3, 0 - 2/3).
    # target 0: w = (1, 2) has no negative weight, the dual receives no excitation (P = 0).
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    model = _hand_net()
    for target, expected in [(1, [2 / 3, -2 / 3]), (0, [0.5, 0.5])]:
        e = pellucid.explain(model, x, target=target, method="excitation_backprop.contrastive")
        torch.testing.assert_close(e.attribution, torch.tensor([expected], dtype=torch.float64))


def _negated(model: nn.Module, layer: str) -> nn.Module:
    dual = copy.deepcopy(model)
    with torch.no_grad():
        dual.get_submodule(layer).weight.neg_()
    return dual


def test_contrastive_mwp_is_the_target_map_minus_the_dual_map():
    """One walk equals two: MWP(model) − MWP(model with the classifier's weights negated)."""
    model = _conv_net()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    target = [1, 4, 7]
    e = pellucid.explain(model, x, target=target, method="excitation_backprop.contrastive")
    mwp = pellucid.explain(model, x, target=target, method="excitation_backprop").attribution
    dual = pellucid.explain(_negated(model, "7"), x, target=target,
                            method="excitation_backprop").attribution
    torch.testing.assert_close(e.attribution, mwp - dual)
    assert e.attribution.abs().sum() > 0


def test_contrastive_mwp_sums_to_zero_on_bias_free_nets():
    model = _conv_net(bias=False)
    x = torch.rand(3, 3, 8, 8, dtype=torch.float64)
    e = pellucid.explain(model, x, target=[0, 1, 2], method="excitation_backprop.contrastive")
    torch.testing.assert_close(_sums(e.attribution), torch.zeros(3, dtype=torch.float64))


def test_contrastive_mwp_with_a_convolutional_classifier():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 5, 1), nn.Flatten(1),
                          ).double().eval()
    x = torch.randn(2, 3, 3, 3, dtype=torch.float64)
    _raises(ArgumentError, "classifier",
            lambda: pellucid.explain(model, x, method="excitation_backprop.contrastive"))
    _raises(ArgumentError, "classifier", lambda: pellucid.explain(
        model, x, method="excitation_backprop.contrastive", classifier="head"))
    e = pellucid.explain(model, x, target=2, method="excitation_backprop.contrastive",
                         classifier="2")
    mwp = pellucid.explain(model, x, target=2, method="excitation_backprop").attribution
    dual = pellucid.explain(_negated(model, "2"), x, target=2,
                            method="excitation_backprop").attribution
    torch.testing.assert_close(e.attribution, mwp - dual)


# ----------------------------------------------------------------------------------------------
# DeepLIFT and max pooling
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "ref", "gradient", "split"),
    [
        # y = 3, ȳ = 2. gradient: m = (1, 0), (x - x̄)·m = (3, 0), sum 3 ≠ Δy = 1.
        # split: max(y, ȳ) - ȳ = 1 to x's max (Δx = 3), y - max(y, ȳ) = 0 to x̄'s max.
        ([3.0, 1.0], [0.0, 2.0], [3.0, 0.0], [1.0, 0.0]),
        # y = 3, ȳ = 4. gradient: m = (0, 1) gives (0, 3), sum 3 ≠ Δy = -1.
        # split: 4 - 4 = 0 to x's max, 3 - 4 = -1 to x̄'s max (Δx = -3): m = (1/3, 0).
        ([1.0, 3.0], [4.0, 0.0], [0.0, 3.0], [-1.0, 0.0]),
    ],
)
def test_deeplift_max_of_two_by_hand(x, ref, gradient, split):
    model = nn.Sequential(nn.MaxPool1d(2), nn.Flatten()).double().eval()
    inputs = torch.tensor([[x]], dtype=torch.float64)
    baseline = torch.tensor([[ref]], dtype=torch.float64)
    delta_y = max(x) - max(ref)
    for maxpool, expected in [("gradient", gradient), ("split", split)]:
        e = pellucid.explain(model, inputs, target=0, method="deeplift", baseline=baseline,
                             maxpool=maxpool)
        torch.testing.assert_close(e.attribution,
                                   torch.tensor([[expected]], dtype=torch.float64))
        gap = sum(expected) - delta_y
        torch.testing.assert_close(e.extras["convergence_delta"],
                                   torch.tensor([gap], dtype=torch.float64))
    assert e.extras["convergence_delta"].abs().max() < 1e-12  # split: summation-to-delta


@pytest.mark.parametrize("pool", [nn.MaxPool2d(2), nn.MaxPool2d(3, stride=1, padding=1),
                                  nn.AdaptiveMaxPool2d(3)])
def test_deeplift_split_sums_to_the_difference_for_any_baseline(pool):
    model = _conv_net(pool=pool)
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    baseline = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    target = [0, 2, 4, 6]
    with torch.no_grad():
        difference = (model(x) - model(baseline))[torch.arange(4), target]
    split = pellucid.explain(model, x, target=target, method="deeplift", baseline=baseline,
                             maxpool="split")
    torch.testing.assert_close(_sums(split.attribution), difference, rtol=1e-9, atol=1e-9)
    gradient = pellucid.explain(model, x, target=target, method="deeplift", baseline=baseline)
    gap = _sums(gradient.attribution) - difference
    torch.testing.assert_close(gradient.extras["convergence_delta"], gap)
    assert gap.abs().max() > 1e-3  # the gradient rule misses it: convergence_delta says so


def test_deeplift_rules_agree_when_the_baseline_is_constant_in_each_window():
    """A zero baseline gives relu(bias) per channel at the first pooling: both rules are exact."""
    model = _conv_net()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    split = pellucid.explain(model, x, target=1, method="deeplift", maxpool="split")
    gradient = pellucid.explain(model, x, target=1, method="deeplift")
    torch.testing.assert_close(split.attribution, gradient.attribution)
    assert gradient.extras["convergence_delta"].abs().max() < 1e-9


def test_rules_that_need_a_baseline_name_the_composite_elsewhere():
    model = nn.Sequential(nn.Unflatten(1, (1, 4)), nn.MaxPool1d(2), nn.Flatten(),
                          nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    x = torch.randn(2, 4)
    for composite in (Composite(activation=Rescale()), Composite(maxpool=SplitDifference())):
        _raises(ArgumentError, "composite",
                lambda c=composite: pellucid.explain(model, x, method="lrp", composite=c))


# ----------------------------------------------------------------------------------------------
# models the rule engine cannot record, and models it can
# ----------------------------------------------------------------------------------------------


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


@pytest.mark.parametrize("form", ["script", "trace", "submodule"])
def test_torchscript_is_refused_naming_the_eager_module(form, snapshot, untouched):
    model, x = _mlp(), torch.randn(2, 4)
    if form == "script":
        model = torch.jit.script(model)
    elif form == "trace":
        model = torch.jit.trace(model, x)
    else:
        model = nn.Sequential(torch.jit.script(model[0]), model[1], model[2]).eval()
    before = snapshot(model)
    for method in ("lrp.epsilon", "deeplift", "excitation_backprop"):
        error = _raises(UnsupportedModelError, "model",
                        lambda m=method: pellucid.explain(model, x, method=m))
        assert "eager" in str(error)
    untouched(model, before)


def test_a_compiled_model_is_explained_as_its_eager_module():
    model, x = _mlp(), torch.randn(3, 4)
    compiled = torch.compile(model, backend="eager")
    composite = Composite({"2": ZPlus()})  # a layer name: "_orig_mod.2" would not match it
    for method, settings in [("lrp", {"composite": composite}), ("deeplift", {}),
                             ("excitation_backprop.contrastive", {})]:
        eager = pellucid.explain(model, x, target=1, method=method, **settings)
        other = pellucid.explain(compiled, x, target=1, method=method, **settings)
        torch.testing.assert_close(other.attribution, eager.attribution)
        assert other.extras["layer_relevance"].keys() == eager.extras["layer_relevance"].keys()


class _Inside(nn.Module):
    def __init__(self, context) -> None:
        super().__init__()
        self.context = context
        self.body = _mlp()

    def forward(self, x):
        with self.context():
            return self.body(x)


def test_a_model_under_inference_mode_is_a_model_error(snapshot, untouched):
    model, x = _Inside(torch.inference_mode).eval(), torch.randn(2, 4)
    before = snapshot(model)
    error = _raises(ModelError, "model", lambda: pellucid.explain(model, x, method="lrp.epsilon"))
    assert "inference_mode" in str(error)
    untouched(model, before)


def test_a_model_under_no_grad_is_explained_as_without():
    model, x = _Inside(torch.no_grad).eval(), torch.randn(2, 4)
    for method in ("lrp.epsilon_plus", "deeplift", "guided_backprop"):
        inside = pellucid.explain(model, x, target=2, method=method).attribution
        plain = pellucid.explain(model.body, x, target=2, method=method).attribution
        torch.testing.assert_close(inside, plain)


def test_an_output_that_leaves_torch_is_a_model_error():
    class ViaNumpy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(torch.as_tensor(x.numpy()))

    error = _raises(ModelError, "model", lambda: pellucid.explain(
        ViaNumpy().eval(), torch.randn(2, 4), method="lrp.epsilon"))
    assert "NumPy" in str(error)


def test_an_op_without_a_rule_names_the_op_and_the_fixes():
    class Sorted(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return torch.sort(self.fc(x), dim=1).values

    model, x = Sorted().eval(), torch.randn(2, 4)
    error = _raises(UnsupportedOpError, "model",
                    lambda: pellucid.explain(model, x, method="lrp.epsilon"))
    assert isinstance(error, UnsupportedModelError) and isinstance(error, NotImplementedError)
    assert "'sort'" in str(error) and "ChainRule" in str(error)
    # the fix the message names works, and gradient-type methods need none
    fixed = pellucid.explain(model, x, method="lrp.epsilon", composite=Composite(other=ChainRule()))
    assert torch.isfinite(fixed.attribution).all()
    pellucid.explain(model, x, method="deeplift")


def test_a_rule_that_cannot_handle_an_op_names_the_composite():
    model, x = _mlp(), torch.randn(2, 4)
    error = _raises(ArgumentError, "composite", lambda: pellucid.explain(
        model, x, method="lrp", composite=Composite(activation=ZPlus())))
    assert "'activation'" in str(error)


# ----------------------------------------------------------------------------------------------
# regressors: an output of shape (B,) or (B, 1), target=None
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["(B,)", "(B, 1)"])
def test_every_rule_method_explains_a_regressor(shape):
    torch.manual_seed(0)
    layers = [nn.Linear(4, 8, bias=False), nn.ReLU(), nn.Linear(8, 1, bias=False)]
    model = nn.Sequential(*layers, *([nn.Flatten(0)] if shape == "(B,)" else [])).eval()
    x = torch.randn(5, 4)
    with torch.no_grad():
        value = model(x).reshape(5)
    for method in RULE_METHODS:
        for target in (None, lambda out: out.reshape(len(out))):
            e = pellucid.explain(model, x, target=target, method=method)
            assert e.attribution.shape == x.shape and torch.isfinite(e.attribution).all()
            if method in ("lrp.zero", "lrp.epsilon", "deeplift"):  # conservative here
                torch.testing.assert_close(_sums(e.attribution), value, rtol=1e-4, atol=1e-5)
            if method.startswith("lrp"):  # relevance starts as the output itself
                torch.testing.assert_close(e.extras["layer_relevance"]["output"], value)


# ----------------------------------------------------------------------------------------------
# settings are checked where a method is built, naming the setting
# ----------------------------------------------------------------------------------------------

NAN = float("nan")
BAD_SETTINGS = [
    ("lrp.attnlrp", {"epsilon": -1.0}, ArgumentError, "epsilon"),
    ("lrp.cp_lrp", {"epsilon": NAN}, ArgumentError, "epsilon"),
    ("lrp.epsilon", {"epsilon": NAN}, ArgumentError, "epsilon"),
    ("lrp.epsilon", {"epsilon": -1e-3}, ArgumentError, "epsilon"),
    ("lrp.epsilon", {"epsilon": True}, ArgumentTypeError, "epsilon"),
    ("lrp.epsilon", {"epsilon": "small"}, ArgumentTypeError, "epsilon"),
    ("lrp.epsilon_plus", {"epsilon": float("inf")}, ArgumentError, "epsilon"),
    ("lrp.epsilon_plus", {"bias": "positive"}, ArgumentError, "bias"),
    ("lrp.epsilon_plus_flat", {"bias": None}, ArgumentTypeError, "bias"),
    ("lrp.epsilon_gamma_box", {"gamma": -0.25}, ArgumentError, "gamma"),
    ("lrp.epsilon_gamma_box", {"gamma": NAN}, ArgumentError, "gamma"),
    ("lrp.epsilon_gamma_box", {"low": 1.0, "high": 0.0}, ArgumentError, "low"),
    ("lrp.epsilon_alpha2_beta1", {"bias": "all"}, ArgumentError, "bias"),
    ("lrp.epsilon_alpha2_beta1_flat", {"epsilon": False}, ArgumentTypeError, "epsilon"),
    ("deep_taylor", {"low": NAN}, ArgumentError, "low"),
    ("deep_taylor", {"high": "max"}, ArgumentTypeError, "high"),
    ("lrp", {"composite": "epsilon"}, ArgumentTypeError, "composite"),
    ("lrp.zero", {"composite": pellucid.lrp.Epsilon()}, ArgumentTypeError, "composite"),
    ("excitation_backprop.contrastive", {"classifier": 3}, ArgumentTypeError, "classifier"),
    ("excitation_backprop.contrastive", {"classifier": ""}, ArgumentTypeError, "classifier"),
    ("deeplift", {"maxpool": "rescale"}, ArgumentError, "maxpool"),
    ("deeplift", {"maxpool": True}, ArgumentTypeError, "maxpool"),
    ("deeplift", {"baseline": NAN}, ArgumentError, "baseline"),
    ("deeplift", {"baseline": "zeros"}, ArgumentError, "baseline"),
    ("deeplift", {"baseline": torch.tensor([0.0, NAN])}, ArgumentError, "baseline"),
    ("deeplift", {"blur_sigma": 0.0}, ArgumentError, "blur_sigma"),
    ("deeplift", {"seed": 1.5}, ArgumentTypeError, "seed"),
    ("deeplift", {"seed": True}, ArgumentTypeError, "seed"),
]


@pytest.mark.parametrize(("method", "settings", "error", "argument"), BAD_SETTINGS)
def test_bad_settings_are_refused_where_the_method_is_built(method, settings, error, argument):
    _raises(error, argument, lambda: pellucid.get_method(method, **settings))


def test_every_rule_method_has_a_bad_setting_case():
    with_settings = {m for m in RULE_METHODS if pellucid.get_method(m).settings()}
    assert with_settings <= {m for m, *_ in BAD_SETTINGS} | {
        "excitation_backprop", "guided_backprop", "deconvnet"}  # composite only: as "lrp"


# ----------------------------------------------------------------------------------------------
# bias conventions as method settings
# ----------------------------------------------------------------------------------------------


def test_deep_taylor_bias_by_hand():
    """z⁺ above the first layer: R_hidden = f·Σa w⁺ / (Σa w⁺ + b⁺) with b⁺ ("split"), f without."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)).double().eval()
    with torch.no_grad():
        model[2].bias.fill_(0.7)
    x = torch.randn(2, 3, dtype=torch.float64)
    with torch.no_grad():
        a = model[1](model[0](x))
        f = model(x)[:, 0]
        positive = (a * model[2].weight.clamp(min=0)).sum(1)
    for bias, expected in [("none", f), ("split", f * positive / (positive + 0.7)),
                           ("signed", f * positive / (positive + 0.7))]:
        e = pellucid.explain(model, x, target=0, method="deep_taylor", bias=bias)
        torch.testing.assert_close(e.extras["layer_relevance"]["2"], expected)


@pytest.mark.parametrize("method", ["lrp.epsilon_plus", "lrp.epsilon_plus_flat",
                                    "lrp.epsilon_gamma_box", "lrp.epsilon_alpha2_beta1",
                                    "lrp.epsilon_alpha2_beta1_flat", "deep_taylor"])
def test_bias_setting_reaches_the_rules(method):
    model = _conv_net()
    with torch.no_grad():
        for layer in (model[0], model[3]):
            layer.bias.uniform_(0.2, 0.5)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    runs = {bias: pellucid.explain(model, x, target=1, method=method, bias=bias).attribution
            for bias in ("none", "split")}
    assert not torch.allclose(runs["none"], runs["split"])
    default = pellucid.explain(model, x, target=1, method=method).attribution
    torch.testing.assert_close(default, runs[pellucid.get_method(method).bias])


def test_deep_taylor_bias_equals_its_composite():
    model = _conv_net()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    e = pellucid.explain(model, x, target=3, method="deep_taylor", bias="split")
    by_hand = Composite({FIRST: ZBox()}, default=ZPlus("split"))
    custom = pellucid.explain(model, x, target=3, method="lrp", composite=by_hand)
    torch.testing.assert_close(e.attribution, custom.attribution)


def test_functional_max_pool_with_indices_is_split_too():
    class Pooled(nn.Module):
        def forward(self, x):
            values, _ = F.max_pool1d(x, 2, return_indices=True)
            return values.flatten(1)

    x = torch.tensor([[[3.0, 1.0, 1.0, 3.0]]], dtype=torch.float64)
    baseline = torch.tensor([[[0.0, 2.0, 4.0, 0.0]]], dtype=torch.float64)
    e = pellucid.explain(Pooled().eval(), x, target=lambda out: out.sum(1), method="deeplift",
                         baseline=baseline, maxpool="split")
    # windows: (3, 1) vs (0, 2): Δy = 1 to x's max; (1, 3) vs (4, 0): Δy = -1 to x̄'s max
    torch.testing.assert_close(e.attribution,
                               torch.tensor([[[1.0, 0.0, -1.0, 0.0]]], dtype=torch.float64))


def test_dropout_in_train_mode_says_to_call_eval():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Linear(4, 3))  # train mode
    error = _raises(UnsupportedOpError, "model", lambda: pellucid.explain(
        model, torch.randn(2, 4), method="lrp.epsilon"))
    assert "model.eval()" in str(error)


def test_dtype_casts_pass_messages_through():
    class Cast(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3, bias=False)

        def forward(self, x):
            return self.fc(x.half().float())

    model, x = Cast().eval(), torch.tensor([[0.5, -1.0, 2.0, 0.25]])  # exact in half
    cast = pellucid.explain(model, x, target=1, method="lrp.zero").attribution
    plain = pellucid.explain(model.fc, x, target=1, method="lrp.zero").attribution
    torch.testing.assert_close(cast, plain, rtol=1e-3, atol=1e-3)  # messages in half there


@pytest.mark.parametrize(("build", "argument"), [
    (lambda: pellucid.lrp.Rescale(tolerance=-1.0), "tolerance"),
    (lambda: pellucid.lrp.SplitDifference(tolerance=NAN), "tolerance"),
    (lambda: pellucid.lrp.Average(epsilon=-1e-9), "epsilon"),
])
def test_deeplift_and_maxpool_rules_check_their_settings(build, argument):
    _raises(ArgumentError, argument, build)


class _Pooled(nn.Module):
    """A conv, then a max over the last dimension written one of three ways."""

    def __init__(self, how: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.fc, self.how = nn.Conv1d(1, 3, 3, padding=1), nn.Linear(3, 2), how

    def forward(self, x):
        h = self.conv(x).relu()
        if self.how == "amax":
            return self.fc(h.amax(dim=-1))
        if self.how == "max":
            return self.fc(torch.max(h, dim=-1).values)
        if self.how == "pairwise":
            return self.fc(torch.max(h, h.flip(-1)).mean(-1))
        return self.fc(F.max_pool1d(h, h.shape[-1]).flatten(1))


def test_the_average_rule_treats_max_reductions_as_one_window():
    x = torch.rand(2, 1, 8)
    average = Composite(maxpool=pellucid.lrp.Average())
    pooled = pellucid.explain(_Pooled("pool").eval(), x, 0, method="lrp", composite=average)
    for how in ("amax", "max"):
        e = pellucid.explain(_Pooled(how).eval(), x, 0, method="lrp", composite=average)
        torch.testing.assert_close(e.attribution, pooled.attribution)
    _raises(ArgumentError, "composite", lambda: pellucid.explain(
        _Pooled("pairwise").eval(), x, 0, method="lrp", composite=average))


@pytest.mark.parametrize("how", ["amax", "max", "pairwise", "pool"])
def test_deeplift_split_is_exact_through_every_max_op(how):
    model = _Pooled(how).double().eval()
    x = torch.randn(3, 1, 8, dtype=torch.float64)
    baseline = torch.randn(1, 1, 8, dtype=torch.float64)
    e = pellucid.explain(model, x, 0, method="deeplift", baseline=baseline, maxpool="split")
    with torch.no_grad():
        difference = model(x)[:, 0] - model(baseline)[:, 0]
    torch.testing.assert_close(_sums(e.attribution), difference, rtol=1e-9, atol=1e-9)
