"""Shapes as inside-tests on a coordinate grid, evaluated for a whole batch at once.

Every shape lives in local coordinates ``(u, v)`` with its circumradius at most 1 and its
centre at the origin. :func:`rasterise` maps the pixel grid of every image into the local
frame of that image's shape (translation, rotation, scale) and applies the shape's test, so a
batch of N shapes costs a few tensor operations on an N×H×W grid. Polygons use the even-odd
crossing rule, so non-convex ones (star, cross) need no special case.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

InsideTest = Callable[[Tensor, Tensor], Tensor]
TEMPLATE_RESOLUTION = 256


def _regular(corners: int, radius: float = 1.0, phase: float = math.pi / 2) -> list[tuple]:
    """Vertices of a regular polygon with a vertex at angle ``phase``."""
    return [
        (radius * math.cos(phase + 2 * math.pi * k / corners),
         radius * math.sin(phase + 2 * math.pi * k / corners))
        for k in range(corners)
    ]


def _star(points: int = 5, inner: float = 0.4) -> list[tuple]:
    """Vertices of a star: alternating outer (radius 1) and inner corners."""
    step = math.pi / points
    return [
        ((1.0 if k % 2 == 0 else inner) * math.cos(math.pi / 2 + k * step),
         (1.0 if k % 2 == 0 else inner) * math.sin(math.pi / 2 + k * step))
        for k in range(2 * points)
    ]


def _cross(arm: float = 0.95, half_width: float = 0.3) -> list[tuple]:
    """Vertices of a plus sign whose arms reach ``arm`` and are ``2 * half_width`` wide."""
    a, w = arm, half_width
    return [(w, w), (w, a), (-w, a), (-w, w), (-a, w), (-a, -w),
            (-w, -w), (-w, -a), (w, -a), (w, -w), (a, -w), (a, w)]


def _rectangle(half_length: float, half_width: float) -> list[tuple]:
    a, w = half_length, half_width
    return [(a, w), (-a, w), (-a, -w), (a, -w)]


POLYGONS: dict[str, list[tuple]] = {
    "square": _regular(4, phase=math.pi / 4),
    "triangle": _regular(3),
    "cross": _cross(),
    "star": _star(),
    "hexagon": _regular(6),
    "bar": _rectangle(0.98, 0.2),
}


def inside_polygon(u: Tensor, v: Tensor, vertices: list[tuple]) -> Tensor:
    """Even-odd rule: a point is inside when a ray towards +u crosses the boundary an odd
    number of times."""
    inside = torch.zeros(u.shape, dtype=torch.bool, device=u.device)
    for (u0, v0), (u1, v1) in zip(vertices, vertices[1:] + vertices[:1]):
        if v0 == v1:  # a horizontal edge is never crossed by a horizontal ray
            continue
        spans = (v >= min(v0, v1)) & (v < max(v0, v1))
        crossing_u = (v - v0).mul_((u1 - u0) / (v1 - v0)).add_(u0)
        inside ^= spans & (u < crossing_u)
    return inside


def _circle(u: Tensor, v: Tensor) -> Tensor:
    return u * u + v * v <= 1.0


def _ring(u: Tensor, v: Tensor, inner: float = 0.55) -> Tensor:
    r2 = u * u + v * v
    return (r2 <= 1.0) & (r2 >= inner * inner)


def _polygon_test(vertices: list[tuple]) -> InsideTest:
    return lambda u, v: inside_polygon(u, v, vertices)


KINDS: dict[str, InsideTest] = {
    "circle": _circle,
    **{name: _polygon_test(vertices) for name, vertices in POLYGONS.items()},
    "ring": _ring,
}
"""Every shape kind by name. The first five are the default classes of :func:`shapes`."""


def polygon_area(vertices: list[tuple]) -> float:
    """Shoelace formula (for the tests and for choosing sizes)."""
    return 0.5 * abs(sum(u0 * v1 - u1 * v0 for (u0, v0), (u1, v1)
                         in zip(vertices, vertices[1:] + vertices[:1])))


@functools.cache
def template(kind: str, resolution: int = TEMPLATE_RESOLUTION) -> Tensor:
    """1×1×R×R float mask of a shape on [-1, 1]², row 0 at v = 1 (image orientation)."""
    centres = (torch.arange(resolution, dtype=torch.float32) + 0.5) * 2 / resolution - 1
    u = centres.view(1, -1).expand(resolution, resolution)
    v = -centres.view(-1, 1).expand(resolution, resolution)
    return KINDS[kind](u, v).float().view(1, 1, resolution, resolution)


def rasterise(kind: str, centres: Tensor, radii: Tensor, angles: Tensor, size: int) -> Tensor:
    """Bool masks N×size×size of N shapes of one kind.

    ``centres`` (N, 2) are (row, column) in pixels, ``radii`` (N,) circumradii in pixels,
    ``angles`` (N,) rotations in radians. Pixel (i, j) is tested at its centre (i + 0.5, j + 0.5)
    by sampling the shape's :func:`template` (nearest neighbour, so the boundary is exact to
    about ``radius / TEMPLATE_RESOLUTION`` pixels), only inside a square window around each
    shape that holds its circumscribed disc.
    """
    n = len(radii)
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    if n == 0:
        return masks
    window = min(size, int(2 * float(radii.max())) + 3)
    corner = (centres - window / 2).floor().long().clamp_(0, size - window)  # (N, 2)
    offsets = torch.arange(window)
    rows = corner[:, :1] + offsets  # (N, window)
    cols = corner[:, 1:] + offsets
    dy = (rows.float() + 0.5 - centres[:, :1]).unsqueeze(2)  # (N, window, 1)
    dx = (cols.float() + 0.5 - centres[:, 1:]).unsqueeze(1)  # (N, 1, window)
    cos = (torch.cos(angles) / radii).view(-1, 1, 1)
    sin = (torch.sin(angles) / radii).view(-1, 1, 1)
    # image axes: u to the right, v upwards (rows grow downwards); the template's rows run
    # downwards in v, so the sampling grid is (u, -v)
    grid = torch.stack([cos * dx - sin * dy, sin * dx + cos * dy], dim=-1)
    shape = template(kind)
    inside = F.grid_sample(shape.expand(n, -1, -1, -1), grid, mode="nearest",
                           padding_mode="zeros", align_corners=False)[:, 0] > 0.5
    masks[torch.arange(n).view(-1, 1, 1), rows.unsqueeze(2), cols.unsqueeze(1)] = inside
    return masks
