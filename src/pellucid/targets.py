"""Resolving ``target=`` into the one score per sample that a method explains.

``target`` may be an int (the same class for every sample), a sequence or tensor of
shape (B,) (a class per sample), ``None`` (the predicted class), or a callable mapping
the model output to one score per sample (contrastive targets, logit differences).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Union

import torch
from torch import Tensor

from .checks import check_per_sample

TargetSpec = Union[int, Sequence[int], Tensor, Callable[[Tensor], Tensor], None]


@dataclass(frozen=True, eq=False)
class Target:
    """A resolved target for a batch of rows: class indices (rows,) or a score function.

    For an output of more than two dimensions (e.g. segmentation, B×C×H×W), a class
    target scores the sum of that class's channel.
    """

    classes: Tensor | None = None
    fn: Callable[[Tensor], Tensor] | None = None

    def score(self, output: Tensor) -> Tensor:
        """One score per row of ``output``."""
        if self.fn is not None:
            return check_per_sample(self.fn(output), output.shape[0], "a target callable")
        assert self.classes is not None
        picked = output.flatten(2) if output.ndim > 2 else output.unsqueeze(-1)
        rows = torch.arange(output.shape[0], device=output.device)
        return picked[rows, self.classes.to(output.device)].sum(-1)

    def take(self, index: Tensor) -> Target:
        """The target for rows ``index`` of this batch (for expanded batches)."""
        if self.classes is None:
            return self
        return Target(classes=self.classes[index.to(self.classes.device)])

    def labels(self, batch: int) -> Tensor:
        """The class per sample as a LongTensor (B,); -1 where a score function is explained."""
        if self.classes is None:
            return torch.full((batch,), -1, dtype=torch.long)
        return self.classes.detach().cpu()


def resolve_target(spec: TargetSpec, output: Tensor) -> Target:
    """Check ``spec`` against the model output of the batch and resolve it."""
    batch = output.shape[0]
    if callable(spec) and not isinstance(spec, Tensor):
        target = Target(fn=spec)
        target.score(output)
        return target
    if output.ndim < 2:
        raise ValueError(
            f"the model output has shape {tuple(output.shape)}, one value per sample, so there "
            "is no class to pick; pass target=lambda out: out to explain that value"
        )
    n_classes = output.shape[1]
    if spec is None:
        classes = output.detach().flatten(2).sum(-1) if output.ndim > 2 else output.detach()
        return Target(classes=classes.argmax(1))
    if isinstance(spec, bool):
        raise TypeError("target must be an int, a sequence of ints, a tensor, a callable or None")
    if isinstance(spec, int):
        classes = torch.full((batch,), spec, dtype=torch.long, device=output.device)
    else:
        classes = torch.as_tensor(spec, device=output.device)
        if classes.is_floating_point() or classes.is_complex():
            raise TypeError(f"target must hold class indices (integers), got dtype {classes.dtype}")
        classes = classes.long().reshape(-1) if classes.ndim == 0 else classes.long()
        if classes.numel() == 1 and batch != 1:
            classes = classes.expand(batch).clone()
        if classes.shape != (batch,):
            raise ValueError(
                f"target has shape {tuple(classes.shape)} but the batch has {batch} samples; "
                f"give one class per sample (shape ({batch},)), a single int, or None"
            )
    bad = (classes < 0) | (classes >= n_classes)
    if bad.any():
        raise ValueError(
            f"target {classes[bad][0].item()} is out of range for a model with {n_classes} "
            f"outputs; use a class index in 0..{n_classes - 1}"
        )
    return Target(classes=classes)
