"""Grad-CAM, Grad-CAM++ and FullGrad on token maps (ViT tokens, registers, channels-last).

The closed form: a patch embedding, a position-wise layer ``mix`` and a ReLU, then the mean
over the patch positions and a linear head w. The score's gradient at the ReLU output is
w_c / N at each of the N patch positions (zero at the class token and registers), so
Grad-CAM there is ReLU(Σ_c w_c A_c) / N on the patch grid. The same network written with
tokens (with 0, 1 or 1 + 4 leading tokens) or channels-last must give exactly the map of
its channels-first twin, where ``mix`` is a 1×1 convolution.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import pellucid
from pellucid.errors import ArgumentError, ArgumentTypeError
from pellucid.layers import last_spatial_layer
from pellucid.spatial import as_feature_map, check_reshape, patch_grids

D, P, CLASSES = 6, 4, 3  # channels, patch size, classes; inputs 16×16 → a 4×4 patch grid


class PatchNet(nn.Module):
    """patch conv → mix (position-wise) → ReLU → mean over patches → head.

    ``layout``: "channels_first" (mix is a 1×1 conv), "channels_last" (N×h×w×D, mix is a
    Linear), or "tokens" with ``leading`` extra tokens (class token, registers) first.
    """

    def __init__(self, layout: str, leading: int = 0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layout, self.leading = layout, leading
        self.patch = nn.Conv2d(3, D, P, stride=P)
        self.head = nn.Linear(D, CLASSES)
        conv = nn.Conv2d(D, D, 1)
        self.mix = conv if layout == "channels_first" else nn.Linear(D, D)
        if layout != "channels_first":
            with torch.no_grad():
                self.mix.weight.copy_(conv.weight.flatten(1))
                self.mix.bias.copy_(conv.bias)
        self.act = nn.ReLU()
        self.special = nn.Parameter(torch.randn(1, leading, D))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.patch(x)
        if self.layout == "channels_first":
            return self.head(self.act(self.mix(a)).mean((2, 3)))
        if self.layout == "channels_last":
            return self.head(self.act(self.mix(a.permute(0, 2, 3, 1))).mean((1, 2)))
        tokens = torch.cat([self.special.expand(len(x), -1, -1), a.flatten(2).mT], 1)
        return self.head(self.act(self.mix(tokens))[:, self.leading:].mean(1))


LAYOUTS = [("tokens", 0), ("tokens", 1), ("tokens", 5), ("channels_last", 0)]


def images(batch: int = 3) -> torch.Tensor:
    return torch.randn(batch, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def test_gradcam_on_the_channels_first_twin_is_its_closed_form() -> None:
    model, x = PatchNet("channels_first").eval(), images()
    target = torch.tensor([0, 2, 1])
    e = pellucid.explain(model, x, target, method="gradcam")
    assert e.extras["layer"] == "act"
    with torch.no_grad():
        activation = model.act(model.mix(model.patch(x)))
    w = model.head.weight[target]
    expected = torch.einsum("nc,nchw->nhw", w, activation).clamp_min(0) / 16
    torch.testing.assert_close(e.extras["layer_map"], expected)


@pytest.mark.parametrize(("layout", "leading"), LAYOUTS)
@pytest.mark.parametrize("method", ["gradcam", "gradcam_plus_plus", "fullgrad"])
def test_token_and_channels_last_maps_equal_their_channels_first_twin(
    layout: str, leading: int, method: str, snapshot, untouched
) -> None:
    model, twin, x = PatchNet(layout, leading).eval(), PatchNet("channels_first").eval(), images()
    before = snapshot(model)
    x_before = x.clone()
    e = pellucid.explain(model, x, 1, method=method)
    expected = pellucid.explain(twin, x, 1, method=method)
    torch.testing.assert_close(e.attribution, expected.attribution, atol=1e-6, rtol=1e-5)
    if method != "fullgrad":
        assert e.extras["layer"] == "act"  # chosen automatically, read without reshape=
        torch.testing.assert_close(e.extras["layer_map"], expected.extras["layer_map"])
        named = pellucid.explain(model, x, 1, method=method, layer="mix", relu=False)
        twin_named = pellucid.explain(twin, x, 1, method=method, layer="mix", relu=False)
        torch.testing.assert_close(named.attribution, twin_named.attribution)
    else:
        gaps = e.extras["completeness_gap"], expected.extras["completeness_gap"]
        torch.testing.assert_close(*gaps)
    untouched(model, before)
    assert torch.equal(x, x_before)


@pytest.mark.parametrize(("layout", "leading"), [("tokens", 5), ("channels_last", 0)])
def test_named_and_callable_readings_equal_the_automatic_one(layout: str, leading: int) -> None:
    model, x = PatchNet(layout, leading).eval(), images()
    auto = pellucid.explain(model, x, 0, method="gradcam").attribution
    named = "channels_last" if layout == "channels_last" else f"tokens={leading}"

    def by_hand(out: torch.Tensor) -> torch.Tensor:
        if layout == "channels_last":
            return out.permute(0, 3, 1, 2)
        return out[:, leading:].mT.reshape(len(out), out.shape[2], 4, 4)

    for reshape in (named, by_hand):
        got = pellucid.explain(model, x, 0, method="gradcam", reshape=reshape).attribution
        torch.testing.assert_close(got, auto)


@pytest.mark.parametrize(("layout", "leading"), LAYOUTS)
def test_batch_equals_concatenated_single_samples(layout: str, leading: int) -> None:
    model, x = PatchNet(layout, leading).eval(), images()
    target = torch.tensor([0, 2, 1])
    for method in ("gradcam", "gradcam_plus_plus", "fullgrad"):
        batch = pellucid.explain(model, x, target, method=method).attribution
        singles = [pellucid.explain(model, x[i:i + 1], target[i:i + 1], method=method).attribution
                   for i in range(3)]
        torch.testing.assert_close(batch, torch.cat(singles), atol=1e-6, rtol=1e-5)


# --- reading layer outputs as maps ------------------------------------------------------


def test_tokens_are_laid_row_major_on_the_grid_of_the_inputs_aspect() -> None:
    tokens = torch.randn(2, 1 + 4 + 2 * 3, 5)  # class token, 4 registers, a 2×3 grid
    x = torch.zeros(2, 3, 8, 12)
    got = as_feature_map(tokens, x)
    assert got.shape == (2, 5, 2, 3)
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(got[:, :, i, j], tokens[:, 5 + 3 * i + j])
    torch.testing.assert_close(as_feature_map(tokens, x, "tokens=5"), got)
    cls_only = torch.randn(2, 1 + 6, 5)
    torch.testing.assert_close(as_feature_map(cls_only, x, "vit"), as_feature_map(cls_only, x))
    nhwc = torch.randn(2, 2, 3, 5)
    torch.testing.assert_close(as_feature_map(nhwc, x), nhwc.permute(0, 3, 1, 2))
    nchw = torch.randn(2, 4, 2, 3)  # a conv output: PyTorch's layout is kept
    assert as_feature_map(nchw, x) is nchw
    assert as_feature_map(nhwc, x, "channels_first") is nhwc


def test_patch_grids_keep_the_aspect() -> None:
    assert patch_grids((8, 12)) == [(8, 12), (4, 6), (2, 3)]
    assert patch_grids((16, 16)) == [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]


def test_an_ambiguous_token_count_names_the_candidates() -> None:
    tokens, x = torch.randn(1, 37, 4), torch.zeros(1, 3, 30, 30)  # 1 + 6×6 or 12 + 5×5
    with pytest.raises(ArgumentError, match=r"'tokens=1' .*6×6.*'tokens=12' .*5×5") as info:
        as_feature_map(tokens, x)
    assert info.value.argument == "reshape"
    assert as_feature_map(tokens, x, "tokens=1").shape == (1, 4, 6, 6)
    assert as_feature_map(tokens, x, "tokens=12").shape == (1, 4, 5, 5)


def test_tokens_on_no_grid_and_wrong_readings_are_refused_clearly() -> None:
    x = torch.zeros(1, 3, 16, 16)
    with pytest.raises(ArgumentError, match="no patch grid") as info:
        as_feature_map(torch.randn(1, 40, 4), x)
    assert info.value.argument == "layer"
    with pytest.raises(ArgumentError, match="less 2 leading ones that is 15") as info:
        as_feature_map(torch.randn(1, 17, 4), x, "tokens=2")
    assert info.value.argument == "reshape"
    with pytest.raises(ArgumentError, match="N×T×D on inputs N×C×H×W") as info:
        as_feature_map(torch.randn(1, 4, 4, 4), x, "vit")
    assert info.value.argument == "reshape"
    with pytest.raises(ArgumentError, match="reshape returned") as info:
        as_feature_map(torch.randn(1, 17, 4), x, lambda t: t[:, 1:])
    assert info.value.argument == "reshape"
    with pytest.raises(ArgumentError, match=r"reshape raised RuntimeError.*\(1, 17, 4\)") as info:
        as_feature_map(torch.randn(1, 17, 4), x, lambda t: t.reshape(1, 5, 4, 4))
    assert info.value.argument == "reshape" and isinstance(info.value.__cause__, RuntimeError)


@pytest.mark.parametrize("bad", ["vit_registers", "tokens=", "tokens=-1", "NHWC"])
def test_unknown_readings_name_the_valid_ones(bad: str) -> None:
    with pytest.raises(ArgumentError, match=re.escape(f"reshape {bad!r}")) as info:
        check_reshape(bad)
    assert "'tokens=K'" in str(info.value)
    with pytest.raises(ArgumentError, match="reshape"):
        pellucid.get_method("gradcam", reshape=bad)


@pytest.mark.parametrize("bad", [3, True, [], nn.Linear])
def test_readings_of_the_wrong_type_are_refused(bad: object) -> None:
    with pytest.raises(ArgumentTypeError, match="reshape must be") as info:
        pellucid.get_method("gradcam_plus_plus", reshape=bad)
    assert info.value.argument == "reshape"


# --- a class-token classifier and Hugging Face models ----------------------------------


class ClassTokenNet(PatchNet):
    """PatchNet whose head reads the class token after a step that mixes all tokens and a
    position-wise LayerNorm: the norm reaches the score only through the class token."""

    def __init__(self) -> None:
        super().__init__("tokens", 1)
        self.norm = nn.LayerNorm(D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat([self.special.expand(len(x), -1, -1), self.patch(x).flatten(2).mT], 1)
        a = self.act(self.mix(tokens))
        mixed = (a @ a.mT).softmax(-1) @ a  # self-attention without projections
        return self.head(self.norm(mixed)[:, 0])


def test_a_class_token_head_moves_the_automatic_layer_before_the_mixing() -> None:
    model, x = ClassTokenNet().eval(), images()
    e = pellucid.explain(model, x, 0, method="gradcam", relu=False)
    assert e.extras["layer"] == "act"  # not "norm", the last layer with a token output
    assert (e.extras["layer_map"] != 0).all()
    with pytest.raises(ArgumentError, match="only through the tokens left out") as info:
        pellucid.explain(model, x, 0, method="gradcam", layer="norm")
    assert info.value.argument == "layer"


@pytest.mark.parametrize("kind", ["class_token_net", "hugging_face_vit"])
def test_the_layer_behind_a_class_token_is_found_in_the_one_forward_pass(kind: str) -> None:
    """The last spatial layer (the final norm) reaches the score through the class token
    only; the choice moves back without a second forward pass, and equals naming it."""
    model = ClassTokenNet().eval() if kind == "class_token_net" else tiny_vit()
    x, passes = images(), []
    handle = model.register_forward_pre_hook(lambda module, args: passes.append(1))
    try:
        e = pellucid.explain(model, x, 1, method="gradcam", relu=False)
    finally:
        handle.remove()
    assert len(passes) == 1
    norms = [n for n, m in model.named_modules() if isinstance(m, nn.LayerNorm)]
    assert last_spatial_layer(model, x) == norms[-1]  # by structure alone
    expected = "act" if kind == "class_token_net" else blocks(model)[-2]
    assert e.extras["layer"] == expected
    named = pellucid.explain(model, x, 1, method="gradcam", relu=False, layer=expected)
    torch.testing.assert_close(e.attribution, named.attribution)


def tiny_vit(registers: int = 0) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    common = dict(image_size=16, patch_size=P, num_channels=3, hidden_size=8,
                  num_hidden_layers=2, num_attention_heads=2, intermediate_size=16, num_labels=3)
    if registers:
        config = transformers.Dinov2WithRegistersConfig(num_register_tokens=registers, **common)
        return transformers.Dinov2WithRegistersForImageClassification(config).eval()
    config = transformers.ViTConfig(**common)
    return transformers.ViTForImageClassification(config).eval()


def blocks(model: nn.Module) -> list[str]:
    return [n for n, _ in model.named_modules() if re.fullmatch(r".*\.layers?\.\d+", n)]


@pytest.mark.parametrize("method", ["gradcam", "gradcam_plus_plus"])
def test_hugging_face_vit_gets_a_patch_grid_map_before_its_last_block(
    method: str, snapshot, untouched
) -> None:
    model, x = tiny_vit(), images()
    before = snapshot(model)
    target = torch.tensor([0, 2, 1])
    e = pellucid.explain(model, x, target, method=method, relu=False)
    # the classifier reads the class token of the last block: its input is the map
    assert e.extras["layer"] == blocks(model)[-2]
    assert e.extras["layer_map"].shape == (3, 4, 4) and e.attribution.shape == x.shape
    assert e.extras["layer_map"].abs().sum() > 0
    singles = [pellucid.explain(model, x[i:i + 1], target[i:i + 1], method=method,
                                relu=False).attribution for i in range(3)]
    torch.testing.assert_close(e.attribution, torch.cat(singles), atol=1e-5, rtol=1e-4)
    untouched(model, before)


def test_hugging_face_vit_with_registers_drops_the_class_token_and_registers() -> None:
    model, x = tiny_vit(registers=4), images(2)
    e = pellucid.explain(model, x, 0, method="gradcam", relu=False)
    (norm,) = [n for n, m in model.named_modules() if n.endswith("layernorm")]
    assert e.extras["layer"] == norm  # the head averages the patch tokens: the last layer
    with torch.no_grad():
        hidden = model.dinov2_with_registers(x).last_hidden_state
    assert hidden.shape[1] == 21  # 1 class token, 4 registers, 16 patches
    # Grad-CAM by hand on the patch tokens (the cls half of the head gets no patch gradient)
    w = model.classifier.weight[0, 8:] / 16
    expected = (hidden[:, 5:] @ w).reshape(2, 4, 4)
    torch.testing.assert_close(e.extras["layer_map"], expected, atol=1e-6, rtol=1e-5)
    fullgrad = pellucid.explain(model, x, 0, method="fullgrad")
    assert fullgrad.attribution.shape == x.shape and torch.isfinite(fullgrad.attribution).all()
