"""Perturbation methods: occlusion, RISE, LIME, KernelSHAP, and their shared masked forward.

Expected values are computed here from the explicit weights of linear models (or by brute
force over coalitions), never by the code under test.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import pellucid
from pellucid.attribution.masking import masked_scores
from pellucid.attribution.perturbation import Rise
from pellucid.attribution.surrogate import Lime
from pellucid.errors import ArgumentError, PellucidError
from pellucid.targets import Target
from pellucid.task import Task
from tests.helpers.models import Conv1dNet, mlp

METHODS = ("occlusion", "rise", "lime", "kernel_shap")


class FlatLinear(nn.Module):
    """f(x) = W · flatten(x) + b, for inputs of any sample shape (float64)."""

    def __init__(self, sample_shape: tuple[int, ...], outputs: int = 3, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(math.prod(sample_shape), outputs).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))

    def weight(self, target: int, shape: tuple[int, ...]) -> torch.Tensor:
        return self.fc.weight[target].detach().reshape(shape)


def randn(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def group_sums(contrib: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per sample, each element replaced by the sum of ``contrib`` over its group."""
    labels = labels.expand(contrib.shape[1:]).reshape(-1)
    flat = contrib.reshape(len(contrib), -1)
    out = torch.zeros_like(flat)
    for g in labels.unique():
        out[:, labels == g] = flat[:, labels == g].sum(1, keepdim=True)
    return out.reshape(contrib.shape)


# ---------------------------------------------------------------- occlusion


def fill_values(fill, x: torch.Tensor) -> torch.Tensor:
    """The fill computed by hand: zero, per-sample per-channel mean, a number, a tensor."""
    if isinstance(fill, torch.Tensor):
        return fill.expand_as(x)
    if fill == "zero":
        return torch.zeros_like(x)
    if fill == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    return torch.full_like(x, float(fill))


@pytest.mark.parametrize(
    "fill", ["zero", "mean", 0.5, torch.tensor([[[0.3]], [[-0.2]]], dtype=torch.float64)]
)
def test_occlusion_non_overlapping_windows_on_a_linear_model(fill):
    shape = (2, 6, 4)
    model = FlatLinear(shape).eval()
    x = randn(2, *shape)
    e = pellucid.explain(model, x, target=1, method="occlusion", window=(3, 2), fill=fill)
    contrib = model.weight(1, shape) * (x - fill_values(fill, x))
    expected = torch.zeros_like(x)
    for i, j in itertools.product(range(0, 6, 3), range(0, 4, 2)):  # channels covered whole
        drop = contrib[:, :, i : i + 3, j : j + 2].sum((1, 2, 3))
        expected[:, :, i : i + 3, j : j + 2] = drop.view(-1, 1, 1, 1)
    torch.testing.assert_close(e.attribution, expected)
    assert e.extras["windows"] == 4


def test_occlusion_overlapping_windows_average_the_drops():
    model = FlatLinear((5,)).eval()
    x = randn(1, 5)
    e = pellucid.explain(model, x, target=0, method="occlusion", window=3, stride=1)
    c = model.weight(0, (5,)) * x[0]
    drops = [c[0:3].sum(), c[1:4].sum(), c[2:5].sum()]  # the windows start at 0, 1, 2
    expected = torch.stack([drops[0], (drops[0] + drops[1]) / 2, sum(drops) / 3,
                            (drops[1] + drops[2]) / 2, drops[2]])
    torch.testing.assert_close(e.attribution[0], expected)


def test_occlusion_last_window_reaches_the_end():
    model = FlatLinear((7,)).eval()
    x = randn(1, 7)
    e = pellucid.explain(model, x, target=2, method="occlusion", window=3, stride=3)
    c = model.weight(2, (7,)) * x[0]
    # windows [0, 3), [3, 6), and [4, 7) added so that the last element is covered:
    # elements 4 and 5 get the mean drop of the two windows that cover them
    first, middle, last = c[0:3].sum(), c[3:6].sum(), c[4:7].sum()
    expected = torch.stack([first] * 3 + [middle] + [(middle + last) / 2] * 2 + [last])
    torch.testing.assert_close(e.attribution[0], expected)


def test_occlusion_stride_larger_than_the_window():
    model = FlatLinear((5,)).eval()
    # windows [0, 2) and [3, 5): element 2 is in none, which is an error, not a silent 0
    with pytest.raises(ArgumentError, match="stride 3 is larger than the window 2") as error:
        pellucid.explain(model, randn(1, 5), target=2, method="occlusion", window=2, stride=3)
    assert error.value.argument == "stride"
    # on 4 elements the last window [2, 4) closes the gap: allowed, exact
    x = randn(1, 4)
    e = pellucid.explain(model := FlatLinear((4,)).eval(), x, target=1, method="occlusion",
                         window=2, stride=3)
    c = model.weight(1, (4,)) * x[0]
    expected = torch.stack([c[0:2].sum()] * 2 + [c[2:4].sum()] * 2)
    torch.testing.assert_close(e.attribution[0], expected)


def test_occlusion_single_features_on_tabular_is_weight_times_input():
    model = FlatLinear((6,)).eval()
    x = randn(3, 6)
    e = pellucid.explain(model, x, target=1, method="occlusion")  # default window: 1 feature
    torch.testing.assert_close(e.attribution, model.weight(1, (6,)) * x)


# ---------------------------------------------------------------- RISE


@pytest.mark.parametrize("p", [0.5, 0.3])
def test_rise_on_tabular_linear_model_approaches_its_expectation(p):
    # f(x) = w·x + b and i.i.d. masks Mⱼ ~ Bernoulli(p), fill 0:
    # E[f(x ⊙ M) Mᵢ] = wᵢxᵢ E[Mᵢ²] + Σ_{j≠i} wⱼxⱼ E[MⱼMᵢ] + b E[Mᵢ]
    #                = p wᵢxᵢ + p² Σ_{j≠i} wⱼxⱼ + p b,
    # so E[S]ᵢ = E[f(x ⊙ M) Mᵢ] / p = (1 − p) wᵢxᵢ + p (w·x) + b.
    model = FlatLinear((6,)).eval()
    x = randn(2, 6)
    e = pellucid.explain(model, x, target=0, method="rise", samples=20000, p=p, batch_size=4096)
    w, b = model.weight(0, (6,)), model.fc.bias[0].detach()
    expected = (1 - p) * w * x + p * (x @ w).unsqueeze(1) + b
    torch.testing.assert_close(e.attribution, expected, atol=0.03, rtol=0)


def test_rise_is_deterministic_for_a_seed():
    model, x = FlatLinear((3, 8, 8)).eval(), randn(2, 3, 8, 8)

    def run(seed: int) -> torch.Tensor:
        return pellucid.explain(model, x, target=0, method="rise", samples=64, cells=3,
                                seed=seed).attribution

    torch.testing.assert_close(run(4), run(4), rtol=0, atol=0)
    assert not torch.allclose(run(4), run(5))


@pytest.mark.parametrize("shape", [(2, 12), (3, 10, 9), (1, 4, 5, 6)])
def test_rise_spatial_masks_average_to_p_and_are_shared_by_channels(shape):
    # a constant model f = c gives S = c Σᵢ Mᵢ / (N p), which tends to c since E[M] = p
    model = FlatLinear(shape).eval()
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.fill_(2.0)
    x = randn(1, *shape)
    e = pellucid.explain(model, x, target=1, method="rise", samples=3000, cells=3, p=0.4,
                         batch_size=1000)
    torch.testing.assert_close(e.attribution, torch.full_like(x, 2.0), atol=0.15, rtol=0)
    assert torch.equal(e.attribution, e.attribution[:, :1].expand_as(x))
    assert e.attribution.std() > 0  # smooth random masks, not a constant


def test_rise_masks_are_smooth_and_randomly_shifted():
    x = randn(1, 2, 12, 12)
    masks = Rise(samples=200, cells=3, p=0.5).mask_source(x)(torch.arange(200))
    assert masks.shape == (200, 1, 12, 12) and masks.min() >= 0 and masks.max() <= 1
    # upsampling a 3 × 3 grid 4× without a shift would give binary values at the corner
    # (its nearest grid cell); random shifts place the corner between cells
    corner = masks[:, 0, 0, 0]
    assert ((corner > 0.01) & (corner < 0.99)).float().mean() > 0.2
    assert len({tuple(m.flatten().tolist()) for m in masks}) > 150


def test_per_sample_model_arguments_follow_their_rows():
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(6, 3).double()

        def forward(self, x, scale):
            return self.fc(x) * scale

    model, x = Scaled().eval(), randn(3, 6)
    scale = torch.tensor([[1.0], [-2.0], [3.0]], dtype=torch.float64)
    for method in METHODS:
        settings = {} if method == "occlusion" else {"samples": 30}
        whole = pellucid.explain(model, x, 1, method, model_kwargs={"scale": scale},
                                 batch_size=7, **settings)
        for i in range(3):
            single = pellucid.explain(model, x[i : i + 1], 1, method,
                                      model_kwargs={"scale": scale[i : i + 1]}, **settings)
            torch.testing.assert_close(whole.attribution[i : i + 1], single.attribution)


# ---------------------------------------------------------------- KernelSHAP and LIME


@pytest.mark.parametrize("fill", ["zero", "mean", -0.5])
def test_kernel_shap_exhaustive_equals_exact_group_contributions(fill):
    shape = (2, 6, 4)
    model = FlatLinear(shape).eval()
    x = randn(3, *shape)
    e = pellucid.explain(model, x, target=2, method="kernel_shap", patch=(3, 2), fill=fill)
    assert e.extras["exact"] and e.extras["group_attribution"].shape == (3, 4)
    labels = (torch.arange(6) // 3).view(-1, 1) * 2 + torch.arange(4) // 2  # 2 × 2 patches
    contrib = model.weight(2, shape) * (x - fill_values(fill, x))
    torch.testing.assert_close(e.attribution, group_sums(contrib, labels), atol=1e-5, rtol=0)
    assert e.extras["efficiency_gap"].abs().max() < 1e-5
    empty = model(fill_values(fill, x))[:, 2].detach()
    torch.testing.assert_close(e.extras["intercept"], empty)


def test_kernel_shap_sampled_is_exact_on_linear_models_by_efficiency():
    model = FlatLinear((12,)).eval()
    x = randn(2, 12)
    e = pellucid.explain(model, x, target=0, method="kernel_shap", samples=300)
    assert not e.extras["exact"]  # 2^12 − 2 coalitions > 300: sampled in complementary pairs
    torch.testing.assert_close(e.attribution, model.weight(0, (12,)) * x, atol=1e-5, rtol=0)
    assert e.extras["efficiency_gap"].abs().max() < 1e-5


def test_kernel_shap_exhaustive_equals_brute_force_shapley_values_on_a_nonlinear_model():
    torch.manual_seed(3)
    model = mlp(features=8).double().eval()
    x = randn(2, 8)
    groups = torch.tensor([0, 0, 1, 2, 2, 2, 3, 1])
    e = pellucid.explain(model, x, target=1, method="kernel_shap", feature_mask=groups)

    def value(coalition: tuple[int, ...]) -> torch.Tensor:
        keep = torch.isin(groups, torch.tensor(coalition, dtype=torch.long)).double()
        return model(x * keep)[:, 1].detach()

    phi = torch.zeros(2, 4, dtype=torch.float64)
    for i in range(4):
        others = [g for g in range(4) if g != i]
        for k in range(4):
            for s in itertools.combinations(others, k):
                weight = math.factorial(k) * math.factorial(4 - k - 1) / math.factorial(4)
                phi[:, i] += weight * (value((*s, i)) - value(s))
    torch.testing.assert_close(e.extras["group_attribution"], phi, atol=1e-6, rtol=0)
    torch.testing.assert_close(e.attribution, phi[:, groups])


def test_lime_with_a_tiny_ridge_recovers_a_linear_model():
    shape = (2, 6, 4)
    model = FlatLinear(shape).eval()
    x = randn(2, *shape)
    mask = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 5]] * 2).unsqueeze(0)  # (1, 6, 4)
    e = pellucid.explain(model, x, target=1, method="lime", feature_mask=mask, ridge=1e-9,
                         samples=64)
    contrib = model.weight(1, shape) * x
    torch.testing.assert_close(e.attribution, group_sums(contrib, mask), atol=1e-5, rtol=0)
    torch.testing.assert_close(e.extras["intercept"], model(torch.zeros_like(x))[:, 1].detach())
    assert e.extras["groups"].tolist() == [0, 1, 2, 5]
    torch.testing.assert_close(e.extras["r2"], torch.ones(2, dtype=torch.float64))


def test_lime_is_the_kernel_weighted_ridge_fit_of_its_coalitions():
    torch.manual_seed(0)
    model = mlp(features=6).double().eval()
    x = randn(2, 6)
    lime = Lime(samples=40, kernel_width=0.5, ridge=0.3, seed=7)
    z, weights = lime.coalitions(6)
    assert z[0].tolist() == [1.0] * 6
    k = z.sum(1)
    torch.testing.assert_close(weights, torch.exp(-(1 - (k / 6).sqrt()) ** 2 / 0.25))
    # independent fit: ridge on [1, z] with an unpenalised intercept, by the normal equations
    design = np.hstack([np.ones((40, 1)), z.numpy()])
    w = np.diag(weights.numpy())
    penalty = 0.3 * np.diag([0.0] + [1.0] * 6)
    e = lime(model, x, target=3)
    for b in range(2):
        y = model(x[b] * z)[:, 3].detach().numpy()
        beta = np.linalg.solve(design.T @ w @ design + penalty, design.T @ w @ y)
        np.testing.assert_allclose(e.extras["group_attribution"][b].numpy(), beta[1:], atol=1e-8)
        np.testing.assert_allclose(e.extras["intercept"][b].item(), beta[0], atol=1e-8)


# ---------------------------------------------------------------- the shared masked forward


def test_masked_scores_chunks_masks_and_accumulates():
    model = FlatLinear((4,)).eval()
    x, fill = randn(2, 4), torch.full((2, 4), 0.5, dtype=torch.float64)
    all_masks = (randn(10, 4, seed=3) > 0).double()
    asked = []

    def source(index):
        asked.append(len(index))
        return all_masks[index]

    task = Task(model, Target(classes=torch.tensor([0, 2])), rows=2)
    centre = torch.tensor([1.0, -1.0], dtype=torch.float64)
    scores, total = masked_scores(task, x, fill, source, 10, 4, accumulate=True,
                                  centre=centre)
    assert max(asked) <= 3 and sum(asked) >= 10  # masks made per chunk of 4 rows
    rows = fill[:, None] + all_masks * (x - fill)[:, None]  # (B, n, D)
    out = model(rows.reshape(20, 4)).reshape(2, 10, 3).detach()
    torch.testing.assert_close(scores, torch.stack([out[0, :, 0], out[1, :, 2]]))
    torch.testing.assert_close(total, ((scores - centre[:, None]) @ all_masks))


# ---------------------------------------------------------------- contracts


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("net", ["mlp", "conv1d"])
def test_batch_equals_concatenated_samples_and_chunking_does_not_matter(method, net):
    torch.manual_seed(0)
    model, x = (mlp(), torch.randn(3, 6)) if net == "mlp" else (Conv1dNet(), torch.randn(3, 2, 12))
    model.eval()
    settings = {"samples": 40} if method != "occlusion" else {"window": 3, "stride": 2}
    whole = pellucid.explain(model, x, target=[0, 2, 1], method=method, batch_size=1000,
                             **settings)
    singles = torch.cat([
        pellucid.explain(model, x[i : i + 1], target=t, method=method, batch_size=1000,
                         **settings).attribution
        for i, t in enumerate([0, 2, 1])
    ])
    torch.testing.assert_close(whole.attribution, singles, atol=1e-5, rtol=1e-4)
    chunked = pellucid.explain(model, x, target=[0, 2, 1], method=method, batch_size=5,
                               **settings)
    torch.testing.assert_close(chunked.attribution, whole.attribution, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("method", "settings"),
    [("kernel_shap", {"samples": 6}), ("lime", {"samples": 5, "ridge": 0.0})],
)
def test_underdetermined_fits_are_still_batch_invariant(method, settings):
    # 6 coalitions in pairs give 3 equations for 7 unknowns; 5 LIME rows for 9 unknowns:
    # the minimum-norm solution of a sample must not depend on the other samples
    torch.manual_seed(0)
    model, x = mlp(features=8).eval(), torch.randn(3, 8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        whole = pellucid.explain(model, x, target=1, method=method, **settings).attribution
        singles = torch.cat([pellucid.explain(model, x[i : i + 1], target=1, method=method,
                                              **settings).attribution for i in range(3)])
    assert (method == "kernel_shap") == any("underdetermined" in str(w.message) for w in caught)
    torch.testing.assert_close(whole, singles, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    ("method", "settings", "message"),
    [
        ("occlusion", {"window": (3, 9)}, "does not fit"),
        ("occlusion", {"window": (1, 2, 3, 4)}, "does not fit"),
        ("occlusion", {"window": 0}, "positive int"),
        ("occlusion", {"window": 2, "stride": (1, 1, 1)}, "one entry per window dim"),
        ("occlusion", {"fill": "gray"}, "unknown fill"),
        ("occlusion", {"fill": True}, "fill must be one of"),
        ("occlusion", {"fill": "uniform"}, "unknown fill"),
        ("rise", {"fill": torch.zeros(5, 1)}, "does not broadcast"),
        ("rise", {"p": 0.0}, "probability"),
        ("rise", {"samples": 0}, "positive int"),
        ("lime", {"feature_mask": torch.zeros(8, 7, dtype=torch.long)}, "feature_mask has shape"),
        ("kernel_shap", {"feature_mask": torch.zeros(1, 8, 2, dtype=torch.long)},
         "feature_mask has shape"),
        ("kernel_shap", {"feature_mask": torch.zeros(8, 8), "patch": 2}, "not both"),
        ("lime", {"patch": (2, 2, 2)}, "one entry per spatial dim"),
        ("lime", {"kernel_width": 0.0}, "kernel_width"),
    ],
)
def test_clear_errors_on_images(method, settings, message, snapshot, untouched):
    model = FlatLinear((2, 8, 8)).eval()
    before = snapshot(model)
    with pytest.raises(PellucidError, match=message):
        pellucid.explain(model, randn(2, 2, 8, 8), target=0, method=method, **settings)
    untouched(model, before)


def test_clear_errors_on_tabular_inputs():
    model = FlatLinear((5,)).eval()
    x = randn(2, 5)
    with pytest.raises(ValueError, match=r"none \(tabular"):
        pellucid.explain(model, x, target=0, method="kernel_shap", patch=2)
    with pytest.raises(ValueError, match="'blur' blurs over spatial"):
        pellucid.explain(model, x, target=0, method="occlusion", fill="blur")
    with pytest.raises(TypeError, match="integer group labels"):
        pellucid.explain(model, x, target=0, method="lime", feature_mask=torch.zeros(5))


@pytest.mark.parametrize("method", METHODS)
def test_model_and_inputs_are_untouched(method, snapshot, untouched):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(inplace=True),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4)).eval()
    model[0].weight.requires_grad_(False)
    model[1].running_mean.uniform_(-0.5, 0.5)
    x = torch.randn(2, 2, 6, 6)
    x_before, before = x.clone(), snapshot(model)
    settings = {"samples": 20, "fill": "blur"} if method != "occlusion" else {"fill": "mean"}
    e = pellucid.explain(model, x, method=method, **settings)
    assert e.attribution.shape == x.shape and torch.isfinite(e.attribution).all()
    untouched(model, before)
    assert torch.equal(x, x_before)
