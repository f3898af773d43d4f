"""``pellucid evaluate``: the benchmark harness from the command line.

    pellucid evaluate --model shapes_cnn --data shapes --methods gradient integrated_gradients \
        --metrics faithfulness.pixel_flipping localisation.relevance_mass -n 64 --out results/

It is registered in :data:`pellucid.cli.COMMANDS` as ``Command("evaluate", HELP, configure,
run, DESCRIPTION)``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "score methods × metrics on a data set; write a table, CSV/JSON and curve plots"
DESCRIPTION = """\
Run every --methods × --metrics pair on the first -n samples of --data and print the table;
with --out, write benchmark.csv, benchmark.json and one curve plot per metric there.

--model takes what `pellucid explain --model` takes (MODULE:FACTORY, a demo model name, or
MODULE:FACTORY / demo name with --weights). --data takes:
  shapes                the generated shapes data (pellucid.data.shapes), with object masks
  digits                scikit-learn's digits (pellucid.data.digits)
  FILE.pt               torch.save'd tensor (inputs) or dict with "inputs" and optionally
                        "labels" and "masks", read with torch.load(weights_only=True)
Metric settings: --setting KEY=VALUE (given to every metric that has KEY). Methods that need a
training function (faithfulness.roar, randomisation.data) are for the Python API.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``pellucid evaluate`` to ``parser``."""
    parser.add_argument("--model", required=True, help="MODULE:FACTORY, demo name or checkpoint")
    parser.add_argument("--weights", type=Path, default=None, help="a state dict to load")
    parser.add_argument("--data", default="shapes", help="shapes, digits or FILE.pt")
    parser.add_argument("--methods", nargs="+", default=["random", "gradient"],
                        help="method names, or 'random' for the random baseline")
    parser.add_argument("--metrics", nargs="+", default=["faithfulness.pixel_flipping"],
                        help="metric names (see pellucid.list_metrics())")
    parser.add_argument("-n", type=int, default=64, help="samples to evaluate (default 64)")
    parser.add_argument("--size", type=int, default=None,
                        help="image size of generated data (default: the model's input_size)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE",
                        help="a metric setting, e.g. --setting steps=50 (repeatable)")
    parser.add_argument("--out", type=Path, default=None, help="folder for CSV, JSON and plots")


def run(args: argparse.Namespace) -> int:
    """Run ``pellucid evaluate``; returns the exit status."""
    from ..cli import UsageError, load_model, parse_settings
    from .harness import benchmark

    model = load_model(args.model, args.weights)
    data = load_data(args.data, args.n, args.size or getattr(model, "input_size", 64), args.seed)
    try:
        table = benchmark(model, data, args.methods, args.metrics, n=args.n, out_dir=args.out,
                          seed=args.seed, **parse_settings(args.setting))
    except (KeyError, TypeError, ValueError) as error:
        raise UsageError(str(error.args[0]) if error.args else str(error)) from None
    print(table)
    if args.out is not None:
        print(f"wrote {args.out / 'benchmark.csv'}, {args.out / 'benchmark.json'} and plots")
    return 0


def load_data(spec: str, n: int, size: int, seed: int) -> tuple:
    """(inputs, labels[, masks]) for the ``--data`` argument."""
    from ..cli import UsageError

    if spec == "shapes":
        from ..data import shapes

        data = shapes(n, size=size, seed=seed)
        return data.images, data.labels, data.masks
    if spec == "digits":
        from ..data import digits

        data = digits()
        return data.images[:n], data.labels[:n]
    path = Path(spec)
    if not path.is_file():
        raise UsageError(f"--data {spec!r} is neither 'shapes', 'digits' nor a file")
    import torch

    loaded = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(loaded, torch.Tensor):
        return (loaded,)
    if isinstance(loaded, dict) and "inputs" in loaded:
        return tuple(loaded[k] for k in ("inputs", "labels", "masks") if loaded.get(k) is not None)
    raise UsageError(f"{path} holds neither a tensor nor a dict with 'inputs'")
