"""pellucid: explainable deep learning for PyTorch.

>>> import torch, pellucid
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
>>> explanation = pellucid.explain(model.eval(), torch.randn(5, 4), method="gradient_x_input")
>>> explanation.attribution.shape
torch.Size([5, 4])
"""

from . import attribution as _attribution  # noqa: F401  (registers the methods)
from . import errors, layers, lrp, targets
from .api import describe_methods, explain, get_method, list_methods
from .explanation import Explanation
from .method import Method, register_method
from .metrics import evaluate, list_metrics
from .runs import benchmark
from .task import per_sample, shared

__version__ = "0.1.0"

__all__ = [
    "Explanation",
    "Method",
    "__version__",
    "benchmark",
    "describe_methods",
    "errors",
    "evaluate",
    "explain",
    "get_method",
    "layers",
    "list_methods",
    "list_metrics",
    "lrp",
    "per_sample",
    "register_method",
    "shared",
    "targets",
]
