"""Randomisation sanity checks, similarity measures and robustness metrics."""

from __future__ import annotations

import copy
import threading

import pytest
import torch
from torch import nn

from pellucid.errors import ArgumentError, ArgumentTypeError, UnsupportedModelError
from pellucid.metrics import evaluate, get_metric
from pellucid.metrics.randomisation import (
    FLOOR,
    _copied,
    install,
    parameter_layers,
    randomise,
    redraws,
)
from pellucid.metrics.similarity import hog_similarity, similarity, ssim
from tests.helpers.models import randomise_batchnorm

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
    by_object = evaluate(model, images, 0, "gradient", "randomisation.model_parameter",
                         order="independent", layers=(model[5],))["randomisation.model_parameter"]
    torch.testing.assert_close(by_object.curves, result.curves)
    with pytest.raises(ArgumentError, match="unknown layer 'fc'") as error:
        evaluate(model, images, 0, "gradient", "randomisation.model_parameter", layers=("fc",))
    assert error.value.argument == "layers"
    with pytest.raises(ArgumentError, match="owns no parameters") as error:  # a ReLU
        evaluate(model, images, 0, "gradient", "randomisation.model_parameter", layers=("1",))
    assert error.value.argument == "layers"
    untouched(model, before)


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
    assert set(result.extras) >= {"spearman", "spearman_abs"}
    with pytest.raises(ValueError, match="train_fn"):
        evaluate(model, images, labels, "gradient", "randomisation.data")
    with pytest.raises(ArgumentTypeError, match="train_fn must return") as error:
        evaluate(model, images, labels, "gradient", "randomisation.data",
                 train_fn=lambda x, y: None)
    assert error.value.argument == "train_fn"
    untouched(model, before)


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(2, 16, 20, generator=gen, dtype=torch.float64)
    b = (a + 0.3 * torch.rand(2, 16, 20, generator=gen, dtype=torch.float64)).clamp(0, 1)
    ours = ssim(a, b)
    for i in range(2):
        theirs = metrics.structural_similarity(a[i].numpy(), b[i].numpy(), data_range=1.0)
        assert ours[i].item() == pytest.approx(theirs, abs=1e-10)


def test_spearman_gives_ties_their_average_rank_as_scipy():
    """Maps with many equal values (ReLU-clipped, sparse LRP) are common: ties must share
    their average rank, or the correlation depends on the order of the pixels."""
    gen = torch.Generator().manual_seed(3)
    a = torch.randint(-2, 3, (6, 1, 5, 5), generator=gen).double()
    b = torch.randint(-1, 2, (6, 1, 5, 5), generator=gen).double()
    for kind, transform in (("spearman", lambda t: t), ("spearman_abs", torch.abs)):
        expected = spearman(transform(a).flatten(1), transform(b).flatten(1))
        torch.testing.assert_close(similarity(kind, a, b), expected)
    # a constant map has no ranking: the correlation is undefined, not 1
    ramp = torch.arange(16.0).view(1, 1, 4, 4)
    assert similarity("spearman", ramp, torch.zeros(1, 1, 4, 4)).isnan().all()
    # sparse maps: pixel order among the zeros must not matter
    sparse = torch.zeros(1, 1, 4, 4)
    sparse[0, 0, 0, 0] = 1.0
    shifted = torch.zeros(1, 1, 4, 4)
    shifted[0, 0, 3, 3] = 1.0
    assert similarity("spearman", sparse, shifted).item() == pytest.approx(-1 / 15)


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


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman's rho per row by scipy (the reference for the metric's own ranks)."""
    stats = pytest.importorskip("scipy.stats")
    return torch.tensor([stats.spearmanr(u, v).statistic for u, v in zip(a.numpy(), b.numpy())])


def with_batchnorm() -> nn.Module:
    """BatchNorm then a linear layer: ∂f_t/∂x = W_t ⊙ γ/√(σ² + ε), in eval mode."""
    torch.manual_seed(0)
    return randomise_batchnorm(nn.Sequential(nn.BatchNorm1d(12), nn.Linear(12, 3)), 2).double()


@pytest.mark.parametrize("build", ["linear", "batchnorm"])
@pytest.mark.parametrize("order", ["cascading", "independent"])
def test_gradient_x_input_after_randomising_one_layer_matches_its_closed_form(
        build, order, snapshot, untouched):
    if build == "linear":
        torch.manual_seed(0)
        model, layer = nn.Sequential(nn.Linear(12, 3)).double().eval(), "0"
    else:
        model, layer = with_batchnorm().eval(), "0"
    x = torch.randn(5, 12, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 0, 1])
    before = snapshot(model)
    result = evaluate(model, x, target, "gradient_x_input", "randomisation.model_parameter",
                      layers=(layer,), order=order, seed=7)["randomisation.model_parameter"]
    untouched(model, before)

    def gradient(m: nn.Module) -> torch.Tensor:  # ∂f_t/∂x of Linear or BatchNorm → Linear
        w = m[-1].weight.detach()[target]
        if build == "batchnorm":
            w = w * m[0].weight.detach() / (m[0].running_var + m[0].eps).sqrt()
        return w

    randomised = copy.deepcopy(model)
    randomise(randomised[int(layer)], 7)  # layer k of the order is drawn with seed + k
    original, after = gradient(model) * x, gradient(randomised) * x
    signed = spearman(original, after)
    torch.testing.assert_close(result.extras["spearman"], signed.float().to(torch.float64),
                               atol=1e-6, rtol=0)
    absolute = spearman(original.abs(), after.abs())
    torch.testing.assert_close(result.scores, absolute, atol=1e-6, rtol=0, check_dtype=False)
    torch.testing.assert_close(result.extras["spearman_abs"], result.scores)
    torch.testing.assert_close(result.extras["spearman_curves"][:, 0],
                               torch.ones(5, dtype=torch.float64))


def trained_batchnorm(channels: int = 4096) -> nn.BatchNorm1d:
    gen = torch.Generator().manual_seed(5)
    bn = nn.BatchNorm1d(channels)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(channels, generator=gen) + 0.5)
        bn.bias.copy_(0.3 + 0.2 * torch.randn(channels, generator=gen))
        bn.running_mean.copy_(-1.0 + 0.5 * torch.randn(channels, generator=gen))
        bn.running_var.copy_((0.4 * torch.randn(channels, generator=gen)).exp())
    return bn


def test_batchnorm_is_redrawn_like_its_trained_values_not_reset_to_the_identity():
    bn = trained_batchnorm()
    names = ["weight", "bias", "running_mean", "running_var"]
    trained = {k: getattr(bn, k).detach().clone() for k in names}
    state = torch.random.get_rng_state()
    randomise(bn, 3)
    assert torch.equal(torch.random.get_rng_state(), state)  # global random state kept
    for k in names:
        new, old = getattr(bn, k).detach(), trained[k]
        assert new.isfinite().all() and not (new == old).any(), k
        positive = bool((old > 0).all())  # weight and running_var: matched in log space
        a, b = (new.log(), old.log()) if positive else (new, old)
        assert abs(float(a.mean() - b.mean())) < 4 * float(b.std()) / 64, k
        assert float(a.std()) == pytest.approx(float(b.std()), rel=0.1), k
        assert abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1])) < 0.1, k  # per channel
    assert (bn.running_var > 0).all()
    again = trained_batchnorm()
    randomise(again, 3)
    assert torch.equal(again.running_var, bn.running_var)  # seeded


def test_an_untrained_batchnorm_is_randomised_too():
    bn = nn.BatchNorm2d(2048)  # the identity: weight 1, bias 0, mean 0, var 1
    randomise(bn, 0)
    for k, log in [("weight", True), ("bias", False), ("running_mean", False),
                   ("running_var", True)]:
        values = getattr(bn, k).detach()
        values = values.log() if log else values
        assert float(values.std()) == pytest.approx(FLOOR, rel=0.1), k
        assert abs(float(values.mean())) < 4 * FLOOR / 45, k
    layernorm = nn.LayerNorm(512)  # reset_parameters sets constants: drawn instead
    randomise(layernorm, 0)
    assert float(layernorm.weight.detach().std()) > FLOOR / 2
    linear = nn.Linear(64, 8)  # reset_parameters draws: torch's Kaiming-uniform is kept
    randomise(linear, 0)
    assert linear.weight.abs().max() <= 64**-0.5


@pytest.mark.filterwarnings("ignore:the model is in train mode")
@pytest.mark.parametrize("train", [False, True])
def test_batchnorm_networks_keep_the_users_model_and_notice_the_statistics(
        train, images, snapshot, untouched):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6, affine=False), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 12 * 12, 4))
    randomise_batchnorm(model[:2])
    model[4].running_mean.uniform_(-0.5, 0.5)
    model[4].running_var.uniform_(0.5, 2.0)
    model.train(train)
    assert parameter_layers(model) == ["7", "4", "3", "1", "0"]  # statistics count as state
    before = snapshot(model)
    result = evaluate(model, images, 0, "gradient", "randomisation.model_parameter",
                      order="independent", layers=("4", "1"))["randomisation.model_parameter"]
    untouched(model, before)
    assert result.curves.isfinite().all()
    assert (result.curves[:, 2] < 0.99).all()  # a randomised BatchNorm changes the gradient
    if train:  # batch statistics replace the running ones: randomising those changes nothing
        torch.testing.assert_close(result.curves[:, 1], torch.ones(3))
    else:
        assert (result.curves[:, 1] < 0.99).all()


def test_a_model_that_cannot_be_deep_copied_gets_an_error_that_says_so(images, snapshot,
                                                                      untouched):
    model = small_cnn()
    model.lock = threading.Lock()
    before = snapshot(model)
    with pytest.raises(UnsupportedModelError, match=r"copy\.deepcopy\(model\)") as error:
        evaluate(model, images, 0, "gradient", "randomisation.model_parameter")
    assert error.value.argument == "model" and "lock" in str(error.value)
    untouched(model, before)


@pytest.mark.parametrize(("name", "settings", "error", "argument"), [
    ("randomisation.model_parameter", {"order": "top_down"}, ArgumentError, "order"),
    ("randomisation.model_parameter", {"similarity": "pearson"}, ArgumentError, "similarity"),
    ("randomisation.model_parameter", {"layers": "fc"}, ArgumentTypeError, "layers"),
    ("randomisation.model_parameter", {"layers": (3,)}, ArgumentTypeError, "layers"),
    ("randomisation.model_parameter", {"layers": ()}, ArgumentError, "layers"),
    ("randomisation.model_parameter", {"batch_size": 0}, ArgumentError, "batch_size"),
    ("randomisation.model_parameter", {"seed": None}, ArgumentTypeError, "seed"),
    ("randomisation.model_parameter", {"seed": 1.5}, ArgumentTypeError, "seed"),
    ("randomisation.random_logit", {"similarity": "spearman_ab"}, ArgumentError, "similarity"),
    ("randomisation.random_logit", {"seed": "0"}, ArgumentTypeError, "seed"),
    ("randomisation.random_logit", {"batch_size": -2}, ArgumentError, "batch_size"),
    ("randomisation.data", {"train_fn": 3}, ArgumentTypeError, "train_fn"),
    ("randomisation.data", {"data": (torch.ones(2, 3),)}, ArgumentTypeError, "data"),
    ("randomisation.data", {"data": (torch.ones(2, 3), torch.ones(3))}, ArgumentError, "data"),
])
def test_bad_settings_are_caught_where_the_metric_is_built(name, settings, error, argument):
    with pytest.raises(error) as raised:
        get_metric(name, **settings)
    assert raised.value.argument == argument and argument in str(raised.value)


def nested_net(dtype: torch.dtype) -> nn.Module:
    """Conv → trained BatchNorm → (Conv, GroupNorm) block → Linear, in ``dtype``."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4),
                          nn.Sequential(nn.Conv2d(4, 4, 3), nn.GroupNorm(2, 4)),
                          nn.Flatten(), nn.Linear(16, 3))
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
        model[1].num_batches_tracked.fill_(9)
        model[2][1].weight.uniform_(0.5, 1.5)
    return model.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("cascading", [True, False])
def test_redraws_are_the_steps_of_randomise_one_layer_after_another(dtype, cascading):
    """The cascade drawn at once equals randomise applied step by step (layer k with seed k,
    from the randomised model (cascading) or the trained one), a container and a layer
    inside it included, rounded to the dtype between steps; the modules stay untouched."""
    names = ["4", "2", "2.1", "1", "0"]
    drawn_at_once, stepwise = nested_net(dtype), nested_net(dtype)
    trained = copy.deepcopy(stepwise.state_dict())
    modules = dict(drawn_at_once.named_modules())
    steps = redraws([modules[n] for n in names], range(len(names)), cascading=cascading)
    for key, value in drawn_at_once.state_dict().items():
        assert torch.equal(value, trained[key]), key  # only drawn, not installed
    for k, name in enumerate(names):
        if not cascading:
            drawn_at_once.load_state_dict(trained)
            stepwise.load_state_dict(trained)
        install(modules[name], steps[k])
        randomise(dict(stepwise.named_modules())[name], k)
        for (key, a), b in zip(drawn_at_once.state_dict().items(),
                               stepwise.state_dict().values(), strict=True):
            assert a.dtype == b.dtype == trained[key].dtype and torch.equal(a, b), (name, key)
    assert int(drawn_at_once[1].num_batches_tracked) == (9 if not cascading else 0)


def test_the_packed_copy_keeps_every_dtype_shape_and_value():
    """``_copied`` packs the bytes of tensors of any dtype and shape (0-dim, empty, odd
    lengths of narrow types before wide ones) into one buffer: each arrives equal, as a
    view of that one buffer."""
    tensors = [torch.tensor([True, False, True]), torch.arange(5, dtype=torch.float16),
               torch.tensor(2**40 + 1), torch.empty(0, 3), torch.randn(2, 3).double(),
               torch.randn(3, 2).t(), torch.tensor([1 + 2j], dtype=torch.complex64)]
    copied = _copied(tensors, [torch.device("cpu")] * len(tensors))
    for before, after in zip(tensors, copied, strict=True):
        assert after.dtype == before.dtype and after.shape == before.shape
        assert torch.equal(after, before)
    assert len({t.untyped_storage().data_ptr() for t in copied}) == 1
    assert not any(a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
                   for a, b in zip(tensors, copied, strict=True))


def test_redraws_and_install_refuse_mismatched_lengths():
    linear = nn.Linear(2, 2)
    with pytest.raises(ArgumentError, match="seeds") as raised:
        redraws([linear, linear], [0])
    assert raised.value.argument == "seeds"
    with pytest.raises(ArgumentError, match="values") as raised:
        install(linear, redraws([nn.BatchNorm1d(2)], [0])[0])
    assert raised.value.argument == "values"
