"""Every rule-based method on every architecture of the zoo, unchanged: torchvision VGG,
ResNet (BasicBlock, Bottleneck), DenseNet, MobileNetV2, timm ResNets (``x += shortcut``),
Hugging Face ResNet and ConvNeXt from configs. The model must come out untouched."""

from __future__ import annotations

import copy

import pytest
import torch

import pellucid
import pellucid.lrp
from pellucid.lrp import Composite, Epsilon
from tests.helpers.architectures import zoo

METHODS = [
    "lrp.zero", "lrp.epsilon", "lrp.epsilon_plus", "lrp.epsilon_plus_flat",
    "lrp.epsilon_gamma_box", "lrp.epsilon_alpha2_beta1", "lrp.epsilon_alpha2_beta1_flat",
    "deep_taylor", "guided_backprop", "deconvnet", "deeplift", "excitation_backprop",
]
ZOO = zoo(small=True)
#: piecewise-linear networks, where LRP-0 must equal gradient × input exactly
RELU_NETS = [name for name in ZOO if name != "hf_convnext"]


def test_every_method_is_registered():
    assert set(METHODS) | {"lrp"} <= set(pellucid.list_methods())


@pytest.mark.parametrize("name", list(ZOO))
def test_every_composite_runs_and_leaves_the_model_untouched(name, snapshot, untouched):
    model, x = ZOO[name]
    before = snapshot(model)
    with torch.no_grad():
        reference = model(x)
    reference = getattr(reference, "logits", reference)
    for method in METHODS:
        e = pellucid.explain(model, x, method=method)
        assert e.attribution.shape == x.shape, method
        assert torch.isfinite(e.attribution).all(), method
        assert e.attribution.abs().sum() > 0, method
        torch.testing.assert_close(e.output, reference, msg=method)
        if method.startswith("lrp."):
            assert "output" in e.extras["layer_relevance"]
    untouched(model, before)
    text = pellucid.lrp.describe(model, None, x, show=False)
    assert "NO RULE" not in text


@pytest.mark.parametrize("name", RELU_NETS)
def test_lrp_zero_equals_gradient_times_input(name):
    model, x = ZOO[name]
    e = pellucid.explain(model, x, target=3, method="lrp.zero")
    gxi = pellucid.explain(model, x, target=3, method="gradient_x_input")
    scale = gxi.attribution.abs().max()
    torch.testing.assert_close(e.attribution, gxi.attribution, rtol=1e-3, atol=1e-4 * scale)


def _bias_free(model: torch.nn.Module) -> torch.nn.Module:
    """A copy with every bias, BatchNorm shift and running mean set to zero."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if name.endswith(("bias", "running_mean", "cls_token", "position_embeddings")):
                tensor.zero_()
    return model


@pytest.mark.parametrize("name", list(ZOO))
def test_bias_free_versions_conserve_relevance(name):
    """With all biases zero every rule in lrp.epsilon (ε → 0) conserves: the input relevance
    sums to the logit. This checks the whole canonicalisation on each architecture: folding,
    residual splits, concatenations, LayerNorm with constant normaliser, layer scale, pooling."""
    model, x = ZOO[name]
    model = _bias_free(model).double()
    x = x.double()
    tiny = Composite(norm=Epsilon(1e-12), linear=Epsilon(1e-12))
    e = pellucid.explain(model, x, target=3, method="lrp.epsilon", epsilon=1e-12, composite=tiny)
    logit = e.extras["layer_relevance"]["output"]
    with torch.no_grad():
        out = model(x)
    torch.testing.assert_close(logit, getattr(out, "logits", out)[:, 3])
    torch.testing.assert_close(e.attribution.flatten(1).sum(1), logit, rtol=1e-5, atol=1e-8)


def _vit(attention: str) -> torch.nn.Module:
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=32, image_size=16, patch_size=4, num_labels=5)
    config._attn_implementation = attention
    torch.manual_seed(0)
    return ViTForImageClassification(config).eval()


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_vision_transformer_attention_weights_held_constant(attention, snapshot, untouched):
    """Attention (softmax(q kᵀ) @ v or scaled_dot_product_attention) is linear in the values
    with the attention weights held constant (Ali et al. 2022): a bias-free ViT conserves."""
    model = _vit(attention)
    x = torch.randn(2, 3, 16, 16)
    before = snapshot(model)
    for method in METHODS:
        e = pellucid.explain(model, x, target=1, method=method)
        assert torch.isfinite(e.attribution).all() and e.attribution.abs().sum() > 0, method
    untouched(model, before)
    assert "NO RULE" not in pellucid.lrp.describe(model, None, x, show=False)
    free = _bias_free(model).double()
    tiny = Composite(norm=Epsilon(1e-12), linear=Epsilon(1e-12))
    e = pellucid.explain(free, x.double(), target=1, method="lrp.epsilon", epsilon=1e-12,
                         composite=tiny)
    logit = free(x.double()).logits[:, 1].detach()
    torch.testing.assert_close(e.attribution.flatten(1).sum(1), logit, rtol=1e-5, atol=1e-8)
