"""Resolving ``target=`` into the one score per sample that a method explains.

``target`` may be

- an int ``c`` ≥ 0: the same class for every sample;
- a sequence, NumPy array or integer tensor of shape (B,): a class per sample (a tensor on
  another device is moved to the model output's device);
- ``None``: the predicted class (the argmax of the output, summed over spatial positions
  for an output B×C×S…). A model with a single output, shape (B,) or (B, 1) (a
  regressor, a binary logit), has one "class", so ``None`` (or ``0``) explains that value;
- a callable mapping the model output to one floating score per sample, shape (B,),
  e.g. ``lambda out: out[:, 3] - out[:, 5]`` (contrastive targets, logit differences). It
  must keep the autograd graph (no ``.detach()``, ``.item()`` or NumPy round trip).

Class indices are not wrapped: ``-1`` is an error, not the last class, and a list of one
class for a batch of several samples is an error, not a broadcast (pass an int for that).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Union

import torch
from torch import Tensor

from .checks import check_finite, check_per_sample
from .errors import ArgumentError, ArgumentTypeError, ModelError

TargetSpec = Union[int, Sequence[int], Tensor, Callable[[Tensor], Tensor], None]

_FORMS = "an int class index, one class per sample (a list or tensor of ints), None, or a callable"


def class_scores(output: Tensor) -> Tensor:
    """The model output as one score per (sample, class), shape (B, C).

    (B,) is one class; (B, C) is itself; B×C×S… sums each class over its positions.
    """
    if output.ndim == 1:
        return output.unsqueeze(1)
    return output.flatten(2).sum(-1) if output.ndim > 2 else output


@dataclass(frozen=True, eq=False)
class Target:
    """A resolved target for a batch of rows: class indices (rows,) or a score function.

    For an output of more than two dimensions (e.g. segmentation, B×C×H×W), a class
    target scores the sum of that class's channel; for an output (B,), class 0 is the
    output itself.
    """

    classes: Tensor | None = None
    fn: Callable[[Tensor], Tensor] | None = None

    def score(self, output: Tensor) -> Tensor:
        """One score per row of ``output``."""
        if self.fn is not None:
            return _checked_scores(self.fn(output), output)
        assert self.classes is not None
        rows = torch.arange(output.shape[0], device=output.device)
        return class_scores(output)[rows, self.classes.to(output.device)]

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


def _checked_scores(scores: object, output: Tensor) -> Tensor:
    """What a target callable returned, checked: (B,), floating, in the graph, finite."""
    what = "a target callable"
    scores = check_per_sample(scores, output.shape[0], what, argument="target")
    if not scores.is_floating_point():
        raise ArgumentError(
            "target",
            f"{what} returned dtype {scores.dtype}; it must return floating scores "
            "computed from the output (e.g. out[:, 3] - out[:, 5]), not class indices",
        )
    if output.requires_grad and not scores.requires_grad:
        raise ArgumentError(
            "target",
            f"{what} returned scores without an autograd graph although the model "
            "output has one: it detached them (.detach(), .item(), .numpy(), torch.tensor(...) "
            "or a no_grad block); compute the scores with torch operations on its argument",
        )
    check_finite(
        scores.detach(), f"the scores of {what}", argument="target", error=ModelError,
        fix="the model output is finite, so the callable made them: avoid log(0), 0/0 and "
        "overflow in it (e.g. use log_softmax instead of softmax().log())",
    )
    return scores


def resolve_target(spec: TargetSpec, output: Tensor) -> Target:
    """Check ``spec`` against the model output of the batch and resolve it."""
    if callable(spec) and not isinstance(spec, (Tensor, type)):
        target = Target(fn=spec)
        target.score(output)
        return target
    batch, scores = output.shape[0], class_scores(output.detach())
    n_classes = scores.shape[1]
    if spec is None:
        return Target(classes=scores.argmax(1))
    classes = _class_indices(spec, output.device)
    if classes.ndim == 0:
        classes = classes.expand(batch).clone()
    elif classes.shape != (batch,):
        raise ArgumentError(
            "target",
            f"target has shape {tuple(classes.shape)} but the batch has {batch} samples; give "
            f"one class per sample (shape ({batch},)), a single int for the same class in "
            "every sample, or None",
        )
    bad = (classes < 0) | (classes >= n_classes)
    if bad.any():
        raise ArgumentError(
            "target",
            f"target {classes[bad][0].item()} is out of range for a model with {n_classes} "
            f"output{'s' if n_classes > 1 else ''}; use a class index in 0..{n_classes - 1} "
            "(negative indices are not wrapped)",
        )
    return Target(classes=classes)


def _class_indices(spec: object, device: torch.device) -> Tensor:
    """``spec`` as a LongTensor of class indices: 0-d for one class, else its shape."""
    if isinstance(spec, (bool, str, bytes, float, complex, type)) or spec is Ellipsis:
        shown = f"the class {spec.__name__}" if isinstance(spec, type) else repr(spec)
        raise ArgumentTypeError("target", f"target must be {_FORMS}; got {shown}")
    if isinstance(spec, int):
        if not 0 <= spec < 2**63:
            raise ArgumentError(
                "target",
                f"target {spec} is not a class index: use an int ≥ 0 (or None); negative "
                "indices are not wrapped (-1 is not the last class)",
            )
        return torch.tensor(spec, device=device)
    if isinstance(spec, Tensor) and spec.is_meta:
        raise ArgumentError("target", "target is a meta tensor with no values; pass real indices")
    try:
        classes = torch.as_tensor(spec)
    except (TypeError, ValueError, RuntimeError, OverflowError) as err:
        if "overflow" in str(err).lower():
            raise ArgumentError(
                "target", "target holds an int too large for a class index; use ints ≥ 0"
            ) from None
        raise ArgumentTypeError(
            "target", f"target must be {_FORMS}; cannot read {type(spec).__name__} ({err})"
        ) from None
    if classes.numel() == 0:
        raise ArgumentError("target", f"target is empty; it must be {_FORMS}")
    if classes.dtype == torch.bool or classes.is_floating_point() or classes.is_complex():
        raise ArgumentTypeError(
            "target",
            f"target must hold class indices (integers), got dtype {classes.dtype}; "
            "for a score per sample pass a callable",
        )
    return classes.to(device=device, dtype=torch.long)
