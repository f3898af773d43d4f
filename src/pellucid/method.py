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

from .batching import check_batch_size
from .checks import check_count, check_finite, check_inputs, deferred_checks
from .errors import ArgumentError, ModelError
from .explanation import Explanation
from .guard import preserved
from .layer_inputs import check_token_target, enter, reported, with_token_references
from .layers import LayerRef
from .outputs import OutputSelector
from .placement import to_model
from .registry import Registry
from .targets import TargetSpec
from .targets import output as selected_output
from .task import Forward, Task, cache_off
from .tokens import is_token_ids

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
    #: the attribution gives all channels of a position one value (a window, a feature
    #: group, a CAM or attention map): per token it is read once, not summed over the
    #: embedding dimensions (see :func:`pellucid.layer_inputs.per_token`)
    per_position: ClassVar[bool] = False
    #: what a model must have for the method to apply: ``"attention"`` (a self-attention
    #: softmax), ``"spatial"`` (a layer with a spatial map); empty for any model
    requires: ClassVar[frozenset[str]] = frozenset()

    def first_pass(self, task: Task, x: Tensor) -> Forward:
        """The call's first forward pass at ``x``; its output resolves the target.

        A method that needs an instrumented forward at ``x`` (the rule engine's tape, the
        layers of a CAM) overrides this, and ``attribute`` reuses the pass through
        ``task.first_forward_at(x)`` instead of paying for a second one.
        """
        with torch.set_grad_enabled(self.grad_at_input):
            if self.grad_at_input:
                x.requires_grad_(True)
            return Forward(x, task.output(x))

    def attribute(self, task: Task, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """(attribution with the shape of ``x``, extras) for the rows of ``task``."""
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """The settings as a plain dict."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def cheap(
        self,
        x: Tensor,
        *,
        evaluations: int = 8,
        references: Tensor | None = None,
        batch_size: int | None = None,
    ) -> Method:
        """This method with a small budget for inputs like ``x``: for tests, demos, benchmarks.

        Token ids ``x`` (B, L) are budgeted as the sequences of L positions that the method
        explains. ``evaluations`` is the budget in model evaluations per sample (integration steps,
        noise samples; perturbation methods scale it to their own units, see each
        method's :meth:`budget`), ``references`` are data for methods that draw from a
        dataset, and ``batch_size`` caps the rows per forward pass where the method has
        that setting. Single-pass methods come back unchanged.

        Example:
            >>> import torch, pellucid
            >>> ig = pellucid.get_method("integrated_gradients").cheap(torch.zeros(1, 4))
            >>> ig.steps
            8
        """
        check_inputs(x, "x", token_ids=True)
        if references is not None:
            check_inputs(references, "references", token_ids=True)
        evaluations = check_count(evaluations, "evaluations", "model evaluations per sample")
        if is_token_ids(x):  # explained as embeddings (B, D, L): budget for L positions
            x = torch.zeros(x.shape[0], 1, *x.shape[1:])
        changes = self.budget(x, evaluations, references)
        if batch_size is not None and "batch_size" in self.settings():
            changes["batch_size"] = check_batch_size(batch_size)
        return dataclasses.replace(self, **changes) if changes else self

    def budget(self, x: Tensor, evaluations: int, references: Tensor | None) -> dict[str, Any]:
        """The settings that give this method about ``evaluations`` model evaluations per
        sample of inputs like ``x`` (see :meth:`cheap`); none for a single-pass method."""
        return {}

    def __call__(
        self,
        model: nn.Module,
        inputs: Tensor,
        target: TargetSpec = None,
        *,
        output: OutputSelector = None,
        model_kwargs: Mapping[str, Any] | None = None,
        layer: LayerRef | None = None,
        layer_side: str = "output",
        embeddings: LayerRef | None = None,
    ) -> Explanation:
        """Explain ``inputs`` with this method, leaving ``model`` and ``inputs`` untouched.

        ``layer`` attributes to a layer's activation (``layer_side``: its output or input)
        instead of the inputs; token ids are attributed at ``embeddings`` (found by
        structure when None). See :mod:`pellucid.layer_inputs`.
        """
        check_inputs(inputs, token_ids=True)
        if layer is not None and "layer" in self.settings():
            raise ArgumentError(
                "layer", f"{self.name}'s layer is one of its settings (the layer it reads); "
                f"set it on the method, {type(self).__name__}(layer=...)",
            )
        with preserved(model):
            model_kwargs = cache_off(model, model_kwargs)
            x = private_copy(inputs, model)
            entry, x = enter(model, x, model_kwargs, layer=layer, side=layer_side,
                             embeddings=embeddings)
            method = self if entry is None else with_token_references(
                self, entry, model, model_kwargs)
            task = Task.start(
                model, x, target, select=output, model_kwargs=model_kwargs,
                first_pass=method.first_pass, entry=entry,
            )
            if entry is not None:
                check_token_target(task, entry)
            with deferred_checks():  # one sync for every chunk's checks
                attribution, extras = method.attribute(task, x)
                attribution = attribution.detach()
                check_finite(
                    attribution, f"the attributions of {self.name}", argument="model",
                    error=ModelError, fix=_overflow_fix(attribution.dtype),
                )
            if attribution.shape != x.shape:
                raise RuntimeError(
                    f"{self.name} returned an attribution of shape {tuple(attribution.shape)} "
                    f"for inputs of shape {tuple(x.shape)}; this is a bug in pellucid"
                )
            explained = x.detach()
            if entry is not None:
                attribution, extras, explained = reported(
                    entry, attribution, extras, inputs, self.per_position)
        return Explanation(
            attribution=attribution,
            output=task.first_forward.output.detach(),
            target=task.target.labels(len(x), x.device),
            method=self.name,
            settings=self.settings(),
            extras=extras,
            target_spec=explained_target(task),
            # the private copy the method explained (each forward pass copies it again, so
            # it holds the inputs as they were), on the model's device like every tensor of
            # the Explanation; the token ids for token inputs, None for a layer's activation
            inputs=explained,
        )


def _overflow_fix(dtype: torch.dtype) -> str:
    """How to avoid a non-finite attribution in a model of ``dtype``."""
    if dtype == torch.float16:
        return ("float16 overflows where a method divides by small values (the rule engine's "
                "ε-stabilised ratios): run the model in bfloat16 or float32 for this method")
    cause = "the model's gradients or messages overflowed or divided 0 by 0 on these inputs"
    if dtype == torch.bfloat16:
        return f"{cause}; run the model in float32"
    return f"{cause}; check the model on these inputs"


def explained_target(task: Task) -> TargetSpec:
    """What an Explanation records as its target: the target callable, and with it the
    output selector when one picked the explained tensor (as ``targets.output(key, then)``,
    so that re-scoring the explanation selects the same output); None for classes alone."""
    if task.select is None:
        return task.target.fn
    then = task.target.fn if task.target.fn is not None else task.target.classes
    return selected_output(task.select, then)


def private_copy(inputs: Tensor, model: nn.Module) -> Tensor:
    """A copy of the inputs on the model's device, floating inputs in its floating dtype
    (:func:`~pellucid.placement.to_model`)."""
    return to_model(inputs.detach(), model, copy=True)
