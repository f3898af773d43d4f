"""Integrated Gradients with ``steps="auto"``: nested midpoint grids refined per sample until
the completeness gap is below the tolerance (issue 14).

Closed form: for f(x) = Σ exp(xᵢ) with a zero baseline, the midpoint rule on n intervals gives
Mₙ / (f(x) − f(0)) = h / sinh(h), h = x/2n, per coordinate, so the grid each sample stops at is
known.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import pellucid
from pellucid.errors import ArgumentError, ArgumentTypeError, UnknownNameError


class Exp(nn.Module):
    def forward(self, x):
        return torch.exp(x).sum(1, keepdim=True)


def ratio(x: float, n: int) -> float:
    """Mₙ / (eˣ − 1) of the midpoint rule on n intervals for ∫₀¹ x e^{αx} dα."""
    half = x / (2 * n)
    return half / math.sinh(half)


def expected_stop(x: float, tolerance: float, max_steps: int = 256) -> int:
    n = 8
    while 1 - ratio(x, n) > tolerance and 3 * n <= max_steps:
        n *= 3
    return n


def test_each_sample_stops_at_the_first_grid_within_the_tolerance():
    values = [0.5, 3.0, 6.0, 12.0]
    x = torch.tensor(values, dtype=torch.float64).unsqueeze(1)
    e = pellucid.explain(Exp().eval(), x, None, method="integrated_gradients", steps="auto",
                         tolerance=0.01)
    stops = [expected_stop(v, 0.01) for v in values]
    assert e.extras["steps"].tolist() == stops
    assert stops == sorted(stops) and len(set(stops)) >= 3  # the case exercises refinement
    assert e.extras["evaluations"].tolist() == stops
    assert e.extras["converged"].all()
    expected = [ratio(v, n) * (math.exp(v) - 1) for v, n in zip(values, stops)]
    torch.testing.assert_close(e.attribution[:, 0], torch.tensor(expected, dtype=torch.float64))


def test_the_nested_sum_equals_the_midpoint_rule_on_the_final_grid():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)).double().eval()
    x = torch.randn(6, 5, dtype=torch.float64) * 3
    e = pellucid.explain(model, x, 1, method="integrated_gradients", steps="auto",
                         tolerance=1e-4, max_steps=1024)
    for i, n in enumerate(e.extras["steps"].tolist()):
        direct = pellucid.explain(model, x[i : i + 1], 1, method="integrated_gradients",
                                  steps=n, rule="riemann_middle")
        torch.testing.assert_close(e.attribution[i : i + 1], direct.attribution)


def test_a_linear_model_stops_at_the_first_grid():
    torch.manual_seed(0)
    model = nn.Linear(4, 2).double().eval()
    x = torch.randn(3, 4, dtype=torch.float64)
    e = pellucid.explain(model, x, 0, method="integrated_gradients", steps="auto")
    assert e.extras["steps"].tolist() == [8, 8, 8]
    torch.testing.assert_close(e.attribution, x * model.weight[0].detach())


def test_a_batch_is_the_concatenation_of_its_samples():
    x = torch.tensor([[0.5], [6.0], [3.0]], dtype=torch.float64)
    batch = pellucid.explain(Exp().eval(), x, None, method="integrated_gradients", steps="auto")
    for i in range(3):
        single = pellucid.explain(Exp().eval(), x[i : i + 1], None, method="integrated_gradients",
                                  steps="auto")
        torch.testing.assert_close(single.attribution, batch.attribution[i : i + 1])
        assert single.extras["steps"].item() == batch.extras["steps"][i].item()


def test_too_few_steps_warn_and_say_which_samples():
    x = torch.tensor([[0.5], [12.0]], dtype=torch.float64)
    with pytest.warns(UserWarning, match="1 of 2 samples"):
        e = pellucid.explain(Exp().eval(), x, None, method="integrated_gradients", steps="auto",
                             tolerance=1e-4, max_steps=24)
    assert e.extras["converged"].tolist() == [True, False]
    assert e.extras["steps"].tolist() == [expected_stop(0.5, 1e-4, 24), 24]


@pytest.mark.parametrize(
    "settings, argument, error",
    [
        ({"steps": "fast"}, "steps", ArgumentTypeError),
        ({"steps": "auto", "rule": "gauss_legendre"}, "rule", ArgumentError),
        ({"steps": "auto", "tolerance": 0.0}, "tolerance", ArgumentError),
        ({"steps": "auto", "tolerance": math.nan}, "tolerance", ArgumentError),
        ({"steps": "auto", "max_steps": 4}, "max_steps", ArgumentError),
        ({"steps": 8, "rule": "simpson"}, "rule", UnknownNameError),
    ],
)
def test_bad_settings_name_the_setting(settings, argument, error):
    with pytest.raises(error) as raised:
        pellucid.get_method("integrated_gradients", **settings)
    assert raised.value.argument == argument
