"""Attribution methods that need only autograd or forward passes (importing registers them)."""

from .cam import GradCAM, GradCAMPlusPlus
from .fullgrad import FullGrad
from .gradient import Gradient, GradientXInput, Saliency, Sensitivity
from .integrated import ExpectedGradients, IntegratedGradients
from .noise import SmoothGrad, SmoothGradSquared, VarGrad
from .perturbation import RISE, KernelSHAP, Lime, Occlusion

__all__ = [
    "RISE",
    "ExpectedGradients",
    "FullGrad",
    "GradCAM",
    "GradCAMPlusPlus",
    "Gradient",
    "GradientXInput",
    "IntegratedGradients",
    "KernelSHAP",
    "Lime",
    "Occlusion",
    "Saliency",
    "Sensitivity",
    "SmoothGrad",
    "SmoothGradSquared",
    "VarGrad",
]
