"""Validation of inputs and outputs, with errors that say what to change."""

from __future__ import annotations

from typing import Any

from torch import Tensor


def check_inputs(inputs: Any) -> None:
    """Inputs must be a floating tensor with the batch first and only finite values."""
    if not isinstance(inputs, Tensor):
        raise TypeError(
            f"inputs must be a torch.Tensor with the batch dimension first, got "
            f"{type(inputs).__name__}; convert with torch.as_tensor(...)"
        )
    if inputs.ndim < 2:
        raise ValueError(
            f"inputs have shape {tuple(inputs.shape)}; the batch dimension must come first "
            "(a single sample x becomes x.unsqueeze(0))"
        )
    if inputs.shape[0] == 0:
        raise ValueError("inputs hold an empty batch (0 samples)")
    if not inputs.is_floating_point():
        raise TypeError(
            f"inputs have dtype {inputs.dtype}; attributions need floating-point inputs. "
            "Convert with inputs.float(); for token ids, explain the embedding output instead"
        )
    check_finite(inputs, "inputs")


def check_output(out: Tensor, rows: int) -> None:
    """The model output must have one row per input row and only finite values."""
    if out.ndim == 0 or out.shape[0] != rows:
        raise ValueError(
            f"the model output has shape {tuple(out.shape)} for a batch of {rows} samples; "
            "the output must have the batch dimension first (pass output= to select it)"
        )
    check_finite(out, "the model output")


def check_per_sample(value: Any, rows: int, what: str) -> Tensor:
    """A user callable's result must be a tensor of one value per sample, shape (rows,)."""
    if not isinstance(value, Tensor) or value.shape != (rows,):
        got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(
            f"{what} must return one score per sample, shape ({rows},); it returned {got}"
        )
    return value


def check_positive_int(value: Any, name: str, meaning: str = "") -> None:
    """A count setting must be an int >= 1 (not a bool); the error names it and its meaning."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        said = f" ({meaning})" if meaning else ""
        raise ValueError(f"{name} must be a positive int{said}, got {value!r}")


def check_finite(t: Tensor, what: str) -> None:
    """Raise a ValueError naming ``what`` when ``t`` holds NaN or Inf."""
    if t.is_floating_point() and not bool(t.isfinite().all()):
        n_nan = int(t.isnan().sum())
        n_inf = int(t.isinf().sum())
        raise ValueError(
            f"{what} contain {n_nan} NaN and {n_inf} Inf values; clean them "
            "(e.g. torch.nan_to_num) before explaining"
        )
