"""SpRAy (pellucid.analysis.spray) against closed forms, and its acceptance on Clever Hans."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

import pellucid
from pellucid.analysis import Spray, spray
from pellucid.analysis.spray import eigengap, knn_affinity, laplacian_spectrum
from pellucid.errors import ArgumentError, ArgumentTypeError, PellucidError, UnknownNameError

spray_module = sys.modules["pellucid.analysis.spray"]


def patterns(sizes, shape=(3, 16, 16), noise=0.05, seed=0):
    """Heatmaps drawn from one random pattern per group plus small noise; the group labels."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(len(sizes), *shape, generator=gen)
    truth = torch.cat([torch.full((n,), g) for g, n in enumerate(sizes)])
    return base[truth] + noise * torch.randn(len(truth), *shape, generator=gen), truth


@pytest.mark.parametrize("sizes", [(20, 20), (15, 12, 10)])
@pytest.mark.parametrize("shape", [(3, 16, 16), (16, 16), (48,)])
def test_separated_patterns_are_found_with_the_eigengap(sizes, shape):
    maps, truth = patterns(sizes, shape)
    result = spray(maps, neighbours=5, embedding="spectral")
    assert result.suggested_clusters == len(sizes)
    assert result.clusters == len(sizes)
    assert adjusted_rand_score(truth.numpy(), result.labels.numpy()) == 1.0
    # clusters are numbered by decreasing size; group sizes here are decreasing
    assert result.counts.tolist() == sorted(sizes, reverse=True)
    assert result.embedding.shape == (len(truth), 2)
    # the k-NN graph has one component per pattern: k zero eigenvalues, then a gap
    assert result.eigenvalues[: len(sizes)].abs().max() < 1e-8
    assert result.eigenvalues[len(sizes)] > 0.1


def test_cluster_means_are_member_means_at_the_original_resolution():
    maps, _ = patterns((12, 9, 6), (3, 20, 20))
    result = spray(maps, neighbours=4, embedding="spectral", size=(5, 5))
    summed = maps.sum(dim=1)
    assert result.means.shape == (3, 20, 20)
    for k in range(3):
        torch.testing.assert_close(result.means[k], summed[result.labels == k].mean(dim=0))


def test_permuting_samples_permutes_labels():
    maps, _ = patterns((14, 10, 7))
    first = spray(maps, neighbours=5, embedding="spectral")
    order = torch.randperm(len(maps), generator=torch.Generator().manual_seed(3))
    second = spray(maps[order], neighbours=5, embedding="spectral")
    assert torch.equal(second.labels, first.labels[order])
    torch.testing.assert_close(second.eigenvalues, first.eigenvalues)
    torch.testing.assert_close(second.means, first.means)


def test_a_seed_makes_it_deterministic():
    maps, _ = patterns((15, 15), noise=0.5)
    first = spray(maps, neighbours=5, embedding="tsne", seed=7)
    second = spray(maps, neighbours=5, embedding="tsne", seed=7)
    assert torch.equal(first.labels, second.labels)
    assert torch.equal(first.embedding, second.embedding)
    assert torch.equal(first.eigenvalues, second.eigenvalues)


def test_given_clusters_override_the_suggestion():
    maps, _ = patterns((20, 20))
    result = spray(maps, neighbours=5, clusters=4, embedding="spectral")
    assert result.suggested_clusters == 2 and result.clusters == 4
    assert result.counts.sum() == 40 and (result.counts > 0).all()
    assert spray(maps, neighbours=5, clusters=1, embedding="spectral").labels.eq(0).all()


def test_normalising_ignores_each_heatmaps_scale():
    maps, _ = patterns((15, 10))
    scales = torch.rand(len(maps), 1, 1, 1, generator=torch.Generator().manual_seed(1)) * 10
    plain = spray(maps, neighbours=5, embedding="spectral")
    scaled = spray(maps * (scales + 0.1), neighbours=5, embedding="spectral")
    torch.testing.assert_close(scaled.eigenvalues, plain.eigenvalues)
    assert torch.equal(scaled.labels, plain.labels)


def test_area_pooling_of_block_constant_maps_is_the_small_map():
    maps, _ = patterns((12, 8), (16, 16), noise=0.3)
    large = maps.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)  # 32×32
    for normalise in (True, False):
        small = spray(maps, size=16, neighbours=4, embedding="spectral", normalise=normalise)
        pooled = spray(large, size=16, neighbours=4, embedding="spectral", normalise=normalise)
        torch.testing.assert_close(pooled.eigenvalues, small.eigenvalues)
        assert torch.equal(pooled.labels, small.labels)
    # a size above the map's never enlarges it: same as pooling to the map's own size
    same = spray(maps, size=(64, 40), neighbours=4, embedding="spectral")
    torch.testing.assert_close(same.eigenvalues, spray(
        maps, size=16, neighbours=4, embedding="spectral").eigenvalues)


def test_inputs_are_not_changed_and_arrays_are_accepted():
    maps, _ = patterns((10, 10))
    kept = maps.clone()
    from_tensor = spray(maps, neighbours=4, embedding="spectral")
    assert torch.equal(maps, kept)
    from_array = spray(maps.numpy(), neighbours=4, embedding="spectral")
    assert torch.equal(from_array.labels, from_tensor.labels)
    half = spray(maps.half(), neighbours=4, embedding="spectral")
    assert half.means.dtype == torch.float32


def block_affinity(sizes):
    """Complete graphs of ``sizes`` vertices on the diagonal (no self-loops)."""
    return torch.block_diag(*[torch.ones(m, m) - torch.eye(m) for m in sizes])


def test_block_diagonal_affinity_has_one_zero_eigenvalue_per_block():
    # the normalised Laplacian of the complete graph K_m has eigenvalues 0 and m/(m−1)
    # (m − 1 times), so blocks K_4, K_5, K_6 give 0 ×3, 6/5 ×5, 5/4 ×4, 4/3 ×3
    sizes = (4, 5, 6)
    values, vectors = laplacian_spectrum(block_affinity(sizes), 15)
    expected = [0.0] * 3 + [6 / 5] * 5 + [5 / 4] * 4 + [4 / 3] * 3
    np.testing.assert_allclose(values, expected, atol=1e-12)
    assert vectors.shape == (15, 15)
    assert eigengap(values, max_clusters=10) == 3
    # the zero eigenvectors are constant on each block after scaling by D^-½: the block's
    # indicator lies in their span
    indicator = np.repeat(np.eye(3), sizes, axis=0) * np.sqrt(np.repeat(np.array(sizes) - 1,
                                                                        sizes))[:, None]
    null = vectors[:, :3]
    residual = indicator - null @ (null.T @ indicator)
    assert np.abs(residual).max() < 1e-10


def test_sparse_and_dense_spectra_agree(monkeypatch):
    from scipy import sparse

    affinity = sparse.csr_matrix(block_affinity((6, 7, 8)).numpy())
    dense_values, _ = laplacian_spectrum(affinity, 4)
    monkeypatch.setattr(spray_module, "DENSE_LIMIT", 0)
    sparse_values, _ = laplacian_spectrum(affinity, 4)
    np.testing.assert_allclose(sparse_values, [0, 0, 0, 8 / 7], atol=1e-8)
    np.testing.assert_allclose(sparse_values, dense_values, atol=1e-8)
    maps, truth = patterns((20, 15))
    result = spray(maps, neighbours=5, embedding="spectral")
    assert adjusted_rand_score(truth.numpy(), result.labels.numpy()) == 1.0


def test_knn_affinity_is_the_symmetrised_neighbour_graph(monkeypatch):
    points = torch.randn(30, 4, generator=torch.Generator().manual_seed(0))
    graph = knn_affinity(points, 3).toarray()
    distances = torch.cdist(points, points).fill_diagonal_(float("inf"))
    knn = np.zeros((30, 30))
    np.put_along_axis(knn, distances.topk(3, largest=False).indices.numpy(), 1.0, axis=1)
    np.testing.assert_array_equal(graph, (knn + knn.T) / 2)
    monkeypatch.setattr(spray_module, "CHUNK_PAIRS", 60)  # two rows per chunk
    np.testing.assert_array_equal(knn_affinity(points, 3).toarray(), graph)


def test_duplicate_heatmaps_never_count_as_their_own_neighbour():
    graph = knn_affinity(torch.zeros(5, 2), 2).toarray()
    assert np.diag(graph).sum() == 0 and (graph.sum(axis=1) > 0).all()


def test_eigengap_closed_form():
    assert eigengap([0.0, 0.1, 0.9, 1.0], max_clusters=3) == 2
    assert eigengap([0.0, 0.5, 0.6, 0.7], max_clusters=3) == 1
    assert eigengap([0.0, 0.1, 0.5, 0.6, 2.0], max_clusters=3) == 2  # k = 4 is above the cap
    assert eigengap([0.0, 0.1, 0.5, 0.6, 2.0], max_clusters=4) == 4
    assert eigengap([0.0, 0.2, 0.4, 0.6], max_clusters=10) == 1  # ties: the smallest k


@pytest.mark.parametrize("shape", [(3, 12, 12), (40,)])
def test_plot_shows_spectrum_embedding_and_means(shape):
    maps, _ = patterns((10, 8, 6), shape)
    result = spray(maps, neighbours=4, embedding="spectral")
    figure = result.plot()
    assert len(figure.axes) == 2 + result.clusters
    assert "k = 3" in figure.axes[0].get_title()
    assert figure.axes[2].get_images()[0].get_array().shape == (
        (12, 12) if len(shape) == 3 else (1, 40))


def test_result_is_a_frozen_dataclass():
    result = spray(patterns((6, 6))[0], neighbours=3, embedding="spectral")
    assert isinstance(result, Spray)
    with pytest.raises(AttributeError):
        result.labels = None


@pytest.mark.parametrize(("call", "argument", "error"), [
    (lambda m: spray(torch.full_like(m, float("nan"))), "heatmaps", ArgumentError),
    (lambda m: spray(m.long()), "heatmaps", ArgumentError),
    (lambda m: spray(m[:1]), "heatmaps", ArgumentError),
    (lambda m: spray(m[:, 0, 0, 0]), "heatmaps", ArgumentError),
    (lambda m: spray(m[:8], neighbours=10), "neighbours", ArgumentError),
    (lambda m: spray(m, neighbours=0), "neighbours", ArgumentError),
    (lambda m: spray(m, clusters=21), "clusters", ArgumentError),
    (lambda m: spray(m, clusters=2.0), "clusters", ArgumentTypeError),
    (lambda m: spray(m, max_clusters=0), "max_clusters", ArgumentError),
    (lambda m: spray(m, size=(8, 8, 8)), "size", ArgumentError),
    (lambda m: spray(m, size=0), "size", ArgumentError),
    (lambda m: spray(m, size="big"), "size", ArgumentTypeError),
    (lambda m: spray(m, embedding="pca"), "embedding", UnknownNameError),
    (lambda m: spray(m, normalise="yes"), "normalise", ArgumentTypeError),
    (lambda m: spray(m, seed=-1), "seed", ArgumentError),
    (lambda m: laplacian_spectrum(torch.zeros(3, 3), 2), "affinity", ArgumentError),
    (lambda m: laplacian_spectrum(torch.tensor([[0.0, 1.0], [0.0, 0.0]]), 2), "affinity",
     ArgumentError),
    (lambda m: laplacian_spectrum(block_affinity((2, 2)), 5), "count", ArgumentError),
    (lambda m: eigengap([0.0], 2), "eigenvalues", ArgumentError),
])
def test_bad_inputs_name_the_argument(call, argument, error):
    maps, _ = patterns((10, 10))
    with pytest.raises(error) as caught:
        call(maps)
    assert isinstance(caught.value, PellucidError)
    assert caught.value.argument == argument
    assert argument in str(caught.value)


def test_missing_umap_names_the_embedding(monkeypatch):
    monkeypatch.setitem(sys.modules, "umap", None)
    with pytest.raises(ArgumentError, match="umap-learn") as caught:
        spray(patterns((6, 6))[0], neighbours=3, embedding="umap")
    assert caught.value.argument == "embedding"


def test_missing_scikit_learn_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(ImportError, match=r"pellucid\[analysis\]"):
        spray(patterns((6, 6))[0], neighbours=3, embedding="spectral")


def test_import_pellucid_does_not_import_scikit_learn():
    import subprocess

    code = ("import sys, pellucid, pellucid.analysis; "
            "print('sklearn' in sys.modules, 'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_clever_hans_clusters_separate_watermarked_images():
    """Acceptance (issue 13): LRP heatmaps of the shortcut class, half of them watermarked,
    cluster by watermark with ARI ≥ 0.8 (measured 1.0 on these 100, eigengap k = 2)."""
    from pellucid.data import clever_hans
    from pellucid.models import load_pretrained

    model = load_pretrained("clever_hans_vgg", progress=False)
    data = clever_hans(0, n_test=500, size=64, seed=0)  # 100 images of class 0
    index = (data.test.labels == data.shortcut_class).nonzero().flatten()
    marked = torch.arange(len(index)) % 2 == 0
    images = torch.where(marked.view(-1, 1, 1, 1), data.test_watermarked.images[index],
                         data.test.images[index])
    explained = pellucid.explain(model, images, target=data.shortcut_class,
                                 method="lrp.epsilon_gamma_box")
    result = spray(explained.attribution, embedding="spectral")
    assert result.suggested_clusters == 2
    assert adjusted_rand_score(marked.numpy(), result.labels.numpy()) >= 0.8


def test_eigengap_ties_within_rounding_go_to_the_smallest_k():
    # the 4-cycle C_4: normalised Laplacian eigenvalues 0, 1, 1, 2 (gaps 1, 0, 1)
    values, _ = laplacian_spectrum(torch.tensor([[0.0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1],
                                                 [1, 0, 1, 0]]), 4)
    np.testing.assert_allclose(values, [0, 1, 1, 2], atol=1e-12)
    assert eigengap(values, max_clusters=3) == 1
    assert eigengap(values + np.array([0, 0, 0, 1e-12]), max_clusters=3) == 1
