"""The public entry points: ``explain``, ``get_method``, ``list_methods``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from .errors import ArgumentTypeError
from .explanation import Explanation
from .layers import LayerRef
from .method import METHODS, Method
from .outputs import OutputSelector
from .registry import check_settings
from .targets import TargetSpec


def explain(
    model: nn.Module,
    inputs: Tensor,
    target: TargetSpec = None,
    method: str | Method = "gradient",
    *,
    output: OutputSelector = None,
    model_kwargs: Mapping[str, Any] | None = None,
    layer: LayerRef | None = None,
    layer_side: str = "output",
    embeddings: LayerRef | None = None,
    **settings: Any,
) -> Explanation:
    """Explain ``model``'s prediction on ``inputs`` with a registered method.

    Args:
        model: any ``torch.nn.Module``; it is left exactly as it was.
        inputs: a floating tensor with the batch first (images, sequences, tabular, volumes),
            or token ids (an int64/int32 tensor B×L): these are explained at the output of
            the embedding layer, and the attribution is one value per token (B, L), with
            the per-dimension map in ``extras["embedding_attribution"]``.
        target: an int ≥ 0, one class per sample, ``None`` (the predicted class; the output
            itself for a model with one output), or a callable mapping the model output to
            one score per sample (see :mod:`pellucid.targets`).
        method: a registered name (see :func:`list_methods`) or a method object (an
            instance, not the class).
        output: which tensor to explain when the model returns a tuple or dict
            (an index, a key, an attribute name, or a callable).
        model_kwargs: extra arguments for ``model``. Tensors (B, …) with two or more
            dimensions follow the rows when a method expands the batch, other values are
            shared; mark a 1-D tensor of length B with :func:`pellucid.per_sample` or
            :func:`pellucid.shared` (see :mod:`pellucid.task`).
        layer: attribute to this layer's activation (a dotted name or the submodule)
            instead of the inputs, as Captum's ``Layer*`` methods do; the attribution then
            has the activation's shape. For methods with a ``layer`` setting (Grad-CAM),
            it is that setting.
        layer_side: ``"output"`` (default) or ``"input"``: which activation of ``layer``.
        embeddings: for token ids, the layer that turns them into vectors; found by
            structure when None (``get_input_embeddings()``, else the ``nn.Embedding``
            that receives the ids).
        **settings: the method's settings, e.g. ``steps=64`` for Integrated Gradients.
            Reference settings (``baseline``, ``fill``) also take token roles ``"pad"`` /
            ``"mask"`` or a tensor of token ids when the inputs are token ids.

    Returns an :class:`~pellucid.Explanation` that lives on one device, the model's: the
    inputs may be on any device and in any floating dtype, they are copied to the model's
    (``docs/tasks/devices.md``). Raises a :class:`~pellucid.errors.PellucidError` naming
    the argument to change for any input it cannot explain exactly (see ``docs/errors.md``).

    Example:
        >>> import torch, pellucid
        >>> model = torch.nn.Linear(4, 3)
        >>> e = pellucid.explain(model, torch.randn(2, 4), target=1, method="integrated_gradients")
        >>> e.attribution.shape
        torch.Size([2, 4])
    """
    if layer is not None and _has_layer_setting(method):
        settings["layer"] = layer
        layer = None
    chosen = as_method(method, **settings)
    return chosen(
        model, inputs, target, output=output, model_kwargs=model_kwargs, layer=layer,
        layer_side=layer_side, embeddings=embeddings,
    )


def _has_layer_setting(method: str | Method) -> bool:
    """Whether the method reads a layer of its own (Grad-CAM's ``layer``)."""
    if isinstance(method, str):
        cls = METHODS.get(method) if method in METHODS else None
        return cls is not None and any(f.name == "layer" for f in dataclasses.fields(cls))
    return isinstance(method, Method) and "layer" in method.settings()


def as_method(method: str | Method, **settings: Any) -> Method:
    """A method object from a registered name or an object, configured with ``settings``.

    A method class (``IntegratedGradients`` instead of ``IntegratedGradients()``) or
    ``None`` is an :class:`~pellucid.errors.ArgumentTypeError` naming ``method``.
    """
    if isinstance(method, type) and issubclass(method, Method):
        raise ArgumentTypeError(
            "method",
            f"method is the class {method.__name__}; pass an instance, {method.__name__}(...), "
            f"or its registered name, method={method.name!r}",
        )
    if isinstance(method, Method):
        if settings:
            check_settings(method, settings, f"method {method.name!r}")
            return dataclasses.replace(method, **settings)
        return method
    return get_method(method, **settings)


def get_method(name: str, **settings: Any) -> Method:
    """The method registered as ``name``, configured with ``settings``."""
    return METHODS.build(name, **settings)


def list_methods(pattern: str = "*") -> list[str]:
    """Registered method names matching a shell-style pattern, e.g. ``"lrp.*"``."""
    return METHODS.names(pattern)


def describe_methods(pattern: str = "*") -> dict[str, str]:
    """Registered method names with their one-line descriptions."""
    return {e.name: e.description for e in METHODS.entries(pattern)}
