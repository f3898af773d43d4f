"""The thing being explained for one batch: model, model arguments, output and target.

Methods receive a :class:`Task` and a private copy of the inputs; they never see the
user's tensors. ``Task.take`` gives the task for an expanded batch (steps of Integrated
Gradients, noisy copies of SmoothGrad, perturbed copies of occlusion), repeating the
per-sample target and per-sample model arguments along with the rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from .checks import check_output
from .outputs import OutputSelector, select_output
from .targets import Target


@dataclass(frozen=True, eq=False)
class Primed:
    """The first forward pass of a call: its inputs, output, and what the method kept of it."""

    inputs: Tensor
    output: Tensor
    state: Any = None


@dataclass(frozen=True, eq=False)
class Task:
    """A model call for a batch of rows and the score per row that is explained."""

    model: nn.Module
    target: Target
    select: OutputSelector = None
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    rows: int = 0
    #: the first forward pass of the call (see ``Method.first_pass``)
    primed: Primed | None = None

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
            if self.primed is not None and x is self.primed.inputs and x.requires_grad:
                xg, scores = x, self.target.score(self.primed.output)
            else:
                xg = x.detach().requires_grad_(True)
                scores = self.score(xg)
            (grad,) = torch.autograd.grad(scores.sum(), xg)
        return grad, scores.detach()

    def primed_at(self, x: Tensor) -> Primed | None:
        """The first forward pass if it was made at exactly ``x``, else None."""
        return self.primed if self.primed is not None and self.primed.inputs is x else None

    def take(self, index: Tensor) -> Task:
        """The task for rows ``index`` of this batch (with repetition)."""
        kwargs = {
            k: v[index.to(v.device)] if _per_sample(v, self.rows) else v
            for k, v in self.model_kwargs.items()
        }
        target = self.target.take(index) if self.target is not None else None
        return replace(self, target=target, model_kwargs=kwargs, rows=len(index), primed=None)


def _per_sample(value: Any, rows: int) -> bool:
    """Model arguments that are tensors with one row per sample follow the rows."""
    return isinstance(value, Tensor) and value.ndim > 0 and value.shape[0] == rows
