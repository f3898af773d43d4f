"""Images of shapes with the mask of the object that decides the class."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .._seeding import generator
from ..checks import check_count, check_seed
from ..errors import ArgumentError, ArgumentTypeError, UnknownNameError
from ..registry import suggest
from .backgrounds import background as draw_background
from .backgrounds import check_background, object_colours
from .geometry import KINDS, rasterise
from .imageset import ImageSet

DEFAULT_CLASSES = ("circle", "square", "triangle", "cross", "star")
_CANDIDATES = 8  # tries to place each distractor away from the object
_CHUNK = 500  # images rendered at once (bounds memory)


@dataclass(frozen=True)
class _Placed:
    """Shapes to draw, one per image: kind index into ``kinds``, centre (row, column), radius,
    angle, colour, and whether it is drawn at all."""

    kind: Tensor
    centre: Tensor
    radius: Tensor
    angle: Tensor
    colour: Tensor
    drawn: Tensor

    def take(self, rows: slice) -> _Placed:
        return _Placed(*(getattr(self, f)[rows] for f in self.__dataclass_fields__))


def resolve_classes(classes: int | Sequence[str], argument: str = "classes") -> tuple[str, ...]:
    """A class count (the first K kinds) or kind names -> kind names, checked."""
    names = list(KINDS)
    if isinstance(classes, int) and not isinstance(classes, bool):
        if not 2 <= classes <= len(names):
            raise ArgumentError(
                argument, f"{argument}={classes}: choose between 2 and {len(names)} classes"
            )
        ordered = list(DEFAULT_CLASSES) + [k for k in names if k not in DEFAULT_CLASSES]
        return tuple(ordered[:classes])
    if isinstance(classes, (str, bool)) or not isinstance(classes, Sequence):
        raise ArgumentTypeError(
            argument,
            f"{argument} must be a number of classes or a list of shape names from {names}, "
            f"got {classes!r}",
        )
    classes = tuple(classes)
    for name in classes:
        if name not in KINDS:
            raise UnknownNameError(
                argument,
                f"unknown shape {name!r} in {argument}.{suggest(str(name), names)} The shapes "
                f"are {names}",
            )
    return classes


def _check_radius(radius: Any, argument: str) -> tuple[float, float]:
    """(low, high) fractions of the image size with 0 < low ≤ high ≤ 0.5 (inside the image)."""
    try:
        low, high = (float(r) for r in radius)
        ok = math.isfinite(low) and math.isfinite(high) and 0 < low <= high <= 0.5
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ArgumentError(
            argument,
            f"{argument} must be (low, high) fractions of the image size with "
            f"0 < low <= high <= 0.5, got {radius!r}",
        )
    return low, high


def _random_shapes(n: int, kinds: int, radius: tuple[float, float], size: int,
                   gen: torch.Generator) -> _Placed:
    """One shape per image, uniform in kind, radius and angle, fully inside the image."""
    kind = torch.randint(kinds, (n,), generator=gen)
    r = size * (radius[0] + (radius[1] - radius[0]) * torch.rand(n, generator=gen))
    centre = r.unsqueeze(1) + (size - 2 * r).unsqueeze(1) * torch.rand(n, 2, generator=gen)
    angle = 2 * torch.pi * torch.rand(n, generator=gen)
    return _Placed(kind, centre, r, angle, object_colours(n, gen), torch.ones(n, dtype=torch.bool))


def _place_distractor(obj: _Placed, kinds: int, radius: tuple[float, float], size: int,
                      gen: torch.Generator) -> _Placed:
    """A distractor per image whose circumscribed disc stays (almost) clear of the object's:
    the first of a few random centres that is far enough away; none if all are too close."""
    shape = _random_shapes(len(obj.kind), kinds, radius, size, gen)
    r = shape.radius.unsqueeze(1)
    candidates = r.unsqueeze(2) + (size - 2 * r).unsqueeze(2) * torch.rand(
        len(r), _CANDIDATES, 2, generator=gen)
    distance = (candidates - obj.centre.unsqueeze(1)).norm(dim=2)
    clear = distance >= 0.9 * (obj.radius.unsqueeze(1) + r)
    first = clear.int().argmax(1)
    centre = candidates[torch.arange(len(r)), first]
    return _Placed(shape.kind, centre, shape.radius, shape.angle, shape.colour, clear.any(1))


def _paint(images: Tensor, shape: _Placed, kinds: Sequence[str]) -> Tensor:
    """Draw ``shape`` over ``images`` in place; return its mask."""
    n, _, size, _ = images.shape
    mask = torch.zeros(n, size, size, dtype=torch.bool)
    for k, kind in enumerate(kinds):
        rows = torch.nonzero(shape.drawn & (shape.kind == k)).flatten()
        if len(rows):
            mask[rows] = rasterise(kind, shape.centre[rows], shape.radius[rows],
                                   shape.angle[rows], size)
    images.copy_(torch.where(mask.unsqueeze(1), shape.colour.view(n, 3, 1, 1), images))
    return mask


def shapes(
    n: int,
    size: int = 64,
    classes: int | Sequence[str] = DEFAULT_CLASSES,
    seed: int = 0,
    background: str = "texture",
    distractors: int = 2,
    distractor_kinds: Sequence[str] | None = None,
    object_radius: tuple[float, float] = (0.18, 0.32),
    distractor_radius: tuple[float, float] = (0.07, 0.12),
) -> ImageSet:
    """``n`` RGB images ``size``×``size`` of one coloured shape each, whose kind is the class.

    Each image has one decisive object (its kind is the label; uniform position inside the
    image, circumradius ``object_radius`` × size, rotation and a bright colour), on a
    ``"texture"`` or ``"noise"`` background, with 0 to ``distractors`` smaller shapes of the
    ``distractor_kinds`` (default: the kinds that are not classes), placed so that they (almost)
    do not overlap the object. The object is drawn last in one flat colour, so ``masks`` is
    exactly its pixels; ``distractor_masks`` holds the distractors' visible pixels. Labels are
    balanced (counts differ by at most one) and shuffled. Deterministic by ``seed`` (an
    int). ``n = 0`` gives an empty set; every other bad setting raises an error naming it.
    """
    n = check_count(n, "n", minimum=0)
    size = check_count(size, "size", minimum=8)
    seed = check_seed(seed, none=False)
    distractors = check_count(distractors, "distractors", minimum=0)
    check_background(background)
    object_radius = _check_radius(object_radius, "object_radius")
    distractor_radius = _check_radius(distractor_radius, "distractor_radius")
    class_names = resolve_classes(classes)
    if len(set(class_names)) != len(class_names) or len(class_names) < 2:
        raise ArgumentError(
            "classes", f"classes={class_names}: give at least two different shapes"
        )
    if distractor_kinds is None:
        distractor_kinds = tuple(k for k in KINDS if k not in class_names)
    distractor_kinds = resolve_classes(distractor_kinds, "distractor_kinds")
    if distractors and not distractor_kinds:
        raise ArgumentError(
            "distractor_kinds",
            "no shape kinds are left for distractors; pass distractors=0 or "
            "distractor_kinds=(...)",
        )
    both = sorted(set(distractor_kinds) & set(class_names))
    if both:
        raise ArgumentError(
            "distractor_kinds",
            f"{both} are both classes and distractor_kinds; a distractor must not look like "
            "a class",
        )

    gen = generator(seed)
    labels = (torch.arange(n) % len(class_names))[torch.randperm(n, generator=gen)]
    obj = _random_shapes(n, len(class_names), object_radius, size, gen)
    obj = _Placed(labels, *(getattr(obj, f) for f in ("centre", "radius", "angle", "colour",
                                                      "drawn")))
    count = torch.randint(distractors + 1, (n,), generator=gen)
    extras = [_place_distractor(obj, len(distractor_kinds), distractor_radius, size, gen)
              for _ in range(distractors)]
    extras = [_Placed(*(getattr(d, f) for f in ("kind", "centre", "radius", "angle", "colour")),
                      d.drawn & (count > s)) for s, d in enumerate(extras)]

    images = torch.empty(n, 3, size, size)
    masks = torch.empty(n, size, size, dtype=torch.bool)
    distractor_masks = torch.zeros(n, size, size, dtype=torch.bool)
    for start in range(0, n, _CHUNK):
        rows = slice(start, min(start + _CHUNK, n))
        chunk = draw_background(background, rows.stop - rows.start, size, gen)
        for extra in extras:
            distractor_masks[rows] |= _paint(chunk, extra.take(rows), distractor_kinds)
        masks[rows] = _paint(chunk, obj.take(rows), class_names)
        distractor_masks[rows] &= ~masks[rows]
        images[rows] = chunk
    return ImageSet(images, labels, masks, class_names, distractor_masks=distractor_masks)
