"""The report's SpRAy section: the heatmaps of the shortcut class cluster by watermark.

Spectral relevance analysis (Lapuschkin et al. 2019, Nat. Commun. 10:1096) of the shortcut
model's heatmaps for test images of its shortcut class, half of them watermarked:
:data:`SPRAY_METHOD` explains the class on every image through :func:`pellucid.runs.run`,
:func:`pellucid.analysis.spray` clusters the heatmaps (spectral embedding, eigengap k), and
the adjusted Rand index (ARI) scores the clusters against watermark presence (1: the
clusters are exactly the watermarked and the clean images; 0: chance). docs/spray.md.
"""

from __future__ import annotations

import time
from importlib.util import find_spec
from typing import Any

import torch
from torch import Tensor

from ..analysis import spray
from ..runs import run
from .context import DemoContext
from .html import Section, esc, image, table

#: the method whose heatmaps separate the watermarked images (docs/spray.md)
SPRAY_METHOD = "lrp.epsilon_gamma_box"


def spray_section(ctx: DemoContext) -> Section | None:
    """The eigenvalue spectrum, the embedding, the cluster means and sizes, and the ARI."""
    data = ctx.spray
    if data is None or "shortcut" not in ctx.models or ctx.shortcut_class is None:
        return None
    if sklearn_missing():
        return Section("SpRAy", "spray", '<p class="bad">SpRAy needs scikit-learn: pip '
                       "install 'pellucid[analysis]'</p>")
    marked = data.has_watermark
    start = time.perf_counter()
    explained = run(ctx.models["shortcut"].model, data.images, [SPRAY_METHOD],
                    target=ctx.shortcut_class, progress=False, dtype="float32",
                    batch_size=len(data))
    seconds = time.perf_counter() - start
    if explained.failures:
        failure = explained.failures[0]
        return Section("SpRAy", "spray", f'<p class="bad">{esc(SPRAY_METHOD)} failed: '
                       f"{esc(failure.error)}: {esc(failure.message)}</p>")
    start = time.perf_counter()
    result = spray(explained.attribution(SPRAY_METHOD), embedding="spectral")
    spray_seconds = time.perf_counter() - start
    ari = adjusted_rand_index(marked, result.labels)
    stamped = torch.bincount(result.labels, weights=marked.double(), minlength=result.clusters)
    rows = [
        (f"cluster {k}", str(int(n)), str(int(w)), f"{100 * float(w) / int(n):.0f}%")
        for k, (n, w) in enumerate(zip(result.counts, stamped, strict=True))
    ]
    values = " ".join(f"{v:.3f}" for v in result.eigenvalues[:6].tolist())
    name = esc(data.class_names[ctx.shortcut_class])
    body = (
        '<div class="card">'
        f"{image(_figure(result, marked), 'SpRAy: spectrum, embedding, cluster means')}"
        f'<p class="lead" style="margin-top:8px">Eigengap k = <b>{result.suggested_clusters}'
        f"</b> (first eigenvalues {values}); adjusted Rand index of the clusters against "
        f"watermark presence: <b>{ari:.3f}</b>. {esc(SPRAY_METHOD)} took {seconds:.1f} s for "
        f"{len(data)} images, SpRAy {spray_seconds:.1f} s.</p>"
        + table(["cluster", "images", "watermarked", "share watermarked"], rows,
                numeric=(1, 2, 3))
        + "</div>"
    )
    return Section(
        "SpRAy",
        "spray",
        body,
        lead=f"Spectral relevance analysis (Lapuschkin et al. 2019): {len(data)} test images "
        f"of <b>{name}</b>, {int(marked.sum())} of them watermarked, explained for "
        f"<b>{name}</b> with {esc(SPRAY_METHOD)} on the shortcut model. The heatmaps are "
        "pooled to 32×32, normalised and clustered spectrally; the eigengap of the graph "
        "Laplacian's spectrum suggests the number of clusters. In the embedding (the 2nd "
        "and 3rd eigenvectors) colours are clusters and black rings mark watermarked "
        "images; below are the clusters' mean heatmaps (red positive, blue negative). A "
        "cluster whose mean lights up the corner stamp is the Clever-Hans strategy.",
    )


def sklearn_missing() -> bool:
    """Whether scikit-learn (extra ``analysis``), which SpRAy needs, is missing."""
    return find_spec("sklearn") is None


def adjusted_rand_index(truth: Tensor, labels: Tensor) -> float:
    """The adjusted Rand index of two labellings (Hubert & Arabie 1985): 1 for the same
    partition, about 0 by chance (scikit-learn's ``adjusted_rand_score``).

    Example:
        >>> import torch
        >>> adjusted_rand_index(torch.tensor([0, 0, 1, 1]), torch.tensor([1, 1, 0, 0]))
        1.0
    """
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(truth.long().numpy(), labels.long().numpy()))


def _figure(result: Any, marked: Tensor) -> Any:
    """``Spray.plot()`` with the watermarked images ringed in black in the embedding."""
    figure = result.plot()
    embedding = figure.axes[1]
    points = result.embedding[marked].numpy()
    embedding.scatter(points[:, 0], points[:, 1], s=40, facecolors="none", edgecolors="black",
                      linewidths=0.8, label="watermarked")
    embedding.legend(loc="best", fontsize=8)
    return figure


__all__ = ["SPRAY_METHOD", "adjusted_rand_index", "sklearn_missing", "spray_section"]
