"""``pellucid report STORE``: an HTML report of a run's store (:mod:`pellucid.report.store_report`).

    pellucid run --model shapes_vgg --data shapes -n 256 --methods gradient lrp.epsilon_plus \
        --metrics faithfulness.deletion --store runs/vgg
    pellucid report runs/vgg --out runs/vgg-report
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .command import Command, positive_int
from .files import output_folder

HELP = "write an HTML report of a run's store (written by 'pellucid run --store')"
DESCRIPTION = """\
Write a self-contained index.html for the store of a dataset run: its settings, fingerprint
and pellucid version; the summary table (mean ± std per method and metric, NaN counts);
per-class means; the failures; heatmaps of the first --samples samples per method; and a
SpRAy clustering of each class with at least 20 samples (needs the 'analysis' extra).
"""


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``pellucid report`` to ``parser``."""
    parser.add_argument("store", metavar="STORE", help="the run's store folder")
    parser.add_argument("--out", default="run-report", metavar="FOLDER",
                        help="the report's folder (default run-report)")
    parser.add_argument("--samples", type=positive_int, default=8, metavar="K",
                        help="heatmaps shown per method (default 8)")


def main(args: argparse.Namespace) -> int:
    """Write the report; the exit status."""
    from pellucid.report import write_store_report

    page = write_store_report(args.store, output_folder(Path(args.out)), samples=args.samples)
    print(f"wrote {page}")
    return 0


COMMAND = Command("report", HELP, configure, main, DESCRIPTION)

__all__ = ["COMMAND", "DESCRIPTION", "HELP", "configure", "main"]
