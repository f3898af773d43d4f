"""Attribution methods that need only autograd or forward passes (importing registers them)."""

from .gradient import Gradient, GradientXInput, Saliency, Sensitivity
from .integrated import ExpectedGradients, IntegratedGradients
from .noise import SmoothGrad, SmoothGradSquared, VarGrad

__all__ = [
    "ExpectedGradients",
    "Gradient",
    "GradientXInput",
    "IntegratedGradients",
    "Saliency",
    "Sensitivity",
    "SmoothGrad",
    "SmoothGradSquared",
    "VarGrad",
]
