"""How ``target=`` becomes the one score per row that a method explains.

:func:`resolve_target` turns what the user gave (a class, a class per sample, ``None``, a
callable ``f(output)`` or ``f(output, rows)``) into a :class:`Target`; :class:`RowScores`
gives a callable the original sample of each row when a method expands the batch. What
``target=`` accepts, and the ready-made targets, are documented in :mod:`pellucid.targets`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Union

import torch
from torch import Tensor

from .checks import check_finite, check_per_sample, defer
from .errors import ArgumentError, ArgumentTypeError, ModelError, PellucidError

TargetSpec = Union[int, Sequence[int], Tensor, Callable[..., Tensor], None]

_FORMS = "an int class index, one class per sample (a list or tensor of ints), None, or a callable"

_TWO_FORM = "target=lambda out, rows: (out[:, 2] * mask[rows]).sum((1, 2))"


def class_scores(output: Tensor) -> Tensor:
    """The model output as one score per (sample, class), shape (B, C).

    (B,) is one class; (B, C) is itself; B×C×S… sums each class over its positions.
    """
    if output.ndim == 1:
        return output.unsqueeze(1)
    return output.flatten(2).sum(-1) if output.ndim > 2 else output


class CheckedTarget:
    """A target callable that checks its own settings against the first forward pass's
    output (``check(output)``, e.g. one mask per sample) before it is used; the base of the
    ready-made targets of :mod:`pellucid.targets`."""

    def check(self, output: Tensor) -> None:
        raise NotImplementedError

    def resolved(self, output: Tensor) -> CheckedTarget:
        """This target for the batch whose first forward pass gave ``output``: checked, and
        with any value read from that pass fixed for the whole call (e.g. a predicted token,
        which integration points or noisy copies must not change)."""
        self.check(output)
        return self


def takes_rows(fn: Callable[..., Any]) -> bool:
    """Whether the target callable ``fn`` takes ``(output, rows)`` rather than ``(output)``.

    Two required positional parameters, or a second positional parameter named ``rows``,
    is the two-parameter form; a callable whose signature cannot be read (a builtin) gets
    the output alone. Any other signature is an :class:`ArgumentTypeError` naming ``target``.

    >>> takes_rows(lambda out, rows: out[:, 0]), takes_rows(lambda out: out[:, 0])
    (True, False)
    """
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    keyword_only = [p.name for p in parameters if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    varargs = any(p.kind is p.VAR_POSITIONAL for p in parameters)
    if keyword_only or len(required) > 2 or not (positional or varargs):
        raise ArgumentTypeError(
            "target",
            f"a target callable takes the model output, or the output and rows (the index of "
            f"each row's original sample); {getattr(fn, '__name__', type(fn).__name__)} has the "
            f"signature {inspect.signature(fn)}. Give it one parameter "
            f"(target=lambda out: out[:, 3]) or two ({_TWO_FORM})",
        )
    return len(required) == 2 or (len(positional) >= 2 and positional[1].name == "rows")


@dataclass(frozen=True, eq=False)
class RowScores:
    """A target callable as a function of (output, rows), rows relative to the current batch.

    ``sample[r]`` is the original sample of row r of the current batch (``None``: the rows
    are the samples). :meth:`take` composes it for an expanded batch (rows of rows, so a
    wrapper of a wrapper stays right), and ``__call__`` hands the user's callable the
    original sample of each row when it takes ``rows`` (:func:`takes_rows`). On expanded
    rows (``what`` set), a callable that fails raises a
    :class:`~pellucid.errors.ModelError` saying what it received.
    """

    fn: Callable[..., Tensor]
    with_rows: bool
    sample: Tensor | None = None
    samples: int | None = None
    what: str | None = None

    @classmethod
    def of(cls, fn: Callable[..., Tensor]) -> RowScores:
        """``fn`` as row scores on its own batch; a :class:`RowScores` is kept as it is."""
        return fn if isinstance(fn, RowScores) else cls(fn, takes_rows(fn))

    def take(self, index: Tensor, what: str | None = None, samples: int | None = None) -> RowScores:
        """The scores for rows ``index`` of the current batch; ``samples`` is its size."""
        if self.sample is None:
            sample, samples = index, samples if samples is not None else int(index.max()) + 1
        else:
            sample, samples = self.sample[index.to(self.sample.device)], self.samples
        return replace(self, sample=sample, samples=samples, what=what or self.what)

    def __call__(self, output: Tensor, rows: Tensor | None = None) -> Any:
        rows = sample_rows(output, rows)
        original = rows if self.sample is None else self.sample[rows.to(self.sample.device)]
        if self.what is None:
            return self._apply(output, original)
        n = output.shape[0]
        try:
            value = self._apply(output, original)
        except PellucidError:
            raise
        except Exception as error:  # the user's callable: say what it was given
            problem, cause = f"raised {type(error).__name__}: {error}", error
        else:
            if isinstance(value, Tensor) and value.shape == (n,):
                return value
            got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            problem, cause = f"returned {got} instead of ({n},)", None
        raise ModelError("target", self._explained(problem, n)) from cause

    def _apply(self, output: Tensor, original: Tensor) -> Any:
        return self.fn(output, original) if self.with_rows else self.fn(output)

    def _explained(self, problem: str, n: int) -> str:
        received = (
            f"It is evaluated on {self.what}: it receives the model output of {n} rows (a "
            f"chunk of the {self.what} of the {self.samples} samples, any number of rows per "
            "sample)"
        )
        if self.with_rows:
            return (
                f"the target callable {problem}. {received} and rows, the index in "
                f"0..{self.samples - 1} of each row's original sample, shape ({n},); it must "
                "return one score per row: index per-sample tensors with rows "
                "(mask[rows]), never with the row position"
            )
        return (
            f"the target callable {problem}. {received}, not one row per sample, and must "
            f"return one score per row. A callable that indexes per-sample tensors of shape "
            f"({self.samples},) cannot work here: give it a second parameter, the index of "
            f"each row's sample ({_TWO_FORM}), use a ready-made target of pellucid.targets, "
            "or pass class indices target=<tensor (B,)>, which follow the rows"
        )

    def __repr__(self) -> str:
        return f"RowScores({self.fn!r})" if self.sample is None else (
            f"RowScores({self.fn!r}, {len(self.sample)} rows of {self.samples} samples)"
        )


def sample_rows(output: Tensor, rows: Tensor | None) -> Tensor:
    """``rows`` as given, or every row of ``output`` in order."""
    return torch.arange(output.shape[0], device=output.device) if rows is None else rows


@dataclass(frozen=True, eq=False)
class Target:
    """A resolved target for a batch of rows: class indices (rows,) or a score function.

    For an output of more than two dimensions (e.g. segmentation, B×C×H×W), a class
    target scores the sum of that class's channel; for an output (B,), class 0 is the
    output itself. A score function is kept as :class:`RowScores`, which knows the
    original sample of each row.
    """

    classes: Tensor | None = None
    #: the score function as given (the user's callable), or the :class:`RowScores` of a
    #: taken task: either resolves to this target again
    fn: Callable[..., Tensor] | None = None
    #: ``fn`` as a function of (output, rows)
    scorer: RowScores | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        if self.fn is not None:
            object.__setattr__(self, "scorer", RowScores.of(self.fn))

    def score(self, output: Tensor) -> Tensor:
        """One score per row of ``output``."""
        if self.scorer is not None:
            return _checked_scores(self.scorer(output), output)
        assert self.classes is not None
        rows = torch.arange(output.shape[0], device=output.device)
        return class_scores(output)[rows, self.classes.to(output.device)]

    def take(self, index: Tensor, what: str | None = None, samples: int | None = None) -> Target:
        """The target for rows ``index`` of this batch (for expanded batches): classes
        follow the rows, a score function learns their samples (``what`` they are, of how
        many ``samples``)."""
        if self.scorer is not None:
            return Target(fn=self.scorer.take(index, what, samples))
        if self.classes is None:
            return self
        return Target(classes=self.classes[index.to(self.classes.device)])

    def labels(self, batch: int, device: torch.device | str | None = None) -> Tensor:
        """The class per sample as a LongTensor (B,) on ``device`` (default: where the
        classes are, or the CPU); -1 where a score function is explained."""
        if self.classes is None:
            return torch.full((batch,), -1, dtype=torch.long, device=device)
        return self.classes.detach().to(device)


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
        if isinstance(spec, CheckedTarget):
            spec = spec.resolved(output)
        target = Target(fn=spec)
        target.score(output)
        return target
    batch, scores = output.shape[0], class_scores(output.detach())
    n_classes = scores.shape[1]
    if spec is None:
        return Target(classes=scores.argmax(1))
    if isinstance(spec, int) and not isinstance(spec, bool) and 0 <= spec < n_classes:
        # checked in Python: neither a copy to the device nor a read back from it
        return Target(classes=torch.full((batch,), spec, dtype=torch.long,
                                         device=output.device))
    classes = class_indices(spec, output.device)
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
    report = functools.partial(_report_out_of_range, n_classes)
    if defer(object(), lambda: torch.stack((bad.sum(), classes[bad.long().argmax()])), report):
        classes = classes.clamp(0, n_classes - 1)  # indexes safely until the block raises
    elif bad.any():
        report([1, int(classes[bad][0])])
    return Target(classes=classes)


def _report_out_of_range(n_classes: int, found: list[int]) -> None:
    """The error for ``found`` = [number of classes out of range, the first of them]."""
    if found[0]:
        raise ArgumentError(
            "target",
            f"target {found[1]} is out of range for a model with {n_classes} "
            f"output{'s' if n_classes > 1 else ''}; use a class index in 0..{n_classes - 1} "
            "(negative indices are not wrapped)",
        )


def class_indices(spec: object, device: torch.device | str, name: str = "target") -> Tensor:
    """``spec`` as a LongTensor of class indices: 0-d for one class, else its shape.

    ``name`` is the argument that holds them (``target``, or a ready-made target's setting).
    """
    if isinstance(spec, (bool, str, bytes, float, complex, type)) or spec is Ellipsis:
        shown = f"the class {spec.__name__}" if isinstance(spec, type) else repr(spec)
        raise ArgumentTypeError(name, f"{name} must be {_FORMS}; got {shown}")
    if isinstance(spec, int):
        if not 0 <= spec < 2**63:
            raise ArgumentError(
                name,
                f"{name} {spec} is not a class index: use an int ≥ 0 (or None); negative "
                "indices are not wrapped (-1 is not the last class)",
            )
        return torch.tensor(spec, device=device)
    if isinstance(spec, Tensor) and spec.is_meta:
        raise ArgumentError(name, f"{name} is a meta tensor with no values; pass real indices")
    try:
        classes = torch.as_tensor(spec)
    except (TypeError, ValueError, RuntimeError, OverflowError) as err:
        if "overflow" in str(err).lower():
            raise ArgumentError(
                name, f"{name} holds an int too large for a class index; use ints ≥ 0"
            ) from None
        raise ArgumentTypeError(
            name, f"{name} must be {_FORMS}; cannot read {type(spec).__name__} ({err})"
        ) from None
    if classes.numel() == 0:
        raise ArgumentError(name, f"{name} is empty; it must be {_FORMS}")
    if classes.dtype == torch.bool or classes.is_floating_point() or classes.is_complex():
        raise ArgumentTypeError(
            name,
            f"{name} must hold class indices (integers), got dtype {classes.dtype}; "
            "for a score per sample pass a callable",
        )
    return classes.to(device=device, dtype=torch.long)


# --------------------------------------------------------------------------- ready-made targets
