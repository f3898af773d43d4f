"""The generalised LRP-γ rule: by hand, its bounds, and against Zennit 1.0.0's ``Gamma``.

With c_jk = x_j w_jk, z_k = Σ_j c_jk + b_k and s_k = sign(z_k) the rule is (Montavon et al.
2019, eq. 3, generalised to both signs as in Andéol et al. 2021 and Zennit)

    R_j = Σ_k (c_jk + γ c_jk^{s_k}) / (z_k + γ (Σ_j c_jk^{s_k} + b_k^{s_k})) · R_k.

Zennit keeps b⁺/b⁻ in the denominators: pellucid's ``bias="split"`` (the default). The other
conventions agree with Zennit on layers without a bias.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pellucid
from pellucid.lrp import Composite, Epsilon, Gamma
from tests.helpers.zennit import import_zennit

zennit = import_zennit()


def _explain(model, x, rule, target, linear=None):
    composite = Composite(default=rule, linear=linear)
    return pellucid.explain(model, x, target=target, method="lrp", composite=composite)


def _zennit_relevance(model, x, rules, r_out):
    """Zennit's input relevance for the output relevance ``r_out``; ``rules`` maps each module
    to a fresh Zennit rule (hooks are removed afterwards)."""
    handles = [rule.register(module) for module, rule in rules.items()]
    try:
        v = x.clone().requires_grad_(True)
        out = model(v)
        (relevance,) = torch.autograd.grad(out, v, r_out(out.detach()))
    finally:
        for handle in handles:
            handle.remove()
    return relevance


# ---------------------------------------------------------------------------------------------
# by hand
# ---------------------------------------------------------------------------------------------


def _linear(weight, bias):
    layer = nn.Linear(len(weight), 1).double().eval()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([weight], dtype=torch.float64))
        layer.bias.fill_(bias)
    return layer


@pytest.mark.parametrize(("x", "bias", "convention", "expected"), [
    # w = (2, -1), x = (1, 1), b = 0.5: c = (2, -1), z = 1.5 > 0, R = z = 1.5, γ = 0.5.
    # numerators c + γc⁺ = (3, -1); denominators: split z + γ(c⁺ + b⁺) = 1.5 + 0.5·2.5 = 2.75,
    # signed z + γc⁺ = 2.5, none (z − b) + γc⁺ = 2.
    ((1.0, 1.0), 0.5, "split", (3 * 1.5 / 2.75, -1 * 1.5 / 2.75)),
    ((1.0, 1.0), 0.5, "signed", (1.8, -0.6)),
    ((1.0, 1.0), 0.5, "none", (2.25, -0.75)),
    # x = (1, 3), b = -0.5: c = (2, -3), z = -1.5 < 0, R = -1.5: the negative parts count.
    # numerators c + γc⁻ = (2, -4.5); denominators: split z + γ(c⁻ + b⁻) = -1.5 + 0.5·(-3.5)
    # = -3.25, signed z + γc⁻ = -3, none (z − b) + γc⁻ = -1 - 1.5 = -2.5.
    # (The old rule z + γ(c⁺ + b⁺) = -0.5 gave (9, -9): it approaches 0 as c₂ → -3.)
    ((1.0, 3.0), -0.5, "split", (12 / 13, -27 / 13)),
    ((1.0, 3.0), -0.5, "signed", (1.0, -2.25)),
    ((1.0, 3.0), -0.5, "none", (1.2, -2.7)),
])
def test_gamma_by_hand(x, bias, convention, expected):
    layer = _linear([2.0, -1.0], bias)
    inputs = torch.tensor([x], dtype=torch.float64)
    e = _explain(layer, inputs, Gamma(0.5, epsilon=0.0, bias=convention), target=0)
    torch.testing.assert_close(e.attribution, torch.tensor([expected], dtype=torch.float64))


# ---------------------------------------------------------------------------------------------
# bounds that the old rule z + γ(xw)⁺ broke
# ---------------------------------------------------------------------------------------------


def _layers():
    return {
        "linear": (nn.Linear(12, 7), (64, 12)),
        "conv2d": (nn.Conv2d(3, 5, 3, padding=1), (64, 3, 6, 6)),
        "conv2d_stride": (nn.Conv2d(3, 4, 3, stride=2), (64, 3, 7, 7)),
    }


@pytest.mark.parametrize("name", list(_layers()))
@pytest.mark.parametrize("convention", ["split", "none"])
@pytest.mark.parametrize("gamma", [0.1, 0.25, 2.0])
def test_absolute_relevance_grows_at_most_by_two_plus_gamma_over_gamma(name, convention, gamma):
    """For z_k > 0 the denominator is ≥ γ(P + b⁺) and Σ_j |c + γc⁺| ≤ (1 + γ)P + |N| with
    |N| < P + b⁺ (P, N: the sums of positive and negative contributions), so
    Σ_j |R_j| ≤ (2 + γ)/γ · Σ_k |R_k| per sample; likewise for z_k < 0."""
    layer, shape = _layers()[name]
    torch.manual_seed(4)
    layer = layer.double().eval()
    nn.init.normal_(layer.bias, std=2.0)
    x = torch.randn(*shape, dtype=torch.float64)
    weights = torch.randn(layer(x[:1]).numel(), dtype=torch.float64)
    score = lambda out: (out.flatten(1) * weights).sum(1)  # noqa: E731  R = z ⊙ weights
    e = _explain(layer, x, Gamma(gamma, epsilon=0.0, bias=convention), target=score)
    r_out = (layer(x).detach().flatten(1) * weights).abs().sum(1)
    r_in = e.attribution.flatten(1).abs().sum(1)
    assert (r_in <= (2 + gamma) / gamma * r_out * (1 + 1e-9)).all()


@pytest.mark.parametrize("name", list(_layers()))
def test_bias_none_conserves_exactly(name):
    """With the bias left out the numerators sum to the denominator: Σ_j R_j = Σ_k R_k."""
    layer, shape = _layers()[name]
    torch.manual_seed(5)
    layer = layer.double().eval()
    x = torch.randn(*shape, dtype=torch.float64)
    weights = torch.randn(layer(x[:1]).numel(), dtype=torch.float64)
    score = lambda out: (out.flatten(1) * weights).sum(1)  # noqa: E731
    e = _explain(layer, x, Gamma(0.25, epsilon=0.0, bias="none"), target=score)
    r_out = (layer(x).detach().flatten(1) * weights).sum(1)
    torch.testing.assert_close(e.attribution.flatten(1).sum(1), r_out, rtol=1e-10, atol=1e-10)


def test_gamma_to_infinity_gives_zplus_on_units_with_positive_preactivation():
    """γ → ∞: (c + γc⁺)/(z + γP) → c⁺/P, the z⁺ rule (on z > 0 units, bias left out)."""
    from pellucid.lrp import ZPlus

    torch.manual_seed(6)
    layer = nn.Linear(8, 1).double().eval()
    x = torch.rand(32, 8, dtype=torch.float64)
    keep = layer(x)[:, 0] > 0
    x = x[keep]
    gamma = _explain(layer, x, Gamma(1e9, epsilon=0.0, bias="none"), target=0).attribution
    zplus = _explain(layer, x, ZPlus(), target=0).attribution
    torch.testing.assert_close(gamma, zplus, rtol=1e-7, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# against Zennit 1.0.0
# ---------------------------------------------------------------------------------------------


def _zennit_layers():
    return {
        "linear": (nn.Linear(10, 6), (5, 10)),
        "conv2d": (nn.Conv2d(3, 4, 3, padding=1), (3, 3, 6, 6)),
        "conv2d_stride_groups": (nn.Conv2d(4, 6, 3, stride=2, groups=2), (3, 4, 7, 7)),
        "conv1d": (nn.Conv1d(2, 3, 3), (3, 2, 9)),
    }


@pytest.mark.parametrize("name", list(_zennit_layers()))
@pytest.mark.parametrize("sign", ["mixed", "nonnegative"])
@pytest.mark.parametrize("gamma", [0.25, 1.0])
@pytest.mark.parametrize("with_bias", [True, False])
def test_single_layer_matches_zennit(name, sign, gamma, with_bias):
    """Output relevance R = z ⊙ c with random c of both signs, so that units with z < 0
    receive relevance too."""
    layer, shape = _zennit_layers()[name]
    torch.manual_seed(7)
    layer = layer.double().eval()
    if not with_bias:
        layer.bias = None
    x = torch.randn(*shape, dtype=torch.float64)
    if sign == "nonnegative":
        x = x.abs()
    weights = torch.randn(layer(x[:1]).numel(), dtype=torch.float64)
    score = lambda out: (out.flatten(1) * weights).sum(1)  # noqa: E731
    expected = _zennit_relevance(layer, x, {layer: zennit.rules.Gamma(gamma, stabilizer=1e-6)},
                                 lambda out: out * weights.view(out.shape[1:]))
    conventions = ["split"] if with_bias else ["split", "signed", "none"]
    for convention in conventions:
        e = _explain(layer, x, Gamma(gamma, epsilon=1e-6, bias=convention), target=score)
        torch.testing.assert_close(e.attribution, expected, rtol=1e-5, atol=1e-8, msg=convention)


class _ResidualNet(nn.Module):
    """conv → ReLU → conv, summed with its input (Zennit's ``Sum`` module, so that Zennit
    splits the sum in proportion, as pellucid does), then a dense layer on the signed sum:
    conv2's units with z < 0 receive relevance, and the dense layer sees inputs of both signs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.sum = zennit.layer.Sum()
        self.fc = nn.Linear(6 * 5 * 5, 4)

    def forward(self, x):
        h = self.relu(self.conv1(x))
        s = self.sum(torch.stack([self.conv2(h), h], dim=-1))
        return self.fc(s.flatten(1))


@pytest.mark.parametrize("sign", ["mixed", "nonnegative"])
def test_residual_relu_net_matches_zennit(sign):
    torch.manual_seed(8)
    model = _ResidualNet().double().eval()
    x = torch.randn(6, 3, 5, 5, dtype=torch.float64)
    if sign == "nonnegative":
        x = x.abs()
    target = 2
    rules = {model.conv1: zennit.rules.Gamma(0.25), model.conv2: zennit.rules.Gamma(0.25),
             model.fc: zennit.rules.Gamma(0.25), model.relu: zennit.rules.Pass(),
             model.sum: zennit.rules.Norm()}

    def r_out(out):
        r = torch.zeros_like(out)
        r[:, target] = out[:, target]
        return r

    expected = _zennit_relevance(model, x, rules, r_out)
    conv2_out = model.conv2(model.relu(model.conv1(x)))
    assert (conv2_out < 0).any()  # the case the generalised rule is for
    e = _explain(model, x, Gamma(0.25, epsilon=1e-6), target=target, linear=Epsilon(1e-6))
    torch.testing.assert_close(e.attribution, expected, rtol=1e-5, atol=1e-8)
