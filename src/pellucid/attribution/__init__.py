"""Attribution methods that need only autograd or forward passes (importing registers them)."""

from .attention import AttentionFlow, AttentionRollout, GenericAttention
from .cam import GradCAM, GradCAMPlusPlus
from .fullgrad import FullGrad
from .gradient import Gradient, GradientXInput, Saliency, Sensitivity
from .integrated import ExpectedGradients, IntegratedGradients
from .noise import SmoothGrad, SmoothGradSquared, VarGrad
from .perturbation import KernelShap, Lime, Occlusion, Rise

__all__ = [
    "AttentionFlow",
    "AttentionRollout",
    "ExpectedGradients",
    "FullGrad",
    "GenericAttention",
    "GradCAM",
    "GradCAMPlusPlus",
    "Gradient",
    "GradientXInput",
    "IntegratedGradients",
    "KernelShap",
    "Lime",
    "Occlusion",
    "Rise",
    "Saliency",
    "Sensitivity",
    "SmoothGrad",
    "SmoothGradSquared",
    "VarGrad",
]
