"""``pellucid run``: explain and evaluate a whole data set into a store (:func:`pellucid.runs.run`).

    pellucid run --model shapes_vgg --data shapes -n 2048 --methods gradient \
        integrated_gradients lrp.epsilon_plus --metrics faithfulness.deletion \
        localisation.relevance_mass --setting integrated_gradients:steps=16 --store runs/vgg
"""

from __future__ import annotations

import argparse
import sys

from .command import Command, UsageError
from .data_loading import SHAPES, load_data
from .evaluate import INPUTS_HELP
from .model_loading import load_model
from .settings import RANDOM, add_scoring_arguments, chosen

#: the run's arguments whose errors are told as the flags that set them
FLAGS = ("store", "engine", "dtype", "data")
HELP = "explain and evaluate a whole data set into a resumable store, batch by batch"
DESCRIPTION = f"""\
Explain every sample of --data with each of --methods, score each explanation with every
--metrics, and keep attributions, scores, targets and outputs in --store (a zarr folder,
extra 'runs'; without --store, in memory: only the table is printed). Each method explains
each batch once; a progress bar per method shows the ETA and the running mean of the first
metric. Rerunning on a store of the same settings resumes it (--no-resume overwrites it).
The data's labels are the targets (else the predicted class); -n defaults to every sample
of a file or digits and {SHAPES} generated shapes. --engine ray runs the batches on a Ray
cluster (extra 'ray'). With --on-error skip (default), samples that fail are recorded and
listed; raise stops at the first error.

""" + INPUTS_HELP


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``pellucid run`` to ``parser``."""
    add_scoring_arguments(parser, None, [])
    parser.add_argument("--store", default=None, metavar="FOLDER",
                        help="the zarr store's folder (default: memory)")
    parser.add_argument("--engine", choices=["local", "ray"], default="local",
                        help="where the batches are explained (default local)")
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                        help="continue a store of the same settings (default) or overwrite it")
    parser.add_argument("--dtype", choices=["float16", "float32"], default="float16",
                        help="the stored attributions' dtype (default float16)")
    parser.add_argument("--on-error", choices=["skip", "raise"], default="skip",
                        help="skip and record failing samples (default), or stop")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="a progress bar per method on stderr (default on)")


def main(args: argparse.Namespace) -> int:
    """Run, print the summary table and the failures; the exit status."""
    from pellucid.errors import PellucidError
    from pellucid.metrics import RandomAttribution
    from pellucid.runs import run

    methods, metrics = chosen(args)
    methods = [RandomAttribution(seed=args.seed) if m == RANDOM else m for m in methods]
    model = load_model(args.model, args.weights, args.device)
    inputs, labels, masks = load_data(
        args.data, args.n, args.size or getattr(model, "input_size", 64), args.seed
    )
    try:
        result = run(model, {"inputs": inputs, "labels": labels, "masks": masks}, methods,
                     metrics=metrics, store=args.store,
                     target=None if labels is None else "labels", resume=args.resume,
                     progress=args.progress, on_error=args.on_error, dtype=args.dtype,
                     engine=args.engine, batch_size=args.batch_size)
    except PellucidError as error:
        if error.argument not in FLAGS:
            raise
        raise UsageError(_as_flags(f"--{error.argument.replace('_', '-')}: {error}")) from error
    if metrics:
        print(result.summary())
    failures = result.failures
    if failures:
        print(f"{len(failures)} (sample, method) pairs failed, e.g. sample "
              f"{failures[0].index} with {failures[0].method}: {failures[0].error}: "
              f"{failures[0].message}", file=sys.stderr)
    where = "memory" if args.store is None else args.store
    print(f"{len(result)} samples × {len(result.methods)} methods in {where}")
    return 0


def _as_flags(message: str) -> str:
    """A library message about the store or the data, with the fixes written as flags."""
    for python, flag in (("resume=False", "--no-resume"), ("batch_size=", "--batch-size "),
                         ("dtype='float32'", "--dtype float32")):
        message = message.replace(python, flag)
    return message


COMMAND = Command("run", HELP, configure, main, DESCRIPTION)

__all__ = ["COMMAND", "DESCRIPTION", "HELP", "configure", "main"]
