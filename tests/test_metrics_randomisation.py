"""Randomisation sanity checks, similarity measures and robustness metrics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pellucid.metrics import evaluate
from pellucid.metrics.similarity import hog_similarity, similarity, ssim

KINDS = ["spearman_abs", "spearman", "ssim", "hog"]


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 12 * 12, 4),
    ).eval()


@pytest.fixture
def images():
    return torch.rand(3, 3, 12, 12, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("kind", KINDS)
def test_similarity_is_one_when_nothing_is_randomised_and_drops_after(kind, images, snapshot,
                                                                      untouched):
    model = small_cnn()
    before = snapshot(model)
    result = evaluate(model, images, 0, "gradient", "randomisation.model_parameter",
                      similarity=kind)["randomisation.model_parameter"]
    untouched(model, before)
    assert result.extras["layers"] == ["none", "5", "2", "0"]
    torch.testing.assert_close(result.curves[:, 0], torch.ones(3))  # the unrandomised copy
    assert (result.curves[:, -1] < 0.9).all()  # fully randomised: the gradient changed
    assert result.direction == "lower"


def test_independent_randomisation_restores_the_other_layers(images, snapshot, untouched):
    model = small_cnn()
    before = snapshot(model)
    result = evaluate(model, images, 0, "gradient", "randomisation.model_parameter",
                      order="independent", layers=("5",))["randomisation.model_parameter"]
    untouched(model, before)
    # randomising only the last linear layer of a gradient: its rows change, the maps change
    assert result.curves.shape == (3, 2)
    assert (result.curves[:, 1] < 0.9).all()
    nothing = evaluate(model, images, 0, "gradient", "randomisation.model_parameter",
                       layers=())["randomisation.model_parameter"]
    torch.testing.assert_close(nothing.scores, torch.ones(3))
    with pytest.raises(ValueError, match="unknown layer"):
        evaluate(model, images, 0, "gradient", "randomisation.model_parameter", layers=("fc",))


def test_random_logit_is_one_when_all_classes_share_their_weights(images, snapshot, untouched):
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, 4)).eval()
    with torch.no_grad():
        model[1].weight.copy_(model[1].weight[:1].expand(4, -1))
    before = snapshot(model)
    result = evaluate(model, images, torch.tensor([0, 1, 2]), "gradient",
                      "randomisation.random_logit", similarity="spearman")
    untouched(model, before)
    logit = result["randomisation.random_logit"]
    torch.testing.assert_close(logit.scores, torch.ones(3))
    assert (logit.extras["random_class"] != torch.tensor([0, 1, 2])).all()


def test_data_randomisation_trains_on_permuted_labels(images, snapshot, untouched):
    model = small_cnn()
    seen = {}

    def train_fn(x, y):
        seen["labels"] = y
        torch.manual_seed(3)
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, 4))

    before = snapshot(model)
    labels = torch.tensor([0, 1, 2])
    result = evaluate(model, images, labels, "gradient", "randomisation.data",
                      train_fn=train_fn)["randomisation.data"]
    untouched(model, before)
    assert sorted(seen["labels"].tolist()) == [0, 1, 2]
    assert result.scores.abs().max() <= 1.0
    with pytest.raises(ValueError, match="train_fn"):
        evaluate(model, images, labels, "gradient", "randomisation.data")


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(2, 16, 20, generator=gen, dtype=torch.float64)
    b = (a + 0.3 * torch.rand(2, 16, 20, generator=gen, dtype=torch.float64)).clamp(0, 1)
    ours = ssim(a, b)
    for i in range(2):
        theirs = metrics.structural_similarity(a[i].numpy(), b[i].numpy(), data_range=1.0)
        assert ours[i].item() == pytest.approx(theirs, abs=1e-10)


def test_similarities_of_identical_opposite_and_unrelated_maps():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(2, 1, 16, 16, generator=gen, dtype=torch.float64)
    for kind in KINDS:
        torch.testing.assert_close(similarity(kind, a, a), torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(similarity("spearman", a, -a), -torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(similarity("spearman_abs", a, -a),
                               torch.ones(2, dtype=torch.float64))
    other = torch.randn(2, 1, 16, 16, generator=gen, dtype=torch.float64)
    for kind in KINDS:
        assert (similarity(kind, a, other) < 0.5).all(), kind
    # HOG only sees gradients: a constant offset does not change it
    torch.testing.assert_close(hog_similarity(a[:, 0], a[:, 0] + 3.0),
                               torch.ones(2, dtype=torch.float64))


def test_sensitivity_and_continuity_on_a_linear_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 5 * 5, 3)).double().eval()
    x = torch.randn(4, 2, 5, 5, dtype=torch.float64)
    metrics = ["robustness.max_sensitivity", "robustness.avg_sensitivity"]
    constant = evaluate(model, x, 1, "gradient", [*metrics, "robustness.continuity"])
    for result in constant.values():  # the gradient of a linear model never moves
        assert result.scores.abs().max() < 1e-12
    radius = 0.1
    moving = evaluate(model, x, 1, "gradient_x_input", metrics, radius=radius, draws=8)
    bound = radius * model[1].weight[1].detach().norm()  # ‖w ⊙ u‖₂ ≤ r‖w‖₂
    top, mean = moving["robustness.max_sensitivity"], moving["robustness.avg_sensitivity"]
    assert (top.scores > 0).all() and (top.scores <= bound).all()
    assert (mean.scores <= top.scores + 1e-12).all()
    torch.testing.assert_close(top.scores, top.curves.amax(1))
