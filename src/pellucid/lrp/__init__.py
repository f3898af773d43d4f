"""One rule engine for LRP, Deep Taylor, guided backprop, deconvnet, DeepLIFT and excitation
backprop, on any architecture (see docs/lrp.md).

>>> import torch, pellucid, pellucid.lrp
>>> from pellucid.lrp import Composite, Epsilon, ZPlus, FIRST, Flat
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
>>> e = pellucid.explain(model.eval(), torch.randn(2, 4), method="lrp.epsilon")
>>> e.attribution.shape
torch.Size([2, 4])
"""

from .._deprecation import deprecated_names
from . import methods as _methods  # noqa: F401  (registers the methods)
from .composites import (
    BATCHNORM,
    CONV,
    FIRST,
    LAST_LINEAR,
    LINEAR,
    Composite,
    Selector,
    attnlrp,
    cp_lrp,
)
from .describe import describe
from .engine import clear_weight_cache
from .recurrent import Recurrent
from .rules import (
    AlphaBeta,
    Average,
    ChainRule,
    DualContrast,
    Epsilon,
    Flat,
    Gamma,
    Pass,
    RectifiedGradient,
    RectifiedPass,
    Rescale,
    Rule,
    SignalTakesAll,
    SplitDifference,
    WinnerTakeAll,
    WSquare,
    ZBox,
    Zero,
    ZPlus,
)
from .tape import UnsupportedOpError

#: the rules' former names, which were also names of methods
__getattr__ = deprecated_names(__name__, {
    "Gradient": ("pellucid.lrp.ChainRule (the same rule)", lambda: ChainRule),
    "GuidedBackprop": ("pellucid.lrp.RectifiedGradient (the same rule)", lambda: RectifiedGradient),
    "Deconvnet": ("pellucid.lrp.RectifiedPass (the same rule)", lambda: RectifiedPass),
})


__all__ = [
    "BATCHNORM", "CONV", "FIRST", "LAST_LINEAR", "LINEAR", "AlphaBeta", "Average", "ChainRule",
    "Composite", "DualContrast", "Epsilon", "Flat", "Gamma", "Pass", "RectifiedGradient",
    "RectifiedPass", "Recurrent", "Rescale", "Rule", "Selector", "SignalTakesAll",
    "SplitDifference", "UnsupportedOpError", "WSquare", "WinnerTakeAll", "ZBox", "ZPlus", "Zero",
    "attnlrp", "clear_weight_cache", "cp_lrp", "describe",
]
