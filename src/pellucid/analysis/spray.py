"""Spectral relevance analysis (SpRAy): cluster many heatmaps to find a model's strategies.

Lapuschkin et al. (2019), "Unmasking Clever Hans predictors and assessing what machines
really learn", Nat. Commun. 10:1096; the steps follow their reference implementation
CoRelAy. For the heatmaps of one class:

1. each heatmap is summed over channels, area-pooled to ``size`` and flattened; with
   ``normalise`` (the default, as CoRelAy) divided by its L2 norm, so that heatmaps are
   compared by where relevance lies rather than by how much there is;
2. a k-nearest-neighbour graph on Euclidean distances, symmetrised: A = (K + Kᵀ)/2 with
   K_ij = 1 when j is one of the ``neighbours`` nearest heatmaps of i;
3. the normalised graph Laplacian L = I − D^-½ A D^-½ (D the degrees) and its smallest
   eigenvalues 0 = λ₁ ≤ λ₂ ≤ …; λ has one zero per connected component;
4. the eigengap heuristic: k = argmax_{k ≤ max_clusters} (λ_{k+1} − λ_k) suggests the
   number of clusters;
5. spectral clustering (Ng, Jordan & Weiss 2001): k-means on the rows, scaled to unit
   length, of the k eigenvectors of the smallest eigenvalues; clusters are numbered by
   decreasing size;
6. a 2-D embedding of the eigenvectors (t-SNE, UMAP, or the 2nd and 3rd eigenvectors) and
   the cluster-mean heatmaps at the original resolution.

scikit-learn (extra ``analysis``) is imported inside the functions that need it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..checks import as_tensor, check_bool, check_choice, check_count, check_finite, check_seed
from ..errors import ArgumentError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["EMBEDDINGS", "TIE", "Spray", "eigengap", "knn_affinity", "laplacian_spectrum", "spray"]

#: the 2-D embeddings: t-SNE of the eigenvectors, UMAP of them (needs ``umap-learn``), or the
#: 2nd and 3rd eigenvectors themselves
EMBEDDINGS = ("tsne", "umap", "spectral")
#: up to this many heatmaps the Laplacian is decomposed densely; above, sparsely (ARPACK)
DENSE_LIMIT = 1024
#: gaps closer than this are ties for the eigengap (eigenvalues lie in [0, 2] and are
#: accurate to about 1e-12)
TIE = 1e-9
#: distances are computed for row chunks of at most this many (row, heatmap) pairs
CHUNK_PAIRS = 2**22


@dataclass(frozen=True)
class Spray:
    """The result of :func:`spray` on N heatmaps.

    ``labels`` (N,) cluster of each heatmap (0 the largest cluster); ``eigenvalues`` (m,) the
    smallest eigenvalues of the normalised Laplacian, ascending; ``suggested_clusters`` the
    eigengap's k; ``embedding`` (N, 2); ``means`` (K, ...) the mean heatmap of each cluster at
    the heatmaps' resolution (summed over channels); ``counts`` (K,) the cluster sizes;
    ``index`` (N,) the heatmaps' positions in a data set when they came from one (a stored
    run, :meth:`pellucid.runs.Run.spray`), else None.
    """

    labels: Tensor
    eigenvalues: Tensor
    suggested_clusters: int
    embedding: Tensor
    means: Tensor
    counts: Tensor
    index: Tensor | None = None

    @property
    def clusters(self) -> int:
        """The number of clusters K."""
        return len(self.counts)

    def plot(self) -> Figure:
        """A figure (no pyplot) with the eigenvalue spectrum and the eigengap, the embedding
        coloured by cluster, and the cluster-mean heatmaps (red positive, blue negative).

        >>> import torch
        >>> from pellucid.analysis import spray
        >>> maps = torch.zeros(12, 4, 4)
        >>> maps[:6, 0, 0], maps[6:, 3, 3] = 1.0, 1.0
        >>> figure = spray(maps + 0.01 * torch.rand(12, 4, 4), neighbours=3,
        ...                embedding="spectral").plot()
        >>> len(figure.axes)
        4
        """
        from matplotlib.figure import Figure  # no pyplot: the user's backend is left alone

        k = self.clusters
        columns = max(k, 2)
        figure = Figure(figsize=(max(2.2 * columns, 7.0), 5.0), layout="constrained")
        grid = figure.add_gridspec(2, columns)
        half = columns // 2
        spectrum = figure.add_subplot(grid[0, :half])
        values = self.eigenvalues.numpy()
        spectrum.plot(np.arange(1, len(values) + 1), values, "o-", markersize=3)
        spectrum.axvline(self.suggested_clusters + 0.5, color="tab:red", linestyle="--")
        spectrum.set(title=f"eigenvalues, eigengap k = {self.suggested_clusters}",
                     xlabel="index", ylabel="λ")
        scatter = figure.add_subplot(grid[0, half:])
        points = self.embedding.numpy()
        scatter.scatter(points[:, 0], points[:, 1], c=self.labels.numpy(), cmap="tab10",
                        vmin=0, vmax=9, s=8)
        scatter.set(title="embedding by cluster", xticks=[], yticks=[])
        for cluster in range(k):
            axis = figure.add_subplot(grid[1, cluster])
            mean = self.means[cluster].float()
            mean = mean.view(1, -1) if mean.ndim == 1 else mean
            scale = float(mean.abs().max()) or 1.0
            axis.imshow(mean.numpy(), cmap="bwr", vmin=-scale, vmax=scale, aspect="auto"
                        if mean.shape[0] == 1 else "equal")
            axis.set(title=f"cluster {cluster} ({int(self.counts[cluster])})", xticks=[],
                     yticks=[])
        return figure


def spray(
    heatmaps: Any,
    *,
    size: int | tuple[int, ...] | None = None,
    clusters: int | None = None,
    max_clusters: int = 10,
    neighbours: int = 10,
    embedding: str = "tsne",
    normalise: bool = True,
    seed: int | None = 0,
) -> Spray:
    """Spectral relevance analysis of N heatmaps of one class (Lapuschkin et al. 2019).

    ``heatmaps``: N×C×H×W (summed over channels), N×H×W, or N×L (sequences), a tensor or an
    array. ``size``: the pooled size, an int for every spatial dimension or one per dimension
    (default 32 each: (32, 32) for images); area pooling never enlarges a dimension.
    ``clusters``: None clusters into the eigengap's suggestion k = argmax_{k ≤ max_clusters}
    (λ_{k+1} − λ_k). ``neighbours``: the k of the k-nearest-neighbour graph. ``embedding``:
    one of :data:`EMBEDDINGS`. ``normalise``: divide each pooled heatmap by its L2 norm.
    ``seed`` seeds k-means, t-SNE/UMAP and ARPACK's start vector. The steps are in the
    module's docstring; docs/spray.md has the details and the Clever-Hans numbers.

    >>> import torch
    >>> from pellucid.analysis import spray
    >>> maps = torch.zeros(20, 8, 8)
    >>> maps[:12, :4], maps[12:, 4:] = 1.0, 1.0        # two strategies: top and bottom half
    >>> result = spray(maps + 0.01 * torch.rand(20, 8, 8), neighbours=5, embedding="spectral")
    >>> result.suggested_clusters, result.labels.tolist()
    (2, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1])
    >>> result.means.shape, result.counts.tolist()
    (torch.Size([2, 8, 8]), [12, 8])
    """
    maps = _heatmaps(heatmaps)
    n = len(maps)
    pooled = _pooled(maps, size)
    clusters = check_count(clusters, "clusters", "the number of clusters, None for the "
                           "eigengap's suggestion", none=True)
    max_clusters = check_count(max_clusters, "max_clusters", "the largest number of clusters "
                               "the eigengap may suggest")
    neighbours = check_count(neighbours, "neighbours", "the k of the k-nearest-neighbour graph")
    check_choice(embedding, "embedding", EMBEDDINGS)
    check_bool(normalise, "normalise")
    seed = check_seed(seed)
    if clusters is not None and clusters > n:
        raise ArgumentError(
            "clusters", f"clusters={clusters} is more than the {n} heatmaps; use clusters ≤ {n}"
            " or None for the eigengap's suggestion")
    if embedding == "umap":
        _umap()  # fail before the work when umap-learn is missing
    _sklearn()
    if normalise:
        pooled = pooled / pooled.norm(dim=1, keepdim=True).clamp_min(torch.finfo(
            pooled.dtype).tiny)
    affinity = knn_affinity(pooled, neighbours)
    count = min(n, max(clusters or 0, max_clusters + 1, 3))
    eigenvalues, vectors = laplacian_spectrum(affinity, count, seed=seed)
    suggested = eigengap(eigenvalues, max_clusters)
    k = suggested if clusters is None else clusters
    labels = _kmeans(vectors[:, :k], k, seed)
    flat = maps.reshape(n, -1)
    counts = torch.bincount(labels, minlength=k)
    sums = torch.zeros(k, flat.shape[1], dtype=flat.dtype, device=flat.device).index_add_(
        0, labels.to(flat.device), flat).cpu()
    means = (sums / counts.unsqueeze(1)).view(k, *maps.shape[1:])
    return Spray(
        labels=labels,
        eigenvalues=torch.from_numpy(eigenvalues),
        suggested_clusters=suggested,
        embedding=torch.from_numpy(_embedding(vectors, embedding, seed)),
        means=means,
        counts=counts,
    )


def knn_affinity(features: Tensor, neighbours: int) -> Any:
    """The symmetrised k-nearest-neighbour graph of the rows of ``features`` (N, D), as a
    SciPy sparse matrix: A = (K + Kᵀ)/2, K_ij = 1 when j ≠ i is one of the ``neighbours``
    rows nearest to i (Euclidean; ties go to the lower index).

    >>> import torch
    >>> from pellucid.analysis.spray import knn_affinity
    >>> knn_affinity(torch.tensor([[0.0], [1.0], [3.0]]), 1).toarray()
    array([[0. , 1. , 0. ],
           [1. , 0. , 0.5],
           [0. , 0.5, 0. ]])
    """
    from scipy import sparse

    neighbours = check_count(neighbours, "neighbours", "the k of the k-nearest-neighbour graph")
    features = as_tensor(features, "features", "a floating tensor (N, D)")
    if features.ndim != 2 or not features.is_floating_point():
        raise ArgumentError("features", f"features must be a floating tensor (N, D), got "
                            f"{features.dtype} of shape {tuple(features.shape)}")
    n = len(features)
    if neighbours >= n:
        raise ArgumentError(
            "neighbours", f"neighbours={neighbours} needs at least {neighbours + 1} heatmaps, "
            f"got {n}; use neighbours ≤ {max(n - 1, 1)} or give more heatmaps")
    rows = max(1, CHUNK_PAIRS // n)
    nearest = torch.empty(n, neighbours, dtype=torch.long)
    for start in range(0, n, rows):
        chunk = torch.cdist(features[start:start + rows], features)
        index = torch.arange(len(chunk), device=chunk.device)
        chunk[index, index + start] = torch.inf  # a heatmap is not its own neighbour
        # stable sort: equal distances go to the lower index, whatever the device
        nearest[start:start + rows] = chunk.sort(dim=1, stable=True).indices[:, :neighbours].cpu()
    knn = sparse.csr_matrix(
        (np.ones(n * neighbours), (np.repeat(np.arange(n), neighbours), nearest.flatten().numpy())),
        shape=(n, n),
    )
    return ((knn + knn.T) / 2).tocsr()


def laplacian_spectrum(affinity: Any, count: int, *, seed: int | None = 0
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` smallest eigenvalues of the normalised Laplacian L = I − D^-½ A D^-½ of a
    symmetric non-negative ``affinity`` A (N, N; dense or SciPy sparse) whose every vertex
    has an edge, ascending, with their eigenvectors (N, count). Each connected component
    gives one zero eigenvalue. Dense up to :data:`DENSE_LIMIT` vertices, else ARPACK on
    D^-½ A D^-½ with a start vector drawn from ``seed``.

    >>> import numpy as np
    >>> from pellucid.analysis.spray import laplacian_spectrum
    >>> values, vectors = laplacian_spectrum(np.ones((2, 2)) - np.eye(2), 2)
    >>> values.round(6).tolist(), vectors.shape
    ([0.0, 2.0], (2, 2))
    """
    from scipy import sparse
    from scipy.linalg import eigh
    from scipy.sparse.linalg import eigsh

    a = sparse.csr_matrix(affinity, dtype=np.float64) if sparse.issparse(affinity) else as_tensor(
        affinity, "affinity", "a square matrix").double().cpu().numpy()
    n = a.shape[0]
    if a.ndim != 2 or a.shape != (n, n) or n == 0:
        raise ArgumentError("affinity", f"affinity must be a square matrix (N, N), got shape "
                            f"{a.shape}")
    count = check_count(count, "count", "the number of eigenvalues")
    if count > n:
        raise ArgumentError("count", f"count={count} is more than the {n} vertices; use "
                            f"count ≤ {n}")
    values = a.data if sparse.issparse(a) else a
    if not np.isfinite(values).all() or (values < 0).any() or abs(a - a.T).max() > 1e-9 * max(
            float(abs(values).max()), 1.0):
        raise ArgumentError("affinity", "affinity must be finite, non-negative and symmetric")
    degree = np.asarray(a.sum(axis=1)).ravel()
    if (degree <= 0).any():
        raise ArgumentError(
            "affinity", f"affinity has {int((degree <= 0).sum())} vertices without an edge; "
            "give every vertex at least one neighbour")
    scale = 1 / np.sqrt(degree)
    if sparse.issparse(a) and n > DENSE_LIMIT:
        normalised = sparse.diags(scale) @ a @ sparse.diags(scale)
        start = np.random.default_rng(seed).uniform(0.5, 1.5, n)
        mu, vectors = eigsh(normalised, k=count, which="LA", v0=start)
        order = np.argsort(-mu, kind="stable")
        eigenvalues, vectors = 1 - mu[order], vectors[:, order]
    else:
        dense = a.toarray() if sparse.issparse(a) else a
        laplacian = np.eye(n) - scale[:, None] * dense * scale[None, :]
        eigenvalues, vectors = eigh(laplacian, subset_by_index=[0, count - 1])
    return np.clip(eigenvalues, 0.0, 2.0), vectors


def eigengap(eigenvalues: Any, max_clusters: int) -> int:
    """The eigengap heuristic: k = argmax_{1 ≤ k ≤ max_clusters} (λ_{k+1} − λ_k) of ascending
    ``eigenvalues``, the smallest such k on ties (gaps within :data:`TIE`; von Luxburg 2007,
    §8.3); k is at most ``len(eigenvalues) − 1``.

    >>> from pellucid.analysis.spray import eigengap
    >>> eigengap([0.0, 0.0, 0.0, 0.9, 1.0], max_clusters=4)
    3
    """
    max_clusters = check_count(max_clusters, "max_clusters", "the largest number of clusters "
                               "the eigengap may suggest")
    values = np.asarray(eigenvalues, dtype=float)
    if values.ndim != 1 or len(values) < 2:
        raise ArgumentError("eigenvalues", f"eigenvalues must be a 1-D array of at least 2 "
                            f"values, got shape {values.shape}")
    gaps = np.diff(values)[:max_clusters]
    return int(np.flatnonzero(gaps >= gaps.max() - TIE)[0]) + 1


def _heatmaps(heatmaps: Any) -> Tensor:
    """N heatmaps summed over channels: (N, H, W) or (N, L), floating, finite, N ≥ 2."""
    if isinstance(heatmaps, np.ndarray):
        heatmaps = torch.from_numpy(np.ascontiguousarray(heatmaps))
    maps = as_tensor(heatmaps, "heatmaps", "heatmaps (N×C×H×W, N×H×W or N×L)")
    if not maps.is_floating_point() or maps.ndim not in (2, 3, 4) or len(maps) < 2:
        raise ArgumentError(
            "heatmaps", f"heatmaps must be a floating tensor N×C×H×W, N×H×W or N×L with N ≥ 2, "
            f"got {maps.dtype} of shape {tuple(maps.shape)}")
    check_finite(maps, "heatmaps", fix="clean them (e.g. torch.nan_to_num) or leave out the "
                 "samples whose explanation failed")
    maps = maps.detach()
    maps = maps.float() if maps.dtype in (torch.float16, torch.bfloat16) else maps
    return maps.sum(dim=1) if maps.ndim == 4 else maps


def _pooled(maps: Tensor, size: int | tuple[int, ...] | None) -> Tensor:
    """``maps`` (N, *spatial) area-pooled to ``size`` (never enlarged) and flattened."""
    spatial = tuple(maps.shape[1:])
    if size is None:
        size = 32
    if isinstance(size, (tuple, list)):
        if len(size) != len(spatial):
            raise ArgumentError(
                "size", f"size must have one entry per spatial dimension of the heatmaps "
                f"({len(spatial)} for shape {tuple(maps.shape)}), got {size!r}; or give one int")
        sizes = tuple(check_count(s, "size", "the pooled size") for s in size)
    else:
        sizes = (check_count(size, "size", "the pooled size"),) * len(spatial)
    target = tuple(min(s, d) for s, d in zip(sizes, spatial, strict=True))
    pool = torch.nn.functional.adaptive_avg_pool2d if len(spatial) == 2 else (
        torch.nn.functional.adaptive_avg_pool1d)
    return pool(maps.unsqueeze(1), target).flatten(1)


def _kmeans(vectors: np.ndarray, k: int, seed: int | None) -> Tensor:
    """k-means (seeded) on the rows of the eigenvectors scaled to unit length (Ng et al.
    2001); clusters numbered by decreasing size, ties by first member."""
    if k == 1:
        return torch.zeros(len(vectors), dtype=torch.long)
    from sklearn.cluster import KMeans

    rows = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    raw = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(rows)
    sizes = np.bincount(raw, minlength=k)
    first = np.full(k, len(raw))
    np.minimum.at(first, raw, np.arange(len(raw)))
    order = np.lexsort((first, -sizes))  # largest first, then by first member
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    return torch.from_numpy(rank[raw])


def _embedding(vectors: np.ndarray, embedding: str, seed: int | None) -> np.ndarray:
    """The 2-D embedding (N, 2) of the eigenvectors (N, m)."""
    n = len(vectors)
    if embedding == "spectral":
        points = vectors[:, 1:3]
        return np.pad(points, ((0, 0), (0, 2 - points.shape[1])))
    if embedding == "umap":
        return _umap().UMAP(n_components=2, n_neighbors=min(15, n - 1),
                            random_state=seed).fit_transform(vectors)
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(1.0, (n - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca",
                random_state=seed).fit_transform(vectors)


def _sklearn() -> None:
    """scikit-learn is there, or an ImportError naming the extra."""
    try:
        import sklearn  # noqa: F401
    except ImportError as error:
        raise ImportError("spray needs scikit-learn: pip install 'pellucid[analysis]'") from error


def _umap() -> Any:
    """The ``umap`` module, or an error naming ``embedding`` and the package."""
    try:
        import umap
    except ImportError:
        raise ArgumentError(
            "embedding", "embedding='umap' needs the umap-learn package: pip install "
            "umap-learn, or use embedding='tsne'") from None
    return umap
