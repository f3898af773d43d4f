"""``pellucid evaluate``: the benchmark (:func:`pellucid.benchmark`, on the dataset runner)
from the command line.

    pellucid evaluate --model shapes_vgg --data shapes --methods gradient integrated_gradients \
        --metrics faithfulness.pixel_flipping localisation.relevance_mass -n 64 --out results/ \
        --setting integrated_gradients:steps=16 --setting faithfulness.pixel_flipping:steps=50
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .command import Command
from .data_loading import load_data
from .files import output_folder
from .model_loading import load_model
from .settings import add_scoring_arguments, chosen

HELP = "score methods × metrics on a data set; write a table, CSV/JSON and curve plots"
INPUTS_HELP = """\
--model takes what `pellucid explain --model` takes (MODULE:FACTORY, a demo model name, or
MODULE:FACTORY / demo name with --weights). --data takes:
  shapes                the generated shapes data (pellucid.data.shapes), with object masks
  digits                scikit-learn's digits (pellucid.data.digits)
  FILE.pt               torch.save'd tensor (inputs), tuple (inputs, labels[, masks]) or dict
                        with "inputs" and optionally "labels" and "masks", read with
                        torch.load(weights_only=True); the labels are the targets
  FILE.npy, FILE.npz    the same as numpy arrays (an .npz with those keys), no pickles
Settings: --setting KEY=VALUE goes to every chosen method, or else every chosen metric, that
has KEY; --setting NAME:KEY=VALUE to the method or metric NAME only (needed when a method
and a metric both have KEY, e.g. steps). Metrics that need a training function
(faithfulness.roar, randomisation.data) are for the Python API.
"""
DESCRIPTION = """\
Run every --methods × --metrics pair on the first -n samples of --data and print the table;
with --out, write benchmark.csv, benchmark.json and one curve plot per metric there. The
samples go through the dataset runner in batches of --batch-size: each method explains
each batch once, for every metric (`pellucid run` keeps the attributions in a store).

""" + INPUTS_HELP


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``pellucid evaluate`` to ``parser``."""
    add_scoring_arguments(parser, 64, ["faithfulness.pixel_flipping"])
    parser.add_argument("--out", type=Path, default=None, help="folder for CSV, JSON and plots")


def main(args: argparse.Namespace) -> int:
    """Print the methods × metrics table (and write files to ``args.out``); the exit status."""
    methods, metrics = chosen(args)
    out = None if args.out is None else output_folder(args.out)
    model = load_model(args.model, args.weights, args.device)
    inputs, labels, masks = load_data(
        args.data, args.n, args.size or getattr(model, "input_size", 64), args.seed
    )
    from pellucid.runs import benchmark

    table = benchmark(model, inputs, methods, metrics, n=args.n, target=labels, masks=masks,
                      out_dir=out, progress=sys.stderr.isatty(), seed=args.seed,
                      batch_size=args.batch_size)
    print(table)
    if out is not None:
        print(f"wrote {out / 'benchmark.csv'}, {out / 'benchmark.json'} and plots")
    return 0


COMMAND = Command("evaluate", HELP, configure, main, DESCRIPTION)

__all__ = ["COMMAND", "DESCRIPTION", "HELP", "INPUTS_HELP", "configure", "main"]
