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

from ..checks import check_bool
from ..errors import ArgumentError
from ..method import Method, register_method
from ..task import Task
from .rows import check_finite_values


@dataclass(frozen=True, eq=False)
class _GradientBased(Method):
    grad_at_input = True

    def transform(self, grad: Tensor, x: Tensor) -> Tensor:
        raise NotImplementedError

    def attribute(self, task: Task, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        grad, _ = task.gradient(x)
        check_finite_values(grad, self.name, "gradients", "the inputs it explains")
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
    channels, so that the attribution keeps the input's shape; tabular inputs N×D have no
    channels, and the setting is an error there.
    """

    max_over_channels: bool = False

    def __post_init__(self) -> None:
        check_bool(self.max_over_channels, "max_over_channels")

    def transform(self, grad: Tensor, x: Tensor) -> Tensor:
        magnitude = grad.abs()
        if self.max_over_channels:
            if grad.ndim < 3:
                raise ArgumentError(
                    "max_over_channels",
                    f"max_over_channels takes the maximum over the channels of N×C×… inputs, "
                    f"but inputs of shape {tuple(grad.shape)} are tabular (N×D: no channels); "
                    "use max_over_channels=False",
                )
            magnitude = magnitude.amax(dim=1, keepdim=True).expand_as(grad).contiguous()
        return magnitude


@register_method("gradient_x_input")
@dataclass(frozen=True, eq=False)
class GradientXInput(_GradientBased):
    """Gradient times input x ⊙ ∂f/∂x (Shrikumar et al. 2016)."""

    def transform(self, grad: Tensor, x: Tensor) -> Tensor:
        return grad * x
