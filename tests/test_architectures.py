"""The plain-torch architecture replicas: forward, shapes, names and structure of the originals."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.helpers import architectures as arch

NAMES = list(arch.ZOO_INPUT_SIZES)


@pytest.fixture(scope="module")
def zoo() -> dict[str, tuple[nn.Module, torch.Tensor]]:
    return arch.zoo(small=True)


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    return getattr(out, "logits", out)


def test_zoo_names_and_input_sizes(zoo):
    assert list(zoo) == NAMES
    for name, (_, x) in zoo.items():
        assert tuple(x.shape) == arch.ZOO_INPUT_SIZES[name]


@pytest.mark.parametrize("name", NAMES)
def test_forward_is_deterministic_and_leaves_input_alone(zoo, name):
    model, x = zoo[name]
    assert not any(m.training for m in model.modules())
    x_before = x.clone()
    with torch.no_grad():
        first, second = logits(model, x), logits(model, x)
    assert first.shape == (x.shape[0], arch.ZOO_CLASSES)
    assert torch.isfinite(first).all()
    assert torch.equal(first, second)
    assert torch.equal(x, x_before)
    # Samples differ, so the logits must too (a constant output would hide a broken network).
    assert not torch.allclose(first[0], first[1])


def test_hf_models_return_model_outputs(zoo):
    for name in ("hf_resnet", "hf_convnext"):
        model, x = zoo[name]
        with torch.no_grad():
            out = model(x)
        assert not isinstance(out, torch.Tensor)
        assert out.logits.shape == (x.shape[0], arch.ZOO_CLASSES)


@pytest.mark.parametrize("name", [n for n in NAMES if n not in ("vgg11", "hf_convnext")])
def test_batchnorm_statistics_are_randomised(zoo, name):
    norms = [m for m in zoo[name][0].modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms
    for bn in norms:
        assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
        assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))


EXPECTED_MODULES = {
    "vgg11": {"features.0": nn.Conv2d, "features.1": nn.ReLU, "features.2": nn.MaxPool2d,
              "avgpool": nn.AdaptiveAvgPool2d, "classifier.0": nn.Linear,
              "classifier.2": nn.Dropout, "classifier.6": nn.Linear},
    "vgg11_bn": {"features.0": nn.Conv2d, "features.1": nn.BatchNorm2d, "features.2": nn.ReLU,
                 "features.3": nn.MaxPool2d, "classifier.6": nn.Linear},
    "resnet18": {"conv1": nn.Conv2d, "bn1": nn.BatchNorm2d, "relu": nn.ReLU,
                 "maxpool": nn.MaxPool2d, "layer1.0.relu": nn.ReLU,
                 "layer2.0.downsample.0": nn.Conv2d, "layer2.0.downsample.1": nn.BatchNorm2d,
                 "layer4.1.conv2": nn.Conv2d, "layer4.1.bn2": nn.BatchNorm2d,
                 "avgpool": nn.AdaptiveAvgPool2d, "fc": nn.Linear},
    "resnet50": {"layer1.0.downsample.0": nn.Conv2d, "layer3.5.conv3": nn.Conv2d,
                 "layer4.2.bn3": nn.BatchNorm2d, "layer4.1.conv2": nn.Conv2d, "fc": nn.Linear},
    "densenet": {"features.conv0": nn.Conv2d, "features.norm0": nn.BatchNorm2d,
                 "features.relu0": nn.ReLU, "features.pool0": nn.MaxPool2d,
                 "features.denseblock1.denselayer1.conv1": nn.Conv2d,
                 "features.denseblock1.denselayer2.norm2": nn.BatchNorm2d,
                 "features.transition1.pool": nn.AvgPool2d,
                 "features.transition3.conv": nn.Conv2d,
                 "features.denseblock4.denselayer2.conv2": nn.Conv2d,
                 "features.norm5": nn.BatchNorm2d, "classifier": nn.Linear},
    "mobilenet_v2": {"features.0.0": nn.Conv2d, "features.0.1": nn.BatchNorm2d,
                     "features.0.2": nn.ReLU6, "features.1.conv.0.0": nn.Conv2d,
                     "features.2.conv.1.0": nn.Conv2d, "features.18.2": nn.ReLU6,
                     "classifier.0": nn.Dropout, "classifier.1": nn.Linear},
    "timm_resnet18": {"act1": nn.ReLU, "layer1.0.act1": nn.ReLU, "layer1.0.act2": nn.ReLU,
                      "layer1.0.drop_block": nn.Identity, "layer1.0.aa": nn.Identity,
                      "layer4.1.drop_path": arch.DropPath, "layer2.0.downsample.0": nn.Conv2d,
                      "global_pool.pool": nn.AdaptiveAvgPool2d, "fc": nn.Linear},
    "timm_resnet50": {"layer1.0.act3": nn.ReLU, "layer4.2.conv3": nn.Conv2d, "fc": nn.Linear},
    "hf_resnet": {"resnet.embedder.embedder.convolution": nn.Conv2d,
                  "resnet.embedder.embedder.normalization": nn.BatchNorm2d,
                  "resnet.encoder.stages.3.layers.0.activation": nn.ReLU,
                  "classifier.1": nn.Linear},
    "hf_convnext": {"convnext.encoder.stages.0.layers.0.dwconv": nn.Conv2d,
                    "convnext.encoder.stages.3.layers.0.pwconv2": nn.Linear,
                    "convnext.layernorm": nn.LayerNorm, "classifier": nn.Linear},
}


@pytest.mark.parametrize("name", NAMES)
def test_module_names_match_the_originals(zoo, name):
    modules = dict(zoo[name][0].named_modules())
    for path, kind in EXPECTED_MODULES[name].items():
        assert isinstance(modules.get(path), kind), f"{name}: {path}"


def test_in_place_activations_as_in_the_originals(zoo):
    assert zoo["vgg11"][0].features[1].inplace
    assert zoo["resnet18"][0].layer1[0].relu.inplace
    assert zoo["mobilenet_v2"][0].features[0][2].inplace
    assert zoo["densenet"][0].features.denseblock1.denselayer1.relu1.inplace
    assert zoo["timm_resnet18"][0].layer1[0].act2.inplace


@pytest.mark.parametrize(("name", "block", "calls"), [
    ("resnet18", "layer1.0.relu", 2), ("resnet50", "layer1.0.relu", 3),
    ("timm_resnet18", "layer1.0.act2", 1), ("timm_resnet50", "layer1.0.act3", 1),
])
def test_relu_module_call_counts(zoo, name, block, calls):
    """torchvision reuses one ReLU per block (2 calls basic, 3 bottleneck); timm has one each."""
    model, x = zoo[name]
    module = dict(model.named_modules())[block]
    seen = []
    handle = module.register_forward_hook(lambda *_: seen.append(1))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    assert len(seen) == calls


def test_mobilenet_residuals_and_depthwise_convs_as_in_torchvision():
    with torch.device("meta"):
        mobilenet = arch.mobilenet_v2()
    uses = [block.use_res_connect for block in mobilenet.features[1:-1]]
    # torchvision: t,c,n,s rows give residuals on every repeat after the first of a row.
    assert uses == [False, False, True, False, True, True, False, True, True, True,
                    False, True, True, False, True, True, False]
    assert mobilenet.features[2].conv[1][0].groups == mobilenet.features[2].conv[1][0].in_channels


def test_densenet_layers_see_all_previous_features():
    model = arch.densenet(growth_rate=4, block_config=(3, 2), num_init_features=6, bn_size=2,
                          num_classes=3)
    block = model.features.denseblock1
    assert [layer.conv1.in_channels for layer in block.values()] == [6, 10, 14]
    assert model.features.transition1.conv.out_channels == (6 + 3 * 4) // 2
    assert model.classifier.in_features == 9 + 2 * 4


@pytest.mark.parametrize(("build", "count"), [
    # Parameter counts of the torchvision / timm models of the same name.
    (lambda: arch.vgg16_shaped(), 138_357_544),
    (lambda: arch.vgg16_shaped(batch_norm=True), 138_365_992),
    (lambda: arch.vgg("11"), 132_863_336),
    (lambda: arch.resnet("basic", (2, 2, 2, 2)), 11_689_512),
    (arch.resnet50_shaped, 25_557_032),
    (lambda: arch.timm_resnet("bottleneck", (3, 4, 6, 3)), 25_557_032),
    (arch.densenet, 7_978_856),
    (arch.mobilenet_v2, 3_504_872),
])
def test_full_size_parameter_counts(build, count):
    with torch.device("meta"):
        model = build()
    assert sum(p.numel() for p in model.parameters()) == count


def test_full_size_output_at_224():
    with torch.device("meta"):
        model = arch.resnet50_shaped()
        out = model(torch.empty(1, 3, 224, 224))
    assert out.shape == (1, 1000)
    assert model.layer4[0].conv1.in_channels == 1024


def test_drop_path_is_identity_in_eval_and_random_in_training():
    layer = arch.DropPath(0.5)
    x = torch.ones(64, 3)
    assert layer.eval()(x) is x
    dropped = layer.train()(x)
    assert set(dropped[:, 0].unique().tolist()) <= {0.0, 2.0}
    assert 0 < (dropped[:, 0] == 0).sum() < 64


@pytest.mark.parametrize("name", NAMES)
def test_input_gradients_flow_through_in_place_ops(zoo, name):
    model, x = zoo[name]
    x = x.clone().requires_grad_(True)
    logits(model, x)[:, 0].sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


def test_zoo_is_reproducible_and_keeps_the_global_rng(zoo):
    state = torch.random.get_rng_state()
    model, x = arch.zoo(small=True)["resnet18"]
    assert torch.equal(torch.random.get_rng_state(), state)
    reference, reference_x = zoo["resnet18"]
    assert torch.equal(x, reference_x)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
