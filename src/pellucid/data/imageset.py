"""The structure every data set of :mod:`pellucid.data` returns, and its torch ``Dataset``."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import ArgumentError


@dataclass(frozen=True)
class ImageSet:
    """Images with labels and, where known, per-pixel ground truth.

    ``images``: float32 N×C×H×W in [0, 1]; ``labels``: int64 N; ``masks``: bool N×H×W, the
    pixels of the object that decides the class (None where unknown); ``class_names``: one
    name per label. ``distractor_masks`` (bool N×H×W): the visible pixels of the distractor
    shapes, which do not decide the class. ``watermark_masks`` (bool N×H×W): the pixels of a
    Clever-Hans watermark (all False in images without one).
    """

    images: Tensor
    labels: Tensor
    masks: Tensor | None
    class_names: tuple[str, ...]
    distractor_masks: Tensor | None = None
    watermark_masks: Tensor | None = None

    def __post_init__(self) -> None:
        n = len(self.labels)
        for name in ("images", "masks", "distractor_masks", "watermark_masks"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ArgumentError(
                    name, f"{name} has {len(value)} rows for {n} labels; give one per image"
                )

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: Tensor | slice | list[int]) -> ImageSet:
        """The images at ``index`` (a slice, a list, a LongTensor or a bool mask)."""
        parts = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(self, **{name: value[index] for name, value in parts.items()
                                if isinstance(value, Tensor)})

    def dataset(self, with_masks: bool = False) -> ArrayDataset:
        """A torch ``Dataset`` yielding (image, label) or (image, label, mask)."""
        return ArrayDataset(self, with_masks=with_masks)

    @property
    def has_watermark(self) -> Tensor:
        """Bool N: whether each image carries a watermark."""
        if self.watermark_masks is None:
            return torch.zeros(len(self), dtype=torch.bool)
        return self.watermark_masks.flatten(1).any(1)


class ArrayDataset(Dataset):
    """A torch ``Dataset`` over an :class:`ImageSet`: item i is (image, label) or, with
    ``with_masks=True``, (image, label, mask)."""

    def __init__(self, data: ImageSet, with_masks: bool = False) -> None:
        if with_masks and data.masks is None:
            raise ArgumentError("with_masks", "this data set has no masks; use with_masks=False")
        self.data = data
        self.with_masks = with_masks

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[Tensor, ...]:
        item = (self.data.images[i], self.data.labels[i])
        return (*item, self.data.masks[i]) if self.with_masks else item
