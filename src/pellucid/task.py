"""The thing being explained for one batch: model, model arguments, output and target.

Methods receive a :class:`Task` and a private copy of the inputs; they never see the
user's tensors. ``Task.take`` gives the task for an expanded batch (steps of Integrated
Gradients, noisy copies of SmoothGrad, perturbed copies of occlusion), repeating the
per-sample target and per-sample model arguments along with the rows.

Model arguments (``model_kwargs``) are per-sample or shared. A tensor whose first
dimension equals the batch (B, …) with at least two dimensions is per-sample; anything
else is shared (passed unchanged to every forward pass). A 1-D tensor of length B > 1 is
ambiguous (per-sample scalars, or a shared vector whose length happens to equal the
batch) and raises an error: wrap it in :func:`per_sample` or :func:`shared` to say which.
Either wrapper also overrides the rule for any other value.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from .checks import check_output
from .errors import ArgumentError, ArgumentTypeError, ModelError, UnknownNameError
from .outputs import OutputSelector, select_output
from .registry import suggest
from .target_resolution import RowScores as RowScores
from .target_resolution import Target, TargetSpec, resolve_target
from .targets import split_selection

if TYPE_CHECKING:
    from .layer_inputs import Entry


@dataclass(frozen=True, eq=False)
class _Marked:
    value: Any


class PerSample(_Marked):
    """A model argument with one row per sample: it follows the rows (see :func:`per_sample`)."""


class Shared(_Marked):
    """A model argument shared by all samples: passed unchanged (see :func:`shared`)."""


def per_sample(value: Tensor) -> PerSample:
    """Mark a ``model_kwargs`` tensor as per-sample: row i belongs to sample i.

    >>> import torch
    >>> timesteps = per_sample(torch.tensor([10, 20, 30]))  # one diffusion step per sample
    """
    return PerSample(value)


def shared(value: Any) -> Shared:
    """Mark a ``model_kwargs`` value as shared by all samples (never indexed by row).

    >>> import torch
    >>> weights = shared(torch.tensor([0.2, 0.3, 0.5]))  # a vector that is not per sample
    """
    return Shared(value)


@dataclass(frozen=True, eq=False)
class Forward:
    """One forward pass and what it recorded.

    ``inputs`` are the tensor the model saw (requiring grad where the pass keeps its graph),
    ``output`` is the selected model output, ``layers`` maps a layer's dotted name to its
    outputs during the pass (one entry per call), and ``state`` is what a method kept of it
    (the rule engine's tape).
    """

    inputs: Tensor
    output: Tensor
    layers: Mapping[str, list[Tensor]] = field(default_factory=dict)
    state: Any = None

    def layer(self, name: str) -> Tensor:
        """The output of layer ``name`` in this pass (its last call if it ran several times)."""
        if name not in self.layers:
            captured = sorted(self.layers)
            raise UnknownNameError(
                "layer",
                f"layer {name!r} was not captured in this forward pass.{suggest(name, captured)} "
                f"Captured: {captured or 'none'}; name a captured layer",
            )
        if not self.layers[name]:
            raise ArgumentError(
                "layer",
                f"layer {name!r} did not run in the model's forward pass; pick a layer that "
                "the forward pass uses",
            )
        return self.layers[name][-1]


#: what the rows of ``Task.take`` are, unless the caller says
EXPANDED = "rows made from the samples (integration points, noisy or perturbed copies)"


@dataclass(frozen=True, eq=False)
class Task:
    """A model call for a batch of rows and the score per row that is explained."""

    model: nn.Module
    target: Target
    select: OutputSelector = None
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    rows: int = 0
    #: the call's first forward pass (see ``Method.first_pass``)
    first_forward: Forward | None = None
    #: the names of the per-sample model arguments (worked out from ``model_kwargs`` when
    #: None; ``model_kwargs`` then holds the values without their :func:`per_sample` /
    #: :func:`shared` wrappers)
    per_sample: frozenset[str] | None = None
    #: where the explained tensor enters the model when it is a layer's activation rather
    #: than the model's inputs (see :mod:`pellucid.layer_inputs`); None for the inputs
    entry: Entry | None = None

    def __post_init__(self) -> None:
        if self.per_sample is None:
            kwargs, names = split_model_kwargs(self.model_kwargs, self.rows)
            object.__setattr__(self, "model_kwargs", kwargs)
            object.__setattr__(self, "per_sample", names)

    def marked_kwargs(self) -> dict[str, Any]:
        """The model arguments wrapped as :func:`per_sample` or :func:`shared`, to pass on
        to another call without losing which is which."""
        names = self.per_sample or frozenset()
        return {k: (PerSample if k in names else Shared)(v) for k, v in self.model_kwargs.items()}

    @classmethod
    def start(
        cls,
        model: nn.Module,
        x: Tensor,
        target: TargetSpec,
        *,
        select: OutputSelector = None,
        model_kwargs: Mapping[str, Any] | None = None,
        first_pass: Callable[[Task, Tensor], Forward] | None = None,
        entry: Entry | None = None,
    ) -> Task:
        """The task for the private inputs ``x``, its target resolved on a first forward pass.

        ``target=pellucid.targets.output(key, then)`` is ``select=key, target=then``.
        ``first_pass(task, x)`` makes that pass (default: the selected output without
        gradients); it is kept as ``first_forward`` so that later steps can reuse it.
        """
        select, target = split_selection(target, select)
        unresolved = cls(model, Target(), select, model_kwargs, x.shape[0], entry=entry)
        if first_pass is None:
            with torch.no_grad():
                first = Forward(x, unresolved.output(x))
        else:
            first = first_pass(unresolved, x)
        return replace(
            unresolved, target=resolve_target(target, first.output), first_forward=first
        )

    def output(self, x: Tensor) -> Tensor:
        """The selected model output for inputs ``x`` (rows first).

        The model receives a copy, so a model that writes to its input in place (e.g. an
        in-place ReLU as its first layer) changes neither ``x`` nor a leaf of the graph.
        """
        if self.entry is None:
            raw = self.model(x.clone(), **self.model_kwargs)
        else:
            with self.entry.entering(x.clone()):
                raw = self.model(self.entry.model_inputs(), **self.model_kwargs)
        out = select_output(raw, self.select)
        check_output(out, x.shape[0])
        if out.is_inference() and not torch.is_inference_mode_enabled():
            raise ModelError("model", _NO_GRAPH.format(how="torch.inference_mode()"))
        return out

    def score(self, x: Tensor) -> Tensor:
        """The explained score f(x), one per row."""
        return self.target.score(self.output(x))

    def gradient(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(∂f/∂x, f(x)) for every row; rows are independent for a model in eval mode."""
        with torch.enable_grad():
            first = self.first_forward_at(x)
            if first is not None and x.requires_grad:
                xg, scores = x, self.target.score(first.output)
            else:
                xg = x.detach().requires_grad_(True)
                scores = self.score(xg)
            require_graph(scores)
            (grad,) = torch.autograd.grad(scores.sum(), xg)
        return grad, scores.detach()

    def first_forward_at(self, x: Tensor) -> Forward | None:
        """The call's first forward pass if it was made at exactly ``x``, else None."""
        first = self.first_forward
        return first if first is not None and first.inputs is x else None

    def take(self, index: Tensor, what: str = EXPANDED) -> Task:
        """The task for rows ``index`` of this batch (with repetition).

        Per-sample model arguments and class targets follow the rows; a target callable
        learns the original sample of each row (:class:`~pellucid.targets.RowScores`
        composes ``index`` with the rows this task already stands for, so a task taken
        from a taken task still maps to the samples of the call). ``what`` says what the
        rows are (e.g. ``"integration points"``) for the error of a target callable that
        fails on them.
        """
        names = self.per_sample or frozenset()
        kwargs = {
            k: v[index.to(v.device)] if k in names else v for k, v in self.model_kwargs.items()
        }
        return replace(
            self, target=self.target.take(index, what, self.rows), model_kwargs=kwargs,
            rows=len(index), first_forward=None,
            entry=None if self.entry is None else self.entry.take(index),
        )


_NO_GRAPH = (
    "the model output has no autograd graph: the model's forward runs under {how} (or "
    "detaches its result), so no gradient reaches the inputs; remove it from forward() "
    "(pellucid switches gradients on and off itself) and pass the model"
)


def require_graph(scores: Tensor) -> None:
    """The explained scores must be in the autograd graph for a gradient to exist; a
    :class:`~pellucid.errors.ModelError` naming the model's ``no_grad`` otherwise."""
    if not scores.requires_grad:
        how = "torch.inference_mode()" if scores.is_inference() else "torch.no_grad()"
        raise ModelError("model", _NO_GRAPH.format(how=how))


def cache_off(model: nn.Module, model_kwargs: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """``model_kwargs`` with ``use_cache=False`` added when the model's forward takes
    ``use_cache`` (Hugging Face decoders) and the caller did not set it: a forward pass that
    is explained needs no key/value cache, which would only hold memory."""
    try:
        takes = "use_cache" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        takes = False
    if not takes or (isinstance(model_kwargs, Mapping) and "use_cache" in model_kwargs):
        return model_kwargs
    if model_kwargs is not None and not isinstance(model_kwargs, Mapping):
        return model_kwargs  # split_model_kwargs names the wrong type
    return {**(model_kwargs or {}), "use_cache": Shared(False)}


def split_model_kwargs(given: Any, rows: int) -> tuple[dict[str, Any], frozenset[str]]:
    """(the model arguments without wrappers, the names of the per-sample ones).

    See the module docstring for the rule; a wrapped value follows its wrapper.
    """
    if given is None:
        return {}, frozenset()
    if not isinstance(given, Mapping) or not all(isinstance(k, str) for k in given):
        raise ArgumentTypeError(
            "model_kwargs",
            f"model_kwargs must be a dict from argument names to values, got "
            f"{type(given).__name__}; e.g. model_kwargs={{'attention_mask': mask}}",
        )
    kwargs, names = {}, set()
    for key, value in given.items():
        if isinstance(value, _Marked):
            kwargs[key] = value.value
            if isinstance(value, PerSample):
                _check_rows(key, value.value, rows)
                names.add(key)
            continue
        kwargs[key] = value
        if isinstance(value, Tensor) and value.ndim > 0 and value.shape[0] == rows:
            if value.ndim == 1 and rows > 1:
                raise ArgumentError(
                    "model_kwargs",
                    f"model_kwargs[{key!r}] has shape ({rows},), the batch size, so it could be "
                    f"one value per sample or a shared vector; say which with "
                    f"pellucid.per_sample(...) or pellucid.shared(...)",
                )
            names.add(key)
    return kwargs, frozenset(names)


def _check_rows(key: str, value: Any, rows: int) -> None:
    if not isinstance(value, Tensor) or value.ndim == 0 or value.shape[0] != rows:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ArgumentError(
            "model_kwargs",
            f"model_kwargs[{key!r}] is marked per_sample but is {shape}, not a tensor with "
            f"one row per sample ({rows}, …); mark it shared(...) or give one row per sample",
        )
