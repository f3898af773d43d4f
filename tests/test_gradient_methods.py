"""Closed forms for the gradient family, Integrated/Expected Gradients and the noise wrappers."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import pellucid
from pellucid.attribution.integrated import RULES, quadrature
from pellucid.errors import ArgumentError
from pellucid.perturb import gaussian_blur, make_baseline


class Quadratic(nn.Module):
    """f(x) = ½ xᵀAx per sample (A symmetric), one output: ∇f = Ax."""

    def __init__(self, n: int, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        a = torch.randn(n, n, generator=gen, dtype=torch.float64)
        self.register_buffer("a", a + a.T)

    def forward(self, x):
        return (0.5 * ((x @ self.a) * x).sum(1)).unsqueeze(1)


@pytest.fixture
def x():
    return torch.randn(4, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


def test_gradient_family_on_a_linear_model(linear_model, x):
    w = linear_model.weight[1].detach()
    run = lambda m, **s: pellucid.explain(linear_model, x, 1, method=m, **s).attribution  # noqa: E731
    assert torch.allclose(run("gradient"), w.expand_as(x))
    assert torch.allclose(run("sensitivity"), (w**2).expand_as(x))
    assert torch.allclose(run("saliency"), w.abs().expand_as(x))
    assert torch.allclose(run("gradient_x_input"), w * x)


def test_saliency_max_over_channels():
    conv = nn.Conv2d(3, 2, 1, bias=False).double().eval()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    e = pellucid.explain(conv, x, target=lambda out: out[:, 0].sum((1, 2)), method="saliency",
                         max_over_channels=True)
    expected = conv.weight[0, :, 0, 0].abs().max()
    assert torch.allclose(e.attribution, torch.full_like(x, expected.item()))


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("steps", [2, 7, 32])
def test_ig_on_a_linear_model_is_exact_for_any_rule_and_steps(linear_model, x, rule, steps):
    w = linear_model.weight[2].detach()
    e = pellucid.explain(linear_model, x, 2, method="integrated_gradients", steps=steps, rule=rule,
                         batch_size=5)
    assert torch.allclose(e.attribution, x * w)
    assert torch.allclose(e.extras["completeness_gap"], torch.zeros(4, dtype=torch.float64),
                          atol=1e-12)


@pytest.mark.parametrize("baseline", ["zero", 0.7, "mean", "uniform", "tensor"])
def test_ig_baselines_on_a_linear_model(linear_model, x, baseline):
    spec = torch.linspace(-1, 1, 5, dtype=torch.float64) if baseline == "tensor" else baseline
    reference = make_baseline(spec, x, seed=0)
    e = pellucid.explain(linear_model, x, 0, method="integrated_gradients", baseline=spec, steps=3)
    assert torch.allclose(e.attribution, (x - reference) * linear_model.weight[0].detach())
    if baseline == 0.7:
        assert torch.allclose(reference, torch.full_like(x, 0.7))
    if baseline == "mean":
        assert torch.allclose(reference, x.mean(1, keepdim=True).expand_as(x))


def test_blur_baseline_is_a_normalised_gaussian_blur():
    img = torch.zeros(1, 1, 21, 21, dtype=torch.float64)
    img[0, 0, 10, 10] = 1.0
    blurred = gaussian_blur(img, sigma=2.0)
    assert abs(blurred.sum().item() - 1.0) < 1e-9
    r = torch.arange(-6, 7, dtype=torch.float64)  # the kernel is truncated at 3σ
    g = torch.exp(-0.5 * (r / 2.0) ** 2)
    g = torch.nn.functional.pad(g / g.sum(), (4, 4))
    assert torch.allclose(blurred[0, 0], torch.outer(g, g), atol=1e-12)
    with pytest.raises(ValueError, match="spatial dimensions"):
        gaussian_blur(torch.zeros(2, 5), 1.0)


def test_ig_on_a_quadratic_matches_the_closed_form_of_each_rule(x):
    """∫₀¹ A(αx)·x dα = ½ xᵀAx; a rule with nodes αₖ, weights wₖ gives (Σ wₖαₖ) (Ax)⊙x."""
    model = Quadratic(5).eval()
    ax = x @ model.a
    for rule, steps, factor in [
        ("riemann_left", 4, 3 / 8),
        ("riemann_right", 4, 5 / 8),
        ("riemann_middle", 4, 1 / 2),
        ("riemann_trapezoid", 4, 1 / 2),
        ("gauss_legendre", 2, 1 / 2),
    ]:
        e = pellucid.explain(model, x, 0, method="integrated_gradients", steps=steps, rule=rule)
        assert torch.allclose(e.attribution, factor * ax * x), rule


def test_ig_completeness_improves_with_steps():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Softplus(), nn.Linear(16, 16), nn.Tanh(),
                          nn.Linear(16, 2)).double().eval()
    x = 3 * torch.randn(3, 6, dtype=torch.float64)
    gaps = []
    for steps in (2, 8, 32):
        e = pellucid.explain(model, x, 0, method="integrated_gradients", steps=steps,
                             rule="riemann_middle")
        gaps.append(e.extras["completeness_gap"].abs().max().item())
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 1e-3


def test_ig_results_do_not_depend_on_batch_size(x):
    model = Quadratic(5, seed=1).eval()
    a = pellucid.explain(model, x, 0, method="integrated_gradients", steps=9, batch_size=1)
    b = pellucid.explain(model, x, 0, method="integrated_gradients", steps=9, batch_size=1000)
    assert torch.allclose(a.attribution, b.attribution)


def test_quadrature_weights_sum_to_one():
    for rule in RULES:
        alphas, weights = quadrature(rule, 5)
        assert abs(weights.sum().item() - 1) < 1e-12 and alphas.min() >= 0 and alphas.max() <= 1
    with pytest.raises(ValueError, match="unknown rule 'simpson'"):
        quadrature("simpson", 4)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        quadrature("riemann_left", 0)


@settings(max_examples=25, deadline=None)
@given(
    features=st.integers(1, 6),
    batch=st.integers(1, 4),
    steps=st.integers(1, 12),
    seed=st.integers(0, 10_000),
)
def test_ig_linear_property(features, batch, steps, seed):
    gen = torch.Generator().manual_seed(seed)
    model = nn.Linear(features, 2).double().eval()
    with torch.no_grad():
        model.weight.copy_(torch.randn(2, features, generator=gen, dtype=torch.float64))
    x = torch.randn(batch, features, generator=gen, dtype=torch.float64)
    base = torch.randn(features, generator=gen, dtype=torch.float64)
    e = pellucid.explain(model, x, 1, method="integrated_gradients", steps=steps, baseline=base,
                         rule="riemann_left")
    assert torch.allclose(e.attribution, (x - base) * model.weight[1])


def test_expected_gradients_with_one_reference_is_exact(linear_model, x):
    ref = torch.randn(1, 5, dtype=torch.float64)
    e = pellucid.explain(linear_model, x, 1, method="expected_gradients", references=ref, samples=5)
    assert torch.allclose(e.attribution, (x - ref) * linear_model.weight[1].detach())


def test_expected_gradients_converges_to_the_mean_reference(linear_model, x):
    refs = torch.randn(6, 5, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    e = pellucid.explain(linear_model, x, 1, method="expected_gradients", references=refs,
                         samples=4000, batch_size=4000)
    expected = (x - refs.mean(0)) * linear_model.weight[1].detach()
    assert torch.allclose(e.attribution, expected, atol=0.05 * expected.abs().max().item())


def test_expected_gradients_on_a_quadratic_averages_the_path(x):
    """E_α[A(r + α(x − r))]⊙(x − r) with one reference r and α ∼ U(0,1) → ½A(x + r)⊙(x − r)."""
    model = Quadratic(5).eval()
    ref = torch.randn(1, 5, dtype=torch.float64)
    e = pellucid.explain(model, x, 0, method="expected_gradients", references=ref, samples=20000,
                         batch_size=20000)
    expected = 0.5 * ((x + ref) @ model.a) * (x - ref)
    assert torch.allclose(e.attribution, expected, atol=0.03 * expected.abs().max().item())


def test_expected_gradients_errors(linear_model, x):
    with pytest.raises(ValueError, match="needs references"):
        pellucid.explain(linear_model, x, method="expected_gradients")
    with pytest.raises(ValueError, match="sample shape"):
        pellucid.explain(linear_model, x, method="expected_gradients",
                         references=torch.zeros(3, 4, dtype=torch.float64))


def test_noise_wrappers_on_a_linear_model(linear_model, x):
    w = linear_model.weight[0].detach()
    run = lambda m, **s: pellucid.explain(linear_model, x, 0, method=m, samples=8, **s).attribution  # noqa: E731
    assert torch.allclose(run("smoothgrad"), w.expand_as(x))
    assert torch.allclose(run("smoothgrad_squared"), (w**2).expand_as(x))
    assert torch.allclose(run("vargrad"), torch.zeros_like(x), atol=1e-12)


def test_smoothgrad_of_a_quadratic_is_unbiased(x):
    """E[A(x + ε)] = Ax, and Var[(A(x+ε))ᵢ] = σ² Σⱼ Aᵢⱼ² for VarGrad."""
    model = Quadratic(5).eval()
    e = pellucid.explain(model, x, 0, method="smoothgrad", samples=20000, noise=0.1,
                         batch_size=20000)
    ax = x @ model.a
    assert torch.allclose(e.attribution, ax, atol=0.05 * ax.abs().max().item())
    sigma = 0.1 * (x.amax(1) - x.amin(1))
    var = pellucid.explain(model, x, 0, method="vargrad", samples=20000, noise=0.1,
                           batch_size=20000).attribution
    expected = sigma[:, None] ** 2 * (model.a**2).sum(1)
    assert torch.allclose(var, expected, rtol=0.1)


def test_smoothgrad_wraps_any_method_and_zero_noise_is_the_base(linear_model, x):
    ig = pellucid.explain(linear_model, x, 1, method="integrated_gradients", steps=4)
    sg = pellucid.explain(linear_model, x, 1, method="smoothgrad", base="integrated_gradients",
                          base_settings={"steps": 4}, noise=0.0, samples=3)
    assert torch.allclose(sg.attribution, ig.attribution)
    assert sg.extras["base"] == "integrated_gradients"


def test_noise_wrappers_are_seeded_and_batch_size_free():
    model = Quadratic(5).eval()
    x = torch.randn(3, 5, dtype=torch.float64)
    a = pellucid.explain(model, x, 0, method="smoothgrad", samples=10, seed=1, batch_size=4)
    b = pellucid.explain(model, x, 0, method="smoothgrad", samples=10, seed=1, batch_size=64)
    c = pellucid.explain(model, x, 0, method="smoothgrad", samples=10, seed=2)
    assert torch.allclose(a.attribution, b.attribution)
    assert not torch.allclose(a.attribution, c.attribution)


def test_noise_wrapper_errors(linear_model, x):
    with pytest.raises(ValueError, match="samples must be a positive int"):
        pellucid.explain(linear_model, x, method="smoothgrad", samples=0)
    with pytest.raises(ValueError, match="noise must be ≥ 0"):
        pellucid.explain(linear_model, x, method="smoothgrad", noise=-1.0)
    with pytest.raises(KeyError, match=r"unknown base 'gradients'\. Did you mean 'gradient'"):
        pellucid.explain(linear_model, x, method="smoothgrad", base="gradients")


@pytest.mark.parametrize("method", ["smoothgrad", "smoothgrad_squared", "vargrad"])
def test_noise_wrappers_refuse_a_constant_sample_instead_of_an_unsmoothed_map(method):
    """σ = noise·(max − min) is 0 on a constant sample: SmoothGrad would silently return the
    plain gradient and VarGrad a zero map."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).eval()
    x = torch.randn(3, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    x[1] = 0.5
    with pytest.raises(ArgumentError) as error:
        pellucid.explain(model, x, 0, method, samples=4)
    assert error.value.argument == "inputs" and "[1]" in str(error.value)
    varied = pellucid.explain(model, x[[0, 2]], 0, method, samples=4).attribution
    assert torch.isfinite(varied).all()


@pytest.mark.parametrize("method", ["smoothgrad", "smoothgrad_squared", "vargrad"])
def test_noise_wrappers_call_the_base_once_per_chunk_and_check_once(method, linear_model, x):
    """16 noisy copies of 4 samples: one batched base call per chunk of ``batch_size`` rows
    (no work per sample), and a NaN in any row's base attribution is a ModelError."""
    calls = []
    base = type(pellucid.get_method("gradient"))
    counted = type("Counted", (base,), {"attribute": lambda self, task, rows: (
        calls.append(len(rows)) or base.attribute(self, task, rows))})
    wrapper = pellucid.get_method(method, base=counted(), samples=16, batch_size=24)
    w = linear_model.weight[0].detach()
    e = wrapper(linear_model, x, 0)
    assert calls == [24, 24, 16]
    expected = {"smoothgrad": w, "smoothgrad_squared": w**2, "vargrad": 0 * w}[method]
    torch.testing.assert_close(e.attribution, expected.expand_as(x))

    def one_nan_row(self, task, rows):
        attribution, extras = base.attribute(self, task, rows)
        return torch.where(rows[:, :1] == rows[-1, 0], float("nan"), attribution), extras

    broken = type("Broken", (base,), {"attribute": one_nan_row})()
    with pytest.raises(pellucid.errors.ModelError, match="attributions on noisy copies") as error:
        pellucid.explain(linear_model, x, 0, method=method, samples=8, base=broken)
    assert error.value.argument == "model"
