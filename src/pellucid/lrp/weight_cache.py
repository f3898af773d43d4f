"""The cache of weights derived from a model's parameters: folded BatchNorms, w⁺, w⁻, w², ...

An entry is keyed by the model, what was derived, and the identities of the tensors it was
derived from (its sources). It is served while every source is the same object with the same
version counter and the same storage, so a parameter changed in place, or given new data
(``.data = ...``, ``model.double()``, ``model.to(device)``), is derived again. An entry holds
its sources, so their identities are not reused while it exists; the model itself is held
weakly, so its entries go when it does.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

from torch import Tensor, nn

from ..guard import stamp

T = TypeVar("T")


class WeightCache:
    """Derived weights per model (see the module docstring); :meth:`clear` empties it."""

    def __init__(self) -> None:
        self._models: weakref.WeakKeyDictionary[nn.Module, dict[Hashable, Any]] = (
            weakref.WeakKeyDictionary()
        )

    def derived(self, model: nn.Module, what: Hashable, sources: Sequence[Tensor | None],
                make: Callable[[], T]) -> T:
        """``make()``, the value ``what`` derived from ``sources``, cached for ``model``."""
        entries = self._models.setdefault(model, {})
        key = (what, *(id(t) for t in sources))
        stamped = tuple(stamp(t) for t in sources)
        hit = entries.get(key)
        if hit is not None and hit[1] == stamped:
            return hit[2]
        value = make()
        entries[key] = (tuple(sources), stamped, value)
        return value

    def tensors(self, model: nn.Module) -> list[Tensor]:
        """The derived tensors held for ``model`` (on its device)."""
        values = [entry[2] for entry in self._models.get(model, {}).values()]
        flat = [v for value in values for v in (value if isinstance(value, tuple) else (value,))]
        return [v for v in flat if isinstance(v, Tensor)]

    def forget(self, model: nn.Module) -> None:
        """Forget every weight derived for ``model``."""
        self._models.pop(model, None)

    def clear(self) -> None:
        """Forget every derived weight of every model."""
        self._models.clear()

    def __len__(self) -> int:
        """The number of derived weights held, over all models."""
        return sum(len(entries) for entries in self._models.values())
