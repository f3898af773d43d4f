"""SpRAy on the Clever-Hans data: do the clusters of the shortcut class separate watermarked
from clean images? Adjusted Rand index (ARI) of the clusters against watermark presence, the
eigengap's k, and the time of each step, per method.

    python -m benchmarks.spray [N_TEST] [PLOT.png]

``N_TEST`` test images are drawn (default 1000, about a fifth of them of the shortcut class);
the shortcut-class images alternate watermarked and clean. Purity: the share of images
whose cluster's majority (watermarked or clean) is their own. ``PLOT.png`` saves the first
method's ``Spray.plot()``.
"""

from __future__ import annotations

import sys
import time

import torch
from sklearn.metrics import adjusted_rand_score

import pellucid
from pellucid.analysis import spray
from pellucid.data import clever_hans
from pellucid.models import load_pretrained

METHODS = ("lrp.epsilon_gamma_box", "lrp.epsilon_plus_flat", "gradient")


def shortcut_images(n_test: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The shortcut class's test images, every other one watermarked; the flags; the class."""
    data = clever_hans(0, n_test=n_test, size=64, seed=0)
    index = (data.test.labels == data.shortcut_class).nonzero().flatten()
    marked = torch.arange(len(index)) % 2 == 0
    images = torch.where(marked.view(-1, 1, 1, 1), data.test_watermarked.images[index],
                         data.test.images[index])
    return images, marked, data.shortcut_class


def main(n_test: int = 1000, plot: str | None = None) -> None:
    model = load_pretrained("clever_hans_vgg", progress=False)
    images, marked, target = shortcut_images(n_test)
    print(f"{len(images)} images of class {target}, {int(marked.sum())} watermarked; "
          f"spray(size=(32, 32), neighbours=10, max_clusters=10)")
    print(f"{'method':24} {'explain s':>9} {'spray s':>8} {'with t-SNE s':>12} {'eigengap k':>10} "
          f"{'ARI (k)':>8} {'purity':>7} {'ARI (2)':>8}  first eigenvalues")
    for i, method in enumerate(METHODS):
        start = time.perf_counter()
        heatmaps = pellucid.explain(model, images, target=target, method=method).attribution
        explained = time.perf_counter()
        result = spray(heatmaps, embedding="spectral")
        clustered = time.perf_counter()
        with_tsne = spray(heatmaps, embedding="tsne")
        embedded = time.perf_counter()
        two = spray(heatmaps, clusters=2, embedding="spectral")
        ari = adjusted_rand_score(marked.numpy(), result.labels.numpy())
        ari_two = adjusted_rand_score(marked.numpy(), two.labels.numpy())
        both = torch.bincount(result.labels * 2 + marked.long(), minlength=2 * result.clusters)
        purity = both.view(-1, 2).max(dim=1).values.sum().item() / len(marked)
        values = " ".join(f"{v:.3f}" for v in result.eigenvalues[:5].tolist())
        print(f"{method:24} {explained - start:9.2f} {clustered - explained:8.2f} "
              f"{embedded - clustered:12.2f} {result.suggested_clusters:10d} {ari:8.3f} "
              f"{purity:7.3f} {ari_two:8.3f}  {values}")
        if plot and i == 0:
            with_tsne.plot().savefig(plot, dpi=80)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000, sys.argv[2] if len(sys.argv) > 2
         else None)
