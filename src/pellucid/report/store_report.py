"""A report from a run's store: one self-contained HTML page of what :func:`pellucid.runs.run`
kept.

:func:`write_store_report` reads a store (or a :class:`~pellucid.runs.Run`) lazily and
writes ``index.html`` with the demo's HTML helpers and style sheet: the run's settings,
fingerprint and pellucid version; the summary (:meth:`Run.summary`: mean ± std per method ×
metric, NaN counts); the per-class means of each metric; the failures; heatmaps of the first
samples of each method (the store keeps no inputs, so attributions alone, channels summed,
red positive and blue negative); and, with scikit-learn, a SpRAy summary (Lapuschkin et al.
2019) of one method for each class with at least :data:`SPRAY_MIN` samples. Scores are read
chunk by chunk, and SpRAy takes at most :data:`SPRAY_MAX` heatmaps per class, so memory stays
bounded whatever the size of the run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..checks import check_count
from ..errors import ArgumentError, ArgumentTypeError
from ..runs import Failure, Run
from ..runs.store import Store
from .cards import REPORT_CMAP, legend
from .html import Section, esc, figure, image, page, table
from .spray import sklearn_missing

#: classes with at least this many samples get a SpRAy summary
SPRAY_MIN = 20
#: SpRAy reads at most this many heatmaps of a class (the first ones)
SPRAY_MAX = 1000
#: the failures table lists at most this many rows
FAILURES_SHOWN = 500
#: samples read at once for the per-class means when the store has no chunk size
READ_CHUNK = 1024


def write_store_report(store: str | Path | Run, out: str | Path, *, samples: int = 8) -> Path:
    """Write ``out/index.html``, a report of the run in ``store`` (a folder written by
    ``pellucid.runs.run(..., store=path)``, or a :class:`~pellucid.runs.Run`), and return
    its path. ``samples``: heatmaps drawn per method (the first samples of the run).

    Example:
        >>> import tempfile, torch
        >>> from pellucid.runs import run
        >>> r = run(torch.nn.Linear(4, 2).eval(), torch.randn(6, 4), ["gradient"],
        ...         metrics=["complexity.sparseness"], progress=False)
        >>> write_store_report(r, tempfile.mkdtemp(), samples=2).name
        'index.html'
    """
    stored = _opened(store)
    samples = int(check_count(samples, "samples", "heatmaps drawn per method"))
    if not isinstance(out, (str, Path)):
        raise ArgumentTypeError("out", f"out must be a folder path (str or Path), got {out!r}")
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ArgumentError("out", f"out {str(folder)!r} is a file; give a folder for index.html")
    folder.mkdir(parents=True, exist_ok=True)
    failures = stored.failures
    sections = [
        settings_section(stored, failures),
        summary_section(stored),
        classes_section(stored),
        failures_section(failures),
        heatmaps_section(stored, samples),
        spray_summary_section(stored),
    ]
    where = "memory" if stored.store.path is None else str(stored.store.path)
    header = (
        "<h1>pellucid run report</h1>"
        f"<p>{esc(where)} · {len(stored)} samples · {len(stored.methods)} methods · "
        f"{len(stored.metrics)} metrics</p>"
        '<div class="cards">'
        f'<div class="stat"><b>{len(stored)}</b><span>samples</span></div>'
        f'<div class="stat"><b>{len(failures)}</b><span>failures</span></div>'
        f'<div class="stat"><b>{esc(stored.store.attrs.get("pellucid_version", "?"))}</b>'
        "<span>pellucid version</span></div></div>"
    )
    index = folder / "index.html"
    index.write_text(page("pellucid run report", header, [s for s in sections if s],
                          footer=f"pellucid run report · fingerprint {stored.fingerprint}"),
                     encoding="utf-8")
    return index


def _opened(store: str | Path | Run) -> Run:
    if isinstance(store, Run):
        return store
    return Run(Store.open(store, argument="store"))


def settings_section(stored: Run, failures: list[Failure]) -> Section:
    """What the run's fingerprint hashes, the fingerprint and the pellucid version."""
    attrs = stored.store.attrs
    rows = [
        ("pellucid version", esc(attrs.get("pellucid_version", "?"))),
        ("fingerprint", f"<code>{esc(stored.fingerprint)}</code>"),
        ("samples", str(len(stored))),
        ("failures", str(len(failures))),
        ("methods", esc(", ".join(stored.methods))),
        ("metrics", esc(", ".join(stored.metrics)) or "none"),
    ]
    settings = json.dumps(stored.settings, indent=2, sort_keys=True, default=str)
    body = ('<div class="card">' + table(["", ""], rows) +
            f"<details><summary>settings</summary><pre>{esc(settings)}</pre></details></div>")
    return Section("Run", "run", body, lead="The run's settings (what its fingerprint hashes: "
                   "methods, metrics, target, dtype, model) and what it holds.")


def summary_section(stored: Run) -> Section:
    """:meth:`Run.summary`: mean ± std per method × metric, NaN and sample counts, time."""
    summary = stored.summary()
    arrows = {"higher": "↑", "lower": "↓"}
    rows = [
        (f"<b>{esc(r['method'])}</b>", f"{esc(r['metric'])} {arrows.get(r['direction'], '')}",
         f"{r['mean']:.4g} ± {r['std']:.3g}", str(r["nan"]), str(r["n"]), f"{r['seconds']:.1f}")
        for r in summary.rows
    ]
    body = ('<div class="card">' + table(
        ["method", "metric", "mean ± std", "NaN", "samples", "method s"], rows,
        numeric=(2, 3, 4, 5)) + "</div>") if rows else "<p>The run has no metrics.</p>"
    return Section("Summary", "summary", body, lead="Mean ± standard deviation of each metric "
                   "over the samples, leaving out NaN scores (failed samples, or where the "
                   "metric is undefined), which are counted; method s is the method's time "
                   "(explanation and metrics) over all batches.")


def class_means(stored: Run) -> tuple[np.ndarray, dict[tuple[str, str], np.ndarray]]:
    """(sample count per explained class (K,), {(method, metric): mean per class (K,)}), the
    means leaving out NaN scores, read chunk by chunk; samples with target −1 (a target
    callable, or no result) are left out.

    Example:
        >>> import torch
        >>> from pellucid.runs import run
        >>> x, y = torch.randn(6, 4), torch.tensor([0, 1, 0, 1, 0, 1])
        >>> r = run(torch.nn.Linear(4, 2).eval(), (x, y), ["gradient"], target="labels",
        ...         metrics=["complexity.sparseness"], progress=False)
        >>> counts, means = class_means(r)
        >>> counts.tolist(), means[("gradient", "complexity.sparseness")].shape
        ([3, 3], (2,))
    """
    targets = stored.targets.numpy().astype(np.int64)
    classes = int(targets.max()) + 1 if len(targets) and targets.max() >= 0 else 0
    counts = np.bincount(targets[targets >= 0], minlength=classes)
    totals = {(m, k): np.zeros((2, classes)) for m in stored.methods for k in stored.metrics}
    step = int(stored.store.attrs.get("chunk") or READ_CHUNK)
    for start in range(0, len(targets), step):
        rows = slice(start, start + step)
        target = targets[rows]
        for method in stored.methods:
            for metric, scores in stored.scores(method, rows).items():
                values = scores.numpy()
                keep = (target >= 0) & ~np.isnan(values)
                sums = totals[(method, metric)]
                sums[0] += np.bincount(target[keep], values[keep], minlength=classes)
                sums[1] += np.bincount(target[keep], minlength=classes)
    with np.errstate(invalid="ignore"):
        return counts, {key: sums[0] / sums[1] for key, sums in totals.items()}


def classes_section(stored: Run) -> Section | None:
    """Per explained class: its sample count and the mean of each method × metric."""
    if not stored.metrics:
        return None
    counts, means = class_means(stored)
    present = np.flatnonzero(counts)
    header = ["class", "samples", *(f"{m} · {k}" for m, k in means)]
    rows = [(str(c), str(counts[c]), *(f"{v[c]:.4g}" for v in means.values())) for c in present]
    return Section(
        "Per class", "classes",
        '<div class="card">' + table(header, rows, numeric=range(1, len(header))) + "</div>",
        lead="The mean of each metric over the samples explained as each class (NaN scores "
        "left out); an audit of the model class by class.",
    )


def failures_section(failures: list[Failure]) -> Section:
    """Every failed sample: its index in the data set, the method and the error."""
    rows = [(str(f.index), esc(f.method), f"{esc(f.error)}: {esc(f.message)}")
            for f in failures[:FAILURES_SHOWN]]
    more = len(failures) - len(rows)
    body = (('<div class="card">' + table(["index", "method", "error"], rows, numeric=(0,))
             + (f"<p>… and {more} more (Run.failures lists them all).</p>" if more else "")
             + "</div>") if rows else '<p class="ok">No sample failed.</p>')
    return Section("Failures", "failures", body,
                   lead="Samples a method (with its metrics) could not explain; their "
                   "attributions and scores are NaN.")


def heatmaps_section(stored: Run, samples: int) -> Section:
    """The attributions of the first ``samples`` samples of each method (no inputs: the
    store keeps none), channels summed, each scaled by its max |R|; failed ones crossed."""
    from ..viz import heatmap

    shown = min(samples, len(stored))
    if not shown:
        return Section("Heatmaps", "heatmaps", "<p>The run holds no samples yet.</p>")
    index, targets = stored.index[:shown].tolist(), stored.targets[:shown].tolist()
    cards = []
    for method in stored.methods:
        maps = stored.attribution(method, slice(0, shown))
        maps = maps.unsqueeze(1) if maps.ndim == 2 else maps  # sequences: one strip each
        if maps.ndim not in (3, 4):
            tiles = f"<p>Attributions of shape {tuple(maps.shape)} are not drawn.</p>"
        else:
            failed = maps.isnan().flatten(1).any(1).tolist()
            rgb = heatmap(torch.nan_to_num(maps), REPORT_CMAP)
            tiles = "".join(
                figure(None if failed[k] else rgb[k], f"#{index[k]}", f"class {targets[k]}")
                for k in range(shown)
            )
        cards.append(f'<div class="card"><h3>{esc(method)}</h3><div class="tiles">{tiles}'
                     "</div></div>")
    return Section("Heatmaps", "heatmaps", legend() + "".join(cards),
                   lead=f"The attributions of the first {shown} samples of each method, with "
                   "each sample's index in the data set and its explained class.")


def spray_summary_section(stored: Run) -> Section | None:
    """SpRAy of one method (the first that is not the random attribution) for each class
    with at least :data:`SPRAY_MIN` samples: eigengap k, cluster sizes, cluster means."""
    method = next((m for m in stored.methods if stored.settings["methods"][m][0] != "random"),
                  None)
    targets = stored.targets.numpy().astype(np.int64)
    classes = [c for c in np.unique(targets[targets >= 0])
               if (targets == c).sum() >= SPRAY_MIN]
    if method is None or not classes:
        return None
    lead = (f"Spectral relevance analysis (Lapuschkin et al. 2019) of {esc(method)}'s heatmaps "
            f"for each class with at least {SPRAY_MIN} samples (the first {SPRAY_MAX} at most): "
            "pooled to 32×32, normalised and clustered spectrally; the eigengap suggests the "
            "number of clusters. A small cluster whose mean heatmap lights up something other "
            "than the object may be a Clever-Hans strategy. docs/spray.md.")
    if sklearn_missing():
        return Section("SpRAy", "spray", "<p>Skipped: SpRAy needs scikit-learn, which is not "
                       "installed (pip install 'pellucid[analysis]').</p>", lead=lead)
    from ..analysis import spray

    cards = []
    for c in classes:
        rows = np.flatnonzero(targets == c)[:SPRAY_MAX]
        maps = stored.attribution(method, rows)
        maps = maps[~maps.isnan().flatten(1).any(1)]
        if len(maps) < SPRAY_MIN:
            continue
        result = spray(maps, embedding="spectral")
        sizes = ", ".join(str(int(n)) for n in result.counts)
        cards.append(
            f'<div class="card"><h3>class {int(c)}<small>{len(maps)} heatmaps · eigengap k = '
            f"{result.suggested_clusters} · cluster sizes {sizes}</small></h3>"
            f"{image(result.plot(), f'SpRAy of class {int(c)}')}</div>"
        )
    return Section("SpRAy", "spray", "".join(cards), lead=lead)


__all__ = ["class_means", "write_store_report"]
