"""The ``pellucid`` command line, thin over the API.

Every subcommand is one :class:`Command` in :data:`COMMANDS`: a name, a help line, a function
that adds its arguments and a function that runs it. Adding a subcommand is writing those
two functions and appending one entry. A :class:`UsageError` raised anywhere becomes a
one-line message on stderr and exit status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .metrics import cli as metrics_cli

USAGE_ERROR = 2


class UsageError(Exception):
    """A mistake in the command line or its files; shown without a traceback."""


@dataclass(frozen=True)
class Command:
    """One subcommand: ``configure`` adds its arguments, ``run`` returns the exit status."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str = ""


# --------------------------------------------------------------------------- methods


def _configure_methods(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'lrp.*' (default: all)"
    )


def _run_methods(args: argparse.Namespace) -> int:
    import pellucid

    described = pellucid.describe_methods(args.pattern)
    if not described:
        raise UsageError(f"no method matches {args.pattern!r}; try 'pellucid methods'")
    width = max(map(len, described))
    for name, text in described.items():
        print(f"{name:<{width}}  {text}")
    return 0


# --------------------------------------------------------------------------- explain

EXPLAIN_DESCRIPTION = """\
Explain a model's predictions on image files and write one heatmap PNG per image.

--model takes one of:
  MODULE:FACTORY        a Python module (dotted name, or a path to a .py file) and a function
                        in it that returns the model. THE MODULE IS IMPORTED AND ITS CODE RUNS,
                        so use only code you trust. Add --weights CKPT to load a state dict.
  DEMO_NAME             one of pellucid's demo models (see pellucid.models).
  CHECKPOINT            a file saved with torch.save; it is read with
                        torch.load(weights_only=True), which never runs code from the file.

Images are read with Pillow, scaled to [0, 1] and resized to --size (or to the model's
input_size attribute when it has one). Put any normalisation inside the model.
"""


def _configure_explain(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        help="MODULE:FACTORY (imported: its code runs), a demo model name, "
        "or a checkpoint file (loaded weights-only)",
    )
    parser.add_argument(
        "--weights", type=Path, help="a state dict (torch.save(model.state_dict())) for the model"
    )
    parser.add_argument(
        "--input", required=True, type=Path, help="an image file or a folder of images"
    )
    parser.add_argument(
        "--method", default="gradient", help="registered method name (see 'pellucid methods')"
    )
    parser.add_argument(
        "--target", type=int, help="class to explain (default: the predicted class)"
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a method setting, e.g. --setting steps=16 (repeatable)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("pellucid-out"),
        help="output folder (default: pellucid-out)",
    )
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="resize images to H W before explaining",
    )
    parser.add_argument(
        "--channels",
        type=int,
        choices=(1, 3),
        help="image channels (default: the first convolution's inputs, else 3)",
    )
    parser.add_argument("--cmap", default="bwr", help="colour map (default: bwr)")
    parser.add_argument(
        "--reduce",
        default="sum",
        help="channel reduction: sum, abs_sum, max_abs, l2 (default: sum)",
    )
    parser.add_argument(
        "--overlay",
        type=float,
        metavar="ALPHA",
        help="also write the heatmap over the image with this alpha",
    )
    parser.add_argument(
        "--scale", type=int, default=1, help="enlarge the PNGs by this integer factor (default: 1)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=16, help="images per forward pass (default: 16)"
    )


def _run_explain(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    import pellucid
    from pellucid import viz

    method = _method(args.method, parse_settings(args.setting))
    _check_colormap(args.cmap)
    if args.reduce not in viz.REDUCTIONS:
        raise UsageError(
            f"unknown --reduce {args.reduce!r}; use one of {', '.join(viz.REDUCTIONS)}"
        )
    model = load_model(args.model, args.weights)
    paths = image_paths(args.input)
    size = tuple(args.size) if args.size else getattr(model, "input_size", None)
    channels = args.channels or _input_channels(model)
    args.out.mkdir(parents=True, exist_ok=True)
    chunks = [paths[i : i + args.batch_size] for i in range(0, len(paths), args.batch_size)]
    for chunk in tqdm(
        chunks,
        desc=f"explaining with {args.method}",
        unit="batch",
        disable=len(chunks) == 1 or None,
    ):
        images = _read_batch(chunk, size, channels)
        start = time.perf_counter()
        try:
            explanation = pellucid.explain(model, images, args.target, method)
        except (ValueError, TypeError, KeyError, IndexError) as error:
            raise UsageError(f"{args.method} failed: {error}") from None
        seconds = time.perf_counter() - start
        heat = viz.heatmap(explanation, args.cmap, args.reduce)
        probabilities = torch.softmax(explanation.output.flatten(1).double(), dim=1)
        for k, path in enumerate(chunk):
            target = int(explanation.target[k])
            stem = args.out / f"{path.stem}.{args.method}"
            viz.save_png(viz.upscale(heat[k], args.scale), f"{stem}.png")
            if args.overlay is not None:
                blend = viz.overlay(images[k : k + 1], heat[k : k + 1], args.overlay)[0]
                viz.save_png(viz.upscale(blend, args.scale), f"{stem}.overlay.png")
            p = float(probabilities[k, target]) if target >= 0 else float("nan")
            print(f"{path.name}: class {target} (p={p:.3f}) -> {stem}.png")
        print(f"{len(chunk)} image(s) in {seconds:.2f} s", file=sys.stderr)
    return 0


def _check_colormap(name: str) -> None:
    from pellucid import viz

    try:
        viz.get_colormap(name)
    except KeyError as error:
        raise UsageError(str(error.args[0])) from None


def _method(name: str, settings: dict[str, Any]):
    import pellucid

    try:
        return pellucid.get_method(name, **settings)
    except KeyError as error:
        raise UsageError(str(error.args[0])) from None
    except TypeError as error:
        raise UsageError(str(error)) from None


def parse_settings(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings to a dict; values are Python literals, else strings."""
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"--setting {pair!r} is not KEY=VALUE (e.g. --setting steps=16)")
        try:
            settings[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            settings[key] = value
    return settings


def image_paths(source: Path) -> list[Path]:
    """The image file ``source``, or the image files inside the folder ``source``, sorted."""
    from pellucid.viz import IMAGE_SUFFIXES

    if source.is_file():
        return [source]
    if source.is_dir():
        found = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise UsageError(
                f"the folder {source} holds no image files ({', '.join(IMAGE_SUFFIXES)})"
            )
        return found
    raise UsageError(f"--input {source} does not exist")


def _read_batch(paths: Sequence[Path], size: Any, channels: int):
    import torch

    from pellucid.viz import read_image

    try:
        images = [read_image(p, size, channels) for p in paths]
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(str(error)) from None
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) > 1:
        raise UsageError(
            f"the images have different sizes {sorted(shapes)}; pass --size H W to resize them"
        )
    return torch.stack(images)


def _input_channels(model) -> int:
    """The in_channels of the model's first convolution, else 3."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.modules.conv._ConvNd):
            return module.in_channels
    return 3


# --------------------------------------------------------------------------- models


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


# --------------------------------------------------------------------------- demo


def _configure_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("demo-report"),
        help="output folder for index.html (default: demo-report)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a reduced run: few images and methods (for tests)"
    )
    parser.add_argument(
        "--methods",
        default=None,
        metavar="PATTERN",
        help="only the methods matching this shell-style pattern",
    )


def _run_demo(args: argparse.Namespace) -> int:
    from pellucid.report.demo import run_demo

    page = run_demo(args.out, quick=args.quick, methods=args.methods)
    print(f"wrote {page}")
    return 0


# --------------------------------------------------------------------------- main

COMMANDS: list[Command] = [
    Command(
        "methods",
        "list the registered methods with a one-line description",
        _configure_methods,
        _run_methods,
    ),
    Command(
        "explain",
        "write heatmap PNGs for image files (imports MODULE:FACTORY code)",
        _configure_explain,
        _run_explain,
        EXPLAIN_DESCRIPTION,
    ),
    Command(
        "demo", "train/load the demo models and write an HTML report", _configure_demo, _run_demo
    ),
    Command("evaluate", metrics_cli.HELP, metrics_cli.configure, metrics_cli.run,
            metrics_cli.DESCRIPTION),
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subparser per entry of :data:`COMMANDS`."""
    from pellucid import __version__

    parser = argparse.ArgumentParser(
        prog="pellucid", description="Explain PyTorch models: attribution, LRP, reports."
    )
    parser.add_argument("--version", action="version", version=f"pellucid {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        sub = subparsers.add_parser(
            command.name,
            help=command.help,
            description=command.description or command.help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.configure(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for usage errors)."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except UsageError as error:
        print(f"pellucid {args.command}: error: {error}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
