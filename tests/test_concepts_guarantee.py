"""The guarantee in concepts/ and features/: the user's inputs and model come out unchanged.

Every public function that runs the model is called with models that write to their input
in place (``x.mul_(2)`` in forward, ``nn.ReLU(inplace=True)`` first) and with a model in
train mode with BatchNorm, on success and when raising after forward passes have run:
the inputs keep their values, ``requires_grad`` and ``.grad``; the model keeps its
parameters, buffers (running statistics), flags, train/eval mode and has no hook left.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from sklearn.tree import DecisionTreeClassifier
from torch import nn

from pellucid.concepts import (
    directional_derivatives,
    layer_activations,
    tcav,
    train_cavs,
)
from pellucid.errors import PellucidError
from pellucid.features import (
    ClassLogit,
    ExpertPrior,
    GaussianPrior,
    class_prototypes,
    maximise,
    observe,
    semantic_dictionary,
)
from tests.conftest import assert_untouched, model_state

SIZE = 6
FEATURES = 4 * SIZE * SIZE


class MulFirst(nn.Module):
    """Doubles its input in place, then conv-BatchNorm-ReLU and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(FEATURES, 2)
        self.unused = nn.Linear(1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x.mul_(2)
        return self.head(torch.relu(self.bn(self.conv(x))).flatten(1))


class ReluFirst(nn.Module):
    """An in-place ReLU first, then conv-BatchNorm-tanh and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(inplace=True), nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Tanh(),
            nn.Flatten(), nn.Linear(FEATURES, 2),
        )
        self.unused = nn.Linear(1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def relu_first() -> nn.Module:
    torch.manual_seed(1)
    return ReluFirst()


def mul_first() -> nn.Module:
    torch.manual_seed(0)
    return MulFirst()


MODELS = {"mul_first": mul_first, "relu_first": relu_first}
CONV = {"mul_first": "conv", "relu_first": "body.1"}


def draw(n: int, seed: int, grad: bool = False) -> torch.Tensor:
    x = torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    return x.requires_grad_(grad)


def inputs_state(tensors: list[torch.Tensor]) -> list:
    return [(t.detach().clone(), t.requires_grad, t.grad) for t in tensors]


def assert_inputs_untouched(tensors: list[torch.Tensor], before: list) -> None:
    for t, (value, requires_grad, grad) in zip(tensors, before):
        assert torch.equal(t.detach(), value), "the inputs' values changed"
        assert t.requires_grad == requires_grad, "the inputs' requires_grad changed"
        assert t.grad is grad, "the inputs' .grad changed"


def calls(kind: str):
    """(name, function of (model, layer, inputs) -> None, whether it must raise)."""
    cavs_for = {}

    def cavs(model, layer, xs):
        key = id(model)
        if key not in cavs_for:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cavs_for[key] = train_cavs(model, layer, {"c": draw(8, 10) + 1},
                                           [draw(8, 11), draw(8, 12)])
        return cavs_for[key]

    nan_prior = ExpertPrior(lambda im: im.flatten(1).sum(1) * float("nan"))
    return {
        "layer_activations": (lambda m, layer, xs: layer_activations(m, layer, xs[0],
                                                                       batch_size=2), False),
        "layer_activations/raises": (lambda m, layer, xs: layer_activations(m, "unused", xs[0]),
                                     True),
        "directional_derivatives": (lambda m, layer, xs: directional_derivatives(
            m, layer, xs[0], 0, torch.randn(FEATURES), batch_size=3), False),
        "directional_derivatives/raises": (lambda m, layer, xs: directional_derivatives(
            m, layer, xs[0], 0, torch.randn(FEATURES + 1)), True),
        "train_cavs": (lambda m, layer, xs: train_cavs(m, layer, {"c": xs[0]}, xs[1:]), False),
        "train_cavs/raises": (lambda m, layer, xs: train_cavs(
            m, layer, {"c": xs[0]}, xs[1:], classifier=DecisionTreeClassifier()), True),
        "tcav": (lambda m, layer, xs: tcav(m, xs[0], 0, cavs(m, layer, xs)), False),
        "tcav/raises": (lambda m, layer, xs: tcav(m, xs[0], 7, cavs(m, layer, xs)), True),
        "maximise": (lambda m, layer, xs: maximise(m, ClassLogit(0), xs[0].shape, steps=2,
                                                   init=xs[0], progress=False), False),
        "maximise/raises": (lambda m, layer, xs: maximise(
            m, ClassLogit(0), xs[0].shape, steps=2, init=xs[0], regularisers=[nan_prior],
            progress=False), True),
        "class_prototypes": (lambda m, layer, xs: class_prototypes(
            m, [0, 1], (3, SIZE, SIZE), prior=GaussianPrior.fit(xs[1].detach()), steps=2,
            progress=False), False),
        "semantic_dictionary": (lambda m, layer, xs: semantic_dictionary(
            m, layer, xs[0][:1], (2, 3), top=2, steps=2, progress=False), False),
        "semantic_dictionary/raises": (lambda m, layer, xs: semantic_dictionary(
            m, layer, xs[0][:1], (SIZE, 0), top=2, steps=2, progress=False), True),
        "observe": (lambda m, layer, xs: observe(m, xs[0], [layer]), False),
        "observe/raises": (lambda m, layer, xs: observe(m, xs[0], [layer], output=5), True),
    }


CALLS = list(calls(""))


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("kind", list(MODELS))
def test_inputs_and_model_are_untouched(kind: str, call: str, train: bool) -> None:
    model = MODELS[kind]().train(train)
    xs = [draw(5, 0, grad=True), draw(6, 1), draw(6, 2)]
    xs[0].grad = torch.ones_like(xs[0])  # a .grad the call must not touch
    before_inputs, before_model = inputs_state(xs), model_state(model)
    fn, must_raise = calls(kind)[call]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # train mode warns
        if must_raise:  # the error classes are checked in test_concepts_settings.py
            with pytest.raises((PellucidError, ValueError, TypeError)):
                fn(model, CONV[kind], xs)
        else:
            fn(model, CONV[kind], xs)
    assert_inputs_untouched(xs, before_inputs)
    assert_untouched(model, before_model)


def test_batchnorm_statistics_and_mode_are_restored_in_train_mode() -> None:
    model = mul_first().train()
    stats = model.bn.running_mean.clone(), model.bn.running_var.clone()
    with pytest.warns(UserWarning, match="train mode"):
        acts = layer_activations(model, "conv", draw(4, 0))
    assert model.training and model.bn.training
    assert torch.equal(model.bn.running_mean, stats[0])
    assert torch.equal(model.bn.running_var, stats[1])
    assert model.bn.num_batches_tracked.item() == 0
    # the model saw 2·x (its own in-place doubling of a private copy), once
    torch.testing.assert_close(acts, model.conv(2 * draw(4, 0)).detach())


def test_the_model_sees_a_private_copy_in_its_own_dtype() -> None:
    model = relu_first().double().eval()
    x = draw(4, 3)  # float32, with negative values that an in-place ReLU would zero
    before = x.clone()
    acts = layer_activations(model, model.body[1], x)  # a layer given as a module object
    assert acts.dtype == torch.float64 and torch.equal(x, before)
    torch.testing.assert_close(acts, model.body[1](x.double().clamp_min(0)).detach())
    d = directional_derivatives(model, "body.1", x, 0, torch.ones(FEATURES))
    assert d.shape == (1, 4) and torch.equal(x, before)
