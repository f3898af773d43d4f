"""Methods from anywhere: a callable ``(model, x, target) -> attributions`` as a method.

Metrics that re-run the explanation method (robustness, randomisation) take ``method=``
a registered name, a :class:`~pellucid.method.Method` object, or any callable, such as
Captum's ``attribute``::

    method=lambda model, x, target: IntegratedGradients(model).attribute(x, target=target)

:class:`CallableMethod` wraps the callable so that it runs as every method does: under the
model guard, on a private copy of the rows, its output checked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ArgumentError, ArgumentTypeError
from ..method import Method
from ..task import Task
from .maps import as_attribution

CALLABLE = ("a callable (model, x, target) -> attributions, e.g. method=lambda m, x, t: "
            "IntegratedGradients(m).attribute(x, target=t) with Captum")


@dataclasses.dataclass(frozen=True, eq=False)
class CallableMethod(Method):
    """A method given as a callable ``fn(model, x, target) -> attributions``.

    ``fn`` receives the model, the rows ``x`` (a private copy) and the target of the rows:
    one class per row (a LongTensor (rows,)), ``None`` for a model with one output per
    sample ((B,) or (B, 1), Captum's convention), or the target callable itself. It returns
    a tensor or NumPy array of ``x``'s shape, or one map per row, (rows, 1, *spatial) or
    (rows, *spatial), which is the location map (see :func:`pellucid.metrics.maps.
    as_attribution`); anything else, or a non-finite value, is an error naming ``method``.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(3, 2)
        >>> saliency = CallableMethod(lambda m, x, t: torch.ones_like(x))
        >>> saliency(model, torch.zeros(4, 3), 1).attribution.shape
        torch.Size([4, 3])
    """

    name = "callable"
    fn: Callable[[nn.Module, Tensor, Any], Any]

    def __post_init__(self) -> None:
        if not callable(self.fn) or isinstance(self.fn, type):
            raise ArgumentTypeError("method", f"method must be {CALLABLE}; got {self.fn!r}")

    def attribute(self, task: Task, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        if task.select is not None or task.model_kwargs:
            raise ArgumentError(
                "method",
                "a callable method receives the model alone, so output= and model_kwargs= "
                "cannot reach it; wrap the model in an nn.Module that selects the output and "
                "passes the arguments, or pass a registered method name",
            )
        with torch.enable_grad():
            values = self.fn(task.model, x, _target_for(task))
        return as_attribution(values, x, "method", "the attributions that method returned"), {}


def _target_for(task: Task) -> Any:
    """The target as a callable method receives it (see :class:`CallableMethod`)."""
    target = task.target
    if target.fn is not None:
        return target.fn
    output = task.first_forward.output if task.first_forward is not None else None
    if output is not None and (output.ndim == 1 or output.shape[1] == 1):
        return None
    return target.classes
