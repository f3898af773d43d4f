"""``pellucid evaluate``: the benchmark harness from the command line.

    pellucid evaluate --model shapes_vgg --data shapes --methods gradient integrated_gradients \
        --metrics faithfulness.pixel_flipping localisation.relevance_mass -n 64 --out results/ \
        --setting integrated_gradients:steps=16 --setting faithfulness.pixel_flipping:steps=50
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .command import Command, UsageError, positive_int
from .data_loading import load_data
from .files import output_folder
from .model_loading import load_model
from .settings import (
    RANDOM,
    build_method,
    build_metric,
    check_names,
    parse_settings,
    route_settings,
    setting_names,
)

HELP = "score methods × metrics on a data set; write a table, CSV/JSON and curve plots"
DESCRIPTION = """\
Run every --methods × --metrics pair on the first -n samples of --data and print the table;
with --out, write benchmark.csv, benchmark.json and one curve plot per metric there.

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


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``pellucid evaluate`` to ``parser``."""
    parser.add_argument("--model", required=True, help="MODULE:FACTORY, demo name or checkpoint")
    parser.add_argument("--weights", type=Path, default=None, help="a state dict to load")
    parser.add_argument("--data", default="shapes", help="shapes, digits, FILE.pt or FILE.npz")
    parser.add_argument("--methods", nargs="+", default=[RANDOM, "gradient"],
                        help="method names, or 'random' for the random attribution")
    parser.add_argument("--metrics", nargs="+", default=["faithfulness.pixel_flipping"],
                        help="metric names (see pellucid.list_metrics())")
    parser.add_argument("-n", type=positive_int, default=64,
                        help="samples to evaluate (default 64)")
    parser.add_argument("--size", type=positive_int, default=None,
                        help="image size of generated data (default: the model's input_size)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--setting", action="append", default=[], metavar="[NAME:]KEY=VALUE",
                        help="a method or metric setting, e.g. --setting steps=50 (repeatable)")
    parser.add_argument("--out", type=Path, default=None, help="folder for CSV, JSON and plots")


def main(args: argparse.Namespace) -> int:
    """Print the methods × metrics table (and write files to ``args.out``); the exit status."""
    methods, metrics = _configured(args)
    out = None if args.out is None else output_folder(args.out)
    model = load_model(args.model, args.weights)
    inputs, labels, masks = load_data(
        args.data, args.n, args.size or getattr(model, "input_size", 64), args.seed
    )
    from pellucid.metrics import benchmark

    table = benchmark(model, inputs, methods, metrics, n=args.n, target=labels, masks=masks,
                      out_dir=out, progress=sys.stderr.isatty(), seed=args.seed)
    print(table)
    if out is not None:
        print(f"wrote {out / 'benchmark.csv'}, {out / 'benchmark.json'} and plots")
    return 0


def _configured(args: argparse.Namespace) -> tuple[list, list]:
    """The method objects (or ``"random"``) and metric objects that the arguments name,
    each with its settings: every name and setting is checked before a model runs."""
    import pellucid
    from pellucid.method import METHODS
    from pellucid.metrics.base import METRICS

    check_names(args.methods, [RANDOM, *pellucid.list_methods()], "--methods",
                "'pellucid methods'")
    check_names(args.metrics, pellucid.list_metrics(), "--metrics", "pellucid.list_metrics()")
    method_fields = {m: set() if m == RANDOM else setting_names(METHODS.get(m))
                     for m in args.methods}
    metric_fields = {k: setting_names(METRICS.get(k)) for k in args.metrics}
    method_settings, metric_settings = route_settings(
        parse_settings(args.setting, scoped=True), method_fields, metric_fields
    )
    metrics = [build_metric(k, metric_settings[k]) for k in args.metrics]
    for metric in metrics:
        if getattr(metric, "train_fn", False) is None:
            raise UsageError(
                f"--metrics {metric.name} retrains models and needs a training function; "
                "run it from the Python API (pellucid.evaluate(..., train_fn=...))"
            )
    methods = [m if m == RANDOM else build_method(m, method_settings[m]) for m in args.methods]
    return methods, metrics


COMMAND = Command("evaluate", HELP, configure, main, DESCRIPTION)

__all__ = ["COMMAND", "DESCRIPTION", "HELP", "configure", "main"]
