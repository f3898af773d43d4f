"""Layer access (pellucid.layers), Grad-CAM and Grad-CAM++ against closed forms.

The batch-invariance and model-untouched checks at the end cover FullGrad as well, since
all three methods capture layers with temporary hooks.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pellucid
from pellucid.layers import capture, find_layer, last_spatial_layer
from tests.helpers.models import Conv1dNet, ResNetish, VGGish, randomise_batchnorm

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
POOL = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}
SIZE = {1: (9,), 2: (6, 5), 3: (4, 3, 5)}


def cam_model(dims: int, stride: int = 1) -> nn.Module:
    """conv → ReLU → global average pooling → Linear(w): the model CAM was defined on."""
    torch.manual_seed(dims)
    return (
        nn.Sequential(
            CONV[dims](2, 4, 3, padding=1, stride=stride),
            nn.ReLU(),
            POOL[dims](1),
            nn.Flatten(),
            nn.Linear(4, 3),
        )
        .double()
        .eval()
    )


def conv3d_net() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv3d(1, 3, 3, padding=1),
        nn.BatchNorm3d(3),
        nn.ReLU(),
        nn.Conv3d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).eval()


def cases() -> dict[str, tuple[nn.Module, torch.Tensor]]:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    return {
        "vgg": (randomise_batchnorm(VGGish()).eval(), torch.randn(3, 3, 16, 16, generator=gen)),
        "resnet": (
            randomise_batchnorm(ResNetish()).eval(),
            torch.randn(3, 3, 12, 12, generator=gen),
        ),
        "conv1d": (Conv1dNet().eval(), torch.randn(3, 2, 20, generator=gen)),
        "conv3d": (randomise_batchnorm(conv3d_net()), torch.randn(3, 1, 5, 4, 6, generator=gen)),
    }


def activation_and_weights(model: nn.Module, x: torch.Tensor, target: torch.Tensor):
    """A = ReLU(conv(x)) computed directly, and w, the linear weights of the target class."""
    with torch.no_grad():
        return model[1](model[0](x)), model[4].weight[target]


# --- Grad-CAM and Grad-CAM++ against their closed forms --------------------------------


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_gradcam_is_cam_over_positions_on_pooled_linear_model(dims: int) -> None:
    model = cam_model(dims)
    x = torch.randn(2, 2, *SIZE[dims], dtype=torch.float64)
    target = torch.tensor([0, 2])
    a, w = activation_and_weights(model, x, target)
    positions = a[0, 0].numel()
    expected = torch.einsum("nk,nk...->n...", w, a).clamp_min(0) / positions

    e = pellucid.explain(model, x, target, method="gradcam")

    assert e.extras["layer"] == "1"
    torch.testing.assert_close(e.extras["layer_map"], expected)
    torch.testing.assert_close(e.attribution, expected.unsqueeze(1).expand_as(x))


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_gradcam_plus_plus_matches_its_closed_form(dims: int) -> None:
    model = cam_model(dims)
    x = torch.randn(2, 2, *SIZE[dims], dtype=torch.float64)
    target = torch.tensor([1, 0])
    a, w = activation_and_weights(model, x, target)
    positions = a[0, 0].numel()
    # ∂y/∂A is w/P at every position, so α = g²/(2g² + ΣA·g³) = 1/(2 + ΣA·g) is constant
    g = w / positions
    total = a.flatten(2).sum(2)
    alpha = 1 / (2 + total * g)
    channel_weights = positions * alpha * g.clamp_min(0)
    expected = torch.einsum("nk,nk...->n...", channel_weights, a).clamp_min(0)

    e = pellucid.explain(model, x, target, method="gradcam_plus_plus")

    torch.testing.assert_close(e.extras["layer_map"], expected)
    torch.testing.assert_close(e.attribution, expected.unsqueeze(1).expand_as(x))


def test_gradcam_plus_plus_gives_zero_weight_where_the_gradient_vanishes() -> None:
    model = cam_model(2)
    with torch.no_grad():
        model[4].weight[0, :2] = 0.0  # channels 0 and 1 do not reach class 0
        model[4].weight[0, 2:] = 1.0
    x = torch.randn(1, 2, 6, 5, dtype=torch.float64)
    a, _ = activation_and_weights(model, x, torch.tensor([0]))
    e = pellucid.explain(model, x, 0, method="gradcam_plus_plus")
    assert torch.isfinite(e.attribution).all()
    positions = 30
    g = 1.0 / positions
    channel_weights = positions * g / (2 + a[0, 2:].sum((1, 2)) * g)
    expected = torch.einsum("k,khw->hw", channel_weights, a[0, 2:]).clamp_min(0)
    torch.testing.assert_close(e.extras["layer_map"][0], expected)


def test_map_is_upsampled_bilinearly_to_the_input_size() -> None:
    model = cam_model(2, stride=2)
    x = torch.randn(2, 2, 7, 9, dtype=torch.float64)
    target = torch.tensor([2, 1])
    a, w = activation_and_weights(model, x, target)
    layer_map = torch.einsum("nk,nkhw->nhw", w, a).clamp_min(0) / a[0, 0].numel()
    expected = F.interpolate(layer_map.unsqueeze(1), size=(7, 9), mode="bilinear")

    e = pellucid.explain(model, x, target, method="gradcam")

    assert e.extras["layer_map"].shape == (2, 4, 5)
    torch.testing.assert_close(e.attribution, expected.expand_as(x))
    nearest = pellucid.explain(model, x, target, method="gradcam", interpolation="nearest")
    torch.testing.assert_close(
        nearest.attribution[:, :, 0, 0], layer_map[:, None, 0, 0].expand(2, 2)
    )


def test_relu_false_keeps_negative_evidence() -> None:
    model = cam_model(2)
    x = torch.randn(2, 2, 6, 5, dtype=torch.float64)
    target = torch.tensor([0, 1])
    a, w = activation_and_weights(model, x, target)
    expected = torch.einsum("nk,nkhw->nhw", w, a) / 30
    assert (expected < 0).any()
    e = pellucid.explain(model, x, target, method="gradcam", relu=False)
    torch.testing.assert_close(e.extras["layer_map"], expected)


def test_gradcam_on_a_frozen_model_equals_the_unfrozen_result() -> None:
    model, x = cases()["resnet"]
    before = pellucid.explain(model, x, 1, method="gradcam").attribution
    for p in model.parameters():
        p.requires_grad_(False)
    after = pellucid.explain(model, x, 1, method="gradcam").attribution
    torch.testing.assert_close(after, before)
    assert not any(p.requires_grad for p in model.parameters())


# --- finding layers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "expected"),
    [("vgg", "avgpool"), ("resnet", "layer2"), ("conv1d", "conv"), ("conv3d", "4")],
)
def test_last_spatial_layer_follows_completion_order(case: str, expected: str) -> None:
    model, x = cases()[case]
    assert last_spatial_layer(model, x) == expected
    assert pellucid.explain(model, x, method="gradcam").extras["layer"] == expected


def test_last_spatial_layer_skips_the_model_itself_and_one_position_maps() -> None:
    with pytest.raises(ValueError, match="no layer of the model outputs a spatial"):
        last_spatial_layer(nn.Conv2d(1, 2, 3).eval(), torch.randn(1, 1, 5, 5))
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveMaxPool2d(1)).eval()
    assert last_spatial_layer(model, torch.randn(1, 1, 5, 5)) == "0"


def test_unknown_layer_names_suggest_close_names() -> None:
    model, _ = cases()["vgg"]
    with pytest.raises(ValueError, match=r"'features\.4'"):
        find_layer(model, "feature.4")
    with pytest.raises(ValueError, match="'layer2'"):
        x = torch.randn(1, 3, 8, 8)
        pellucid.explain(ResNetish().eval(), x, method="gradcam", layer="layr2")
    assert find_layer(model, "classifier.3") is model.classifier[3]


def test_non_spatial_layers_and_inputs_are_refused_clearly() -> None:
    model, x = cases()["resnet"]
    with pytest.raises(ValueError, match=r"'fc'.*not a feature map"):
        pellucid.explain(model, x, method="gradcam", layer="fc")
    with pytest.raises(ValueError, match="N×C×H×W"):
        pellucid.explain(nn.Linear(4, 2).eval(), torch.randn(2, 4), method="gradcam")
    with pytest.raises(ValueError, match="interpolation 'cubic'"):
        pellucid.explain(model, x, method="gradcam", interpolation="cubic")


# --- capture --------------------------------------------------------------------------


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_capture_records_every_call_in_the_graph_and_removes_its_hooks() -> None:
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    x = torch.randn(2, 3)
    with capture(model, [shared]) as seen:
        out = model(x)
    assert hook_count(model) == 0
    first, second = seen["0"]
    torch.testing.assert_close(first.detach(), shared(x).detach())
    (grad,) = torch.autograd.grad((out * 2).sum(), second)
    torch.testing.assert_close(grad, torch.full((2, 3), 2.0))


def test_capture_keeps_values_that_in_place_operations_downstream_overwrite() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(inplace=True))
    x = torch.randn(1, 1, 6, 6)
    with capture(model, "0") as seen:
        out = model(x)
    recorded = seen["0"][0]
    assert (recorded < 0).any()
    torch.testing.assert_close(recorded, model[0](x))
    torch.testing.assert_close(out, recorded.clamp_min(0))


def test_capture_removes_hooks_when_the_block_or_a_later_name_fails() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    with pytest.raises(ValueError, match="no layer '2'"), capture(model, ["0", "2"]):
        pass  # the hook on "0" is registered before "2" is found missing
    assert hook_count(model) == 0
    with pytest.raises(RuntimeError, match="boom"), capture(model, ["0", model[1]]):
        model(torch.randn(1, 1, 5, 5))
        raise RuntimeError("boom")
    assert hook_count(model) == 0


# --- contract: batch invariance and the model untouched, for all hook-based methods ---

METHODS = ["gradcam", "gradcam_plus_plus", "fullgrad"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", ["vgg", "resnet", "conv1d", "conv3d"])
def test_batch_equals_concatenated_single_samples(method: str, case: str) -> None:
    model, x = cases()[case]
    target = torch.tensor([0, 2, 1])
    batch = pellucid.explain(model, x, target, method=method).attribution
    singles = [
        pellucid.explain(model, x[i : i + 1], target[i : i + 1], method=method).attribution
        for i in range(3)
    ]
    torch.testing.assert_close(batch, torch.cat(singles), atol=1e-5, rtol=1e-4)


def model_state(model: nn.Module) -> tuple:
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [p.requires_grad for p in model.parameters()],
        [m.training for m in model.modules()],
    )


def assert_same_state(model: nn.Module, before: tuple) -> None:
    state, flags, modes = model_state(model)
    assert state.keys() == before[0].keys()
    for k in state:
        assert torch.equal(state[k], before[0][k]), k
    assert flags == before[1]
    assert modes == before[2]
    assert hook_count(model) == 0
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("method", METHODS)
def test_model_and_inputs_are_untouched_on_success_and_on_error(method: str) -> None:
    model, x = cases()["vgg"]
    model.classifier[0].weight.requires_grad_(False)
    model.classifier[2].train()  # a dropout in train mode must stay so
    x_before = x.clone()
    before = model_state(model)
    pellucid.explain(model, x, method=method)
    assert_same_state(model, before)
    assert torch.equal(x, x_before)
    setting = {"interpolation": "bad"}
    if method != "fullgrad":
        setting = {"layer": "classifier"}  # fails after the hooked forward pass
    with pytest.raises(ValueError):
        pellucid.explain(model, x, method=method, **setting)
    assert_same_state(model, before)
    assert torch.equal(x, x_before)


def test_a_layer_that_does_not_run_is_refused_clearly() -> None:
    class TwoPaths(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.unused = nn.Conv2d(1, 2, 3), nn.Conv2d(1, 2, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x).mean((2, 3))

    with pytest.raises(ValueError, match="'unused' did not run"):
        pellucid.explain(
            TwoPaths().eval(), torch.randn(1, 1, 5, 5), method="gradcam", layer="unused"
        )


# --- the automatic layer: chosen from the call's own pass ------------------------------


class OnePositionHead(nn.Module):
    """conv1 → ReLU → conv2 (3×3, padding 1) → a head reading conv2's position (0, 0) only:
    the score depends on conv2's map at one position and on the ReLU's at the four
    positions (0..1, 0..1)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.conv1, self.act = nn.Conv2d(2, 3, 3, padding=1), nn.ReLU()
        self.conv2, self.head = nn.Conv2d(3, 2, 3, padding=1), nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv2(self.act(self.conv1(x)))[:, :, 0, 0])


def count_passes(model: nn.Module, method: str, x: torch.Tensor, **settings):
    """The explanation and how many forward passes of ``model`` it made."""
    passes = []
    handle = model.register_forward_pre_hook(lambda module, args: passes.append(1))
    try:
        return pellucid.explain(model, x, 1, method=method, **settings), len(passes)
    finally:
        handle.remove()


def test_the_automatic_layer_is_the_last_the_score_reaches_at_several_positions() -> None:
    """Grad-CAM at the ReLU: αᶜ = (1/HW) Σ_{i,j∈{1,2}} Σₒ wₒ W²[o, c, i, j] (the gradient at
    position (i−1, j−1)), map = ReLU(Σᶜ αᶜ Aᶜ); chosen in one forward pass."""
    model, x = OnePositionHead().double().eval(), torch.randn(3, 2, 5, 6).double()
    before = model_state(model)
    e, passes = count_passes(model, "gradcam", x)
    assert e.extras["layer"] == "act" and passes == 1
    assert last_spatial_layer(model, x) == "conv2"  # by structure alone
    w = model.head.weight[1].detach()
    alpha = torch.einsum("o,ocij->c", w, model.conv2.weight.detach()[:, :, 1:, 1:]) / 30
    with torch.no_grad():
        activation = model.act(model.conv1(x))
    expected = torch.einsum("c,nchw->nhw", alpha, activation).clamp_min(0)
    torch.testing.assert_close(e.extras["layer_map"], expected)
    assert_same_state(model, before)


@pytest.mark.parametrize("method", ["gradcam", "gradcam_plus_plus"])
def test_the_automatic_layer_costs_one_forward_pass_as_a_given_one(method: str) -> None:
    model, x = cases()["resnet"]
    e, passes = count_passes(model, method, x)
    named, named_passes = count_passes(model, method, x, layer=e.extras["layer"])
    assert passes == named_passes == 1
    torch.testing.assert_close(e.attribution, named.attribution)


def test_layers_changed_in_place_later_are_captured_as_copies() -> None:
    """With ReLU(inplace=True) the convolutions' outputs are overwritten after they are
    recorded: the pass is made again with copies, and the map equals the twin's without
    in-place operations."""

    def net(inplace: bool) -> nn.Module:
        torch.manual_seed(2)
        return nn.Sequential(
            nn.Conv2d(2, 3, 3), nn.ReLU(inplace=inplace), nn.Conv2d(3, 4, 3),
            nn.ReLU(inplace=inplace), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2),
        ).eval()

    x = torch.randn(2, 2, 8, 8)
    e, passes = count_passes(net(True), "gradcam", x, relu=False)
    twin, twin_passes = count_passes(net(False), "gradcam", x, relu=False)
    assert (passes, twin_passes) == (2, 1) and e.extras["layer"] == twin.extras["layer"] == "3"
    torch.testing.assert_close(e.attribution, twin.attribution)


def test_hooks_are_removed_when_the_automatic_pass_fails() -> None:
    class Fails(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.conv(x)
            raise RuntimeError("boom")

    model = Fails().eval()
    with pytest.raises(RuntimeError, match="boom"):
        pellucid.explain(model, torch.randn(1, 1, 5, 5), 0, method="gradcam")
    assert hook_count(model) == 0
