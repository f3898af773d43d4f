"""Validation of inputs, outputs and settings, with errors that say what to change.

Every check raises a :mod:`pellucid.errors` class whose ``argument`` names what the user
should change and whose message contains that name, the problem and the fix.
"""

from __future__ import annotations

import functools
import itertools
import math
import numbers
import operator
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parameter import UninitializedParameter

from .errors import (
    ArgumentError,
    ArgumentTypeError,
    ModelError,
    PellucidError,
    UnknownNameError,
    UnsupportedModelError,
)
from .registry import suggest
from .tokens import is_token_ids


def check_model(model: Any) -> None:
    """The model must be an ``nn.Module`` whose weights exist: not lazy, not on ``meta``."""
    if not isinstance(model, nn.Module):
        what = f"the class {model.__name__}" if isinstance(model, type) else type(model).__name__
        raise ArgumentTypeError(
            "model",
            f"model must be a torch.nn.Module (an instance), got {what}; wrap a function "
            "in an nn.Module whose forward calls it",
        )
    tensors = (t for m in model.modules()
               for t in itertools.chain(m._parameters.values(), m._buffers.values()))
    if not any(isinstance(t, UninitializedParameter) or t.is_meta for t in tensors
               if t is not None):
        return  # the common case: one walk, without building the names
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if isinstance(tensor, UninitializedParameter):
            raise UnsupportedModelError(
                "model",
                f"the model has the uninitialised lazy parameter {name!r}; run one forward "
                "pass on a real batch first (model(x)) so that its shape is known",
            )
        if tensor.is_meta:
            raise UnsupportedModelError(
                "model",
                f"the model's {name!r} is on the meta device and holds no values; load real "
                "weights first (model.to_empty(device=...) then model.load_state_dict(...))",
            )


def compiled_original(module: nn.Module) -> nn.Module | None:
    """The module a ``torch.compile``'d module (``OptimizedModule``) wraps; None otherwise."""
    if type(module).__name__ != "OptimizedModule":  # before the attribute: a miss is slow
        return None
    original = getattr(module, "_orig_mod", None)
    return original if isinstance(original, nn.Module) else None


def check_eager(model: nn.Module, needs: str) -> None:
    """Hooks and the rule engine need eager modules: the model and every submodule.

    A TorchScript or ``torch.compile``'d module, at the top or inside, runs its calls
    outside Python where hooks and the rule engine see none of them, so its layers would
    be lost silently. ``needs`` says what needs the eager module (e.g. ``"layer hooks"``),
    for the message.
    """
    if not any(isinstance(m, torch.jit.ScriptModule) or compiled_original(m) is not None
               for m in model.modules()):
        return  # the common case, without building the names
    for name, module in model.named_modules():
        where = f"the model's submodule {name!r}" if name else "the model"
        if isinstance(module, torch.jit.ScriptModule):
            raise UnsupportedModelError(
                "model",
                f"{where} is a TorchScript module, and {needs} cannot work on it (its calls "
                "run outside Python); pass the model built from the eager nn.Modules that "
                "were scripted or traced",
            )
        if compiled_original(module) is not None:
            fix = "model._orig_mod" if not name else f"the module before torch.compile at {name!r}"
            raise UnsupportedModelError(
                "model",
                f"{where} is a torch.compile'd module, and {needs} cannot work on it; pass "
                f"the eager module ({fix}, or compile only after explaining)",
            )


def check_inputs(inputs: Any, argument: str = "inputs", *, token_ids: bool = False) -> None:
    """Inputs must be a real floating tensor with the batch first and only finite values;
    with ``token_ids``, an integer tensor of ids ≥ 0 is accepted too."""
    if not isinstance(inputs, Tensor):
        raise ArgumentTypeError(
            argument,
            f"{argument} must be a torch.Tensor with the batch dimension first, got "
            f"{type(inputs).__name__}; convert with torch.as_tensor(...)",
        )
    if inputs.is_meta:
        raise ArgumentError(
            argument,
            f"{argument} are on the meta device and hold no values; pass real data "
            "(e.g. torch.randn(...) or a batch from your dataset)",
        )
    if inputs.layout is not torch.strided:
        raise ArgumentError(
            argument,
            f"{argument} have layout {inputs.layout}; pass a dense tensor ({argument}.to_dense())",
        )
    if inputs.ndim < 2:
        raise ArgumentError(
            argument,
            f"{argument} have shape {tuple(inputs.shape)}; the batch dimension must come first "
            "(a single sample x becomes x.unsqueeze(0))",
        )
    if inputs.shape[0] == 0:
        raise ArgumentError(
            argument, f"{argument} hold an empty batch (0 samples); pass at least one sample"
        )
    if inputs.is_complex():
        raise ArgumentTypeError(
            argument,
            f"{argument} have the complex dtype {inputs.dtype}; attributions need real "
            f"floating-point inputs (e.g. explain {argument}.real and {argument}.imag as "
            "two channels)",
        )
    if token_ids and is_token_ids(inputs):
        if bool((inputs < 0).any()):
            raise ArgumentError(
                argument,
                f"{argument} are integers, read as token ids, and hold {int(inputs.min())}; "
                "token ids are ≥ 0 (mask padding with attention_mask, not negative ids)",
            )
        return
    if not inputs.is_floating_point():
        hint = ("token ids are explained by pellucid.explain (at the embedding layer)"
                if not token_ids else "token ids are int64, int32 or int16 tensors")
        raise ArgumentTypeError(
            argument,
            f"{argument} have dtype {inputs.dtype}; attributions need floating-point inputs. "
            f"Convert with {argument}.float(); {hint}",
        )
    check_finite(inputs, argument)


def check_output(out: Any, rows: int) -> None:
    """The selected model output must be a real floating tensor with one row per input row
    and only finite values (a NaN output is the model's fault: :class:`ModelError`)."""
    if not isinstance(out, Tensor):
        raise ArgumentTypeError(
            "output",
            f"the selected model output is a {type(out).__name__}, not a tensor; pass output= "
            "(an index, a key or a callable) to pick the tensor to explain",
        )
    if out.ndim == 0 or out.shape[0] != rows:
        raise ArgumentError(
            "output",
            f"the model output has shape {tuple(out.shape)} for a batch of {rows} samples; "
            "the output must have the batch dimension first (pass output= to select it)",
        )
    if not out.is_floating_point():
        raise ModelError(
            "model",
            f"the model output has dtype {out.dtype}; attributions need a floating-point "
            "output (scores or logits), so return them from the model, not e.g. argmax "
            "labels (or pick a floating tensor with output=)",
        )
    check_finite(
        out, "the outputs of the model", argument="model", error=ModelError,
        fix="the model produced them: check its weights and forward pass for overflow, "
        "log(0) or 0/0 (e.g. run it in float64), or explain a finite output",
    )


def check_per_sample(value: Any, rows: int, what: str, argument: str | None = None) -> Tensor:
    """A user callable's result must be a tensor of one value per sample, shape (rows,).

    ``argument`` (default ``what``) names the argument that holds the callable.
    """
    name = what if argument is None else argument
    if not isinstance(value, Tensor) or value.shape != (rows,):
        got = f"shape {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
        said = "" if name in what else f" ({name})"
        raise ArgumentError(
            name,
            f"{what}{said} must return one score per sample, a tensor of shape ({rows},); "
            f"it returned {got}",
        )
    return value


def check_count(
    value: Any, name: str, meaning: str = "", *, minimum: int = 1, none: bool = False
) -> int | None:
    """A count setting must be an int ≥ ``minimum`` (default 1), not a bool or float; ``None``
    passes where ``none``. The error names the setting and its ``meaning``.

    Returns the value as an ``int`` (NumPy and torch integer scalars are accepted).
    """
    if none and value is None:
        return None
    said = f" ({meaning})" if meaning else ""
    kind = "a positive int" if minimum == 1 else f"an int ≥ {minimum}"
    kind += " or None" if none else ""
    number = _as_int(value)
    if number is None:
        raise ArgumentTypeError(name, f"{name} must be {kind}{said}, got {value!r}")
    if number < minimum:
        raise ArgumentError(name, f"{name} must be {kind}{said}, got {value!r}")
    return number


def check_finite_number(
    value: Any,
    name: str,
    minimum: float | None = None,
    *,
    maximum: float | None = None,
    inclusive: bool = True,
    meaning: str = "",
) -> float:
    """A real setting must be a finite number (not a bool or str), within the bounds.

    ``minimum``/``maximum`` are inclusive unless ``inclusive=False`` (then a value equal
    to a bound is rejected too). Returns the value as a ``float``.
    """
    said = f" ({meaning})" if meaning else ""
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_complex():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(name, f"{name} must be a real number{said}, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ArgumentError(name, f"{name} must be a finite number{said}, got {value!r}")
    low = minimum is not None and (number < minimum or (not inclusive and number == minimum))
    high = maximum is not None and (number > maximum or (not inclusive and number == maximum))
    if low or high:
        sign = ("≥", "≤") if inclusive else (">", "<")
        bounds = " and ".join(
            f"{s} {b}" for s, b in zip(sign, (minimum, maximum), strict=True) if b is not None
        )
        raise ArgumentError(name, f"{name} must be {bounds}{said}, got {value!r}")
    return number


def check_choice(value: Any, name: str, choices: Sequence[str], meaning: str = "") -> str:
    """``value`` must be one of the names ``choices``; a typo gets the closest names
    (:class:`UnknownNameError`), another type an :class:`ArgumentTypeError`. ``meaning``
    (what the choices do) is added to the message. Returns the value."""
    listed = ", ".join(map(repr, choices))
    said = f": {meaning}" if meaning else ""
    if not isinstance(value, str):
        raise ArgumentTypeError(name, f"{name} must be one of {listed}{said}; got {value!r}")
    if value not in choices:
        hint = suggest(value, list(choices))
        raise UnknownNameError(name, f"unknown {name} {value!r}.{hint} Use one of {listed}{said}")
    return value


def check_bool(value: Any, name: str, *, none: bool = False) -> None:
    """A switch must be ``True`` or ``False`` (or ``None`` where ``none``): a truthy string
    or number is a mistake."""
    if not isinstance(value, bool) and not (none and value is None):
        allowed = "True, False or None" if none else "True or False"
        raise ArgumentTypeError(name, f"{name} must be {allowed}, got {value!r}")


#: seeds are ints in [0, SEED_LIMIT): the range that torch, NumPy and scikit-learn all accept
SEED_LIMIT = 2**32


def check_seed(value: Any, name: str = "seed", *, none: bool = True) -> int | None:
    """A seed is an int in [0, 2³²) (what torch, NumPy and scikit-learn all accept), or
    ``None`` (fresh randomness) where ``none``. Returns it as an ``int``."""
    if none and value is None:
        return None
    allowed = "an int in 0..2**32-1" + (" or None" if none else "")
    number = _as_int(value)
    if number is None:
        raise ArgumentTypeError(name, f"{name} must be {allowed}, got {value!r}")
    if not 0 <= number < SEED_LIMIT:
        raise ArgumentError(name, f"{name} must be {allowed}, got {value!r}")
    return number


def as_tensor(value: Any, name: str, what: str) -> Tensor:
    """A tensor-valued setting as a tensor (``torch.as_tensor``), or an
    :class:`ArgumentTypeError` naming ``name``; ``what`` says what it must hold."""
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ArgumentTypeError(
            name, f"{name} must be {what}, got a {type(value).__name__} ({error})"
        ) from None


def as_directions(value: Any, name: str, shapes: str) -> Tensor:
    """Directions in a layer's space (a CAV, a dictionary vector): a non-empty, finite,
    floating tensor of one or two dimensions; ``shapes`` names them (e.g. ``"K×D or D"``)."""
    v = as_tensor(value, name, f"a tensor of directions ({shapes})")
    if not v.is_floating_point() or v.ndim not in (1, 2) or v.numel() == 0:
        raise ArgumentError(
            name,
            f"{name} must be a non-empty floating tensor {shapes}, got dtype {v.dtype} and "
            f"shape {tuple(v.shape)}",
        )
    check_finite(v, name, fix="give finite directions")
    return v


def check_finite(
    t: Tensor,
    what: str,
    *,
    argument: str | None = None,
    error: type[PellucidError] = ArgumentError,
    fix: str = "clean them (e.g. torch.nan_to_num) before explaining",
) -> None:
    """Raise ``error`` (default :class:`ArgumentError`) when ``t`` holds NaN or Inf.

    ``what`` describes the tensor in the message; ``argument`` (default ``what``) is the
    argument to change, ``fix`` says how. Model outputs pass ``argument="model",
    error=ModelError``. Inside :func:`deferred_checks` the check only counts, on the
    tensor's device (summed with the earlier counts of the same check), and the block
    raises at its end.
    """
    if not (t.is_floating_point() or t.is_complex()):
        return
    report = functools.partial(_report_not_finite, what, argument, error, fix)
    if defer((what, argument, error, fix), lambda: torch.stack((t.isnan().sum(),
                                                                t.isinf().sum())), report):
        return
    if not bool(t.isfinite().all()):
        report([int(t.isnan().sum()), int(t.isinf().sum())])


def _report_not_finite(what: str, argument: str | None, error: type[PellucidError], fix: str,
                       counts: list[int]) -> None:
    n_nan, n_inf = counts
    if n_nan or n_inf:
        name = what if argument is None else argument
        said = "" if name in what else f" ({name})"
        raise error(name, f"{what}{said} contain {n_nan} NaN and {n_inf} Inf values; {fix}")


#: the checks deferred in this context: key -> (int64 values on the device, report)
_PENDING: ContextVar[dict[Hashable, tuple[Tensor, Callable[[list[int]], None]]] | None] = \
    ContextVar("pending_checks", default=None)


def defer(key: Hashable, values: Callable[[], Tensor],
          report: Callable[[list[int]], None]) -> bool:
    """Inside :func:`deferred_checks`, keep ``values()`` (an int64 vector computed on the
    device, added to what is kept under the same ``key``) for ``report``, which gets them
    as ints at the end of the block and raises if they show a problem; True. Outside a
    block: False, and the caller checks now."""
    pending = _PENDING.get()
    if pending is None:
        return False
    found = values()
    if key in pending:
        found = pending[key][0] + found
    pending[key] = (found, report)
    return True


@contextmanager
def deferred_checks() -> Iterator[None]:
    """Make the block's checks on device values (:func:`check_finite`, a target's range)
    on the device, and raise once, at its end: one host synchronisation for all the chunks
    of a call, not one per chunk.

    The error is that of the first check (in the order the checks were first made) that
    failed; a check made again (every chunk's output) reports its counts summed over the
    block. Nested blocks report to the outermost. A block left by an exception raises the
    first failed check instead, if any: the NaN that made a later step fail is the cause.

    >>> import torch
    >>> with deferred_checks():
    ...     for chunk in torch.ones(4, 2).split(1):
    ...         check_finite(chunk, "chunk")  # counted on the device, no sync
    >>> try:
    ...     with deferred_checks():
    ...         check_finite(torch.tensor([1.0, float("nan")]), "x")
    ... except ArgumentError as error:
    ...     print(error.argument)
    x
    """
    if _PENDING.get() is not None:
        yield
        return
    pending: dict[Hashable, tuple[Tensor, Callable[[list[int]], None]]] = {}
    token = _PENDING.set(pending)
    try:
        yield
    except Exception:
        _PENDING.reset(token)
        _report_all(pending)  # a NaN that made a later step fail is the cause to report
        raise
    _PENDING.reset(token)
    _report_all(pending)


def check_now_or_deferred(key: Hashable, failed: Tensor,
                          error: Callable[[], Exception]) -> None:
    """Raise ``error()`` if the 0-d boolean tensor ``failed`` is True: at the end of the
    enclosing :func:`deferred_checks` block (no synchronisation here), or now outside one.

    >>> check_now_or_deferred("positive", torch.tensor(False), lambda: ValueError("never"))
    """
    def report(values: list[int]) -> None:
        if values[0]:
            raise error()

    if not defer(key, lambda: failed.long().view(1), report):
        report([int(failed)])


def _report_all(pending: dict[Hashable, tuple[Tensor, Callable[[list[int]], None]]]) -> None:
    if not pending:
        return
    values = [v for v, _ in pending.values()]
    device = values[0].device
    flat = torch.cat([v.to(device) for v in values]).tolist()  # the one sync
    start = 0
    for value, report in pending.values():
        report(flat[start:start + len(value)])
        start += len(value)


def _as_int(value: Any) -> int | None:
    """``value`` as an int if it is an integer (not a bool), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Tensor):
        if value.numel() != 1 or value.is_floating_point() or value.is_complex():
            return None
        return int(value.item())
    try:
        return operator.index(value)
    except TypeError:
        return None


