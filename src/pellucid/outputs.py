"""Reading the explained tensor out of whatever a model returns.

Models return a tensor, a tuple, a dict, or an object with ``.logits`` (Hugging Face
``ModelOutput``). ``output=`` picks the tensor when the choice is ambiguous: an index,
a key, an attribute name, or a callable on the raw output.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Union

from torch import Tensor

from .errors import ArgumentError, ArgumentTypeError

OutputSelector = Union[int, str, Callable[[Any], Tensor], None]


def select_output(raw: Any, selector: OutputSelector = None) -> Tensor:
    """The tensor to explain from a model's raw return value.

    A selector that cannot apply is an error, never ignored: an index or key on a model
    that returns a single tensor would pick a sample or fail, so it is refused.
    """
    if isinstance(selector, bool) or not (
        selector is None or callable(selector) or isinstance(selector, (int, str))
    ):
        raise ArgumentTypeError(
            "output",
            f"output must be an int index, a str key or attribute, or a callable, got "
            f"{selector!r}",
        )
    if callable(selector):
        picked = selector(raw)
        if not isinstance(picked, Tensor):
            raise ArgumentTypeError(
                "output", f"the output= callable returned {type(picked).__name__}, not a tensor"
            )
        return picked
    if selector is not None:
        if isinstance(raw, Tensor):
            raise ArgumentError(
                "output",
                f"output={selector!r} selects from a tuple, dict or object, but the model "
                "returns a single tensor (an index would pick a sample); drop output=",
            )
        return _select_with(raw, selector)
    if isinstance(raw, Tensor):
        return raw
    logits = getattr(raw, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(raw, Mapping):
        tensors = {k: v for k, v in raw.items() if isinstance(v, Tensor)}
        if "logits" in tensors:
            return tensors["logits"]
        if len(tensors) == 1:
            return next(iter(tensors.values()))
        raise ArgumentError(
            "output",
            f"the model returned a dict with tensors {sorted(tensors)}; "
            "pass output='<key>' to say which one to explain",
        )
    if isinstance(raw, (tuple, list)):
        tensors = [v for v in raw if isinstance(v, Tensor)]
        if len(tensors) == 1:
            return tensors[0]
        raise ArgumentError(
            "output",
            f"the model returned a {type(raw).__name__} of {len(raw)} items; "
            "pass output=0 (an index), a key, or a callable to say which one to explain",
        )
    raise ArgumentTypeError(
        "output",
        f"cannot read a tensor from a model output of type {type(raw).__name__}; "
        "pass output=<callable> that maps the model's return value to a tensor",
    )


def _select_with(raw: Any, selector: int | str) -> Tensor:
    try:
        if isinstance(selector, int) or isinstance(raw, Mapping) or hasattr(raw, "keys"):
            picked = raw[selector]
        else:
            picked = getattr(raw, selector)
    except (KeyError, IndexError, AttributeError, TypeError) as err:
        raise ArgumentError(
            "output",
            f"output={selector!r} does not select anything in a model output of type "
            f"{type(raw).__name__} ({err})",
        ) from None
    if not isinstance(picked, Tensor):
        raise ArgumentTypeError(
            "output", f"output={selector!r} selects a {type(picked).__name__}, not a tensor"
        )
    return picked
