"""The gradient family: one backward pass each.

- ``gradient``: ∂f/∂x (Simonyan et al. 2014).
- ``sensitivity``: (∂f/∂x)², sensitivity analysis (Baehrens et al. 2010; Montavon 2018).
- ``saliency``: |∂f/∂x|, optionally the max over channels (Simonyan et al. 2014).
- ``gradient_x_input``: x ⊙ ∂f/∂x (Shrikumar et al. 2016).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from ..method import Method, register_method
from ..task import Task


@dataclass(frozen=True, eq=False)
class _GradientBased(Method):
    grad_at_input = True

    def transform(self, grad: Tensor, x: Tensor) -> Tensor:
        raise NotImplementedError

    def attribute(self, task: Task, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        grad, _ = task.gradient(x)
        return self.transform(grad, x.detach()), {}


@register_method("gradient")
@dataclass(frozen=True, eq=False)
class Gradient(_GradientBased):
    """The input gradient ∂f/∂x (Simonyan et al. 2014)."""

    def transform(self, grad: Tensor, x: Tensor) -> Tensor:
        return grad


@register_method("sensitivity")
@dataclass(frozen=True, eq=False)
class Sensitivity(_GradientBased):
    """Sensitivity analysis, the squared gradient (∂f/∂x)² (Baehrens et al. 2010)."""

    def transform(self, grad: Tensor, x: Tensor) -> Tensor:
        return grad.square()


@register_method("saliency")
@dataclass(frozen=True, eq=False)
class Saliency(_GradientBased):
    """The absolute gradient |∂f/∂x|; ``max_over_channels`` takes maxᶜ |∂f/∂xᶜ| (Simonyan 2014).

    With ``max_over_channels=True`` the channel maximum (dimension 1) is repeated over the
    channels, so that the attribution keeps the input's shape.
    """

    max_over_channels: bool = False

    def transform(self, grad: Tensor, x: Tensor) -> Tensor:
        magnitude = grad.abs()
        if self.max_over_channels and grad.ndim > 2:
            magnitude = magnitude.amax(dim=1, keepdim=True).expand_as(grad).contiguous()
        return magnitude


@register_method("gradient_x_input")
@dataclass(frozen=True, eq=False)
class GradientXInput(_GradientBased):
    """Gradient times input x ⊙ ∂f/∂x (Shrikumar et al. 2016)."""

    def transform(self, grad: Tensor, x: Tensor) -> Tensor:
        return grad * x
