"""Activation maximisation: closed-form optima, exact round trips, hand-computed objectives."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from pellucid.features import (
    IMAGENET_COLOUR_SQRT,
    L2,
    Blur,
    Channel,
    ClassLogit,
    ClassProbability,
    Direction,
    Diversity,
    Fourier,
    GaussianPrior,
    Jitter,
    L2Ball,
    Neuron,
    RandomRotate,
    RandomScale,
    TotalVariation,
    ValueRange,
    class_prototypes,
    maximise,
    semantic_dictionary,
)
from pellucid.features.regularisers import rotation, transform_images
from pellucid.layers import tensor_output
from pellucid.task import Forward
from tests.helpers.models import ResNetish, randomise_batchnorm


def linear_score(w: torch.Tensor) -> nn.Module:
    model = nn.Linear(w.numel(), 1, bias=False).double().eval()
    model.weight.data.copy_(w.view(1, -1))
    return model


def test_projected_gradient_on_l2_ball_reaches_r_w_over_norm_w(snapshot, untouched):
    w = torch.randn(12, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    model = linear_score(w)
    before = snapshot(model)
    (x,) = maximise(model, ClassLogit(0), (1, 12), steps=100, lr=0.5, optimiser="sgd",
                    regularisers=[L2Ball(2.5)], progress=False)
    torch.testing.assert_close(x, 2.5 * w / w.norm(), atol=1e-6, rtol=0)
    untouched(model, before)
    assert model.weight.grad is None


def test_l2_penalty_optimum_is_w_over_two_lambda():
    w = torch.randn(8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    (x,) = maximise(linear_score(w), ClassLogit(0), (1, 8), steps=300, lr=0.05,
                    regularisers=[L2(0.25)], progress=False)
    torch.testing.assert_close(x, w / (2 * 0.25), atol=1e-3, rtol=0)


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 3, 7, 9), (2, 1, 6, 5)])
@pytest.mark.parametrize("decorrelate", [True, False])
def test_fourier_parameterisation_round_trips(shape, decorrelate):
    param = Fourier(decay=1.3, decorrelate=decorrelate)
    image = torch.rand(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(param.to_image(param.from_image(image), shape), image)


def test_fourier_scales_amplitude_by_one_over_frequency():
    param, shape = Fourier(decay=1.0, decorrelate=False), (1, 1, 16, 16)
    norms = []
    for k in (1, 2, 4):  # horizontal frequencies k/16
        params = torch.zeros(1, 1, 16, 9, 2, dtype=torch.float64)
        params[0, 0, 0, k, 0] = 1.0
        norms.append(float(param.to_image(params, shape).norm()))
    assert norms[0] / norms[1] == pytest.approx(2.0) and norms[0] / norms[2] == pytest.approx(4.0)


def test_fourier_colour_is_the_documented_matrix():
    params = torch.zeros(1, 3, 4, 3, 2, dtype=torch.float64)
    params[0, 1, 0, 0, 0] = 1.0  # constant image in decorrelated component 1 only
    image = Fourier().to_image(params, (1, 3, 4, 4))
    colour = image[0, :, 0, 0]
    m = IMAGENET_COLOUR_SQRT / IMAGENET_COLOUR_SQRT.norm(dim=0).max()
    torch.testing.assert_close(colour / colour.norm(), m[:, 1] / m[:, 1].norm())
    assert torch.allclose(image, image[:, :, :1, :1].expand_as(image))


def forward_by_hand() -> Forward:
    output = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 5.0]])
    act = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    return Forward(torch.zeros(2, 4), output, {"conv": [torch.zeros_like(act), act]})


def test_objectives_match_hand_computation():
    recorded = forward_by_hand()
    act = recorded.layer("conv")  # the last of the layer's calls
    assert ClassLogit(2)(recorded).tolist() == [3.0, 5.0]
    assert ClassLogit([0, 1])(recorded).tolist() == [1.0, -1.0]
    p = torch.softmax(recorded.output, 1)
    torch.testing.assert_close(ClassProbability(1)(recorded), p[:, 1])
    torch.testing.assert_close(ClassProbability(1, log=True)(recorded), p[:, 1].log())
    assert Neuron("conv", 1, (0, 1))(recorded).tolist() == [act[0, 1, 0, 1], act[1, 1, 0, 1]]
    assert Channel("conv", [2, 0])(recorded).tolist() == [act[0, 2].mean(), act[1, 0].mean()]
    v = torch.tensor([1.0, -2.0, 0.5])
    expected = (act * v.view(1, 3, 1, 1)).sum(1)
    torch.testing.assert_close(Direction("conv", v)(recorded), expected.mean((1, 2)))
    torch.testing.assert_close(Direction("conv", v, (1, 0))(recorded), expected[:, 1, 0])
    cav = torch.linspace(-1, 1, 12)  # a direction over the whole flattened output (a CAV)
    torch.testing.assert_close(Direction("conv", cav)(recorded), (act.flatten(1) * cav).sum(1))
    combined = 2 * ClassLogit(2) - Channel("conv", 0) + 0.5 * ClassLogit(0)
    torch.testing.assert_close(
        combined(recorded),
        2 * ClassLogit(2)(recorded) - Channel("conv", 0)(recorded) + 0.5 * recorded.output[:, 0],
    )
    assert combined.layers() == {"conv"}
    torch.testing.assert_close(
        sum([ClassLogit(0), ClassLogit(1)])(recorded), recorded.output[:, :2].sum(1)
    )


def test_objective_errors_name_the_problem():
    recorded = forward_by_hand()
    with pytest.raises(ValueError, match="out of range"):
        ClassLogit(3)(recorded)
    with pytest.raises(ValueError, match="one int per image"):
        ClassLogit([0, 1, 2])(recorded)
    with pytest.raises(ValueError, match="position"):
        Neuron("conv", 0, (2, 0))(recorded)
    with pytest.raises(ValueError, match="channels"):
        Direction("conv", torch.ones(4))(recorded)


def test_diversity_is_minus_one_for_copies_and_zero_for_orthogonal_styles():
    same = torch.randn(1, 4, 3, 3).expand(3, 4, 3, 3)
    copies = Forward(torch.zeros(3, 1), torch.zeros(3, 1), {"a": [same]})
    torch.testing.assert_close(Diversity("a")(copies), -torch.ones(3))
    disjoint = torch.zeros(2, 4, 3, 3)
    disjoint[0, :2] = torch.rand(2, 3, 3) + 0.1
    disjoint[1, 2:] = torch.rand(2, 3, 3) + 0.1  # Gram matrices with disjoint support
    styles = Forward(torch.zeros(2, 1), torch.zeros(2, 1), {"a": [disjoint]})
    torch.testing.assert_close(Diversity("a")(styles), torch.zeros(2))


def test_gaussian_prior_matches_scipy():
    gen = torch.Generator().manual_seed(0)
    data = torch.randn(200, 5, generator=gen, dtype=torch.float64) @ torch.randn(
        5, 5, generator=gen, dtype=torch.float64)
    x = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    mean, cov = data.mean(0).numpy(), np.cov(data.numpy(), rowvar=False)

    full = GaussianPrior.fit(data, eps=1e-6)
    expected = stats.multivariate_normal(mean, cov + 1e-6 * np.eye(5)).logpdf(x.numpy())
    np.testing.assert_allclose(full(x).numpy(), expected, rtol=1e-8)

    diag = GaussianPrior.fit(data, diagonal=True, eps=0.0)
    expected = stats.norm(mean, np.sqrt(np.diag(cov))).logpdf(x.numpy()).sum(1)
    np.testing.assert_allclose(diag(x).numpy(), expected, rtol=1e-8)

    low = GaussianPrior.fit(data, rank=2, eps=0.0)
    eig, vec = np.linalg.eigh(cov)
    u, lam, r = vec[:, -2:], eig[-2:], eig[:-2].mean()  # probabilistic PCA
    ppca = u @ np.diag(lam) @ u.T + r * (np.eye(5) - u @ u.T)
    expected = stats.multivariate_normal(mean, ppca).logpdf(x.numpy())
    np.testing.assert_allclose(low(x).numpy(), expected, rtol=1e-8)


def test_transforms_rotate_exactly_and_identity_leaves_images_alone():
    x = torch.arange(2 * 16, dtype=torch.float64).view(2, 1, 4, 4)
    grid = F.affine_grid(rotation(torch.tensor([90.0, -90.0]), 4, 4), [2, 1, 4, 4],
                         align_corners=False)
    turned = F.grid_sample(x, grid, align_corners=False)
    torch.testing.assert_close(turned[0], torch.rot90(x[0], 1, (1, 2)))
    torch.testing.assert_close(turned[1], torch.rot90(x[1], -1, (1, 2)))
    still = [Jitter(0.0), RandomScale((1.0, 1.0)), RandomRotate(0.0)]
    torch.testing.assert_close(transform_images(x, still, torch.Generator()), x)


def test_penalties_by_hand():
    x = torch.tensor([[[0.0, 1.0, 3.0]]])
    assert L2(1.0).cost(x).tolist() == [10.0]
    assert TotalVariation(1.0).cost(x).tolist() == [3.0]
    assert TotalVariation(1.0, power=2).cost(x).tolist() == [5.0]
    flat, stripes = torch.ones(1, 1, 6, 6), (torch.arange(36).view(1, 1, 6, 6) % 2).float()
    assert float(Blur(1.0).cost(flat)) == pytest.approx(0.0, abs=1e-9)  # nothing to remove
    assert float(Blur(1.0).cost(stripes)) > 0.2 * float(stripes.pow(2).sum())


def test_regularised_fourier_run_is_seeded_and_leaves_the_model_alone(snapshot, untouched):
    model = randomise_batchnorm(ResNetish()).eval()
    before = snapshot(model)
    settings = dict(steps=6, lr=0.05, seed=1, parameterisation="fourier", progress=False,
                    regularisers=[Jitter(1), RandomScale(), RandomRotate(5), TotalVariation(1e-3),
                                  Blur(1e-3), L2(1e-3), ValueRange(-1, 1)])
    objective = Channel("layer1", [0, 1, 2]) + 0.1 * Diversity("layer1")
    first = maximise(model, objective, (3, 3, 12, 12), **settings)
    second = maximise(model, objective, (3, 3, 12, 12), **settings)
    assert len(first) == 3 and first[0].shape == (3, 12, 12)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert all(float(a.abs().max()) <= 1.0 for a in first)
    untouched(model, before)
    with pytest.raises(ValueError, match="no layer"):
        maximise(model, Channel("layer9", 0), (1, 3, 12, 12), steps=1, progress=False)
    untouched(model, before)


def train_digits_model() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(digits.target)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 64, 10))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        optimiser.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimiser.step()
    model.zero_grad(set_to_none=True)
    return model.eval(), x, y


def test_prototypes_beat_every_training_image_of_their_class(snapshot, untouched):
    model, x, y = train_digits_model()
    assert (model(x).argmax(1) == y).float().mean() > 0.9
    before = snapshot(model)
    prior = GaussianPrior.fit(x, rank=10)
    prototypes = class_prototypes(model, range(10), (1, 8, 8), prior=prior, prior_weight=0.1,
                                  regularisers=[ValueRange(0, 1)], steps=80, lr=0.05,
                                  progress=False)
    untouched(model, before)
    with torch.no_grad():
        proto_logits = model(torch.stack(prototypes)).diagonal()
        real = model(x)
    for c in range(10):
        assert proto_logits[c] > real[y == c, c].max(), f"class {c}"


def test_semantic_dictionary_picks_the_strongest_channels(snapshot, untouched):
    model = randomise_batchnorm(ResNetish()).eval()
    image = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    before = snapshot(model)
    found = semantic_dictionary(model, "layer2", image, (3, 5), top=3, steps=2, progress=False)
    untouched(model, before)
    with torch.no_grad():
        act = model.layer2(model.layer1(model.stem(image)))[0, :, 3, 5]
    assert found.channels.tolist() == act.argsort(descending=True)[:3].tolist()
    torch.testing.assert_close(found.activations, act.sort(descending=True).values[:3])
    assert len(found.images) == 3 and found.images[0].shape == (3, 8, 8)
    with pytest.raises(ValueError, match="batch dimension of 1"):
        semantic_dictionary(model, "layer2", image[0], (0, 0))
    assert math.isfinite(float(found.images[0].sum()))


class Named(nn.Module):
    """A layer whose output is not a tensor: a dict holding its input."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"features": x}


class NamedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.named = nn.Conv2d(3, 4, 3), Named()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.named(self.conv(x))["features"].mean((2, 3))


def test_a_layer_returning_a_dict_gets_the_core_error(snapshot, untouched):
    model, x = NamedNet().eval(), torch.randn(1, 3, 8, 8)
    with pytest.raises(TypeError) as core:
        tensor_output("named", {"features": x})
    message = re.escape(str(core.value))
    before = snapshot(model)
    with pytest.raises(TypeError, match=message):
        maximise(model, Channel("named", 0), (1, 3, 8, 8), steps=1, progress=False)
    with pytest.raises(TypeError, match=message):
        semantic_dictionary(model, "named", x, (0, 0), steps=1, progress=False)
    untouched(model, before)


def test_seen_is_a_deprecated_way_to_build_a_forward():
    with pytest.warns(DeprecationWarning, match="pellucid.task.Forward"):
        from pellucid.features import Seen
    output, act = torch.tensor([[1.0, 2.0]]), torch.ones(1, 3, 2, 2)
    recorded = Seen(output, {"conv": act})
    assert isinstance(recorded, Forward) and recorded.layer("conv") is act
    assert ClassLogit(1)(recorded).tolist() == [2.0]
