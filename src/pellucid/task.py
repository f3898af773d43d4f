"""The thing being explained for one batch: model, model arguments, output and target.

Methods receive a :class:`Task` and a private copy of the inputs; they never see the
user's tensors. ``Task.take`` gives the task for an expanded batch (steps of Integrated
Gradients, noisy copies of SmoothGrad, perturbed copies of occlusion), repeating the
per-sample target and per-sample model arguments along with the rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from .checks import check_output
from .outputs import OutputSelector, select_output
from .targets import Target, TargetSpec, resolve_target


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
            raise KeyError(
                f"layer {name!r} was not captured in this forward pass; captured: "
                f"{sorted(self.layers) or 'none'}"
            )
        if not self.layers[name]:
            raise ValueError(
                f"layer {name!r} did not run in the model's forward pass; pick a layer that "
                "the forward pass uses"
            )
        return self.layers[name][-1]


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
    ) -> Task:
        """The task for the private inputs ``x``, its target resolved on a first forward pass.

        ``first_pass(task, x)`` makes that pass (default: the selected output without
        gradients); it is kept as ``first_forward`` so that later steps can reuse it.
        """
        unresolved = cls(model, Target(), select, dict(model_kwargs or {}), x.shape[0])
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
        out = select_output(self.model(x.clone(), **self.model_kwargs), self.select)
        check_output(out, x.shape[0])
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
            (grad,) = torch.autograd.grad(scores.sum(), xg)
        return grad, scores.detach()

    def first_forward_at(self, x: Tensor) -> Forward | None:
        """The call's first forward pass if it was made at exactly ``x``, else None."""
        first = self.first_forward
        return first if first is not None and first.inputs is x else None

    def take(self, index: Tensor) -> Task:
        """The task for rows ``index`` of this batch (with repetition)."""
        kwargs = {
            k: v[index.to(v.device)] if _per_sample(v, self.rows) else v
            for k, v in self.model_kwargs.items()
        }
        target = self.target.take(index) if self.target is not None else None
        return replace(
            self, target=target, model_kwargs=kwargs, rows=len(index), first_forward=None
        )


def _per_sample(value: Any, rows: int) -> bool:
    """Model arguments that are tensors with one row per sample follow the rows."""
    return isinstance(value, Tensor) and value.ndim > 0 and value.shape[0] == rows
