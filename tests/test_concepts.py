"""CAVs and TCAV on models whose concept directions and gradients are known by construction."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from pellucid.concepts import (
    directional_derivatives,
    layer_activations,
    tcav,
    tcav_scores,
    train_cav,
    train_cavs,
)
from pellucid.layers import tensor_output

D = 16


def orthogonal(seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=torch.Generator().manual_seed(seed)))
    return q


class PlantedModel(nn.Module):
    """h = Wx (W orthogonal, layer "embed"); class 0 = 3·v·h + g₀(h), class 1 = g₁(h).

    g is a small random tanh network, so gradients vary from input to input.
    """

    def __init__(self, v: torch.Tensor, weight: float = 3.0) -> None:
        super().__init__()
        self.embed = nn.Linear(D, D, bias=False)
        self.embed.weight.data.copy_(orthogonal(1))
        self.mix = nn.Sequential(nn.Linear(D, 32), nn.Tanh(), nn.Linear(32, 2))
        self.register_buffer("v", v)
        self.register_buffer("which", torch.tensor([weight, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        return self.mix(h) + torch.outer(h @ self.v, self.which)


def planted_direction() -> torch.Tensor:
    v = torch.randn(D, generator=torch.Generator().manual_seed(7))
    return v / v.norm()


def inputs_with_activations(model: PlantedModel, h: torch.Tensor) -> torch.Tensor:
    return h @ model.embed.weight  # W orthogonal: W (Wᵀ h) = h


def draw(n: int, seed: int, shift: torch.Tensor | None = None) -> torch.Tensor:
    h = torch.randn(n, D, generator=torch.Generator().manual_seed(seed))
    return h if shift is None else h + shift


@pytest.fixture(scope="module")
def planted():
    torch.manual_seed(0)
    v = planted_direction()
    model = PlantedModel(v).eval()
    to_x = lambda h: inputs_with_activations(model, h)  # noqa: E731
    concept = to_x(draw(300, 100, 3.0 * v))
    randoms = [to_x(draw(200, 200 + i)) for i in range(12)]
    random_concept = to_x(draw(300, 300))
    class_inputs = to_x(draw(80, 400))
    return model, v, concept, randoms, random_concept, class_inputs


@pytest.mark.parametrize("classifier", ["logistic", "svm", "sgd", "instance"])
def test_planted_concept_direction_is_recovered(planted, classifier, snapshot, untouched):
    model, v, concept, randoms, *_ = planted
    if classifier == "instance":  # any unfitted scikit-learn linear classifier
        from sklearn.linear_model import RidgeClassifier

        classifier = RidgeClassifier(alpha=10.0)
    before = snapshot(model)
    cavs = train_cavs(model, "embed", {"planted": concept}, randoms[:3], classifier=classifier)
    untouched(model, before)
    for cav in cavs.concepts["planted"]:
        assert float(cav.vector @ v) > 0.95, cav  # unit normal, pointing to the concept
        assert float(cav.vector.norm()) == pytest.approx(1.0)
        assert cav.layer == "embed" and cav.accuracy > 0.8


def test_tcav_is_exactly_one_or_zero_on_linear_models(planted, snapshot, untouched):
    _, v, concept, randoms, _, class_inputs = planted
    linear = nn.Sequential(nn.Linear(D, D, bias=False), nn.Linear(D, 2)).eval()
    linear[0].weight.data.copy_(orthogonal(1))  # the same h = Wx as the planted model
    a = torch.randn(D, generator=torch.Generator().manual_seed(5))
    a = a + (2.0 - float(a @ v)) * v  # a·v = 2: class 0 rises along v, class 1 falls
    linear[1].weight.data.copy_(torch.stack([a, -a]))
    before = snapshot(linear)
    cavs = train_cavs(linear, "0", {"planted": concept}, randoms[:4])
    derivs = directional_derivatives(linear, "0", class_inputs, 0, cavs.concepts["planted"][0]
                                     .vector)
    # ∇_h f_0 = a for every input: the directional derivative is a·v_CAV everywhere
    torch.testing.assert_close(derivs[0], (a @ cavs.concepts["planted"][0].vector).expand(80))
    for target, expected in ((0, 1.0), (1, 0.0)):
        for magnitude in (False, True):
            report = tcav(linear, class_inputs, target, cavs, magnitude=magnitude)
            assert report["planted"].scores == (expected,) * 4
    untouched(linear, before)


def test_tcav_scores_by_hand():
    d = torch.tensor([[1.0, -2.0, 3.0, 0.0], [-1.0, -1.0, -1.0, -1.0]])
    assert tcav_scores(d).tolist() == [0.5, 0.0]
    assert tcav_scores(d, magnitude=True).tolist() == [4.0 / 6.0, 0.0]


def test_significance_separates_planted_from_random_concepts(planted, snapshot, untouched):
    model, v, _, randoms, _, class_inputs = planted
    to_x = lambda h: inputs_with_activations(model, h)  # noqa: E731
    concepts = {"planted": to_x(draw(600, 101, 3.0 * v)), "random": to_x(draw(600, 301))}
    before = snapshot(model)
    # disjoint concept examples per run: independent runs, as the t-test assumes
    cavs = train_cavs(model, "embed", concepts, randoms, split_concepts=True)
    report = tcav(model, class_inputs, 0, cavs, alpha=0.05, batch_size=16)
    untouched(model, before)
    planted_result, random_result = report["planted"], report["random"]
    assert len(planted_result.scores) == len(planted_result.random_scores) == 12
    assert planted_result.mean > 0.9 and planted_result.significant
    assert planted_result.p_value < 1e-3
    assert 0.1 < random_result.random_mean < 0.9  # the null is spread, not degenerate
    assert not random_result.significant and random_result.p_value > 0.05
    assert planted_result.verdict == "positive" and random_result.verdict == "not significant"
    corrected = tcav(model, class_inputs, 0, cavs, alpha=0.05, bonferroni=True)
    assert corrected["planted"].alpha == pytest.approx(0.025)
    assert corrected["planted"].p_value == planted_result.p_value
    one_sided = tcav(model, class_inputs, 0, cavs, alternative="greater")["planted"]
    assert one_sided.p_value == pytest.approx(planted_result.p_value / 2)
    assert not tcav(model, class_inputs, 0, cavs, alternative="less")["planted"].significant


def test_verdict_is_negative_for_a_concept_that_lowers_the_class():
    model = PlantedModel(planted_direction(), weight=-3.0).eval()
    to_x = lambda h: inputs_with_activations(model, h)  # noqa: E731
    v = planted_direction()
    randoms = [to_x(draw(200, 200 + i)) for i in range(8)]
    cavs = train_cavs(model, "embed", {"planted": to_x(draw(300, 100, 3.0 * v))}, randoms)
    result = tcav(model, to_x(draw(80, 400)), 0, cavs)["planted"]
    assert result.mean < 0.1 and result.significant and result.verdict == "negative"
    assert not tcav(model, to_x(draw(80, 400)), 0, cavs, alternative="greater")[
        "planted"
    ].significant


def test_activations_are_chunked_and_errors_are_clear(planted, snapshot, untouched):
    model, *_, class_inputs = planted
    before = snapshot(model)
    whole = layer_activations(model, "embed", class_inputs, batch_size=1000)
    torch.testing.assert_close(layer_activations(model, "embed", class_inputs, batch_size=7), whole)
    torch.testing.assert_close(whole, model.embed(class_inputs).detach())
    with pytest.raises(ValueError, match="Did you mean 'embed'"):
        layer_activations(model, "embd", class_inputs)
    with pytest.raises(ValueError, match="at least 2 random sets"):
        train_cavs(model, "embed", {"c": class_inputs}, [class_inputs])
    with pytest.raises(ValueError, match="at least 2 examples per run"):
        train_cavs(model, "embed", {"c": class_inputs[:5]}, [class_inputs] * 3,
                   split_concepts=True)
    with pytest.raises(ValueError, match="unknown classifier"):
        train_cav(whole[:10], whole[10:20], classifier="tree")
    with pytest.raises(ValueError, match="out of range"):
        directional_derivatives(model, "embed", class_inputs, 5, torch.ones(D))
    untouched(model, before)


def test_plot_draws_one_pair_of_bars_per_concept(planted):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    model, _, concept, randoms, random_concept, class_inputs = planted
    cavs = train_cavs(model, "embed", {"planted": concept, "random": random_concept}, randoms[:3])
    fig = tcav(model, class_inputs, 0, cavs).plot()
    assert len(fig.axes[0].patches) == 4
    import matplotlib.pyplot as plt

    plt.close(fig)


class Pair(nn.Module):
    """A layer whose output is not a tensor: its input, twice."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x


class PairNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pair, self.head = Pair(), nn.Linear(D, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pair(x)[0])


def test_layers_returning_a_tuple_or_not_running_are_refused_clearly(planted):
    *_, class_inputs = planted
    model, x = PairNet().eval(), class_inputs[:8]
    with pytest.raises(TypeError) as core:
        tensor_output("pair", (x, x))
    message = re.escape(str(core.value))
    with pytest.raises(TypeError, match=message):
        layer_activations(model, "pair", x)
    with pytest.raises(TypeError, match=message):
        directional_derivatives(model, "pair", x, 0, torch.ones(D))
    with pytest.raises(TypeError, match=message):
        train_cavs(model, "pair", {"c": x}, [x, x])
    model.unused = nn.Linear(D, D)
    with pytest.raises(ValueError, match="'unused' did not run"):
        layer_activations(model, "unused", x)
    with pytest.raises(ValueError, match="'unused' did not run"):
        directional_derivatives(model, "unused", x, 0, torch.ones(D))


def test_targets_resolve_as_for_methods(planted):
    model, _, concept, randoms, random_concept, class_inputs = planted
    cavs = train_cavs(model, "embed", {"planted": concept, "random": random_concept}, randoms[:4])
    vectors = torch.stack([cav.vector for cav in cavs.random])
    by_class = directional_derivatives(model, "embed", class_inputs, 0, vectors, batch_size=16)
    per_sample = torch.zeros(len(class_inputs), dtype=torch.long)
    for target in (lambda out: out[:, 0], per_sample, per_sample.tolist()):
        torch.testing.assert_close(
            directional_derivatives(model, "embed", class_inputs, target, vectors, batch_size=16),
            by_class,
        )
    predicted = model(class_inputs).argmax(1)
    torch.testing.assert_close(
        directional_derivatives(model, "embed", class_inputs, None, vectors, batch_size=16),
        directional_derivatives(model, "embed", class_inputs, predicted, vectors),
    )
    expected = tcav(model, class_inputs, 0, cavs, batch_size=16)
    found = tcav(model, class_inputs, lambda out: out[:, 0], cavs, batch_size=16)
    for name in ("planted", "random"):
        assert found[name].scores == expected[name].scores
        assert found[name].p_value == expected[name].p_value
    with pytest.raises(ValueError, match="must return one score per sample"):
        directional_derivatives(model, "embed", class_inputs, lambda out: out, vectors)
    with pytest.raises(ValueError, match="give one class per sample"):
        directional_derivatives(model, "embed", class_inputs, [0, 1], vectors)
