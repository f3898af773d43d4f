"""Localisation and complexity metrics on constructed maps with known answers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pellucid import Explanation
from pellucid.metrics import evaluate

LOCALISATION = ["localisation.pointing_game", "localisation.relevance_mass",
                "localisation.relevance_rank"]


@pytest.fixture
def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(2 * 6 * 6, 3)).eval()


def given(attribution):
    b = len(attribution)
    return Explanation(attribution, torch.zeros(b, 3), torch.zeros(b, dtype=torch.long), "hand")


def scores(model, attribution, masks, metrics=LOCALISATION, **settings):
    x = torch.randn(attribution.shape)
    results = evaluate(model, x, 0, given(attribution), metrics, masks=masks, **settings)
    return {name: r.scores for name, r in results.items()}


def test_attribution_equal_to_the_mask_scores_one(model):
    masks = torch.zeros(3, 6, 6)
    masks[0, 1:3, 1:4] = 1
    masks[1, 4:, :] = 1
    masks[2, 0, 5] = 1
    attribution = masks.unsqueeze(1).repeat(1, 2, 1, 1)
    for name, value in scores(model, attribution, masks).items():
        torch.testing.assert_close(value, torch.ones(3), msg=name)
    # masks may also come with the inputs' shape (any channel marks the object)
    again = scores(model, attribution, attribution)
    torch.testing.assert_close(again["localisation.relevance_mass"], torch.ones(3))


def test_constructed_fractions(model):
    masks = torch.zeros(1, 6, 6)
    masks[0, 0, :4] = 1  # four locations
    relevance = torch.zeros(1, 6, 6)
    relevance[0, 0, 0] = 3.0  # inside
    relevance[0, 0, 1] = 1.0  # inside
    relevance[0, 5, 5] = 4.0  # outside, the maximum
    relevance[0, 3, 3] = 2.0  # outside
    relevance[0, 4, 4] = -5.0  # negative, outside: ignored by the mass
    attribution = torch.stack([relevance / 2, relevance / 2], 1)
    got = scores(model, attribution, masks)
    assert got["localisation.pointing_game"].item() == 0.0
    assert got["localisation.relevance_mass"].item() == pytest.approx(4 / 10)
    # the top 4 locations are (5,5), (0,0), (3,3), (0,1): two of them inside the mask
    assert got["localisation.relevance_rank"].item() == pytest.approx(2 / 4)
    signed = scores(model, attribution, masks, ["localisation.relevance_mass"],
                    positive_only=False)
    assert signed["localisation.relevance_mass"].item() == pytest.approx(4 / 5)


def test_pointing_game_tolerance(model):
    masks = torch.zeros(1, 6, 6)
    masks[0, 2, 2] = 1
    attribution = torch.zeros(1, 2, 6, 6)
    attribution[0, 0, 3, 3] = 1.0  # one location off, diagonally
    assert scores(model, attribution, masks, ["localisation.pointing_game"])[
        "localisation.pointing_game"].item() == 0.0
    assert scores(model, attribution, masks, ["localisation.pointing_game"], tolerance=1)[
        "localisation.pointing_game"].item() == 1.0


def test_missing_or_misshapen_masks_are_explained(model):
    attribution = torch.rand(2, 2, 6, 6)
    with pytest.raises(ValueError, match="need ground-truth masks"):
        scores(model, attribution, None)
    with pytest.raises(ValueError, match="masks have shape"):
        scores(model, attribution, torch.ones(2, 5, 5))
    with pytest.raises(ValueError, match="empty"):
        scores(model, attribution, torch.zeros(2, 6, 6))


def test_gini_of_one_hot_uniform_and_known_vector():
    model = nn.Linear(5, 2).eval()
    one_hot = torch.zeros(2, 5)
    one_hot[0, 3] = -2.0
    one_hot[1, 0] = 7.0
    uniform = torch.full((1, 5), 0.3)
    known = torch.tensor([[0.0, 1.0, 0.0, 3.0, 0.0]])  # sorted 0,0,0,1,3: Σ(2k−n−1)a/(nΣa)
    expected = ((2 * 4 - 6) * 1 + (2 * 5 - 6) * 3) / (5 * 4)
    for attribution, value in ((one_hot, 4 / 5), (uniform, 0.0), (known, expected)):
        got = evaluate(model, torch.randn(attribution.shape), 0, given(attribution),
                       "complexity.sparseness")["complexity.sparseness"].scores
        torch.testing.assert_close(got, torch.full((len(attribution),), value))


def test_entropy_of_one_hot_and_uniform():
    model = nn.Linear(8, 2).eval()
    attribution = torch.zeros(2, 8)
    attribution[0, 2] = 1.0
    attribution[1] = -1.0
    got = evaluate(model, torch.randn(2, 8), 0, given(attribution),
                   "complexity.entropy")["complexity.entropy"].scores
    torch.testing.assert_close(got, torch.tensor([0.0, math.log(8)]))
