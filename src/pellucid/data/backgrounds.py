"""Backgrounds and colours for the generated images, drawn for a whole batch at once."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..checks import check_choice

BACKGROUNDS = ("texture", "noise")


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """(..., 3) hue, saturation, value in [0, 1] -> (..., 3) RGB in [0, 1]."""
    h, s, v = hsv.unbind(-1)
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], dim=-1)
    weight = torch.clamp(torch.minimum(k, 4 - k), 0, 1)
    return v.unsqueeze(-1) * (1 - s.unsqueeze(-1) * weight)


def object_colours(n: int, gen: torch.Generator) -> Tensor:
    """(n, 3) saturated, bright colours of random hue."""
    hue = torch.rand(n, generator=gen)
    saturation = 0.55 + 0.45 * torch.rand(n, generator=gen)
    value = 0.7 + 0.3 * torch.rand(n, generator=gen)
    return hsv_to_rgb(torch.stack([hue, saturation, value], dim=-1))


def _base_colours(n: int, gen: torch.Generator) -> Tensor:
    """(n, 3) dull, darker colours: a grey level with a slight tint."""
    grey = 0.15 + 0.3 * torch.rand(n, 1, generator=gen)
    tint = 0.06 * (torch.rand(n, 3, generator=gen) - 0.5)
    return grey + tint


def _gratings(n: int, size: int, gen: torch.Generator, count: int = 3) -> Tensor:
    """(n, 1, size, size) sum of ``count`` sinusoidal gratings of random orientation,
    frequency (2-8 cycles per image), phase and amplitude."""
    grid = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    angle = math.pi * torch.rand(n, count, 1, 1, generator=gen)
    cycles = 2 + 6 * torch.rand(n, count, 1, 1, generator=gen)
    phase = 2 * math.pi * torch.rand(n, count, 1, 1, generator=gen)
    amplitude = 0.02 + 0.04 * torch.rand(n, count, 1, 1, generator=gen)
    along = torch.cos(angle) * grid.view(1, 1, 1, -1) + torch.sin(angle) * grid.view(1, 1, -1, 1)
    waves = amplitude * torch.sin(2 * math.pi * cycles * along + phase)
    return waves.sum(1, keepdim=True)


def _blotches(n: int, size: int, gen: torch.Generator, cells: int = 6) -> Tensor:
    """(n, 3, size, size) smooth colour noise: a coarse random grid upsampled bilinearly."""
    coarse = torch.rand(n, 3, cells, cells, generator=gen) - 0.5
    return 0.16 * F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def background(kind: str, n: int, size: int, gen: torch.Generator, noise: float = 0.08) -> Tensor:
    """(n, 3, size, size) backgrounds in [0, 1].

    ``"texture"``: a dull base colour plus gratings and smooth colour blotches.
    ``"noise"``: a dull base colour plus i.i.d. Gaussian noise of standard deviation ``noise``.
    """
    check_background(kind)
    base = _base_colours(n, gen).view(n, 3, 1, 1)
    if kind == "texture":
        image = base + _gratings(n, size, gen) + _blotches(n, size, gen)
    else:
        image = base + noise * torch.randn(n, 3, size, size, generator=gen)
    return image.clamp_(0.0, 1.0)


def check_background(kind: str) -> None:
    """``kind`` must be one of :data:`BACKGROUNDS`."""
    check_choice(kind, "background", BACKGROUNDS)
