"""Each LRP rule against an explicit matrix-form reference, and the closed-form identities.

The reference writes a layer as a dense matrix M (out × in) taken from the layer's Jacobian
(for a convolution, the Toeplitz-like matrix of the convolution), forms the contribution
matrix C_kj = x_j M_kj per sample, and applies each rule's formula from the papers with plain
tensor algebra. The engine computes the same rules with transposed convolutions.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pellucid
from pellucid.errors import ArgumentError, ArgumentTypeError
from pellucid.lrp import (
    AlphaBeta,
    Composite,
    Epsilon,
    Flat,
    Gamma,
    SignalTakesAll,
    WSquare,
    ZBox,
    Zero,
    ZPlus,
)


def _layers() -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    return {
        "linear": (nn.Linear(6, 4), (3, 6)),
        "conv1d": (nn.Conv1d(2, 3, 3, padding=1), (2, 2, 7)),
        "conv2d": (nn.Conv2d(2, 3, 3, stride=2, padding=1), (2, 2, 5, 5)),
        "conv3d": (nn.Conv3d(2, 2, 2), (2, 2, 3, 3, 3)),
    }


def _dense(layer: nn.Module, sample_shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, b): the layer as an explicit matrix out × in and the bias per output element."""
    x0 = torch.zeros(1, *sample_shape, dtype=torch.float64)
    bias = layer(x0).detach().reshape(-1)
    jac = torch.autograd.functional.jacobian(lambda v: layer(v.view(1, *sample_shape)).reshape(-1),
                                             x0.reshape(-1))
    return jac, bias


def _div(r, z):
    return torch.where(z == 0, torch.zeros_like(r), r / z)


def _stab(z, eps):
    return z + eps * torch.where(z >= 0, 1.0, -1.0).double()


def _bias_part(b, convention, part):
    """The bias that joins the ``part`` contributions under a bias convention."""
    if convention == "none":
        return torch.zeros_like(b)
    return b if convention == "signed" else part(b)


def reference(rule, M, b, x, r):
    """Relevance at the input of one layer, for one sample, from the rule's formula."""
    C = M * x[None, :]  # C_kj = x_j M_kj
    pos, neg = C.clamp(min=0), C.clamp(max=0)
    if isinstance(rule, Epsilon):  # includes Zero
        z = C.sum(1) + (b if rule.bias == "signed" else 0.0)
        return (C * _div(r, _stab(z, rule.epsilon))[:, None]).sum(0)
    if isinstance(rule, Gamma):  # the generalised rule: contributions of z_k's own sign
        z = C.sum(1) + (0.0 if rule.bias == "none" else b)
        up = z >= 0
        same = torch.where(up[:, None], pos, neg)
        same_bias = torch.where(up, b.clamp(min=0), b.clamp(max=0))
        denominator = z + rule.gamma * (same.sum(1) + (same_bias if rule.bias == "split" else 0))
        Cg = C + rule.gamma * same
        return (Cg * _div(r, _stab(denominator, rule.epsilon))[:, None]).sum(0)
    if isinstance(rule, (AlphaBeta, ZPlus)):
        alpha, beta = (rule.alpha, rule.beta) if isinstance(rule, AlphaBeta) else (1.0, 0.0)
        bp, bn = _bias_part(b, rule.bias, lambda v: v.clamp(min=0)), _bias_part(
            b, rule.bias, lambda v: v.clamp(max=0))
        rp = (pos * _div(r, pos.sum(1) + bp)[:, None]).sum(0)
        rn = (neg * _div(r, neg.sum(1) + bn)[:, None]).sum(0)
        return alpha * rp - beta * rn
    if isinstance(rule, ZBox):
        low = torch.as_tensor(rule.low, dtype=torch.float64).expand_as(x).reshape(-1)
        high = torch.as_tensor(rule.high, dtype=torch.float64).expand_as(x).reshape(-1)
        Cb = C - low[None, :] * M.clamp(min=0) - high[None, :] * M.clamp(max=0)
        return (Cb * _div(r, Cb.sum(1))[:, None]).sum(0)
    if isinstance(rule, WSquare):
        W2 = M.square()
        return (W2 * _div(r, W2.sum(1))[:, None]).sum(0)
    if isinstance(rule, Flat):
        F1 = (M != 0).double()
        return (F1 * _div(r, F1.sum(1))[:, None]).sum(0)
    raise AssertionError(rule)


RULES = {
    "zero": Zero(),
    "zero_bias_none": Zero(bias="none"),
    "epsilon": Epsilon(0.1),
    "gamma": Gamma(0.25),
    "gamma_bias_none": Gamma(0.25, bias="none"),
    "gamma_bias_signed": Gamma(0.25, bias="signed"),
    "gamma_large": Gamma(4.0, epsilon=0.0),
    "alpha2beta1": AlphaBeta(2.0, 1.0),
    "alpha2beta1_bias_split": AlphaBeta(2.0, 1.0, bias="split"),
    "alpha1beta0": AlphaBeta(1.0, 0.0),
    "alpha1beta0_bias_signed": AlphaBeta(1.0, 0.0, bias="signed"),
    "alpha2beta1_bias_signed": AlphaBeta(2.0, 1.0, bias="signed"),
    "zplus": ZPlus(),
    "zplus_bias_split": ZPlus(bias="split"),
    "zplus_bias_signed": ZPlus(bias="signed"),
    "zbox": ZBox(low=-1.5, high=2.0),
    "wsquare": WSquare(),
    "flat": Flat(),
}


@pytest.mark.parametrize("layer_name", list(_layers()))
@pytest.mark.parametrize("rule_name", list(RULES))
@pytest.mark.parametrize("sign", ["mixed", "nonnegative"])
def test_rule_matches_matrix_reference(layer_name, rule_name, sign):
    torch.manual_seed(1)
    layer, shape = _layers()[layer_name]
    layer = layer.double().eval()
    rule = RULES[rule_name]
    x = torch.randn(*shape, dtype=torch.float64)
    if sign == "nonnegative":
        x = x.abs()
    if isinstance(rule, ZBox):  # z^B is defined inside its bounds
        x = x.clamp(rule.low, rule.high)
    n_out = layer(x[:1]).numel()
    weights = torch.randn(n_out, dtype=torch.float64)  # the score Σ_k c_k z_k → R = z ⊙ c
    score = lambda out: (out.flatten(1) * weights).sum(1)  # noqa: E731
    e = pellucid.explain(layer, x, target=score, method="lrp", composite=Composite(default=rule))
    M, b = _dense(layer, shape[1:])
    for i in range(shape[0]):
        z = layer(x[i:i + 1]).detach().reshape(-1)
        expected = reference(rule, M, b, x[i].reshape(-1), z * weights)
        torch.testing.assert_close(e.attribution[i].reshape(-1), expected, rtol=1e-7, atol=1e-9)


def test_zbox_accepts_per_channel_tensor_bounds():
    torch.manual_seed(2)
    layer = nn.Conv2d(2, 3, 3, padding=1).double().eval()
    low = torch.tensor([-1.0, -2.0], dtype=torch.float64).view(2, 1, 1)
    high = torch.tensor([1.0, 3.0], dtype=torch.float64).view(2, 1, 1)
    x = torch.max(torch.min(torch.randn(2, 2, 4, 4, dtype=torch.float64), high), low)
    e = pellucid.explain(layer, x, target=0, method="lrp",
                         composite=Composite(default=ZBox(low=low, high=high)))
    M, b = _dense(layer, (2, 4, 4))
    for i in range(2):
        z = layer(x[i:i + 1]).detach().reshape(-1)
        c = torch.zeros_like(z)
        c[:16] = 1.0  # class 0 of a conv output scores the sum of channel 0
        rule = ZBox(low=low.expand(2, 4, 4).reshape(-1), high=high.expand(2, 4, 4).reshape(-1))
        expected = reference(rule, M, b, x[i].reshape(-1), z * c)
        torch.testing.assert_close(e.attribution[i].reshape(-1), expected)


def test_alpha_beta_needs_alpha_minus_beta_one():
    with pytest.raises(ValueError, match="alpha - beta = 1"):
        AlphaBeta(2.0, 2.0)


def _bias_free_relu_net() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 4, 3, padding=1, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        nn.Flatten(), nn.Linear(16, 8, bias=False), nn.ReLU(), nn.Linear(8, 5, bias=False),
    ).double().eval()


def test_lrp_zero_equals_gradient_times_input_on_bias_free_relu_net():
    model = _bias_free_relu_net()
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    lrp = pellucid.explain(model, x, target=2, method="lrp.zero").attribution
    gxi = pellucid.explain(model, x, target=2, method="gradient_x_input").attribution
    torch.testing.assert_close(lrp, gxi, rtol=1e-10, atol=1e-12)


def test_lrp_zero_equals_gradient_times_input_with_biases_and_batchnorm():
    """On ReLU nets LRP-0 = gradient × input holds with biases too (piecewise linear)."""
    from tests.helpers.models import ResNetish, randomise_batchnorm

    model = randomise_batchnorm(ResNetish()).double().eval()
    x = torch.randn(3, 3, 12, 12, dtype=torch.float64)
    lrp = pellucid.explain(model, x, target=1, method="lrp.zero").attribution
    gxi = pellucid.explain(model, x, target=1, method="gradient_x_input").attribution
    torch.testing.assert_close(lrp, gxi, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("method", ["lrp.epsilon", "lrp.zero"])
def test_conservation_bias_free_total_and_per_layer(method):
    model = _bias_free_relu_net().float()
    x = torch.randn(3, 3, 8, 8)
    settings = {"epsilon": 1e-9} if method == "lrp.epsilon" else {}
    e = pellucid.explain(model, x, target=1, method=method, **settings)
    logit = model(x)[:, 1].detach()
    torch.testing.assert_close(e.attribution.flatten(1).sum(1), logit, rtol=1e-5, atol=1e-7)
    layers = e.extras["layer_relevance"]
    assert len(layers) == 6  # output + 5 layers
    for name, total in layers.items():
        torch.testing.assert_close(total, logit, rtol=1e-5, atol=1e-7, msg=name)


def test_large_epsilon_absorbs_relevance():
    model = _bias_free_relu_net()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    small = pellucid.explain(model, x, target=1, method="lrp.epsilon", epsilon=1e-9)
    large = pellucid.explain(model, x, target=1, method="lrp.epsilon", epsilon=10.0)
    assert (large.attribution.flatten(1).sum(1).abs()
            < small.attribution.flatten(1).sum(1).abs()).all()


@pytest.mark.parametrize("method", ["zplus", "deep_taylor", "excitation_backprop"])
def test_zplus_relevance_is_nonnegative_for_nonnegative_inputs(method):
    model = _bias_free_relu_net()
    x = torch.rand(3, 3, 8, 8, dtype=torch.float64)
    if method == "zplus":
        e = pellucid.explain(model, x, target=0, method="lrp", composite=Composite(default=ZPlus()))
    else:
        e = pellucid.explain(model, x, target=0, method=method)
    assert (e.attribution >= 0).all()
    assert (e.attribution > 0).any()
    if method == "excitation_backprop":  # marginal winning probabilities: sum to one
        torch.testing.assert_close(e.attribution.flatten(1).sum(1), torch.ones(3).double())


def test_worked_example_by_hand():
    """Montavon et al. 2018, sec. 5: a 2-2-1 ReLU net, every number below computed by hand.

    x = (1, 2); h1 = relu(x1 + 2 x2) = 5, h2 = relu(-x1 + x2) = 1; y = 2 h1 - h2 = 9.
    LRP-0: R_h = (10, -1); h1 splits 10 as (1, 4)/5 -> (2, 8); h2 splits -1 as (-1, 2)/1
      -> (1, -2); R_x = (3, 6), Σ = 9 = y.
    LRP-ε, ε = 1: s_y = 9/10; R_h = (9, -0.9); s_h1 = 9/6 = 1.5 -> (1.5, 6);
      s_h2 = -0.9/2 = -0.45 -> (0.45, -0.9); R_x = (1.95, 5.1).
    z⁺: output: positive contributions only (10) -> R_h = (9, 0); h1: (1, 4)/5 · 9
      -> (1.8, 7.2); R_x = (1.8, 7.2), Σ = 9.
    """
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(),
                          nn.Linear(2, 1, bias=False)).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 2.0], [-1.0, 1.0]]))
        model[2].weight.copy_(torch.tensor([[2.0, -1.0]]))
    x = torch.tensor([[1.0, 2.0]])
    r0 = pellucid.explain(model, x, target=0, method="lrp.zero").attribution
    torch.testing.assert_close(r0, torch.tensor([[3.0, 6.0]]))
    r_eps = pellucid.explain(model, x, target=0, method="lrp.epsilon", epsilon=1.0).attribution
    torch.testing.assert_close(r_eps, torch.tensor([[1.95, 5.1]]))
    r_plus = pellucid.explain(model, x, target=0, method="lrp",
                              composite=Composite(default=ZPlus())).attribution
    torch.testing.assert_close(r_plus, torch.tensor([[1.8, 7.2]]))


# ---------------------------------------------------------------------------------------------
# bias conventions, by hand
# ---------------------------------------------------------------------------------------------


def _one_unit(bias: float) -> nn.Module:
    """z = 2 x₁ − x₂ + b."""
    layer = nn.Linear(2, 1).double().eval()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[2.0, -1.0]], dtype=torch.float64))
        layer.bias.fill_(bias)
    return layer


@pytest.mark.parametrize(("rule", "bias", "expected"), [
    # x = (1, 1): contributions c = (2, -1), R = z = 1 + b.
    # z⁺: R_x = (2 / (2 + b⁺), 0) · R, with b⁺ = 0 (none), max(b, 0) (split), b (signed)
    (ZPlus(), 0.5, (1.5, 0.0)),
    (ZPlus(bias="split"), 0.5, (2 / 2.5 * 1.5, 0.0)),
    (ZPlus(bias="signed"), 0.5, (2 / 2.5 * 1.5, 0.0)),
    (ZPlus(), -0.5, (0.5, 0.0)),
    (ZPlus(bias="split"), -0.5, (0.5, 0.0)),
    (ZPlus(bias="signed"), -0.5, (2 / 1.5 * 0.5, 0.0)),
    # α2β1: R_x = 2·(2/(2 + b⁺), 0)·R − 1·(0, −1/(−1 + b⁻))·R
    (AlphaBeta(2.0, 1.0), 0.5, (3.0, -1.5)),
    (AlphaBeta(2.0, 1.0, bias="split"), 0.5, (2 * 2 / 2.5 * 1.5, -1.5)),
    (AlphaBeta(2.0, 1.0, bias="split"), -0.5, (1.0, -1 / 1.5 * 0.5)),
    (AlphaBeta(1.0, 0.0, bias="signed"), -0.5, (2 / 1.5 * 0.5, 0.0)),
    # signed (iNNvestigate): b in both denominators, 2 + 0.5 and −1 + 0.5
    (AlphaBeta(2.0, 1.0, bias="signed"), 0.5, (2 * 2 / 2.5 * 1.5, -1 / 0.5 * 1.5)),
    # LRP-0: R_x = c / (z or z − b) · R
    (Zero(), 0.5, (2.0, -1.0)),
    (Zero(bias="none"), 0.5, (3.0, -1.5)),
])
def test_bias_conventions_by_hand(rule, bias, expected):
    e = pellucid.explain(_one_unit(bias), torch.ones(1, 2, dtype=torch.float64), target=0,
                         method="lrp", composite=Composite(default=rule))
    torch.testing.assert_close(e.attribution, torch.tensor([expected], dtype=torch.float64))


@pytest.mark.parametrize("method", ["lrp.epsilon_plus", "lrp.epsilon_alpha2_beta1"])
def test_named_composites_pass_the_bias_convention(method):
    """The z⁺/αβ convolutions of the named composites take ``bias`` (ε keeps its own)."""
    from pellucid.lrp import composites

    build = {"lrp.epsilon_plus": composites.epsilon_plus,
             "lrp.epsilon_alpha2_beta1": composites.epsilon_alpha2_beta1}[method]
    for convention in ("none", "split"):
        composite = build(bias=convention)
        rules = [r for r in composite.layers.values() if isinstance(r, (ZPlus, AlphaBeta))]
        assert rules and all(r.bias == convention for r in rules)
    assert composites.epsilon_gamma_box().layers[composites.CONV].bias == "split"


# ---------------------------------------------------------------------------------------------
# settings are checked where the rule is built
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("build", "argument", "error"), [
    (lambda: Epsilon(float("nan")), "epsilon", ArgumentError),
    (lambda: Epsilon(float("inf")), "epsilon", ArgumentError),
    (lambda: Epsilon(-1e-3), "epsilon", ArgumentError),
    (lambda: Epsilon("0.1"), "epsilon", ArgumentTypeError),
    (lambda: Epsilon(True), "epsilon", ArgumentTypeError),
    (lambda: Epsilon(bias="split"), "bias", ArgumentError),
    (lambda: Zero(bias=None), "bias", ArgumentTypeError),
    (lambda: Gamma(-0.1), "gamma", ArgumentError),
    (lambda: Gamma(float("nan")), "gamma", ArgumentError),
    (lambda: Gamma(epsilon=float("inf")), "epsilon", ArgumentError),
    (lambda: Gamma(bias="positive"), "bias", ArgumentError),
    (lambda: AlphaBeta(2.0, 2.0), "alpha", ArgumentError),
    (lambda: AlphaBeta(0.5, -0.5), "alpha", ArgumentError),
    (lambda: AlphaBeta(float("nan"), 1.0), "alpha", ArgumentError),
    (lambda: AlphaBeta(2.0, float("inf")), "beta", ArgumentError),
    (lambda: AlphaBeta(2.0, 1.0, bias=True), "bias", ArgumentTypeError),
    (lambda: ZPlus(bias="b+"), "bias", ArgumentError),
    (lambda: ZBox(low=1.0, high=0.0), "low", ArgumentError),
    (lambda: ZBox(low=torch.tensor([0.0, 2.0]).view(2, 1, 1),
                  high=torch.tensor([1.0, 1.0]).view(2, 1, 1)), "low", ArgumentError),
    (lambda: ZBox(low=torch.zeros(3, 1, 1), high=torch.ones(2, 1, 1)), "low", ArgumentError),
    (lambda: ZBox(low=float("nan")), "low", ArgumentError),
    (lambda: ZBox(high=torch.tensor([1.0, float("inf")])), "high", ArgumentError),
    (lambda: ZBox(low="0"), "low", ArgumentTypeError),
    (lambda: ZBox(high=torch.tensor([True])), "high", ArgumentTypeError),
    (lambda: SignalTakesAll(epsilon=-1.0), "epsilon", ArgumentError),
    (lambda: Composite(default=Epsilon), "default", ArgumentTypeError),
    (lambda: Composite({nn.Conv2d: "gamma"}), "layers", ArgumentTypeError),
    (lambda: Composite({0: Epsilon()}), "layers", ArgumentTypeError),
    (lambda: Composite([Epsilon()]), "layers", ArgumentTypeError),
])
def test_bad_settings_name_the_setting(build, argument, error):
    with pytest.raises(error) as raised:
        build()
    assert raised.value.argument == argument
    assert argument in str(raised.value)


def test_good_settings_are_kept_as_numbers():
    assert Epsilon(0).epsilon == 0.0 and Gamma(1).gamma == 1.0
    assert ZBox(low=-1, high=torch.ones(3, 1, 1)).low == -1.0
    assert AlphaBeta(1, 0, bias="signed").bias == "signed"


def test_zbox_bound_of_the_wrong_shape_is_a_clear_error():
    layer = nn.Conv2d(2, 3, 3).double().eval()
    x = torch.rand(2, 2, 5, 5, dtype=torch.float64)
    rule = ZBox(low=torch.zeros(5, 1, 1, dtype=torch.float64), high=1.0)
    with pytest.raises(ArgumentError, match=r"low has shape \(5, 1, 1\)") as raised:
        pellucid.explain(layer, x, target=0, method="lrp", composite=Composite(default=rule))
    assert raised.value.argument == "low"


@pytest.mark.parametrize(("low", "high", "argument"), [(0.2, 1.0, "low"), (0.0, 0.8, "high")])
def test_zbox_inputs_outside_the_bounds_are_an_error(low, high, argument):
    """Outside [low, high] the z^B terms change sign and the denominator can vanish: an
    error, not a silently wrong map (e.g. pixel bounds [0, 1] on normalised inputs)."""
    layer = nn.Conv2d(2, 3, 3).double().eval()
    x = torch.rand(2, 2, 5, 5, dtype=torch.float64)
    with pytest.raises(ArgumentError, match=f"{argument}=None") as raised:
        pellucid.explain(layer, x, target=0, method="deep_taylor", low=low, high=high)
    assert raised.value.argument == argument
    inside = pellucid.explain(layer, x, target=0, method="deep_taylor", low=0.0, high=1.0)
    assert torch.isfinite(inside.attribution).all()
