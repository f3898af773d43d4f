"""Device and dtype follow the model everywhere, and an Explanation lives on one device.

No GPU runs this suite, so both halves are tested on the CPU in ways that can fail:

- **dtype**: a float64 (or bfloat16) model is given float32 inputs (and the reverse); the
  result must be in the documented dtype and equal to the float64 computation on float64
  inputs (bfloat16: close to the float32 one).
- **device**: the library refuses models on the ``meta`` device (they hold no values), so
  the model stays on the CPU and :func:`pellucid.placement.placement` is made to answer
  ``meta`` (fixture ``meta_placement``). A forward pre-hook (:class:`Spy`) records the
  device and dtype of every tensor that reaches the model's forward, keyword arguments too,
  and raises :class:`Reached` before a meta tensor would have to be read. A function that
  forgot to move an input (or moved it another way than through the one helper) hands the
  model a CPU tensor, and the test sees ``cpu`` instead of ``meta``. That ``placement``
  itself finds the model's device is tested on real meta modules. The labels of ``train``
  are recorded the same way where the function checks them.
- **one device per Explanation**: every registered method on a small CNN gives an
  explanation whose every tensor field (found by walking all dataclass fields and every
  nested value of ``extras``, so that a new field cannot be left out) is on the output's
  device; the mover itself is tested on the meta device, where a field left behind shows.
"""

from __future__ import annotations

import dataclasses
import importlib

import pytest
import torch
from torch import nn
from torch.utils._pytree import tree_flatten
from torch.utils.data import TensorDataset

import pellucid
from pellucid import models
from pellucid import placement as placement_module
from pellucid.concepts import directional_derivatives, layer_activations
from pellucid.explanation import Explanation, on_device
from pellucid.features import ClassLogit, maximise, observe, semantic_dictionary
from pellucid.metrics import evaluate
from pellucid.models import training
from pellucid.placement import placement, to_model
from tests.helpers.methods import methods_without
from tests.helpers.models import VGGish, randomise_batchnorm

META = torch.device("meta")
#: the module (``pellucid.features.maximise`` is also the name of its function)
maximise_module = importlib.import_module("pellucid.features.maximise")


class Reached(Exception):
    """Raised by :class:`Spy` once the model's forward has been reached."""


class Spy:
    """A forward pre-hook on ``module`` that records (device, dtype) of every tensor argument
    (keyword arguments too) and raises :class:`Reached`."""

    def __init__(self, module: nn.Module) -> None:
        self.seen: list[tuple[torch.device, torch.dtype]] = []
        module.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        tensors = [t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor)]
        self.seen += [(t.device, t.dtype) for t in tensors]
        raise Reached


@pytest.fixture
def meta_placement(monkeypatch):
    """``placement`` answers the meta device (and the model's real dtype)."""
    real = placement_module.placement

    def on_meta(model, like=None):
        return META, real(model, like)[1]

    for module in (placement_module, maximise_module):
        monkeypatch.setattr(module, "placement", on_meta)


def spied_cnn(dtype: torch.dtype = torch.float64) -> tuple[nn.Module, Spy]:
    """A small CNN with a spy on its forward."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                          nn.Flatten(), nn.Linear(16, 3)).to(dtype).eval()
    return model, Spy(model)


def linear_relu(dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """h = W x + b (layer "0"), ReLU, a linear head: closed forms for activations and
    derivatives."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).to(dtype).eval()


# ---------------------------------------------------------------------------- placement


def test_placement_is_the_first_floating_parameter_else_buffer_else_the_inputs():
    assert placement(nn.Linear(2, 1).double()) == (torch.device("cpu"), torch.float64)
    buffers_only = nn.BatchNorm1d(2, affine=False).to(torch.bfloat16)  # int64 counter first
    assert placement(buffers_only) == (torch.device("cpu"), torch.bfloat16)
    assert placement(nn.ReLU(), torch.zeros(1, dtype=torch.float16, device=META)) == (
        META, torch.float16)
    assert placement(nn.ReLU()) == (torch.device("cpu"), torch.float32)


def test_to_model_casts_floating_inputs_and_keeps_ids_labels_and_masks():
    model = nn.Linear(2, 1).to(META, torch.float64)
    x = to_model(torch.ones(3, 2), model)
    assert (x.device, x.dtype) == (META, torch.float64)
    for kept in (torch.long, torch.int32, torch.bool):
        y = to_model(torch.ones(3, dtype=kept), model)
        assert (y.device, y.dtype) == (META, kept)
    same = torch.ones(2, dtype=torch.float64)
    assert to_model(same, nn.Linear(2, 1).double()) is same
    assert to_model(same, nn.Linear(2, 1).double(), copy=True) is not same


def test_to_model_stays_in_the_graph():
    x = torch.ones(2, 3, requires_grad=True)
    (to_model(x, nn.Linear(3, 1).double()) * 2.0).sum().backward()
    assert torch.equal(x.grad, torch.full((2, 3), 2.0))


# ------------------------------------------------------------------------------- models


def test_predict_and_accuracy_move_inputs_to_the_models_device_and_dtype(meta_placement):
    model, spy = spied_cnn()
    with pytest.raises(Reached):
        models.predict(model, torch.rand(2, 3, 5, 5))
    assert spy.seen == [(META, torch.float64)]
    with pytest.raises(Reached):
        models.accuracy(model, torch.rand(2, 3, 5, 5), torch.tensor([0, 1]))
    assert spy.seen[-1] == (META, torch.float64)


def test_predict_moves_token_ids_and_masks_keeping_their_dtype(meta_placement):
    model = models.TextTransformer(models.TextConfig(layers=1)).eval()
    spy = Spy(model)
    ids = torch.tensor([[2, 5, 7, 0]], dtype=torch.int32)
    with pytest.raises(Reached):
        models.predict(model, ids, attention_mask=torch.tensor([[1, 1, 1, 0]]))
    assert spy.seen == [(META, torch.int32), (META, torch.int64)]


def test_predict_on_a_float64_text_model_equals_the_float64_forward():
    model = models.TextTransformer(models.TextConfig(layers=1)).double().eval()
    ids = torch.randint(3, 20, (6, 8), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        expected = model(ids, attention_mask=mask).argmax(1)
    assert torch.equal(models.predict(model, ids, attention_mask=mask), expected)


def test_predict_in_float64_equals_the_float64_computation():
    model = linear_relu()
    x = torch.randn(9, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x.double()).argmax(1)
    got = models.predict(model, x)  # float32 inputs
    assert got.device.type == "cpu" and torch.equal(got, expected)
    labels = expected.clone()
    labels[0] = 1 - labels[0]
    assert models.accuracy(model, x, labels) == pytest.approx(8 / 9)


def test_train_moves_inputs_and_labels_to_the_model(meta_placement, monkeypatch):
    model, spy = spied_cnn()
    data = TensorDataset(torch.rand(4, 3, 5, 5), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(Reached):
        models.train(model, data, epochs=1, batch_size=4, progress=False)
    assert spy.seen == [(META, torch.float64)]

    seen = []

    def labels_seen(y, out):
        seen.append(y.device)
        raise Reached

    monkeypatch.setattr(training, "_check_labels", labels_seen)
    class FirstTwo(nn.Module):  # an unused weight for the optimiser; runs on meta inputs
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(1, dtype=torch.float64))

        def forward(self, x):
            return x[:, :2]

    with pytest.raises(Reached):
        models.train(FirstTwo(), TensorDataset(torch.rand(4, 3), torch.tensor([0, 1, 1, 0])),
                     epochs=1, batch_size=4, progress=False)
    assert seen == [META]


def test_train_of_a_float64_model_on_float32_data_equals_float64_data():
    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(16, 3, generator=gen), torch.arange(16) % 2
    losses = []
    for data in (x, x.double()):
        model = linear_relu()
        losses.append(models.train(model, TensorDataset(data, y), epochs=2, batch_size=8,
                                   progress=False))
    assert losses[0] == losses[1]


# ----------------------------------------------------------------------------- concepts


def test_concepts_move_inputs_to_the_models_device_and_dtype(meta_placement):
    model, spy = spied_cnn(torch.bfloat16)
    with pytest.raises(Reached):
        layer_activations(model, "1", torch.rand(2, 3, 5, 5))
    with pytest.raises(Reached):
        directional_derivatives(model, "1", torch.rand(2, 3, 5, 5), 0, torch.ones(1, 100))
    assert spy.seen == [(META, torch.bfloat16)] * 2


def test_activations_and_derivatives_in_float64_equal_the_closed_form():
    model = linear_relu()
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(3))  # float32
    acts = layer_activations(model, "0", x)
    w, b = model[0].weight, model[0].bias
    assert acts.dtype == torch.float64
    torch.testing.assert_close(acts, x.double() @ w.T.detach() + b.detach(), rtol=0, atol=0)
    # f_k = V relu(h) + c: ∇_h f_k = V[k] · 1[h > 0]; the derivative along v is its dot with v
    v = torch.randn(2, 4, generator=torch.Generator().manual_seed(4))  # float32 directions
    got = directional_derivatives(model, "0", x, 1, v)
    expected = v.double() @ (model[2].weight[1].detach() * (acts > 0)).T
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_activations_of_a_bfloat16_model_are_bfloat16_near_float32():
    model = linear_relu(torch.float32)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(3))
    expected = layer_activations(model, "0", x)
    got = layer_activations(model.to(torch.bfloat16), "0", x)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected, rtol=2e-2, atol=2e-2)


# ----------------------------------------------------------------------------- features


def test_feature_tools_move_images_to_the_models_device_and_dtype(meta_placement):
    model, spy = spied_cnn(torch.bfloat16)
    with pytest.raises(Reached):
        observe(model, torch.rand(1, 3, 5, 5), "1")
    with pytest.raises(Reached):
        maximise(model, ClassLogit(0), (1, 3, 5, 5), steps=1, progress=False)
    with pytest.raises(Reached):
        semantic_dictionary(model, "1", torch.rand(1, 3, 5, 5), (0, 0), steps=1)
    assert spy.seen == [(META, torch.bfloat16)] * 3


def test_observe_in_float64_equals_the_closed_form_and_reaches_the_inputs():
    model = linear_relu()
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(5), requires_grad=True)
    h = observe(model, x, "0").layer("0")
    assert h.dtype == torch.float64
    torch.testing.assert_close(h, x.double() @ model[0].weight.T + model[0].bias)
    h.sum().backward()  # dh/dx = W: the column sums of W for every row
    torch.testing.assert_close(x.grad, model[0].weight.sum(0).float().expand(2, 3))


# --------------------------------------------------------------------------------- ROAR


def test_roar_moves_the_test_inputs_to_the_model_that_train_fn_returns(monkeypatch):
    """The explained model is a float32 CPU model; the one train_fn returns is float64 and
    (through ``placement``) on the meta device."""
    x = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(6))
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    explanation = Explanation(torch.rand(x.shape), torch.zeros(6, 2), labels, "handmade")
    trained = nn.Sequential(nn.Flatten(), nn.Linear(16, 2)).double().eval()
    spy = Spy(trained)
    real = placement_module.placement
    monkeypatch.setattr(placement_module, "placement", lambda model, like=None: (
        (META, torch.float64) if model is trained else real(model, like)))
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2)).eval()
    with pytest.raises(Reached):
        evaluate(model, x, labels, explanation, "faithfulness.roar",
                 train_fn=lambda inputs, targets: trained, fractions=(0.5,))
    assert spy.seen == [(META, torch.float64)]


def test_roar_with_a_float64_model_from_train_fn_on_float32_data():
    """train_fn returns a float64 model that always says class 0: every test sample of
    class 0 is correct at every fraction, whatever is removed."""
    gen = torch.Generator().manual_seed(7)
    x = torch.rand(10, 1, 4, 4, generator=gen)
    labels = torch.tensor([0, 1, 0, 0, 1, 1, 0, 1, 0, 0])

    def class_zero(inputs, targets):
        assert inputs.dtype == torch.float32  # the explained model's dtype
        head = nn.Linear(16, 2).double()
        with torch.no_grad():
            head.weight.zero_()
            head.bias.copy_(torch.tensor([1.0, 0.0]))
        return nn.Sequential(nn.Flatten(), head)

    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2)).eval()
    explanation = Explanation(torch.rand(x.shape, generator=gen), torch.zeros(10, 2), labels,
                              "handmade")
    result = evaluate(model, x, labels, explanation, "faithfulness.roar",
                      train_fn=class_zero, fractions=(0.25, 0.75))["faithfulness.roar"]
    test = result.extras["test_index"]
    expected = (labels[test] == 0).double()
    torch.testing.assert_close(result.scores.double(), expected)
    torch.testing.assert_close(result.extras["accuracy"].double(), expected.mean().expand(2))


# ------------------------------------------------------------------------- Explanation


def tensors_of(explanation: Explanation) -> dict[str, list[torch.Tensor]]:
    """Every tensor in every field of ``explanation`` (extras walked to any depth)."""
    found = {}
    for f in dataclasses.fields(explanation):
        leaves, _ = tree_flatten(getattr(explanation, f.name))
        found[f.name] = [leaf for leaf in leaves if isinstance(leaf, torch.Tensor)]
    return found


CNN = randomise_batchnorm(VGGish(classes=3)).eval()
X = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(8))


@pytest.mark.parametrize("method", methods_without("attention"))
def test_every_methods_explanation_lives_on_the_outputs_device(method):
    references = torch.randn(4, *X.shape[1:], generator=torch.Generator().manual_seed(9))
    chosen = pellucid.get_method(method).cheap(X, evaluations=2, references=references)
    e = pellucid.explain(CNN, X, 1, method=chosen)
    found = tensors_of(e)
    assert found["attribution"] and found["output"] and found["target"] and found["inputs"]
    devices = {t.device for tensors in found.values() for t in tensors}
    assert devices == {e.output.device}


def test_the_explanation_moves_every_tensor_to_the_outputs_device():
    cpu = torch.zeros(2, 3)
    extras = {"gap": torch.zeros(2), "deep": {"maps": [torch.ones(1), (torch.ones(2), 3)]},
              "name": "kept"}
    e = Explanation(cpu, torch.zeros(2, 4, device=META), torch.tensor([0, 1]), "handmade",
                    extras=extras, inputs=cpu)
    found = tensors_of(e)
    assert sum(len(t) for t in found.values()) == 7  # nothing skipped by the walk
    assert {t.device for tensors in found.values() for t in tensors} == {META}
    assert e.extras["name"] == "kept" and e.extras["deep"]["maps"][1][1] == 3
    assert extras["gap"].device.type == "cpu"  # the caller's dict is not changed


def test_on_device_keeps_tensors_already_there():
    gap = torch.zeros(2)
    assert on_device({"gap": gap}, "cpu")["gap"] is gap
