"""The shared parts: targets, output selection, input checks, registry, settings, devices."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import pellucid
from pellucid.targets import resolve_target


class TupleModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        out = self.fc(x)
        return out, out.sum(1)


class DictModel(TupleModel):
    def forward(self, x):
        out = self.fc(x)
        return {"scores": out, "aux": out.mean(1)}


class HFOutput:
    def __init__(self, logits):
        self.logits = logits
        self.hidden = None


class HFLike(TupleModel):
    def forward(self, x):
        return HFOutput(self.fc(x))


class KwargModel(nn.Module):
    """f(x, scale) = fc(x) * scale: a per-sample model argument."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3, bias=False)

    def forward(self, x, scale):
        return self.fc(x) * scale


@pytest.fixture
def model():
    torch.manual_seed(0)
    return nn.Linear(4, 3).eval()


def test_target_forms_resolve_to_the_same_classes(model):
    x = torch.randn(4, 4)
    out = model(x)
    assert resolve_target(2, out).classes.tolist() == [2, 2, 2, 2]
    assert resolve_target([0, 1, 2, 0], out).classes.tolist() == [0, 1, 2, 0]
    assert resolve_target(torch.tensor([2, 1, 0, 1]), out).classes.tolist() == [2, 1, 0, 1]
    assert torch.equal(resolve_target(None, out).classes, out.argmax(1))


def test_explanation_reports_the_target_and_output(model):
    x = torch.randn(3, 4)
    e = pellucid.explain(model, x, target=[0, 2, 1])
    assert e.target.dtype == torch.long and e.target.tolist() == [0, 2, 1]
    assert torch.allclose(e.output, model(x))
    assert not e.output.requires_grad and not e.attribution.requires_grad
    assert torch.allclose(e.attribution, model.weight[[0, 2, 1]])


def test_callable_target_explains_a_logit_difference(model):
    x = torch.randn(3, 4)
    e = pellucid.explain(model, x, target=lambda out: out[:, 0] - out[:, 2])
    assert torch.allclose(e.attribution, (model.weight[0] - model.weight[2]).expand(3, 4))
    assert e.target.tolist() == [-1, -1, -1]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (3, "out of range for a model with 3 outputs"),
        (-1, "negative indices are not wrapped"),
        ([0, 1], "batch has 3 samples"),
        (torch.tensor([0.0, 1.0, 2.0]), "class indices"),
        (lambda out: out, "one score per sample"),
    ],
)
def test_bad_targets_get_clear_errors(model, target, message, snapshot, untouched):
    before = snapshot(model)
    with pytest.raises((ValueError, TypeError), match=message):
        pellucid.explain(model, torch.randn(3, 4), target=target)
    untouched(model, before)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (torch.ones(3, 4, dtype=torch.long), "floating-point"),
        (torch.tensor([[0.0, float("nan"), 0.0, 0.0]]), "1 NaN"),
        (torch.tensor([[0.0, float("inf"), 0.0, 0.0]]), "1 Inf"),
        (torch.zeros(4), "batch dimension must come first"),
        ([[0.0] * 4], "must be a torch.Tensor"),
    ],
)
def test_bad_inputs_get_clear_errors(model, inputs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        pellucid.explain(model, inputs)


def test_nan_output_is_reported_as_the_models_fault():
    from pellucid.errors import ModelError

    model = nn.Sequential(nn.Linear(4, 3), nn.Threshold(1e9, float("nan"))).eval()
    with pytest.raises(ModelError, match="outputs of the model contain 6 NaN") as error:
        pellucid.explain(model, torch.randn(2, 4))
    assert error.value.argument == "model"


def test_output_selection_for_tuples_dicts_and_hf_objects():
    torch.manual_seed(0)
    x = torch.randn(2, 4)
    tuple_model, dict_model, hf_model = TupleModel().eval(), DictModel().eval(), HFLike().eval()
    with pytest.raises(ValueError, match="pass output=0"):
        pellucid.explain(tuple_model, x, target=1)
    e = pellucid.explain(tuple_model, x, target=1, output=0)
    assert torch.allclose(e.attribution, tuple_model.fc.weight[1].expand(2, 4))
    with pytest.raises(ValueError, match=r"\['aux', 'scores'\]"):
        pellucid.explain(dict_model, x, target=1)
    e = pellucid.explain(dict_model, x, target=1, output="scores")
    assert torch.allclose(e.attribution, dict_model.fc.weight[1].expand(2, 4))
    e = pellucid.explain(hf_model, x, target=2)
    assert torch.allclose(e.attribution, hf_model.fc.weight[2].expand(2, 4))
    e = pellucid.explain(tuple_model, x, target=lambda s: s, output=lambda raw: raw[1])
    assert torch.allclose(e.attribution, tuple_model.fc.weight.sum(0).expand(2, 4))


def test_model_kwargs_follow_expanded_rows():
    torch.manual_seed(0)
    model = KwargModel().eval()
    x = torch.randn(3, 4)
    scale = torch.tensor([[1.0], [2.0], [-3.0]])
    for method in ("gradient", "integrated_gradients", "smoothgrad"):
        e = pellucid.explain(model, x, target=0, method=method, model_kwargs={"scale": scale},
                             **({"batch_size": 4} if method != "gradient" else {}))
        expected = model.fc.weight[0] * scale
        if method == "integrated_gradients":
            expected = expected * x
        assert torch.allclose(e.attribution, expected, atol=1e-5), method


def test_float64_and_inputs_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(inplace=True), nn.Linear(5, 2)).double().eval()
    x = torch.randn(3, 4, dtype=torch.float64)
    kept = x.clone()
    e = pellucid.explain(model, x, method="integrated_gradients", steps=8)
    assert e.attribution.dtype == torch.float64
    assert torch.equal(x, kept) and x.grad is None and not x.requires_grad


def test_inplace_first_op_does_not_modify_inputs():
    model = nn.Sequential(nn.ReLU(inplace=True), nn.Linear(4, 2)).eval()
    x = torch.randn(3, 4)
    kept = x.clone()
    pellucid.explain(model, x, method="gradient_x_input")
    assert torch.equal(x, kept)


def test_train_mode_warns_and_is_restored():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).train()
    running = model[1].running_mean.clone()
    with pytest.warns(UserWarning, match="train mode"):
        pellucid.explain(model, torch.randn(5, 4) + 3.0, method="integrated_gradients", steps=4)
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(model[1].running_mean, running), "BatchNorm statistics changed"


def test_eval_mode_gives_no_warning(model):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pellucid.explain(model, torch.randn(2, 4))


def test_registry_lists_suggests_and_checks_settings():
    assert "integrated_gradients" in pellucid.list_methods()
    assert pellucid.list_methods("smooth*") == ["smoothgrad", "smoothgrad_squared"]
    with pytest.raises(KeyError, match="Did you mean 'integrated_gradients'"):
        pellucid.get_method("integrated_gradient")
    with pytest.raises(TypeError, match=r"has no setting 'step'.*steps"):
        pellucid.get_method("integrated_gradients", step=4)
    method = pellucid.get_method("integrated_gradients", steps=7)
    assert method.steps == 7 and method.settings()["steps"] == 7
    descriptions = pellucid.describe_methods()
    assert all(descriptions[name] for name in pellucid.list_methods())


def test_method_objects_are_callable_and_settings_are_recorded(model):
    from pellucid.attribution import IntegratedGradients

    x = torch.randn(2, 4)
    e = IntegratedGradients(steps=5, rule="riemann_middle")(model, x, 1)
    assert e.method == "integrated_gradients" and e.settings["steps"] == 5
    e2 = pellucid.explain(model, x, 1, method=IntegratedGradients(steps=3), steps=5,
                          rule="riemann_middle")
    assert torch.allclose(e.attribution, e2.attribution)


# --- the core's shared pieces: Forward, Task.start, row_chunks, private_copy, deprecations


def test_forward_layer_is_the_last_call_and_names_missing_layers():
    from pellucid.task import Forward

    first, last = torch.zeros(1), torch.ones(1)
    forward = Forward(torch.zeros(1, 2), torch.zeros(1, 3), {"a": [first, last], "idle": []})
    assert forward.layer("a") is last
    from pellucid.errors import ArgumentError, UnknownNameError

    with pytest.raises(ArgumentError, match="'idle' did not run") as error:
        forward.layer("idle")
    assert error.value.argument == "layer"
    with pytest.raises(UnknownNameError, match="'b' was not captured") as error:
        forward.layer("b")
    assert error.value.argument == "layer" and isinstance(error.value, KeyError)
    with pytest.raises(UnknownNameError, match="Did you mean 'a'"):
        forward.layer("A")


def test_task_start_resolves_the_target_on_its_first_pass_and_keeps_it():
    from pellucid.task import Forward, Task

    model = nn.Linear(3, 2).eval()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]))
        model.bias.zero_()
    x = torch.tensor([[2.0, 1.0, 0.0], [0.0, 5.0, 0.0]])
    task = Task.start(model, x, None)
    assert task.target.classes.tolist() == [0, 1]  # the predicted classes
    assert task.first_forward_at(x) is task.first_forward
    assert torch.equal(task.first_forward.output, model(x))
    calls = []

    def first_pass(unresolved, inputs):
        calls.append(unresolved.target)
        return Forward(inputs, unresolved.output(inputs), state="kept")

    task = Task.start(model, x, 1, first_pass=first_pass)
    assert len(calls) == 1 and task.first_forward.state == "kept"
    assert task.score(x).tolist() == [1.0, 5.0]
    with pytest.raises(ValueError, match="out of range"):
        Task.start(model, x, 7)


def test_row_chunks_cover_every_row_once_in_order():
    from pellucid.batching import expanded_rows, row_chunks

    chunks = list(row_chunks(10, 4))
    assert [c.tolist() for c in chunks] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    sample, variant = zip(*expanded_rows(3, 2, 4))
    assert torch.cat(sample).tolist() == [0, 1, 2, 0, 1, 2]
    assert torch.cat(variant).tolist() == [0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        list(row_chunks(3, 0))


def test_private_copy_follows_float_buffers_of_a_model_without_parameters():
    from pellucid.method import private_copy

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("scale", torch.ones(3, dtype=torch.float64))

        def forward(self, x):
            return x * self.scale

    x = torch.ones(2, 3)
    copy = private_copy(x, Scaled())
    assert copy.dtype == torch.float64 and copy is not x and x.dtype == torch.float32
    e = pellucid.explain(Scaled().eval(), x, target=0, method="gradient_x_input")
    assert e.attribution.tolist() == [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]  # x₀ · ∂(x₀ s₀)/∂x₀


def test_deprecated_names_warn_and_name_the_replacement():
    from pellucid._deprecation import deprecated_names

    getattr_ = deprecated_names("pellucid.somewhere", {"Old": ("pellucid.New", lambda: 42)})
    with pytest.warns(DeprecationWarning, match=r"somewhere.Old is deprecated; use pellucid.New"):
        assert getattr_("Old") == 42
    with pytest.raises(AttributeError, match="has no attribute 'Other'"):
        getattr_("Other")
