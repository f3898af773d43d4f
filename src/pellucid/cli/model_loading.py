"""The model that ``--model`` (and ``--weights``) name: a factory, a demo model or a checkpoint,
on the device that ``--device`` names.

Checkpoints are read with ``torch.load(weights_only=True)`` (:func:`~.files.load_file`),
which never runs code from the file; a ``MODULE:FACTORY`` is imported, so its code runs, and
an exception it raises becomes a one-line :class:`UsageError` ("model failed: ...").
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path

from .command import UsageError
from .files import load_file

DEVICE_HELP = ("where the model runs: cpu (default), auto (cuda when available, else cpu), "
               "cuda, cuda:N, mps or another torch device available here")


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device`` for the commands that run a model."""
    parser.add_argument("--device", default="cpu", help=DEVICE_HELP)


def model_device(name: str):
    """The torch device that ``--device name`` asks for, checked to be usable here.

    ``auto`` is cuda when CUDA is available, else the CPU. A name torch does not know, the
    meta device (no values), and a device this machine lacks (``cuda`` without CUDA, a
    GPU index beyond the last) are :class:`UsageError` naming ``--device``.
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(
            f"--device {name!r} is not a torch device; use cpu, auto, cuda, cuda:N or mps"
        ) from None
    if device.type == "meta":
        raise UsageError("--device meta holds no values; use cpu, auto, cuda, cuda:N or mps")
    try:
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError) as error:  # torch without CUDA asserts
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(
            f"--device {name!r} is not available on this machine ({first}); use --device cpu, "
            "or --device auto to take cuda only when it is there"
        ) from None
    return device


def load_model(spec: str, weights: Path | None = None, device: str = "cpu"):
    """A model in eval mode from MODULE:FACTORY, a demo model name, or a checkpoint, moved
    to ``device`` (a ``--device`` value, see :func:`model_device`) after loading."""
    target = model_device(device)  # a bad --device fails before the model's code runs
    return _loaded(spec, weights).to(target)


def _loaded(spec: str, weights: Path | None):
    path = Path(spec)
    if path.is_file():
        if weights is not None:
            raise UsageError("--weights goes with --model MODULE:FACTORY or a demo model name")
        model = _model_from_checkpoint(path)
    elif ":" in spec:
        model = _model_from_factory(spec)
        if weights is not None:
            _load_weights(model, weights)
    else:
        model = _demo_model(spec)
        if weights is not None:
            _load_weights(model, weights)
    return model.eval()


def _model_from_factory(spec: str):
    from torch import nn

    module_name, _, factory_name = spec.rpartition(":")
    if not module_name or not factory_name.isidentifier():
        raise UsageError(
            f"--model {spec!r} is not MODULE:FACTORY (e.g. --model my_models.py:build)"
        )
    module = _import(module_name)
    factory = getattr(module, factory_name, None)
    if factory is None:
        from pellucid.registry import suggest

        public = [n for n in dir(module) if not n.startswith("_")]
        raise UsageError(
            f"--model {spec}: {module_name} has no {factory_name!r}.{suggest(factory_name, public)}"
        )
    if not callable(factory):
        raise UsageError(
            f"--model {spec}: {factory_name} is a {type(factory).__name__}, "
            "not a function that returns the model"
        )
    try:
        model = factory()
    except Exception as error:  # the user's code: shown as one line, --traceback for more
        raise UsageError(f"--model {spec}: {model_failed(error)} (while building it)") from error
    if not isinstance(model, nn.Module):
        raise UsageError(
            f"--model {spec}: {factory_name}() returned {type(model).__name__}, "
            "not a torch.nn.Module"
        )
    return model


def _import(module_name: str):
    """Import a dotted module name (from the current folder too) or a .py file."""
    if module_name.endswith(".py"):
        file = Path(module_name)
        if not file.is_file():
            raise UsageError(f"--model: no Python file at {file}")
        spec = importlib.util.spec_from_file_location(file.stem, file)
        if spec is None or spec.loader is None:
            raise UsageError(f"--model: cannot import {file} (not a Python file)")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as error:  # the user's code: shown as one line
            raise UsageError(f"--model: importing {file}: {model_failed(error)}") from error
        return module
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        raise UsageError(f"--model: cannot import {module_name!r}: {error}") from error
    except Exception as error:  # the module's own code raised
        raise UsageError(f"--model: importing {module_name}: {model_failed(error)}") from error


def model_failed(error: BaseException) -> str:
    """``"model failed: <ExceptionType>: <message>"`` for an exception of the user's code."""
    return f"model failed: {type(error).__name__}" + (f": {error}" if str(error) else "")


def _model_from_checkpoint(path: Path):
    load_file(path, "--model")
    raise UsageError(
        f"--model {path} holds weights but no architecture; pass --model MODULE:FACTORY "
        f"--weights {path} (or a demo model name with --weights)"
    )


def _load_weights(model, path: Path) -> None:
    state = load_file(path, "--weights")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UsageError(f"--weights {path} holds a {type(state).__name__}, not a state dict "
                         "(save model.state_dict())")
    try:
        model.load_state_dict(state)
    except Exception as error:  # missing/unexpected keys, shapes, a non-tensor value
        raise UsageError(f"--weights {path} does not fit the model: {error}") from error


def _demo_model(name: str):
    try:
        from pellucid import models
    except ImportError as error:
        raise UsageError(
            f"{name!r} is no file and no MODULE:FACTORY, and the demo models "
            f"are unavailable ({error})"
        ) from None
    names = list(models.DEMO_MODELS)
    if name not in names:
        from pellucid.registry import suggest

        raise UsageError(
            f"--model {name!r} is no file, no MODULE:FACTORY and no demo model."
            f"{suggest(name, names)} Demo models: {', '.join(names)}"
        )
    return models.load_pretrained(name)


__all__ = ["DEVICE_HELP", "add_device_argument", "load_model", "model_device", "model_failed"]
