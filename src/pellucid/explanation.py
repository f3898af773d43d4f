"""The result of explaining one batch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor


@dataclass
class Explanation:
    """An attribution for a batch, with what produced it.

    Attributes:
        attribution: relevance per input element, the same shape as the inputs.
        output: the model output (detached).
        target: the explained class per sample, LongTensor (B,); -1 for a target callable.
        method: the registered name of the method.
        settings: the method's settings.
        extras: method-specific diagnostics, e.g. ``completeness_gap`` (B,) or ``layer_map``.
        target_spec: the target callable when ``target=`` was one (``target`` is then -1),
            else None (the classes are in ``target``). Pass ``target_spec`` if not None,
            else ``target``, to explain or evaluate the same score again.
    """

    attribution: Tensor
    output: Tensor
    target: Tensor
    method: str
    settings: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    target_spec: Callable[[Tensor], Tensor] | None = None

    def __repr__(self) -> str:
        shape = "×".join(str(s) for s in self.attribution.shape)
        extras = ", ".join(sorted(self.extras)) or "none"
        return f"Explanation(method={self.method!r}, attribution={shape}, extras: {extras})"
