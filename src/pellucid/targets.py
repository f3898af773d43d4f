"""Resolving ``target=`` into the one score per sample that a method explains.

``target`` may be

- an int ``c`` ≥ 0: the same class for every sample;
- a sequence, NumPy array or integer tensor of shape (B,): a class per sample (a tensor on
  another device is moved to the model output's device);
- ``None``: the predicted class (the argmax of the output, summed over spatial positions
  for an output B×C×S…). A model with a single output, shape (B,) or (B, 1) (a
  regressor, a binary logit), has one "class", so ``None`` (or ``0``) explains that value;
- a callable ``f(output) -> (rows,)``, e.g. ``lambda out: out[:, 3] - out[:, 5]``;
- a callable ``f(output, rows) -> (rows,)`` whose second parameter ``rows`` is the index
  of the original sample of each row of ``output``. Methods that expand the batch
  (integration points, noisy or perturbed copies) evaluate the target on many rows per
  sample, so only this form can use per-sample data:
  ``lambda out, rows: (out[:, 2] * mask[rows]).sum((1, 2))``;
- a ready-made target of this module, each such a callable with its settings checked
  where it is built: :class:`region` (a class summed over a per-sample mask, for
  segmentation), :class:`logit_difference`, :class:`contrast`, :class:`multilabel` and
  :class:`output` (one entry of a dict or tuple output, e.g. a detection's score), and for
  language models (outputs B×L×V) :class:`next_token` and :class:`continuation`.

A callable must return one floating score per row, keep the autograd graph (no
``.detach()``, ``.item()`` or NumPy round trip) and be finite. Its form is read once from
its signature: two required positional parameters, or a second positional parameter named
``rows``, is the two-parameter form; one required positional parameter is the
one-parameter form.

Class indices are not wrapped: ``-1`` is an error, not the last class, and a list of one
class for a batch of several samples is an error, not a broadcast (pass an int for that).

>>> import torch, pellucid
>>> from pellucid import targets
>>> model = torch.nn.Conv2d(3, 4, 1).eval()  # a 4-class segmentation model
>>> x, mask = torch.randn(2, 3, 8, 8), torch.rand(2, 8, 8) > 0.5
>>> e = pellucid.explain(model, x, targets.region(mask, 2), method="integrated_gradients")
>>> e.attribution.shape
torch.Size([2, 3, 8, 8])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from .checks import as_tensor, check_choice, check_finite
from .errors import ArgumentError, ArgumentTypeError
from .outputs import OutputSelector, select_output
from .target_resolution import (
    CheckedTarget,
    RowScores,
    Target,
    TargetSpec,
    class_indices,
    class_scores,
    resolve_target,
    sample_rows,
    takes_rows,
)

__all__ = [
    "RowScores", "Target", "TargetSpec", "class_scores", "continuation", "contrast",
    "logit_difference", "multilabel", "next_token", "output", "region", "resolve_target",
    "split_selection", "takes_rows",
]

def split_selection(spec: TargetSpec, select: OutputSelector) -> tuple[OutputSelector, TargetSpec]:
    """(the output selector, the target) for ``target=output(key, then)``: ``output=key``
    with ``target=then``, so that both are checked as when given that way; other targets
    are returned unchanged."""
    if not isinstance(spec, output):
        return select, spec
    if select is not None and select is not spec.key and select != spec.key:
        raise ArgumentError(
            "output",
            f"output={select!r} and target={spec!r} both select the model output to "
            f"explain; give the selection once: drop output= (or use target={spec.then!r})",
        )
    return spec.key, spec.then


def _indices(value: Any, name: str) -> Tensor:
    """One class index (0-d) or one per sample (B,), each ≥ 0, on the CPU."""
    classes = class_indices(value, "cpu", name)
    if classes.ndim > 1:
        raise ArgumentError(
            name, f"{name} has shape {tuple(classes.shape)}; give an int or one int per sample"
        )
    if bool((classes < 0).any()):
        raise ArgumentError(
            name, f"{name} holds {int(classes.min())}; class indices are ints ≥ 0 (not wrapped)"
        )
    return classes


def _pick(scores: Tensor, index: Tensor, rows: Tensor, name: str) -> Tensor:
    """``scores[r, index]`` (one index) or ``scores[r, index[rows[r]]]`` (one per sample)."""
    chosen = index.expand(len(rows)) if index.ndim == 0 else _per_row(index, rows)
    chosen = chosen.to(scores.device)
    if bool((chosen >= scores.shape[1]).any()):
        raise ArgumentError(
            "target",
            f"{name}={int(chosen.max())} of the target is out of range for a model output "
            f"with {scores.shape[1]} classes (shape {tuple(scores.shape)}); use 0..."
            f"{scores.shape[1] - 1}",
        )
    return scores[torch.arange(len(rows), device=scores.device), chosen]


def _per_row(values: Tensor, rows: Tensor) -> Tensor:
    """The per-sample ``values`` of each row's sample."""
    return values[rows.to(values.device)]


def _shown(value: Any) -> str:
    if isinstance(value, Tensor):
        if value.numel() <= 8:
            return repr(value.tolist() if value.ndim else value.item())
        return f"<{str(value.dtype).removeprefix('torch.')} tensor {tuple(value.shape)}>"
    return repr(value)


class _Ready(CheckedTarget):
    """A ready-made target: a frozen dataclass called as ``target(output, rows=None)``.

    ``check(output)`` (called once on the first forward pass) compares its per-sample
    values with the batch; ``_samples(output)`` says how many samples they hold (None when
    they are shared).
    """

    def _samples(self, output: Tensor) -> int | None:
        return None

    def check(self, output: Tensor) -> None:
        """Its per-sample values must hold exactly one entry per sample of the batch."""
        n = self._samples(output)
        if n is not None and n != output.shape[0]:
            raise ArgumentError(
                "target",
                f"target={self!r} holds values for {n} samples but the batch has "
                f"{output.shape[0]}; give one per sample (or a single shared value)",
            )

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f}={_shown(getattr(self, f))}" for f in self.__dataclass_fields__
            if self.__dataclass_fields__[f].repr
        )
        return f"{type(self).__name__}({shown})"


def _sample_count(values: dict[str, Tensor], argument: str = "target") -> int | None:
    """The number of samples of the per-sample (1-D) values among ``values`` (by name)."""
    counts = {name: len(v) for name, v in values.items() if v.ndim == 1}
    if len(set(counts.values())) > 1:
        raise ArgumentError(
            argument,
            f"{argument}: the per-sample values {counts} (name: samples) differ in length; "
            "give each one entry per sample",
        )
    return next(iter(counts.values())) if counts else None


@dataclass(frozen=True, eq=False, repr=False)
class region(_Ready):
    """The score of class ``cls`` summed over a region: Σₚ mask[b, p] · out[b, cls, p].

    For segmentation outputs (B, C, H, W) and sequence outputs (B, C, L). ``mask`` is one
    per sample (B, H, W) or (B, 1, H, W), or one shared by the batch (H, W); bool, or
    float weights. ``cls`` is a class index or one per sample. Each row uses the mask of
    its own sample, whatever method expands the batch.

    >>> import torch, pellucid
    >>> model = torch.nn.Conv2d(3, 4, 1).eval()
    >>> mask = torch.zeros(2, 8, 8, dtype=torch.bool); mask[:, 2:5, 2:5] = True
    >>> target = pellucid.targets.region(mask, cls=1)
    >>> e = pellucid.explain(model, torch.randn(2, 3, 8, 8), target, method="gradient")
    >>> bool((e.attribution[:, :, 0, 0] == 0).all())  # outside the region: no gradient
    True
    """

    mask: Any
    cls: Any

    def __post_init__(self) -> None:
        mask = as_tensor(self.mask, "mask", "a bool or float mask (B, H, W), (B, 1, H, W) or "
                         "(H, W)")
        if mask.is_complex() or mask.ndim == 0 or mask.numel() == 0:
            raise ArgumentError(
                "mask",
                f"mask must be a non-empty real mask with at least one dimension (B, H, W), "
                f"(B, 1, H, W) or (H, W); got dtype {mask.dtype} and shape {tuple(mask.shape)}",
            )
        check_finite(mask, "mask", fix="give finite weights (or a bool mask)")
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "cls", _indices(self.cls, "cls"))

    def _weights(self, output: Tensor) -> tuple[Tensor, bool]:
        """The mask as (samples or 1, *positions), and whether it is per sample."""
        mask, positions = self.mask, output.shape[2:]
        if output.ndim < 3:
            raise ArgumentError(
                "target",
                f"target={self!r} sums a class over positions, but the model output has shape "
                f"{tuple(output.shape)}, no positions; it needs an output (B, C, H, W) or "
                "(B, C, L) (or use target=<class> for one score per class)",
            )
        if mask.shape == positions:
            return mask.unsqueeze(0), False
        if mask.ndim == len(positions) + 1 and mask.shape[1:] == positions:
            return mask, True
        if mask.ndim == len(positions) + 2 and mask.shape[1] == 1 and mask.shape[2:] == positions:
            return mask[:, 0], True
        shape = tuple(positions)
        raise ArgumentError(
            "target",
            f"target={self!r}: the mask has shape {tuple(mask.shape)}, which does not match the "
            f"model output {tuple(output.shape)}; give a mask (B, *{shape}), (B, 1, *{shape}) "
            f"or {shape} shared by the batch",
        )

    def _samples(self, output: Tensor) -> int | None:
        weights, per_sample = self._weights(output)
        n = _sample_count({"cls": self.cls})
        if per_sample and n is not None and n != len(weights):
            raise ArgumentError(
                "cls", f"target={self!r} has a mask for {len(weights)} samples but cls for {n}; "
                "give both one entry per sample",
            )
        return len(weights) if per_sample else n

    def __call__(self, output: Tensor, rows: Tensor | None = None) -> Tensor:
        rows = sample_rows(output, rows)
        weights, per_sample = self._weights(output)
        if per_sample:
            weights = _per_row(weights, rows)
        picked = _pick(output, self.cls, rows, "cls")
        return (picked * weights.to(picked)).flatten(1).sum(1)


@dataclass(frozen=True, eq=False, repr=False)
class logit_difference(_Ready):
    """The difference of two class scores: out[b, a] − out[b, b].

    ``a`` and ``b`` are class indices, or one per sample. The score of a class of an output
    with positions (B, C, H, W) is its sum over them, as for ``target=<class>``.

    >>> import torch, pellucid
    >>> model = torch.nn.Linear(4, 3, bias=False).eval()
    >>> e = pellucid.explain(model, torch.ones(1, 4), pellucid.targets.logit_difference(0, 2),
    ...                      method="gradient")
    >>> torch.allclose(e.attribution[0], model.weight[0] - model.weight[2])
    True
    """

    a: Any
    b: Any

    def __post_init__(self) -> None:
        a, b = _indices(self.a, "a"), _indices(self.b, "b")
        _sample_count({"a": a, "b": b}, "b")
        if bool((a == b).any()):
            raise ArgumentError(
                "b", f"a={_shown(a)} and b={_shown(b)} name the same class, whose difference is "
                "0 for every input; give two different classes",
            )
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", b)

    def _samples(self, output: Tensor) -> int | None:
        return _sample_count({"a": self.a, "b": self.b})

    def __call__(self, output: Tensor, rows: Tensor | None = None) -> Tensor:
        rows, scores = sample_rows(output, rows), class_scores(output)
        return _pick(scores, self.a, rows, "a") - _pick(scores, self.b, rows, "b")


@dataclass(frozen=True, eq=False, repr=False)
class contrast(_Ready):
    """A class against the others: out[b, cls] − (1/|O|) Σ_{j∈O} out[b, j].

    ``others`` O (shared by the batch) defaults to every class but ``cls``. This is the
    contrastive target of Gu, Yang and Tresp (2018, "Understanding individual decisions of
    CNNs via contrastive backpropagation", ACCV; CLRP's dual class made of the other
    classes' mean): it explains what speaks for ``cls`` more than for the others, not what
    raises every score alike.

    >>> import torch, pellucid
    >>> model = torch.nn.Linear(4, 3, bias=False).eval()
    >>> e = pellucid.explain(model, torch.ones(1, 4), pellucid.targets.contrast(0),
    ...                      method="gradient")
    >>> w = model.weight
    >>> torch.allclose(e.attribution[0], w[0] - (w[1] + w[2]) / 2)
    True
    """

    cls: Any
    others: Any = None

    def __post_init__(self) -> None:
        cls = _indices(self.cls, "cls")
        object.__setattr__(self, "cls", cls)
        if self.others is None:
            return
        others = _indices(self.others, "others").reshape(-1)
        if len(others.unique()) != len(others):
            raise ArgumentError(
                "others", f"others={_shown(others)} repeats a class; list each once"
            )
        if bool(torch.isin(cls, others).any()):
            raise ArgumentError(
                "others", f"others={_shown(others)} contains cls={_shown(cls)}; the contrast "
                "is against the other classes, so leave cls out of others",
            )
        object.__setattr__(self, "others", others)

    def _samples(self, output: Tensor) -> int | None:
        return _sample_count({"cls": self.cls})

    def __call__(self, output: Tensor, rows: Tensor | None = None) -> Tensor:
        rows, scores = sample_rows(output, rows), class_scores(output)
        chosen = _pick(scores, self.cls, rows, "cls")
        n = scores.shape[1]
        if self.others is None:
            if n < 2:
                raise ArgumentError(
                    "target",
                    f"target={self!r} contrasts a class with the others, but the model has "
                    f"{n} output; use target=None for a one-output model",
                )
            return chosen - (scores.sum(1) - chosen) / (n - 1)
        if int(self.others.max()) >= n:
            raise ArgumentError(
                "target",
                f"target={self!r}: others holds class {int(self.others.max())}, out of range "
                f"for a model output with {n} classes; use 0..{n - 1}",
            )
        return chosen - scores[:, self.others.to(scores.device)].mean(1)


@dataclass(frozen=True, eq=False, repr=False)
class multilabel(_Ready):
    """The sum of the scores of a sample's positive labels: Σ_c labels[b, c] · out[b, c].

    ``labels`` is a multi-hot tensor or array (B, C) of 0/1 (bool or numbers), or a list of
    index lists, one per sample (``[[0, 3], [2]]``); a nested list is always read as index
    lists.

    >>> import torch, pellucid
    >>> model = torch.nn.Linear(4, 3, bias=False).eval()
    >>> target = pellucid.targets.multilabel([[0, 2]])
    >>> e = pellucid.explain(model, torch.ones(1, 4), target, method="gradient")
    >>> torch.allclose(e.attribution[0], model.weight[0] + model.weight[2])
    True
    """

    labels: Any
    hot: Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        labels = self.labels
        if isinstance(labels, Sequence) and not isinstance(labels, (str, bytes)) and all(
            isinstance(row, Sequence) and not isinstance(row, (str, bytes)) for row in labels
        ) and len(labels) > 0:
            hot = self._from_lists(labels)
        else:
            hot = as_tensor(labels, "labels", "a multi-hot tensor (B, C) or a list of index lists")
            if hot.ndim != 2 or hot.numel() == 0 or hot.is_complex():
                raise ArgumentError(
                    "labels",
                    f"labels must be a multi-hot tensor (B, C) of 0/1, got shape "
                    f"{tuple(hot.shape)} and dtype {hot.dtype}; or give a list of index lists",
                )
            if not bool(((hot == 0) | (hot == 1)).all()):
                raise ArgumentError(
                    "labels", "labels must hold only 0 and 1 (a multi-hot tensor); for class "
                    "indices give a list of index lists such as [[0, 3], [2]]",
                )
        object.__setattr__(self, "hot", hot.float())

    @staticmethod
    def _from_lists(lists: Sequence[Sequence[Any]]) -> Tensor:
        rows = [_indices(list(row), "labels") if len(row) else torch.zeros(0, dtype=torch.long)
                for row in lists]
        for i, row in enumerate(rows):
            if len(row.unique()) != len(row):
                raise ArgumentError(
                    "labels", f"labels[{i}]={row.tolist()} repeats a class; list each once (a "
                    "multi-hot 0/1 row must be a tensor or array, not a list)",
                )
        width = max((int(r.max()) + 1 for r in rows if len(r)), default=1)
        hot = torch.zeros(len(rows), width)
        for i, row in enumerate(rows):  # building the setting once, not a per-sample loop of a call
            hot[i, row] = 1.0
        return hot

    def _samples(self, output: Tensor) -> int | None:
        return len(self.hot)

    def __call__(self, output: Tensor, rows: Tensor | None = None) -> Tensor:
        rows, scores = sample_rows(output, rows), class_scores(output)
        hot = self.hot
        if hot.shape[1] > scores.shape[1] or (
            hot.shape[1] < scores.shape[1] and not isinstance(self.labels, Sequence)
        ):
            raise ArgumentError(
                "target",
                f"target={self!r} has labels for {hot.shape[1]} classes but the model output "
                f"has {scores.shape[1]} (shape {tuple(output.shape)}); give one column per class",
            )
        hot = torch.nn.functional.pad(hot, (0, scores.shape[1] - hot.shape[1]))
        return (scores * _per_row(hot, rows).to(scores)).sum(1)


@dataclass(frozen=True, eq=False, repr=False)
class output(_Ready):
    """One entry of a dict, tuple or object output, then a score of it.

    ``output(key, then)`` explains ``then`` on ``out[key]``; it is the same as passing
    ``output=key, target=then`` (the selection goes through the one ``output=`` selector,
    :func:`pellucid.outputs.select_output`). ``then`` is ``None`` (a one-value output, or
    the predicted class), an index (one detection, one class) or one per sample, or another
    target callable (e.g. :class:`region` on a mask output).

    >>> import torch, pellucid
    >>> class Detector(torch.nn.Module):  # detection-style dict output
    ...     def forward(self, x):
    ...         return {"boxes": x[:, :4].unsqueeze(1), "scores": x.sigmoid()}
    >>> target = pellucid.targets.output("scores", 0)  # the score of detection 0
    >>> e = pellucid.explain(Detector().eval(), torch.zeros(2, 5), target, method="gradient")
    >>> e.attribution[:, 0].tolist()  # σ'(0) = 1/4
    [0.25, 0.25]
    """

    key: OutputSelector
    then: Any = None

    def __post_init__(self) -> None:
        key = self.key
        readable = callable(key) or isinstance(key, (int, str))
        if isinstance(key, bool) or key is None or not readable:
            raise ArgumentTypeError(
                "key", f"key must be an int index, a str key or attribute, or a callable on the "
                f"model's return value; got {key!r}",
            )
        then = self.then
        if isinstance(then, output):
            raise ArgumentTypeError(
                "then", "then cannot be another output(...): select nested entries with a "
                "callable key, e.g. output(lambda out: out['a']['b'])",
            )
        if callable(then) and not isinstance(then, (Tensor, type)):
            takes_rows(then)
        elif then is not None:
            object.__setattr__(self, "then", _indices(then, "then"))

    def _samples(self, output: Tensor) -> int | None:
        return _sample_count({"then": self.then}) if isinstance(self.then, Tensor) else None

    def __call__(self, output: Any, rows: Tensor | None = None) -> Tensor:
        picked = select_output(output, self.key)
        rows, then = sample_rows(picked, rows), self.then
        if isinstance(then, Tensor):
            return _pick(class_scores(picked), then, rows, "then")
        if then is not None:
            return RowScores.of(then)(picked, rows)
        scores = class_scores(picked)
        if scores.shape[1] != 1:
            raise ArgumentError(
                "then",
                f"target={self!r} selects an output of shape {tuple(picked.shape)}; give then= "
                "the index to explain (one value per sample is needed)",
            )
        return scores[:, 0]


#: what :class:`next_token` scores: the logit, or the log-probability over the vocabulary
TOKEN_SCORES = ("logit", "log_probability")


def _positions(value: Any, name: str) -> Tensor:
    """One position (0-d) or one per sample (B,), Python-indexed (−1 is the last), on the CPU."""
    if isinstance(value, bool) or not isinstance(value, int | Tensor):
        raise ArgumentTypeError(
            name, f"{name} must be an int (−1 is the last position) or an integer tensor with "
            f"one position per sample, got {type(value).__name__}",
        )
    positions = torch.as_tensor(value).detach().cpu()
    if positions.is_floating_point() or positions.dtype == torch.bool or positions.ndim > 1:
        raise ArgumentError(
            name, f"{name} must hold integer positions, one per sample at most; got dtype "
            f"{positions.dtype} and shape {tuple(positions.shape)}",
        )
    return positions.long()


def _sequence_logits(output: Tensor, target: Any) -> None:
    if output.ndim != 3:
        raise ArgumentError(
            "target",
            f"target={target!r} reads a language model's output (B, L, V): scores over the "
            f"vocabulary at each position; this output has shape {tuple(output.shape)}",
        )


def _at_positions(output: Tensor, positions: Tensor, rows: Tensor, name: str) -> Tensor:
    """out[r, positions(r)] (R, V), positions checked against the length and wrapped."""
    length = output.shape[1]
    chosen = positions.expand(len(rows)) if positions.ndim == 0 else _per_row(positions, rows)
    chosen = chosen.to(output.device)
    if bool(((chosen < -length) | (chosen >= length)).any()):
        raise ArgumentError(
            name, f"{name} holds a position out of range for sequences of length {length}; "
            f"use −{length}…{length - 1}",
        )
    return output[torch.arange(len(rows), device=output.device), chosen % length]


@dataclass(frozen=True, eq=False, repr=False)
class next_token(_Ready):
    """A language model's score for the next token: out[b, position, token].

    For a causal language model's output (B, L, V), the scores over the vocabulary V at
    each position; the output at ``position`` predicts the token after it. ``token`` is a
    token id, one per sample, or None: the token the model predicts at ``position`` on the
    call's first forward pass, kept fixed for the whole call (integration points and noisy
    copies do not change it). ``position`` is −1 (the last, for prompts without padding or
    padded on the left), an int, or one per sample, e.g. ``attention_mask.sum(1) − 1`` for
    prompts padded on the right. ``score`` is ``"logit"`` or ``"log_probability"``
    (log-softmax over the vocabulary; Captum's ``LLMAttribution`` explains it).

    >>> import torch, pellucid
    >>> lm = torch.nn.Sequential(torch.nn.Embedding(5, 5)).eval()  # logits: a table row
    >>> e = pellucid.explain(lm, torch.tensor([[1, 3]]), pellucid.targets.next_token(2),
    ...                      method="gradient_x_input")
    >>> e.attribution[0, 0].item(), e.attribution[0, 1].item() == lm[0].weight[3, 2].item()
    (0.0, True)
    """

    token: Any = None
    position: Any = -1
    score: str = "logit"

    def __post_init__(self) -> None:
        if self.token is not None:
            object.__setattr__(self, "token", _indices(self.token, "token"))
        object.__setattr__(self, "position", _positions(self.position, "position"))
        check_choice(self.score, "score", TOKEN_SCORES)

    def _samples(self, output: Tensor) -> int | None:
        values = {"position": self.position}
        if self.token is not None:
            values["token"] = self.token
        return _sample_count(values)

    def resolved(self, output: Tensor) -> next_token:
        """Checked against the first pass's output, with ``token=None`` fixed to the
        predicted token of every sample."""
        _sequence_logits(output, self)
        self.check(output)
        if self.token is not None:
            return self
        rows = torch.arange(output.shape[0], device=output.device)
        predicted = _at_positions(output.detach(), self.position, rows, "position").argmax(-1)
        return replace(self, token=predicted.cpu())

    def __call__(self, output: Tensor, rows: Tensor | None = None) -> Tensor:
        _sequence_logits(output, self)
        rows = sample_rows(output, rows)
        scores = _at_positions(output, self.position, rows, "position")
        if self.score == "log_probability":
            scores = torch.log_softmax(scores, -1)
        if self.token is None:
            raise ArgumentError(
                "token", "next_token() without a token is resolved on a call's first forward "
                "pass (the predicted token); to score outputs directly, give token=",
            )
        return _pick(scores, self.token, rows, "token")


@dataclass(frozen=True, eq=False, repr=False)
class continuation(_Ready):
    """The log-probability of a continuation given what precedes it:
    Σₖ log softmax(out[b, L − K − 1 + k])[tokens[k]], k = 0 … K − 1.

    The inputs (B, L) end with the K continuation ``tokens`` (K,) or (B, K) (the prompt
    followed by the continuation, without padding on the right); the output at position
    L − K − 1 + k predicts token k. Explaining it attributes the whole continuation's
    log-probability to the prompt's tokens (and to the earlier continuation tokens).
    :func:`pellucid.explain` checks that the token-id inputs end with ``tokens``.

    >>> import torch, pellucid
    >>> lm = torch.nn.Sequential(torch.nn.Embedding(5, 5)).eval()
    >>> ids = torch.tensor([[0, 1, 4, 2]])  # prompt [0, 1], continuation [4, 2]
    >>> e = pellucid.explain(lm, ids, pellucid.targets.continuation([4, 2]), method="gradient")
    >>> e.attribution.shape
    torch.Size([1, 4])
    """

    tokens: Any

    def __post_init__(self) -> None:
        tokens = class_indices(self.tokens, "cpu", "tokens")
        if tokens.ndim not in (1, 2) or tokens.shape[-1] == 0:
            raise ArgumentError(
                "tokens", f"tokens has shape {tuple(tokens.shape)}; give the K ≥ 1 continuation "
                "tokens (K,), or one row per sample (B, K)",
            )
        if bool((tokens < 0).any()):
            raise ArgumentError("tokens", "tokens holds a negative id; token ids are ≥ 0")
        object.__setattr__(self, "tokens", tokens)

    def _samples(self, output: Tensor) -> int | None:
        return self.tokens.shape[0] if self.tokens.ndim == 2 else None

    def resolved(self, output: Tensor) -> continuation:
        _sequence_logits(output, self)
        self.check(output)
        if output.shape[1] <= self.tokens.shape[-1]:
            raise ArgumentError(
                "tokens",
                f"the continuation has {self.tokens.shape[-1]} tokens but the sequences have "
                f"{output.shape[1]}; the inputs must hold a prompt of at least one token "
                "followed by the continuation",
            )
        return self

    def matches(self, ids: Tensor) -> bool:
        """Whether the token ids (B, L) end with the continuation."""
        tail = ids[:, ids.shape[1] - self.tokens.shape[-1]:].cpu()
        return bool((tail == self.tokens).all())

    def __call__(self, output: Tensor, rows: Tensor | None = None) -> Tensor:
        _sequence_logits(output, self)
        rows = sample_rows(output, rows)
        k = self.tokens.shape[-1]
        length = output.shape[1]
        log_p = torch.log_softmax(output[:, length - k - 1 : length - 1], -1)  # (R, K, V)
        tokens = self.tokens if self.tokens.ndim == 1 else _per_row(self.tokens, rows)
        tokens = tokens.to(output.device).expand(len(rows), k)
        vocabulary = log_p.shape[-1]
        if int(tokens.max()) >= vocabulary:
            raise ArgumentError(
                "tokens", f"tokens holds id {int(tokens.max())}, out of range for a vocabulary "
                f"of {vocabulary}",
            )
        return log_p.gather(-1, tokens.unsqueeze(-1)).squeeze(-1).sum(-1)
