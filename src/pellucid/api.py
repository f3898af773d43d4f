"""The public entry points: ``explain``, ``get_method``, ``list_methods``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from .explanation import Explanation
from .method import METHODS, Method
from .outputs import OutputSelector
from .targets import TargetSpec


def explain(
    model: nn.Module,
    inputs: Tensor,
    target: TargetSpec = None,
    method: str | Method = "gradient",
    *,
    output: OutputSelector = None,
    model_kwargs: Mapping[str, Any] | None = None,
    **settings: Any,
) -> Explanation:
    """Explain ``model``'s prediction on ``inputs`` with a registered method.

    Args:
        model: any ``torch.nn.Module``; it is left exactly as it was.
        inputs: a floating tensor with the batch first (images, sequences, tabular, volumes).
        target: an int, one class per sample, ``None`` (the predicted class), or a callable
            mapping the model output to one score per sample.
        method: a registered name (see :func:`list_methods`) or a method object.
        output: which tensor to explain when the model returns a tuple or dict
            (an index, a key, an attribute name, or a callable).
        model_kwargs: extra arguments for ``model``; tensors with one row per sample follow
            the rows when a method expands the batch.
        **settings: the method's settings, e.g. ``steps=64`` for Integrated Gradients.

    Example:
        >>> import torch, pellucid
        >>> model = torch.nn.Linear(4, 3)
        >>> e = pellucid.explain(model, torch.randn(2, 4), target=1, method="integrated_gradients")
        >>> e.attribution.shape
        torch.Size([2, 4])
    """
    chosen = as_method(method, **settings)
    return chosen(model, inputs, target, output=output, model_kwargs=model_kwargs)


def as_method(method: str | Method, **settings: Any) -> Method:
    """A method object from a registered name or an object, configured with ``settings``."""
    if isinstance(method, Method):
        return dataclasses.replace(method, **settings) if settings else method
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
