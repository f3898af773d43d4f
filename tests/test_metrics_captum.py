"""Captum's attributions, scored by pellucid, give the numbers of the equivalent pellucid method.

What makes them equal:

- Captum ``Saliency`` (``abs=True``, its default) is |∂f_c/∂x|, pellucid ``saliency``;
  ``InputXGradient`` is x ⊙ ∂f_c/∂x, pellucid ``gradient_x_input``. Same gradient, same
  numbers up to float64 rounding of the backward pass.
- Captum ``IntegratedGradients`` defaults to ``method="gausslegendre"``, ``n_steps=50`` and a
  zero baseline; pellucid ``integrated_gradients(steps=50, rule="gauss_legendre",
  baseline="zero")`` uses the same nodes and weights (NumPy's ``leggauss`` mapped to [0, 1]).
- The metrics then see the same attributions, and ``robustness.max_sensitivity`` re-runs a
  Captum callable given as ``method=`` on the same perturbed inputs (seeded offsets).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pellucid import get_method
from pellucid.metrics import evaluate

captum_attr = pytest.importorskip("captum.attr")

METRICS = ["faithfulness.deletion", "faithfulness.pixel_flipping", "complexity.sparseness",
           "localisation.relevance_mass", "robustness.max_sensitivity"]
SETTINGS = {"steps": 8, "draws": 3, "radius": 0.05}


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(16, 3),
    ).double().eval()


def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 8, 8, generator=gen, dtype=torch.float64)
    masks = torch.zeros(4, 8, 8)
    masks[:, 2:6, 1:5] = 1
    return x, torch.tensor([0, 1, 2, 0]), masks


PAIRS = [
    (lambda m: captum_attr.Saliency(m), {}, get_method("saliency")),
    (lambda m: captum_attr.InputXGradient(m), {}, get_method("gradient_x_input")),
    (lambda m: captum_attr.IntegratedGradients(m), {},
     get_method("integrated_gradients", steps=50, rule="gauss_legendre", baseline="zero")),
]


@pytest.mark.parametrize(("make", "options", "ours"), PAIRS, ids=["saliency", "input_x_gradient",
                                                                   "integrated_gradients"])
def test_captum_attributions_score_as_the_pellucid_method(make, options, ours):
    net, (x, target, masks) = model(), data()

    def captum_method(m, rows, t):
        return make(m).attribute(rows, target=t, **options)

    attributions = captum_method(net, x, target)
    expected = evaluate(net, x, target, ours, METRICS, masks, **SETTINGS)
    got = evaluate(net, x, target, attributions, METRICS, masks, method=captum_method,
                   **SETTINGS)
    for name in METRICS:
        torch.testing.assert_close(got[name].scores, expected[name].scores, msg=name)
    assert expected["robustness.max_sensitivity"].scores.abs().max() > 0  # not trivially 0


def test_a_captum_channel_max_map_scores_as_saliency_max_over_channels():
    """Quantus-style (B, 1, H, W) maps are location maps: Captum's channel maximum m scores
    as pellucid's ``max_over_channels``, which repeats m over the C channels (location map
    C·m). The metrics below are invariant to that scale (rankings, ratios, Gini index)."""
    net, (x, target, masks) = model(), data()
    location = captum_attr.Saliency(net).attribute(x, target=target).amax(1, keepdim=True)
    names = METRICS[:4]
    expected = evaluate(net, x, target, get_method("saliency", max_over_channels=True), names,
                        masks, steps=8)
    for given in (location, location[:, 0], location.numpy()):
        got = evaluate(net, x, target, given, names, masks, steps=8)
        for name in names:
            torch.testing.assert_close(got[name].scores, expected[name].scores, msg=name)
