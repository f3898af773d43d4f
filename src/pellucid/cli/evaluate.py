"""``pellucid evaluate``: the benchmark harness from the command line.

    pellucid evaluate --model shapes_vgg --data shapes --methods gradient integrated_gradients \
        --metrics faithfulness.pixel_flipping localisation.relevance_mass -n 64 --out results/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .command import Command, UsageError
from .data_loading import load_data
from .model_loading import load_model
from .settings import parse_settings

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
                        help="method names, or 'random' for the random attribution")
    parser.add_argument("--metrics", nargs="+", default=["faithfulness.pixel_flipping"],
                        help="metric names (see pellucid.list_metrics())")
    parser.add_argument("-n", type=int, default=64, help="samples to evaluate (default 64)")
    parser.add_argument("--size", type=int, default=None,
                        help="image size of generated data (default: the model's input_size)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE",
                        help="a metric setting, e.g. --setting steps=50 (repeatable)")
    parser.add_argument("--out", type=Path, default=None, help="folder for CSV, JSON and plots")


def main(args: argparse.Namespace) -> int:
    """Print the methods × metrics table (and write files to ``args.out``); the exit status."""
    from pellucid.metrics.harness import benchmark

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


COMMAND = Command("evaluate", HELP, configure, main, DESCRIPTION)

__all__ = ["COMMAND", "DESCRIPTION", "HELP", "configure", "main"]
