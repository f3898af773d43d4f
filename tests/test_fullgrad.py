"""FullGrad: completeness, the bias-gradient maps by hand, effective biases by behaviour.

Batch invariance and the model-untouched guarantee are checked in test_cam.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pellucid
from pellucid.attribution.fullgrad import effective_bias
from pellucid.errors import ArgumentError
from tests.helpers.models import Conv1dNet, ResNetish, VGGish, mlp, randomise_batchnorm


def relu_bn_net() -> nn.Module:
    """A ReLU conv net with biases everywhere: conv, BatchNorm, max pooling, transposed conv."""
    torch.manual_seed(0)
    return randomise_batchnorm(
        nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1),
            nn.BatchNorm2d(6),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.ConvTranspose2d(6, 4, 2, stride=2),
            nn.BatchNorm2d(4),
            nn.ReLU(inplace=True),
            nn.Conv2d(4, 5, 3, stride=2),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(20, 8),
            nn.BatchNorm1d(8),
            nn.ReLU(),
            nn.Linear(8, 4),
        ),
        seed=3,
    ).eval()


def psi(t: torch.Tensor) -> torch.Tensor:
    """|t| rescaled to [0, 1] per sample."""
    a = t.abs().flatten(1)
    low, high = a.min(1, keepdim=True).values, a.max(1, keepdim=True).values
    return ((a - low) / (high - low)).view_as(t)


@pytest.mark.parametrize(
    ("build", "shape"),
    [
        (relu_bn_net, (3, 3, 10, 10)),
        (lambda: randomise_batchnorm(VGGish()), (2, 3, 16, 16)),
        (lambda: randomise_batchnorm(ResNetish()), (2, 3, 8, 8)),
        (Conv1dNet, (2, 2, 20)),
    ],
)
def test_completeness_on_relu_nets_with_eval_batchnorm(build, shape) -> None:
    torch.manual_seed(1)
    model = build().eval()
    x = torch.randn(shape)
    e = pellucid.explain(model, x, method="fullgrad")
    scale = e.output.abs().max()
    assert e.extras["completeness_gap"].abs().max() < 1e-4 * max(1.0, float(scale))


def test_bias_layers_found_by_structure() -> None:
    e = pellucid.explain(relu_bn_net(), torch.randn(1, 3, 10, 10), method="fullgrad")
    assert e.extras["bias_layers"] == ["0", "1", "4", "5", "7", "11", "12", "14"]


def test_completeness_gap_is_what_the_decomposition_leaves_out() -> None:
    # tanh is not piecewise linear: the gap is f − ∇ₓf·x − Σ ∂f/∂z ⊙ b, computed here by hand
    torch.manual_seed(2)
    model = mlp().eval()
    x = torch.randn(3, 6)
    target = torch.tensor([0, 3, 1])
    xg = x.clone().requires_grad_(True)
    z1 = model[0](xg)
    z2 = model[2](model[1](z1))
    z3 = model[4](model[3](z2))
    f = z3[torch.arange(3), target]
    grads = torch.autograd.grad(f.sum(), [xg, z1, z2, z3])
    linears = [model[0], model[2], model[4]]
    decomposed = (grads[0] * x).sum(1) + sum(
        (g * lin.bias).sum(1) for g, lin in zip(grads[1:], linears)
    )
    expected_gap = (decomposed - f).detach()
    assert expected_gap.abs().max() > 1e-3

    e = pellucid.explain(model, x, target, method="fullgrad")

    torch.testing.assert_close(e.extras["completeness_gap"], expected_gap)
    assert e.attribution.shape == x.shape
    torch.testing.assert_close(e.attribution, psi(grads[0] * x))


def test_one_conv_layer_maps_match_a_hand_computation() -> None:
    torch.manual_seed(4)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    head = nn.Linear(3 * 5 * 5, 4, bias=False)
    model = nn.Sequential(conv, nn.Flatten(), head).double().eval()
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    target = torch.tensor([1, 3])
    with torch.no_grad():
        grad_z = head.weight[target].view(2, 3, 5, 5)  # f = v_t · z, so ∂f/∂z = v_t
        grad_x = F.conv_transpose2d(grad_z, conv.weight, padding=1)
        bias_map = grad_z * conv.bias.view(1, 3, 1, 1)
    expected = psi(grad_x * x).sum(1, keepdim=True) + psi(bias_map).sum(1, keepdim=True)

    e = pellucid.explain(model, x, target, method="fullgrad")

    assert e.extras["bias_layers"] == ["0"]
    torch.testing.assert_close(e.attribution, expected.expand_as(x))
    completeness = (grad_x * x).sum((1, 2, 3)) + bias_map.sum((1, 2, 3))
    torch.testing.assert_close(completeness, e.output[torch.arange(2), target])
    assert e.extras["completeness_gap"].abs().max() < 1e-10


@pytest.mark.parametrize(
    ("layer", "in_channels"),
    [
        (nn.BatchNorm2d(3), 3),
        (nn.BatchNorm2d(3, affine=False), 3),
        (nn.InstanceNorm2d(3, track_running_stats=True, affine=True), 3),
        (nn.Conv2d(2, 3, 1), 2),
        (nn.ConvTranspose2d(2, 3, 1), 2),
    ],
)
def test_effective_bias_is_the_output_at_zero_input(layer: nn.Module, in_channels: int) -> None:
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for t in [*layer.parameters(), *layer.buffers()]:
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
        if getattr(layer, "running_mean", None) is not None:
            layer.running_mean.sub_(1.0)  # means of both signs
    layer.eval()
    with torch.no_grad():
        at_zero = layer(torch.zeros(1, in_channels, 2, 2))[0, :, 0, 0]
    bias, dim = effective_bias(layer)
    assert dim == 1
    torch.testing.assert_close(bias, at_zero)


def test_batchnorm_in_train_mode_and_layers_without_bias_have_no_effective_bias() -> None:
    assert effective_bias(nn.BatchNorm2d(3).train()) is None
    assert effective_bias(nn.Conv2d(2, 3, 1, bias=False)) is None
    assert effective_bias(nn.ReLU()) is None
    bias, dim = effective_bias(nn.Linear(2, 3))
    assert dim == -1 and bias.shape == (3,)


@pytest.mark.parametrize(
    ("build", "shape"),
    [(relu_bn_net, (2, 3, 10, 10)), (Conv1dNet, (2, 2, 20)), (mlp, (2, 6))],
)
def test_attribution_is_non_negative_with_the_input_shape(build, shape) -> None:
    model = build().eval()
    x = torch.randn(shape)
    e = pellucid.explain(model, x, method="fullgrad")
    assert e.attribution.shape == x.shape
    assert (e.attribution >= 0).all()
    assert e.attribution.flatten(1).amax(1).gt(0).all()
    if x.ndim > 2:  # one map repeated over the input channels
        torch.testing.assert_close(e.attribution, e.attribution[:, :1].expand_as(x))


# ---------------------------------------------------------------- the reference implementation


def test_align_corners_upsamples_a_layer_map_as_bilinear_interpolation_by_hand() -> None:
    # x = 0 makes the input term constant (ψ = 0); one 4×4 convolution on 5×5 inputs gives a
    # 2×2 map z with ∂f/∂z = v (a bias-free linear head) and bias b = 1, so the layer map is
    # ψ(v) = [[0, 1/3], [2/3, 1]] for v = [[0, 1], [2, 3]]. Corner-aligned bilinear
    # interpolation to 5×5 samples it at (i/4, j/4): (1 − s)t/3 + s(1 − t)2/3 + st = (j + 2i)/12.
    conv = nn.Conv2d(1, 1, 4)
    head = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        conv.bias.fill_(1.0)
        head.weight.copy_(torch.tensor([[0.0, 1.0, 2.0, 3.0]]))
    model = nn.Sequential(conv, nn.Flatten(), head).double().eval()
    x = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    i, j = torch.meshgrid(torch.arange(5.0), torch.arange(5.0), indexing="ij")

    aligned = pellucid.explain(model, x, 0, method="fullgrad", align_corners=True)
    torch.testing.assert_close(aligned.attribution[0, 0], ((j + 2 * i) / 12).double())

    # align_corners=False (the default) samples at (i + ½)/2.5 − ½, clamped to [0, 1]
    default = pellucid.explain(model, x, 0, method="fullgrad")
    s, t = ((i + 0.5) / 2.5 - 0.5).clamp(0, 1), ((j + 0.5) / 2.5 - 0.5).clamp(0, 1)
    torch.testing.assert_close(default.attribution[0, 0], (t / 3 + 2 * s / 3).double())


def reference_fullgrad(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """idiap/fullgrad-saliency's FullGrad.saliency, restated: biases of Conv2d, Linear and
    BatchNorm2d (β − μγ/√(σ² + ε)), gradients at their outputs, ψ with eps 1e-6 in the
    denominator, each layer's channels upsampled with align_corners=True, then summed."""
    outputs = []
    biased = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d))]
    handles = [m.register_forward_hook(lambda m, i, o: outputs.append((m, o))) for m in biased]
    xg = x.clone().requires_grad_(True)
    try:
        out = model(xg)
    finally:
        for h in handles:
            h.remove()
    score = out[torch.arange(len(x)), target].sum()
    grads = torch.autograd.grad(score, [xg] + [o for _, o in outputs])

    def post(t: torch.Tensor) -> torch.Tensor:
        t = t.abs()
        t = t - t.flatten(1).min(1).values.view(-1, 1, 1, 1)
        return t / (t.flatten(1).max(1).values.view(-1, 1, 1, 1) + 1e-6)

    cam = post(grads[0] * x).sum(1, keepdim=True)
    for (m, _), g in zip(outputs, grads[1:]):
        if isinstance(m, nn.BatchNorm2d):
            b = m.bias - m.running_mean * m.weight / torch.sqrt(m.running_var + m.eps)
        else:
            b = m.bias
        if g.ndim == 4:
            term = post(g * b.view(1, -1, 1, 1))
            cam = cam + F.interpolate(term, size=x.shape[2:], mode="bilinear",
                                      align_corners=True).sum(1, keepdim=True)
    return cam.detach()


def test_align_corners_and_rescale_eps_reproduce_the_reference_implementation() -> None:
    torch.manual_seed(6)
    model = randomise_batchnorm(nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 4),
    ), seed=7).double().eval()
    x = torch.randn(3, 3, 12, 12, dtype=torch.float64)
    target = torch.tensor([0, 3, 1])
    expected = reference_fullgrad(model, x, target)

    e = pellucid.explain(model, x, target, method="fullgrad", align_corners=True,
                         rescale_eps=1e-6)
    torch.testing.assert_close(e.attribution, expected.expand_as(x))
    # today's defaults differ: the half-pixel grid and no eps
    default = pellucid.explain(model, x, target, method="fullgrad")
    assert (default.attribution - e.attribution).abs().max() > 1e-3


def test_align_corners_needs_a_linear_interpolation() -> None:
    with pytest.raises(ArgumentError, match="align_corners=True applies") as error:
        pellucid.get_method("fullgrad", interpolation="nearest", align_corners=True)
    assert error.value.argument == "align_corners"
    pellucid.get_method("fullgrad", interpolation="bicubic", align_corners=True)
    pellucid.get_method("fullgrad", interpolation="bilinear", align_corners=True)
