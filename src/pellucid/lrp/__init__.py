"""One rule engine for LRP, Deep Taylor, guided backprop, deconvnet, DeepLIFT and excitation
backprop, on any architecture (see docs/lrp.md).

>>> import torch, pellucid, pellucid.lrp
>>> from pellucid.lrp import Composite, Epsilon, ZPlus, FIRST, Flat
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
>>> e = pellucid.explain(model.eval(), torch.randn(2, 4), method="lrp.epsilon")
>>> e.attribution.shape
torch.Size([2, 4])
"""

from . import methods as _methods  # noqa: F401  (registers the methods)
from .composites import BATCHNORM, CONV, FIRST, LAST_LINEAR, LINEAR, Composite, Selector
from .describe import describe
from .rules import (
    AlphaBeta,
    Average,
    Deconvnet,
    Epsilon,
    Flat,
    Gamma,
    Gradient,
    GuidedBackprop,
    Pass,
    Rescale,
    Rule,
    SignalTakesAll,
    WinnerTakeAll,
    WSquare,
    ZBox,
    Zero,
    ZPlus,
)

__all__ = [
    "BATCHNORM", "CONV", "FIRST", "LAST_LINEAR", "LINEAR", "AlphaBeta", "Average", "Composite",
    "Deconvnet", "Epsilon", "Flat", "Gamma", "Gradient", "GuidedBackprop", "Pass", "Rescale",
    "Rule", "Selector", "SignalTakesAll", "WSquare", "WinnerTakeAll", "ZBox", "ZPlus", "Zero",
    "describe",
]
