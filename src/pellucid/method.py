"""The method protocol: settings as a frozen dataclass, one ``attribute`` per method.

A method is a small frozen dataclass whose fields are its settings. ``attribute(task, x)``
computes the attribution for a private copy ``x`` of the inputs; calling the object runs
it under the model guard and returns an :class:`~pellucid.Explanation`::

    IntegratedGradients(steps=32)(model, x, target=3)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from .checks import check_inputs
from .explanation import Explanation
from .guard import preserved
from .outputs import OutputSelector
from .registry import Registry
from .targets import TargetSpec, resolve_target
from .task import Primed, Task

METHODS: Registry[type[Method]] = Registry("method")
M = TypeVar("M", bound="type[Method]")


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator: register a method under its public ``name``."""

    def decorate(cls: M) -> M:
        cls.name = name
        return METHODS.register(name)(cls)

    return decorate


@dataclasses.dataclass(frozen=True, eq=False)
class Method:
    """Base of every attribution method (settings are the dataclass fields)."""

    name: ClassVar[str] = "method"
    #: the first forward pass keeps its graph, for methods whose first step is ∂f/∂x at x
    grad_at_input: ClassVar[bool] = False

    def first_pass(self, task: Task, x: Tensor) -> tuple[Tensor, Any]:
        """The call's first forward pass at ``x``: (selected output, state for ``attribute``).

        Its output resolves the target. A method that needs an instrumented forward at ``x``
        (the rule engine's recording) overrides this, so that ``attribute`` reuses it through
        ``task.primed_at(x)`` instead of paying for a second forward pass.
        """
        with torch.set_grad_enabled(self.grad_at_input):
            if self.grad_at_input:
                x.requires_grad_(True)
            return task.output(x), None

    def attribute(self, task: Task, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """(attribution with the shape of ``x``, extras) for the rows of ``task``."""
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """The settings as a plain dict."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def __call__(
        self,
        model: nn.Module,
        inputs: Tensor,
        target: TargetSpec = None,
        *,
        output: OutputSelector = None,
        model_kwargs: Mapping[str, Any] | None = None,
    ) -> Explanation:
        return run(self, model, inputs, target, output=output, model_kwargs=model_kwargs)


def run(
    method: Method,
    model: nn.Module,
    inputs: Tensor,
    target: TargetSpec = None,
    *,
    output: OutputSelector = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Explanation:
    """Explain ``inputs`` with ``method``, leaving ``model`` and ``inputs`` untouched."""
    check_inputs(inputs)
    with preserved(model):
        x = private_copy(inputs, model)
        rows = x.shape[0]
        task = Task(model, None, output, dict(model_kwargs or {}), rows)  # type: ignore[arg-type]
        out, state = method.first_pass(task, x)
        primed = Primed(x, out, state)
        task = dataclasses.replace(task, target=resolve_target(target, out), primed=primed)
        attribution, extras = method.attribute(task, x)
        attribution = attribution.detach()
        if attribution.shape != inputs.shape:
            raise RuntimeError(
                f"{method.name} returned an attribution of shape {tuple(attribution.shape)} "
                f"for inputs of shape {tuple(inputs.shape)}; this is a bug in pellucid"
            )
    return Explanation(
        attribution=attribution.to(inputs.device),
        output=out.detach(),
        target=task.target.labels(rows),
        method=method.name,
        settings=method.settings(),
        extras=extras,
    )


def private_copy(inputs: Tensor, model: nn.Module) -> Tensor:
    """A copy of the inputs on the model's device and in its floating dtype."""
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    device = param.device if param is not None else inputs.device
    dtype = param.dtype if param is not None else inputs.dtype
    return inputs.detach().to(device=device, dtype=dtype, copy=True)
