"""Bad settings of pellucid.features: checked where built (objectives, parameterisations,
regularisers) or at the start of the call, with a pellucid error naming the setting."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pellucid.errors import ArgumentError, ArgumentTypeError, UnknownNameError
from pellucid.features import (
    L2,
    Blur,
    Channel,
    ClassLogit,
    ClassProbability,
    Direction,
    ExpertPrior,
    Fourier,
    GaussianPrior,
    Jitter,
    L2Ball,
    Neuron,
    Pixels,
    RandomRotate,
    RandomScale,
    TotalVariation,
    ValueRange,
    class_prototypes,
    maximise,
    semantic_dictionary,
)

NAN, INF = float("nan"), float("inf")


def named(error_class, argument: str, fn, *args, match: str | None = None, **kwargs):
    with pytest.raises(error_class, match=match) as caught:
        fn(*args, **kwargs)
    assert caught.value.argument == argument
    assert argument in str(caught.value)


@pytest.mark.parametrize(
    ("build", "error", "argument"),
    [
        (lambda: ClassLogit(1.5), ArgumentTypeError, "classes"),
        (lambda: ClassLogit(-1), ArgumentError, "classes"),
        (lambda: ClassLogit([]), ArgumentTypeError, "classes"),
        (lambda: ClassLogit(True), ArgumentTypeError, "classes"),
        (lambda: ClassProbability(0, log="yes"), ArgumentTypeError, "log"),
        (lambda: Channel(nn.Linear(2, 2), 0), ArgumentTypeError, "layer"),
        (lambda: Channel("conv", [[0]]), ArgumentTypeError, "channel"),
        (lambda: Neuron("conv", 0, position=(-1, 0)), ArgumentError, "position"),
        (lambda: Neuron("conv", 0, position=(1.5, 0)), ArgumentError, "position"),
        (lambda: Direction("conv", torch.tensor([1.0, NAN])), ArgumentError, "vector"),
        (lambda: Direction("conv", torch.ones(2, 2, 2)), ArgumentError, "vector"),
        (lambda: NAN * ClassLogit(0), ArgumentError, "weight"),
        (lambda: Pixels(scale=-1.0), ArgumentError, "scale"),
        (lambda: Fourier(decay=NAN), ArgumentError, "decay"),
        (lambda: Fourier(decorrelate=1), ArgumentTypeError, "decorrelate"),
        (lambda: L2(weight=-1.0), ArgumentError, "weight"),
        (lambda: L2(weight="1"), ArgumentTypeError, "weight"),
        (lambda: TotalVariation(power=0.0), ArgumentError, "power"),
        (lambda: Blur(sigma=0.0), ArgumentError, "sigma"),
        (lambda: ExpertPrior("gaussian"), ArgumentTypeError, "log_density"),
        (lambda: Jitter(pixels=INF), ArgumentError, "pixels"),
        (lambda: RandomScale((1.2, 0.8)), ArgumentError, "scales"),
        (lambda: RandomScale((0.0, 1.0)), ArgumentError, "scales"),
        (lambda: RandomScale(1.1), ArgumentTypeError, "scales"),
        (lambda: RandomRotate(NAN), ArgumentError, "degrees"),
        (lambda: L2Ball(0.0), ArgumentError, "radius"),
        (lambda: ValueRange(1.0, 0.0), ArgumentError, "low"),
        (lambda: ValueRange(0.0, NAN), ArgumentError, "high"),
        (lambda: GaussianPrior.fit(torch.randn(9, 4), rank=2, diagonal=True), ArgumentError,
         "rank"),
        (lambda: GaussianPrior.fit(torch.randn(9, 4), rank=2.0), ArgumentTypeError, "rank"),
        (lambda: GaussianPrior.fit(torch.randn(1, 4)), ArgumentError, "data"),
        (lambda: GaussianPrior.fit(torch.ones(9, 4), eps=0.0), ArgumentError, "eps"),
        (lambda: GaussianPrior.fit(torch.randn(9, 4), eps=-1.0), ArgumentError, "eps"),
    ],
)
def test_settings_are_checked_where_built(build, error, argument) -> None:
    named(error, argument, build)


def test_a_gaussian_without_a_variance_floor_is_finite_where_the_data_vary() -> None:
    """eps = 0 is exact for full-rank data: log N(x; μ, Σ) by hand for Σ = diag(1, 4)."""
    data = torch.tensor([[1.0, 2.0], [-1.0, -2.0], [1.0, -2.0], [-1.0, 2.0]], dtype=torch.float64)
    prior = GaussianPrior.fit(data, eps=0.0)  # mean 0, Σ = diag(4/3, 16/3)
    x = torch.tensor([[0.5, 1.0]], dtype=torch.float64)
    var = torch.tensor([4 / 3, 16 / 3], dtype=torch.float64)
    expected = -0.5 * ((x**2 / var).sum() + var.log().sum() + 2 * torch.log(torch.tensor(
        2 * torch.pi, dtype=torch.float64)))
    torch.testing.assert_close(prior(x), expected.reshape(1))


def conv_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 2)).eval()


@pytest.mark.parametrize(
    ("settings", "error", "argument"),
    [
        ({"steps": -1}, ArgumentError, "steps"),
        ({"steps": 2.5}, ArgumentTypeError, "steps"),
        ({"lr": 0.0}, ArgumentError, "lr"),
        ({"lr": NAN}, ArgumentError, "lr"),
        ({"seed": "1"}, ArgumentTypeError, "seed"),
        ({"optimiser": "adamw"}, UnknownNameError, "optimiser"),
        ({"parameterisation": "fourie"}, UnknownNameError, "parameterisation"),
        ({"parameterisation": Fourier}, ArgumentTypeError, "parameterisation"),
        ({"regularisers": L2()}, ArgumentTypeError, "regularisers"),
        ({"regularisers": [L2, Jitter()]}, ArgumentTypeError, "regularisers"),
        ({"init": torch.zeros(1, 3, 6, 6)}, ArgumentError, "init"),
        ({"init": torch.full((2, 3, 6, 6), NAN)}, ArgumentError, "init"),
        ({"progress": "no"}, ArgumentTypeError, "progress"),
    ],
)
def test_maximise_settings_are_named(settings, error, argument) -> None:
    named(error, argument, maximise, conv_model(), ClassLogit(0), (2, 3, 6, 6), **settings)


def test_maximise_objective_shape_and_layers_are_checked_before_optimising() -> None:
    model = conv_model()
    named(ArgumentTypeError, "objective", maximise, model, "class 0", (1, 3, 6, 6))
    named(ArgumentError, "shape", maximise, model, ClassLogit(0), (1, 3, 6.5, 6))
    named(ArgumentError, "shape", maximise, model, ClassLogit(0), (0, 3, 6, 6))
    named(UnknownNameError, "layer", maximise, model, Channel("conv", 0), (1, 3, 6, 6),
          match="has no layer 'conv'")
    named(ArgumentError, "classes", maximise, model, ClassLogit(2), (1, 3, 6, 6),
          steps=1, progress=False, match="out of range")
    named(ArgumentError, "vector", maximise, model, Direction("0", torch.ones(5)),
          (1, 3, 6, 6), steps=1, progress=False)
    nan_prior = ExpertPrior(lambda x: x.flatten(1).sum(1) * NAN)
    named(ArgumentError, "objective", maximise, model, ClassLogit(0), (1, 3, 6, 6),
          regularisers=[nan_prior], steps=1, progress=False)
    named(ArgumentError, "regularisers", maximise, nn.Linear(4, 2).eval(), ClassLogit(0),
          (1, 4), regularisers=[Jitter()], steps=1, progress=False)


def test_class_prototypes_take_int_classes_only() -> None:
    model = conv_model()
    # 1.7 used to be truncated to class 1 without a word
    named(ArgumentTypeError, "classes", class_prototypes, model, [1.7], (3, 6, 6))
    named(ArgumentError, "classes", class_prototypes, model, [], (3, 6, 6))
    named(ArgumentError, "classes", class_prototypes, model, 1, (3, 6, 6))
    named(UnknownNameError, "score", class_prototypes, model, [0], (3, 6, 6), score="logits",
          match="Did you mean 'logit'")
    named(ArgumentError, "prior_weight", class_prototypes, model, [0], (3, 6, 6),
          prior=lambda x: x.sum((1, 2, 3)), prior_weight=-1.0)
    named(ArgumentTypeError, "prior", class_prototypes, model, [0], (3, 6, 6), prior="gauss")
    named(ArgumentTypeError, "shape", class_prototypes, model, [0], 6)


def test_semantic_dictionary_settings_are_named() -> None:
    model, image = conv_model(), torch.rand(1, 3, 6, 6)
    named(ArgumentError, "image", semantic_dictionary, model, "0", torch.rand(2, 3, 6, 6), (1, 1))
    named(ArgumentError, "position", semantic_dictionary, model, "0", image, (6, 0))
    named(ArgumentError, "position", semantic_dictionary, model, "0", image, (1, -1))
    named(ArgumentError, "top", semantic_dictionary, model, "0", image, (1, 1), top=0)
    named(ArgumentError, "layer", semantic_dictionary, model, "3", image, (1, 1),
          match="without spatial positions")
    found = semantic_dictionary(model, model[0], image, (1, 1), top=2, steps=1, progress=False)
    assert found.layer == "0" and len(found.images) == 2
