"""Plain-torch replicas of torchvision, timm and Hugging Face image classifiers (random weights).

torchvision and pretrained weights are unavailable here, yet pellucid must handle these models by
their structure: module names (``features.0``, ``layer4.1.conv2``), in-place ReLUs, one ReLU module
called several times per block, ``out += identity``, functional calls (``F.relu``,
``F.adaptive_avg_pool2d``, ``torch.flatten``), ``torch.cat`` of feature lists. The classes below
copy the layout and the forward code of the originals; every builder takes ``num_classes`` and a
size knob so tests can build small versions. ``zoo()`` returns small models in eval mode with
random BatchNorm statistics, each with an example input.

Model code only: this module must not import pellucid. Tests and benchmarks import it as
``tests.helpers.architectures``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .models import randomise_batchnorm


def _init_weights(model: nn.Module, conv_mode: str = "fan_out",
                  linear_std: float | None = None) -> None:
    """The torchvision initialisation: Kaiming-normal convs, unit BatchNorm, optional N(0, std)
    linear weights; all biases zero (linear biases only when ``linear_std`` is given)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode=conv_mode, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, 0, linear_std)
            nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------------------------
# torchvision VGG
# ---------------------------------------------------------------------------------------------

VGG_CFGS: dict[str, list[int | str]] = {
    "11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
           512, 512, 512, "M"],
}


class VGG(nn.Module):
    def __init__(self, features: nn.Module, num_classes: int = 1000, dropout: float = 0.5,
                 channels: int = 512, hidden: int = 4096) -> None:
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(channels * 7 * 7, hidden),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, num_classes),
        )
        _init_weights(self, linear_std=0.01)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.classifier(x)
        return x


def _vgg_layers(cfg: Sequence[int | str], batch_norm: bool, width_divisor: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_channels = 3
    for v in cfg:
        if v == "M":
            layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
        else:
            out_channels = int(v) // width_divisor
            conv2d = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
            if batch_norm:
                layers += [conv2d, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
            else:
                layers += [conv2d, nn.ReLU(inplace=True)]
            in_channels = out_channels
    return nn.Sequential(*layers)


def vgg(cfg: str = "16", batch_norm: bool = False, num_classes: int = 1000,
        width_divisor: int = 1) -> VGG:
    """torchvision ``vgg11``/``vgg16`` (``_bn`` with ``batch_norm``); channels and the 4096-wide
    classifier divided by ``width_divisor``."""
    features = _vgg_layers(VGG_CFGS[cfg], batch_norm, width_divisor)
    return VGG(features, num_classes, channels=512 // width_divisor,
               hidden=4096 // width_divisor)


# ---------------------------------------------------------------------------------------------
# torchvision ResNet
# ---------------------------------------------------------------------------------------------

def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x

        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)
        out = self.bn2(out)

        if self.downsample is not None:
            identity = self.downsample(x)

        out += identity
        out = self.relu(out)

        return out


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x

        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)
        out = self.bn2(out)
        out = self.relu(out)

        out = self.conv3(out)
        out = self.bn3(out)

        if self.downsample is not None:
            identity = self.downsample(x)

        out += identity
        out = self.relu(out)

        return out


_BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {
    "basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: Sequence[int],
                 num_classes: int = 1000, width: int = 64) -> None:
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * block.expansion, num_classes)
        _init_weights(self)

    def _make_layer(self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int,
                    stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _forward_impl(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)

        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)

        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.fc(x)

        return x

    def forward(self, x: Tensor) -> Tensor:
        return self._forward_impl(x)


def resnet(block: str = "basic", layers: Sequence[int] = (2, 2, 2, 2), num_classes: int = 1000,
           width: int = 64) -> ResNet:
    """torchvision ResNet: ``resnet18`` = basic (2,2,2,2), ``resnet50`` = bottleneck (3,4,6,3);
    ``width`` is the channel count of conv1/layer1 (64 in the originals)."""
    return ResNet(_BLOCKS[block], layers, num_classes, width)


# ---------------------------------------------------------------------------------------------
# torchvision DenseNet
# ---------------------------------------------------------------------------------------------

class _DenseLayer(nn.Module):
    def __init__(self, num_input_features: int, growth_rate: int, bn_size: int,
                 drop_rate: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(num_input_features, bn_size * growth_rate, kernel_size=1,
                               stride=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, kernel_size=3, stride=1,
                               padding=1, bias=False)
        self.drop_rate = float(drop_rate)

    def bn_function(self, inputs: list[Tensor]) -> Tensor:
        concated_features = torch.cat(inputs, 1)
        bottleneck_output = self.conv1(self.relu1(self.norm1(concated_features)))
        return bottleneck_output

    def forward(self, input: Tensor | list[Tensor]) -> Tensor:
        prev_features = [input] if isinstance(input, Tensor) else input
        bottleneck_output = self.bn_function(prev_features)
        new_features = self.conv2(self.relu2(self.norm2(bottleneck_output)))
        if self.drop_rate > 0:
            new_features = F.dropout(new_features, p=self.drop_rate, training=self.training)
        return new_features


class _DenseBlock(nn.ModuleDict):
    def __init__(self, num_layers: int, num_input_features: int, bn_size: int, growth_rate: int,
                 drop_rate: float = 0.0) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = _DenseLayer(num_input_features + i * growth_rate, growth_rate, bn_size,
                                drop_rate)
            self.add_module(f"denselayer{i + 1}", layer)

    def forward(self, init_features: Tensor) -> Tensor:
        features = [init_features]
        for _name, layer in self.items():
            new_features = layer(features)
            features.append(new_features)
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    def __init__(self, num_input_features: int, num_output_features: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(num_input_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(num_input_features, num_output_features, kernel_size=1, stride=1,
                              bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNet(nn.Module):
    def __init__(self, growth_rate: int = 32, block_config: Sequence[int] = (6, 12, 24, 16),
                 num_init_features: int = 64, bn_size: int = 4, drop_rate: float = 0.0,
                 num_classes: int = 1000) -> None:
        super().__init__()
        self.features = nn.Sequential(OrderedDict([
            ("conv0", nn.Conv2d(3, num_init_features, kernel_size=7, stride=2, padding=3,
                                bias=False)),
            ("norm0", nn.BatchNorm2d(num_init_features)),
            ("relu0", nn.ReLU(inplace=True)),
            ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
        ]))
        num_features = num_init_features
        for i, num_layers in enumerate(block_config):
            block = _DenseBlock(num_layers, num_features, bn_size, growth_rate, drop_rate)
            self.features.add_module(f"denseblock{i + 1}", block)
            num_features = num_features + num_layers * growth_rate
            if i != len(block_config) - 1:
                trans = _Transition(num_features, num_features // 2)
                self.features.add_module(f"transition{i + 1}", trans)
                num_features = num_features // 2
        self.features.add_module("norm5", nn.BatchNorm2d(num_features))
        self.classifier = nn.Linear(num_features, num_classes)
        _init_weights(self, conv_mode="fan_in")
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: Tensor) -> Tensor:
        features = self.features(x)
        out = F.relu(features, inplace=True)
        out = F.adaptive_avg_pool2d(out, (1, 1))
        out = torch.flatten(out, 1)
        out = self.classifier(out)
        return out


def densenet(growth_rate: int = 32, block_config: Sequence[int] = (6, 12, 24, 16),
             num_init_features: int = 64, bn_size: int = 4, num_classes: int = 1000) -> DenseNet:
    """torchvision DenseNet (defaults = ``densenet121``)."""
    return DenseNet(growth_rate, block_config, num_init_features, bn_size,
                    num_classes=num_classes)


# ---------------------------------------------------------------------------------------------
# torchvision MobileNetV2
# ---------------------------------------------------------------------------------------------

def _make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor``, never dropping more than 10%."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class Conv2dNormActivation(nn.Sequential):
    """torchvision.ops.misc.Conv2dNormActivation with BatchNorm2d and an in-place activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, groups: int = 1,
                 activation_layer: type[nn.Module] = nn.ReLU) -> None:
        padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups,
                      bias=False),
            nn.BatchNorm2d(out_channels),
            activation_layer(inplace=True),
        )
        self.out_channels = out_channels


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        self.stride = stride
        hidden_dim = round(inp * expand_ratio)
        self.use_res_connect = self.stride == 1 and inp == oup

        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(Conv2dNormActivation(inp, hidden_dim, kernel_size=1,
                                               activation_layer=nn.ReLU6))
        layers.extend([
            Conv2dNormActivation(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim,
                                 activation_layer=nn.ReLU6),
            nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ])
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    # t (expansion), c (channels), n (repeats), s (stride of the first repeat)
    inverted_residual_setting = (
        (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
        (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
    )

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0,
                 round_nearest: int = 8, dropout: float = 0.2) -> None:
        super().__init__()
        input_channel = _make_divisible(32 * width_mult, round_nearest)
        self.last_channel = _make_divisible(1280 * max(1.0, width_mult), round_nearest)
        features: list[nn.Module] = [
            Conv2dNormActivation(3, input_channel, stride=2, activation_layer=nn.ReLU6)]
        for t, c, n, s in self.inverted_residual_setting:
            output_channel = _make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                stride = s if i == 0 else 1
                features.append(InvertedResidual(input_channel, output_channel, stride, t))
                input_channel = output_channel
        features.append(Conv2dNormActivation(input_channel, self.last_channel, kernel_size=1,
                                             activation_layer=nn.ReLU6))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(self.last_channel, num_classes),
        )
        _init_weights(self, linear_std=0.01)

    def _forward_impl(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        x = self.classifier(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self._forward_impl(x)


def mobilenet_v2(num_classes: int = 1000, width_mult: float = 1.0) -> MobileNetV2:
    """torchvision ``mobilenet_v2``."""
    return MobileNetV2(num_classes, width_mult)


# ---------------------------------------------------------------------------------------------
# timm ResNet
# ---------------------------------------------------------------------------------------------

def drop_path(x: Tensor, drop_prob: float = 0.0, training: bool = False) -> Tensor:
    """Stochastic depth per sample (timm ``drop_path``): the identity in eval mode."""
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    random_tensor = x.new_empty(shape).bernoulli_(keep_prob)
    random_tensor.div_(keep_prob)
    return x * random_tensor


class DropPath(nn.Module):
    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(x, self.drop_prob, self.training)


class TimmBasicBlock(nn.Module):
    """timm.models.resnet.BasicBlock (no attention, no anti-aliasing, no drop-block)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None,
                 drop_path: nn.Module | None = None) -> None:
        super().__init__()
        outplanes = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1,
                               bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.drop_block = nn.Identity()
        self.act1 = nn.ReLU(inplace=True)
        self.aa = nn.Identity()
        self.conv2 = nn.Conv2d(planes, outplanes, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(outplanes)
        self.se = None
        self.act2 = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.drop_path = drop_path

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x

        x = self.conv1(x)
        x = self.bn1(x)
        x = self.drop_block(x)
        x = self.act1(x)
        x = self.aa(x)

        x = self.conv2(x)
        x = self.bn2(x)

        if self.se is not None:
            x = self.se(x)

        if self.drop_path is not None:
            x = self.drop_path(x)

        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        x += shortcut
        x = self.act2(x)

        return x


class TimmBottleneck(nn.Module):
    """timm.models.resnet.Bottleneck (no attention, no anti-aliasing, no drop-block)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None,
                 drop_path: nn.Module | None = None) -> None:
        super().__init__()
        outplanes = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1,
                               bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.drop_block = nn.Identity()
        self.act2 = nn.ReLU(inplace=True)
        self.aa = nn.Identity()
        self.conv3 = nn.Conv2d(planes, outplanes, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(outplanes)
        self.se = None
        self.act3 = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.drop_path = drop_path

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x

        x = self.conv1(x)
        x = self.bn1(x)
        x = self.act1(x)

        x = self.conv2(x)
        x = self.bn2(x)
        x = self.drop_block(x)
        x = self.act2(x)
        x = self.aa(x)

        x = self.conv3(x)
        x = self.bn3(x)

        if self.se is not None:
            x = self.se(x)

        if self.drop_path is not None:
            x = self.drop_path(x)

        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        x += shortcut
        x = self.act3(x)

        return x


class SelectAdaptivePool2d(nn.Module):
    """timm's global pool for ``pool_type='avg'``: ``pool`` then ``flatten`` submodules."""

    def __init__(self, flatten: bool = True) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1) if flatten else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(x)
        x = self.flatten(x)
        return x


_TIMM_BLOCKS: dict[str, type[TimmBasicBlock] | type[TimmBottleneck]] = {
    "basic": TimmBasicBlock, "bottleneck": TimmBottleneck}


class TimmResNet(nn.Module):
    def __init__(self, block: type[TimmBasicBlock] | type[TimmBottleneck],
                 layers: Sequence[int], num_classes: int = 1000, width: int = 64,
                 drop_path_rate: float = 0.0, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        inplanes = width
        self.conv1 = nn.Conv2d(3, inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        net_num_blocks, net_block_idx = sum(layers), 0
        for stage_idx, num_blocks in enumerate(layers):
            planes, stride = width * 2 ** stage_idx, 1 if stage_idx == 0 else 2
            blocks = []
            for block_idx in range(num_blocks):
                downsample = None
                if block_idx == 0 and (stride != 1 or inplanes != planes * block.expansion):
                    downsample = nn.Sequential(
                        nn.Conv2d(inplanes, planes * block.expansion, 1, stride=stride,
                                  bias=False),
                        nn.BatchNorm2d(planes * block.expansion),
                    )
                rate = drop_path_rate * net_block_idx / max(net_num_blocks - 1, 1)
                blocks.append(block(inplanes, planes, stride if block_idx == 0 else 1,
                                    downsample, DropPath(rate) if rate > 0 else None))
                inplanes = planes * block.expansion
                net_block_idx += 1
            self.add_module(f"layer{stage_idx + 1}", nn.Sequential(*blocks))

        self.num_features = inplanes
        self.global_pool = SelectAdaptivePool2d(flatten=True)
        self.fc = nn.Linear(self.num_features, num_classes)
        _init_weights(self)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.act1(x)
        x = self.maxpool(x)

        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        return x

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.global_pool(x)
        if self.drop_rate:
            x = F.dropout(x, p=float(self.drop_rate), training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        x = self.forward_features(x)
        x = self.forward_head(x)
        return x


def timm_resnet(block: str = "basic", layers: Sequence[int] = (2, 2, 2, 2),
                num_classes: int = 1000, width: int = 64,
                drop_path_rate: float = 0.0) -> TimmResNet:
    """timm ``resnet18``/``resnet50`` layout; ``DropPath`` modules exist when
    ``drop_path_rate > 0`` (rate rising linearly over the blocks, as in timm)."""
    return TimmResNet(_TIMM_BLOCKS[block], layers, num_classes, width, drop_path_rate)


# ---------------------------------------------------------------------------------------------
# Hugging Face transformers
# ---------------------------------------------------------------------------------------------

def hf_resnet(num_classes: int = 10, small: bool = True) -> nn.Module:
    """``transformers.ResNetForImageClassification`` with random weights, in eval mode.

    ``small``: basic blocks, one per stage, widths 8-64 (for 32-64 pixel inputs); otherwise the
    ResNet-50 default config.
    """
    from transformers import ResNetConfig, ResNetForImageClassification

    sizes = dict(embedding_size=8, hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1],
                 layer_type="basic") if small else {}
    config = ResNetConfig(num_labels=num_classes, **sizes)
    return ResNetForImageClassification(config).eval()


def hf_convnext(num_classes: int = 10, small: bool = True) -> nn.Module:
    """``transformers.ConvNextForImageClassification`` with random weights, in eval mode.

    ``small``: widths 8-64, one block per stage, layer scale 1 (the default 1e-6 would make every
    random block an identity); otherwise the ConvNeXt-T default config.
    """
    from transformers import ConvNextConfig, ConvNextForImageClassification

    sizes = dict(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], image_size=32,
                 layer_scale_init_value=1.0) if small else {}
    config = ConvNextConfig(num_labels=num_classes, **sizes)
    return ConvNextForImageClassification(config).eval()


# ---------------------------------------------------------------------------------------------
# Full-size shapes and the small zoo
# ---------------------------------------------------------------------------------------------

def vgg16_shaped(num_classes: int = 1000, batch_norm: bool = False) -> VGG:
    """torchvision ``vgg16`` (138,357,544 parameters) with random weights, for 3×224×224."""
    return vgg("16", batch_norm, num_classes)


def resnet50_shaped(num_classes: int = 1000) -> ResNet:
    """torchvision ``resnet50`` (25,557,032 parameters) with random weights, for 3×224×224."""
    return resnet("bottleneck", (3, 4, 6, 3), num_classes)


ZOO_CLASSES = 10

ZOO_INPUT_SIZES: dict[str, tuple[int, int, int, int]] = {
    "vgg11": (2, 3, 32, 32),
    "vgg11_bn": (2, 3, 32, 32),
    "resnet18": (2, 3, 64, 64),
    "resnet50": (2, 3, 64, 64),
    "densenet": (2, 3, 64, 64),
    "mobilenet_v2": (2, 3, 64, 64),
    "timm_resnet18": (2, 3, 64, 64),
    "timm_resnet50": (2, 3, 64, 64),
    "hf_resnet": (2, 3, 64, 64),
    "hf_convnext": (2, 3, 32, 32),
}


def zoo(small: bool = True) -> dict[str, tuple[nn.Module, Tensor]]:
    """name -> (model in eval mode with random BatchNorm statistics, an example input batch).

    ``small``: reduced widths, inputs 2×3×32×32 or 2×3×64×64 (see ``ZOO_INPUT_SIZES``), every
    forward well under a second on a CPU. Otherwise full-size models on 1×3×224×224 (slow:
    hundreds of MB of weights). The output layer is scaled so the logits on the example input
    have unit standard deviation.
    """
    n = ZOO_CLASSES
    if small:
        builders = {
            "vgg11": lambda: vgg("11", False, n, width_divisor=16),
            "vgg11_bn": lambda: vgg("11", True, n, width_divisor=16),
            "resnet18": lambda: resnet("basic", (2, 2, 2, 2), n, width=8),
            "resnet50": lambda: resnet("bottleneck", (3, 4, 6, 3), n, width=4),
            "densenet": lambda: densenet(8, (2, 2, 2, 2), 16, 2, n),
            "mobilenet_v2": lambda: mobilenet_v2(n, width_mult=0.25),
            "timm_resnet18": lambda: timm_resnet("basic", (2, 2, 2, 2), n, 8, 0.1),
            "timm_resnet50": lambda: timm_resnet("bottleneck", (3, 4, 6, 3), n, 4, 0.1),
            "hf_resnet": lambda: hf_resnet(n, small=True),
            "hf_convnext": lambda: hf_convnext(n, small=True),
        }
    else:
        builders = {
            "vgg16": lambda: vgg16_shaped(),
            "vgg16_bn": lambda: vgg16_shaped(batch_norm=True),
            "resnet18": lambda: resnet("basic", (2, 2, 2, 2)),
            "resnet50": lambda: resnet50_shaped(),
            "densenet121": lambda: densenet(),
            "mobilenet_v2": lambda: mobilenet_v2(),
            "timm_resnet50": lambda: timm_resnet("bottleneck", (3, 4, 6, 3)),
            "hf_resnet": lambda: hf_resnet(1000, small=False),
            "hf_convnext": lambda: hf_convnext(1000, small=False),
        }
    gen = torch.Generator().manual_seed(1)
    entries = {}
    with torch.random.fork_rng():  # seed the weight init without touching the caller's RNG
        torch.manual_seed(0)
        for seed, (name, build) in enumerate(builders.items()):
            model = randomise_batchnorm(build(), seed=seed).eval()
            shape = ZOO_INPUT_SIZES[name] if small else (1, 3, 224, 224)
            x = torch.randn(*shape, generator=gen)
            entries[name] = (_unit_logits(model, x), x)
    return entries


@torch.no_grad()
def _unit_logits(model: nn.Module, x: Tensor) -> nn.Module:
    """Scale the output layer (the last ``nn.Linear``) so the logits on ``x`` have unit standard
    deviation: random BatchNorm statistics otherwise give logits from 1e-3 to 1e2."""
    out = model(x)
    logits = getattr(out, "logits", out)
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    scale = 1.0 / logits.std().clamp_min(1e-12)
    head.weight.mul_(scale)
    head.bias.mul_(scale)
    return model
