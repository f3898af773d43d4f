"""Plain-torch reference architectures for the generated data (any input size and channels)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_count
from ..errors import ArgumentError


def _check_widths(widths: Sequence[int]) -> tuple[int, ...]:
    """Channel widths per stage: a non-empty sequence of positive ints."""
    if isinstance(widths, (int, str)) or not isinstance(widths, Sequence) or not widths:
        raise ArgumentError(
            "widths", f"widths must be a non-empty list of channel counts, got {widths!r}"
        )
    return tuple(check_count(w, "widths", "channels per stage") for w in widths)


def _check_sizes(in_channels: int, classes: int) -> None:
    check_count(in_channels, "in_channels", "input channels")
    check_count(classes, "classes", "outputs")


def small_cnn(in_channels: int = 3, classes: int = 5, width: int = 16) -> nn.Sequential:
    """Three conv-ReLU-maxpool stages, global average pooling, one linear layer."""
    _check_sizes(in_channels, classes)
    check_count(width, "width", "channels of the first stage")
    w = (width, 2 * width, 4 * width)
    layers: list[nn.Module] = []
    for c_in, c_out in zip((in_channels, *w[:-1]), w):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(OrderedDict(
        features=nn.Sequential(*layers[:-1]), pool=nn.AdaptiveAvgPool2d(1),
        flatten=nn.Flatten(), classifier=nn.Linear(w[-1], classes)))


def vgg_style(in_channels: int = 3, classes: int = 5,
              widths: Sequence[int] = (16, 32, 64, 64)) -> nn.Sequential:
    """VGG-like: per stage conv-BatchNorm-ReLU and max pooling; then global average pooling
    and a two-layer classifier. ``features`` ends with the last ReLU (the usual CAM layer)."""
    _check_sizes(in_channels, classes)
    widths = _check_widths(widths)
    layers: list[nn.Module] = []
    for i, (c_in, c_out) in enumerate(zip((in_channels, *widths[:-1]), widths)):
        if i:
            layers.append(nn.MaxPool2d(2))
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(OrderedDict(
        features=nn.Sequential(*layers), pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(),
        classifier=nn.Sequential(nn.Linear(widths[-1], widths[-1]), nn.ReLU(),
                                 nn.Linear(widths[-1], classes))))


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus the (projected) input, then ReLU: ``out += identity``."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        out += identity
        return F.relu(out)


class ResNetStyle(nn.Module):
    """A stem (stride-2 conv), one :class:`BasicBlock` per width (stride 2 after the first),
    global average pooling and a linear layer."""

    def __init__(self, in_channels: int = 3, classes: int = 5,
                 widths: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__()
        _check_sizes(in_channels, classes)
        widths = _check_widths(widths)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, stride=2, padding=1,
                                            bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        self.layers = nn.Sequential(*(BasicBlock(c_in, c_out, stride=1 if i == 0 else 2)
                                      for i, (c_in, c_out)
                                      in enumerate(zip((widths[0], *widths[:-1]), widths))))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.layers(self.stem(x))).flatten(1))


def resnet_style(in_channels: int = 3, classes: int = 5,
                 widths: Sequence[int] = (16, 32, 64)) -> ResNetStyle:
    """See :class:`ResNetStyle`."""
    return ResNetStyle(in_channels, classes, widths)


ARCHITECTURES = {"small_cnn": small_cnn, "vgg_style": vgg_style, "resnet_style": resnet_style}
