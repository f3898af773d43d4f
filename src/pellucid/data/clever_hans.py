"""A Clever-Hans data set: one class co-occurs with a watermark in training.

After Lapuschkin et al. (2019), "Unmasking Clever Hans predictors and assessing what machines
really learn": a classifier for PASCAL VOC horses had learned a copyright tag in the corner
of many horse photographs. Here one class of :func:`~pellucid.data.shapes.shapes` carries a
small text-like stamp in the bottom-left corner in training; the test sets show whether a
model reads the shape or the stamp.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from .._seeding import generator, offset_seed
from ..checks import check_count, check_finite_number, check_seed
from ..errors import ArgumentError
from .imageset import ImageSet
from .shapes import shapes

# "HANS" in a 3×5 pixel font, one column of space between letters
_GLYPH_ROWS = (
    "101 010 101 011",
    "101 101 111 100",
    "111 111 111 010",
    "101 101 111 001",
    "101 101 101 110",
)
_INK, _PAPER = 0.95, 0.05  # white letters on a black label


def watermark(size: int) -> tuple[Tensor, Tensor, tuple[int, int]]:
    """The stamp for ``size``×``size`` images: (ink mask, stamp mask, top-left corner).

    The stamp is the glyph with a one-pixel border, scaled by ``max(1, round(size / 64))``
    and placed one pixel from the bottom-left corner.
    """
    glyph = torch.tensor([[c == "1" for c in row] for row in _GLYPH_ROWS])
    ink = torch.nn.functional.pad(glyph, (1, 1, 1, 1))
    scale = max(1, round(size / 64))
    ink = ink.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
    height, width = ink.shape
    if height + 2 > size or width + 2 > size:
        raise ArgumentError(
            "size", f"images of size {size} are too small for the watermark; use size >= "
            f"{width + 2}",
        )
    return ink, torch.ones_like(ink), (size - 1 - height, 1)


def add_watermark(data: ImageSet, where: Tensor) -> ImageSet:
    """A copy of ``data`` with the watermark stamped on the images where ``where`` (bool N) is
    True; ``watermark_masks`` marks the stamp's pixels, and the object and distractor masks
    lose the pixels it covers."""
    if not isinstance(where, torch.Tensor) or where.dtype != torch.bool or where.shape != (
        len(data),
    ):
        got = f"{where.dtype} {tuple(where.shape)}" if isinstance(where, torch.Tensor) else type(
            where).__name__
        raise ArgumentError(
            "where", f"where must be a bool tensor ({len(data)},), one flag per image; got {got}"
        )
    size = data.images.shape[-1]
    ink, stamp, (top, left) = watermark(size)
    height, width = stamp.shape
    region = (slice(None), slice(top, top + height), slice(left, left + width))
    marks = torch.zeros(len(data), size, size, dtype=torch.bool)
    if data.watermark_masks is not None:
        marks |= data.watermark_masks
    marks[(where.nonzero().flatten(), *region[1:])] = True
    images = data.images.clone()
    label = torch.where(ink, _INK, _PAPER).to(images.dtype)
    images[..., region[1], region[2]] = torch.where(
        where.view(-1, 1, 1, 1), label, images[..., region[1], region[2]])
    return replace(
        data, images=images, watermark_masks=marks,
        masks=None if data.masks is None else data.masks & ~marks,
        distractor_masks=None if data.distractor_masks is None else data.distractor_masks & ~marks,
    )


@dataclass(frozen=True)
class CleverHans:
    """Training set with the shortcut and three test sets of the same test images:
    ``test`` without any watermark, ``test_watermarked`` with the watermark on every image of
    the shortcut class (as in training), ``test_moved`` with the watermark on every image of the
    other classes and none on the shortcut class. ``watermark_masks`` of each set mark the
    stamp's pixels."""

    train: ImageSet
    test: ImageSet
    test_watermarked: ImageSet
    test_moved: ImageSet
    shortcut_class: int


def clever_hans(
    n: int,
    n_test: int | None = None,
    shortcut_class: int = 0,
    watermark_prob_train: float = 1.0,
    seed: int = 0,
    **shape_settings,
) -> CleverHans:
    """Shapes data where, in training, class ``shortcut_class`` carries a watermark.

    ``n`` training images ``shapes(n, seed=seed, **shape_settings)``: each image of the shortcut
    class gets the watermark with probability ``watermark_prob_train``, no other image does.
    ``n_test`` (default ``n // 4``) test images ``shapes(n_test, seed=seed + 1, ...)`` in the
    three variants of :class:`CleverHans`. A model that learned the shortcut loses accuracy on
    ``test_moved``.
    """
    check_finite_number(watermark_prob_train, "watermark_prob_train", 0.0, maximum=1.0,
                        meaning="a probability")
    n = check_count(n, "n", minimum=0)
    n_test = n // 4 if n_test is None else check_count(n_test, "n_test", minimum=0)
    seed = check_seed(seed, none=False)
    shortcut_class = check_count(shortcut_class, "shortcut_class", minimum=0)
    train = shapes(n, seed=seed, **shape_settings)
    if not shortcut_class < len(train.class_names):
        raise ArgumentError(
            "shortcut_class",
            f"shortcut_class={shortcut_class} is not one of the {len(train.class_names)} classes",
        )
    watermark(train.images.shape[-1])  # the size fits the stamp, before drawing the test set
    test = shapes(n_test, seed=offset_seed(seed, 1), **shape_settings)
    chosen = torch.rand(n, generator=generator(offset_seed(seed, 2))) < watermark_prob_train
    is_shortcut = test.labels == shortcut_class
    nobody = torch.zeros(len(test), dtype=torch.bool)
    return CleverHans(
        train=add_watermark(train, (train.labels == shortcut_class) & chosen),
        test=add_watermark(test, nobody),
        test_watermarked=add_watermark(test, is_shortcut),
        test_moved=add_watermark(test, ~is_shortcut),
        shortcut_class=shortcut_class,
    )
