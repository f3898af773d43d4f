"""The rows a method creates itself: integration points, noisy copies, perturbed inputs.

Methods that evaluate many variants of each sample flatten the (variant, sample) grid into
rows (:func:`pellucid.batching.expanded_rows`). Two things can go wrong there that the
call's first forward pass cannot catch, and both become a :class:`~pellucid.errors.ModelError`
instead of a traceback from deep inside torch or a NaN map:

- a target callable sees the model output of a chunk of those rows, not one row per
  sample: :func:`take_rows` says so when the callable fails on them;
- the model's gradient is not finite on the rows although its output is (sqrt or log at
  0): :func:`check_finite_values` says where, instead of a NaN map.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from torch import Tensor

from ..errors import ModelError
from ..targets import Target
from ..task import Task


def take_rows(task: Task, sample: Tensor, method: str, variants: str) -> Task:
    """``task.take(sample)``, whose target callable, if any, fails with a clear error.

    ``sample`` gives the sample of each row; ``variants`` says what the rows are (e.g.
    ``"integration points"``). A callable is given the output of these rows, so one that
    indexes a per-sample tensor (B,) cannot work on them; the error says what it received.
    """
    taken = task.take(sample)
    fn = task.target.fn
    if fn is None:
        return taken
    rows, samples = len(sample), task.rows

    def on_rows(output: Tensor) -> Any:
        problem = ""
        try:
            value = fn(output)
        except Exception as error:  # the user's callable: say what it was given
            problem = f"raised {type(error).__name__}: {error}"
            cause: BaseException | None = error
        else:
            if isinstance(value, Tensor) and value.shape == (rows,):
                return value
            got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            problem, cause = f"returned {got} instead of ({rows},)", None
        raise ModelError(
            "target",
            f"the target callable {problem}. {method} evaluates it on {variants}: it receives "
            f"the model output of {rows} rows (a chunk of the {variants} of the {samples} "
            "samples, any number of rows per sample), not one row per sample, and must "
            f"return one score per row. A callable that indexes per-sample tensors of "
            f"shape ({samples},) cannot work here: compute what it needs from the output "
            "rows themselves, or pass class indices target=<tensor (B,)>, which follow the rows",
        ) from cause

    return replace(taken, target=Target(fn=on_rows))


def check_finite_values(values: Tensor, method: str, what: str, where: str) -> Tensor:
    """``values`` (gradients, a base method's attributions) unless they hold NaN or Inf.

    ``what`` is what they are and ``where`` the rows they were computed on. The scores
    themselves are checked where they are made (the model output by ``Task.output``, a
    target callable's scores by ``Target.score``); what is left is the model's gradient.
    """
    finite = values.isfinite()
    if bool(finite.all()):
        return values
    raise ModelError(
        "model",
        f"{method}: the model gave {int((~finite).sum())} NaN or Inf {what} (of "
        f"{values.numel()}) on {where} although its outputs are finite, so {method} would "
        "return a NaN map. Make the model differentiable with finite gradients on these "
        "inputs (e.g. no sqrt, log or 1/x at 0, no overflow in low precision), or choose "
        "settings whose inputs it handles (another baseline, less noise), or a method "
        "without gradients (e.g. occlusion)",
    )


__all__ = ["check_finite_values", "take_rows"]
