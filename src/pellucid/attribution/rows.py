"""The rows a method creates itself: integration points, noisy copies, perturbed inputs.

Methods that evaluate many variants of each sample flatten the (variant, sample) grid into
rows (:func:`pellucid.batching.expanded_rows`). Two things can go wrong there that the
call's first forward pass cannot catch, and both become a :class:`~pellucid.errors.ModelError`
instead of a traceback from deep inside torch or a NaN map:

- a target callable sees the model output of a chunk of those rows, not one row per
  sample: ``task.take(sample, what)`` (:class:`pellucid.task.RowScores`) says so when the
  callable fails on them;
- the model's gradient is not finite on the rows although its output is (sqrt or log at
  0): :func:`check_finite_values` says where, instead of a NaN map.
"""

from __future__ import annotations

from torch import Tensor

from ..checks import check_finite
from ..errors import ModelError


def check_finite_values(values: Tensor, method: str, what: str, where: str) -> Tensor:
    """``values`` (gradients, a base method's attributions) unless they hold NaN or Inf
    (:func:`pellucid.checks.check_finite`, blaming the model).

    ``what`` is what they are and ``where`` the rows they were computed on. The scores
    themselves are checked where they are made (the model output by ``Task.output``, a
    target callable's scores by ``Target.score``); what is left is the model's gradient.
    """
    check_finite(
        values, f"{method}: the model's {what} on {where}", argument="model", error=ModelError,
        fix="the model's outputs are finite there, so this NaN or Inf would become a NaN map. "
        "Make the model differentiable with finite gradients on these inputs (e.g. no sqrt, "
        "log or 1/x at 0, no overflow in low precision), or choose settings whose inputs it "
        "handles (another baseline, less noise), or a method without gradients (e.g. "
        "occlusion)",
    )
    return values


__all__ = ["check_finite_values"]
