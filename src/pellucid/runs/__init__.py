"""Dataset runs: explain and evaluate a whole data set, resumable, into a store.

:func:`run` explains every batch of a data set once per method, scores each explanation
with every metric, and writes attributions, scores, targets and outputs to a store: a zarr
folder (extra ``runs``: ``pip install 'pellucid[runs]'``), or memory without ``store=``
(no optional dependency); :class:`Run` reads it back lazily. :func:`benchmark` is the
methods × metrics table of a run. See docs/runs.md.

>>> import torch
>>> from pellucid.runs import run
>>> r = run(torch.nn.Linear(3, 2).eval(), torch.randn(5, 3), "gradient", progress=False)
>>> r.attribution("gradient").shape
torch.Size([5, 3])
"""

from .accumulate import CurveMean, Moments
from .batches import Batch, batches
from .benchmark import benchmark
from .results import Failure, Run
from .runner import BatchResult, MethodResult, Plan, explain_batch, prepare, run
from .store import Store

__all__ = [
    "Batch",
    "BatchResult",
    "CurveMean",
    "Failure",
    "MethodResult",
    "Moments",
    "Plan",
    "Run",
    "Store",
    "batches",
    "benchmark",
    "explain_batch",
    "prepare",
    "run",
]
