"""``pellucid explain``: heatmap PNGs for image files, from a model named on the command line."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .command import Command, UsageError, positive_int, unit_float
from .data_loading import image_paths, read_images
from .files import output_folder
from .model_loading import add_device_argument, load_model
from .settings import build_method, parse_settings

DESCRIPTION = """\
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


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``pellucid explain`` to ``parser``."""
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
        type=positive_int,
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
        type=unit_float,
        metavar="ALPHA",
        help="also write the heatmap over the image with this alpha",
    )
    parser.add_argument(
        "--scale",
        type=positive_int,
        default=1,
        help="enlarge the PNGs by this integer factor (default: 1)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=16, help="images per forward pass (default: 16)"
    )
    add_device_argument(parser)


def main(args: argparse.Namespace) -> int:
    """Write a heatmap PNG per image of ``args.input``, print each prediction; the exit status."""
    import torch
    from tqdm.auto import tqdm

    import pellucid
    from pellucid import viz

    method = build_method(args.method, parse_settings(args.setting))
    _check_colormap(args.cmap)
    if args.reduce not in viz.REDUCTIONS:
        raise UsageError(
            f"unknown --reduce {args.reduce!r}; use one of {', '.join(viz.REDUCTIONS)}"
        )
    paths = image_paths(args.input)
    output_folder(args.out)
    model = load_model(args.model, args.weights, args.device)
    size = tuple(args.size) if args.size else getattr(model, "input_size", None)
    channels = args.channels or _input_channels(model)
    chunks = [paths[i : i + args.batch_size] for i in range(0, len(paths), args.batch_size)]
    for chunk in tqdm(
        chunks,
        desc=f"explaining with {args.method}",
        unit="batch",
        disable=len(chunks) == 1 or None,
    ):
        images = read_images(chunk, size, channels)
        start = time.perf_counter()
        explanation = pellucid.explain(model, images, args.target, method)
        seconds = time.perf_counter() - start
        heat = viz.heatmap(explanation, args.cmap, args.reduce)
        # the explanation lives on the model's device: one copy to the CPU per batch
        probabilities = torch.softmax(explanation.output.flatten(1).double(), dim=1).cpu()
        targets = explanation.target.tolist()
        for k, path in enumerate(chunk):
            target = targets[k]
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
        raise UsageError(f"--cmap: {error.args[0]}") from None


def _input_channels(model) -> int:
    """The in_channels of the model's first convolution, else 3."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.modules.conv._ConvNd):
            return module.in_channels
    return 3


COMMAND = Command(
    "explain",
    "write heatmap PNGs for image files (imports MODULE:FACTORY code)",
    configure,
    main,
    DESCRIPTION,
)

__all__ = ["COMMAND", "DESCRIPTION", "configure", "main"]
