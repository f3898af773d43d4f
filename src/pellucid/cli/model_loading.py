"""The model that ``--model`` (and ``--weights``) name: a factory, a demo model or a checkpoint.

Checkpoints are read with ``torch.load(weights_only=True)``, which never runs code from the
file; a ``MODULE:FACTORY`` is imported, so its code runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from .command import UsageError


def load_model(spec: str, weights: Path | None = None):
    """A model in eval mode from MODULE:FACTORY, a demo model name, or a checkpoint."""
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
    module = _import(module_name)
    factory = getattr(module, factory_name, None)
    if factory is None:
        from pellucid.registry import suggest

        public = [n for n in dir(module) if not n.startswith("_")]
        raise UsageError(f"{module_name} has no {factory_name!r}.{suggest(factory_name, public)}")
    model = factory()
    if not isinstance(model, nn.Module):
        raise UsageError(f"{spec}() returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _import(module_name: str):
    """Import a dotted module name (from the current folder too) or a .py file."""
    if module_name.endswith(".py"):
        file = Path(module_name)
        if not file.is_file():
            raise UsageError(f"no Python file at {file}")
        spec = importlib.util.spec_from_file_location(file.stem, file)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        return module
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        raise UsageError(f"cannot import {module_name!r}: {error}") from None


def _torch_load(path: Path):
    import pickle

    import torch

    if not path.is_file():
        raise UsageError(f"no checkpoint file at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(
            f"cannot load {path} weights-only ({first}). pellucid reads checkpoints with "
            "torch.load(weights_only=True), which refuses pickled code: save "
            "model.state_dict() and pass --model MODULE:FACTORY --weights FILE"
        ) from None


def _model_from_checkpoint(path: Path):
    _torch_load(path)
    raise UsageError(
        f"{path} holds weights but no architecture; pass --model MODULE:FACTORY "
        f"--weights {path} (or a demo model name with --weights)"
    )


def _load_weights(model, path: Path) -> None:
    state = _torch_load(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UsageError(f"{path} holds a {type(state).__name__}, not a state dict")
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise UsageError(f"{path} does not fit the model: {error}") from None


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


__all__ = ["load_model"]
