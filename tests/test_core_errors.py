"""Bad input to the core entry points: each mistake is a pellucid error that names the
argument to change (``error.argument``, also in the message), and the model is untouched.

Closed forms: a linear model f(x) = W x has ∂f_c/∂x = W_c and IG(x) = W_c ⊙ x from a zero
baseline, so every accepted input below is checked against W.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import pellucid
from pellucid.attribution import IntegratedGradients
from pellucid.errors import (
    ArgumentError,
    ArgumentTypeError,
    ModelError,
    PellucidError,
    UnknownNameError,
    UnsupportedModelError,
)
from tests.helpers.methods import methods_without

GRADIENT_METHODS = ("gradient", "integrated_gradients", "smoothgrad")


@pytest.fixture
def model():
    torch.manual_seed(0)
    return nn.Linear(4, 3, bias=False).eval()


@pytest.fixture
def x():
    return torch.randn(3, 4, generator=torch.Generator().manual_seed(1))


def raises(error: type[PellucidError], argument: str, call, model=None, snapshot=None):
    """Run ``call``; it must raise ``error`` naming ``argument`` and leave ``model`` as it was."""
    before = snapshot(model) if model is not None else None
    with pytest.raises(error) as raised:
        call()
    assert raised.value.argument == argument, raised.value
    assert argument in str(raised.value), raised.value
    if model is not None:
        from tests.conftest import assert_untouched

        assert_untouched(model, before)
    return raised.value


# --------------------------------------------------------------------------- method=


@pytest.mark.parametrize(
    ("method", "error", "says"),
    [
        (None, ArgumentTypeError, "got None"),
        (IntegratedGradients, ArgumentTypeError, "IntegratedGradients(...)"),
        (3, ArgumentTypeError, "got 3"),
        ("integrated_gradient", UnknownNameError, "Did you mean 'integrated_gradients'"),
    ],
)
def test_a_bad_method_names_method_and_the_fix(model, x, method, error, says, snapshot):
    e = raises(error, "method", lambda: pellucid.explain(model, x, 0, method), model, snapshot)
    assert says in str(e)


def test_an_unknown_name_is_also_a_key_error_and_unknown_settings_are_named(model, x):
    with pytest.raises(KeyError, match="unknown method 'nope'"):
        pellucid.get_method("nope")
    e = raises(ArgumentTypeError, "step", lambda: pellucid.get_method("integrated_gradients",
                                                                       step=3))
    assert "Did you mean 'steps'" in str(e)
    # on a method object too (dataclasses.replace would raise a bare TypeError)
    e = raises(ArgumentTypeError, "step",
               lambda: pellucid.explain(model, x, 0, IntegratedGradients(), step=3))
    assert "Did you mean 'steps'" in str(e)


# --------------------------------------------------------------------------- target=


@pytest.mark.parametrize(
    ("target", "error", "says"),
    [
        ("1", ArgumentTypeError, "got '1'"),
        ([], ArgumentError, "empty"),
        (1.0, ArgumentTypeError, "got 1.0"),
        (float("nan"), ArgumentTypeError, "got nan"),
        ([0.0, 1.0, 2.0], ArgumentTypeError, "dtype torch.float32"),
        (torch.tensor(1.0), ArgumentTypeError, "dtype torch.float32"),
        (True, ArgumentTypeError, "got True"),
        ([True, False, True], ArgumentTypeError, "dtype torch.bool"),
        (2**70, ArgumentError, "not a class index"),
        ([0, 2**70, 1], ArgumentError, "too large"),
        (3, ArgumentError, "out of range for a model with 3 outputs"),
        (-1, ArgumentError, "not wrapped"),
        ([0, -1, 2], ArgumentError, "not wrapped"),
        ([[0], [1], [2]], ArgumentError, "shape (3, 1)"),
        ([0, 1], ArgumentError, "the batch has 3 samples"),
        ([1], ArgumentError, "a single int"),  # no silent broadcast of a per-sample list
        ([0, None, 1], ArgumentTypeError, "cannot read list"),
        ({1, 2, 0}, ArgumentTypeError, "cannot read set"),
        (torch.zeros(3, dtype=torch.long, device="meta"), ArgumentError, "meta"),
        (IntegratedGradients, ArgumentTypeError, "the class IntegratedGradients"),
    ],
)
def test_bad_targets_name_target(model, x, target, error, says, snapshot):
    e = raises(error, "target", lambda: pellucid.explain(model, x, target), model, snapshot)
    assert says in str(e)


@pytest.mark.parametrize(
    "target",
    [(2, 0, 1), np.array([2, 0, 1]), torch.tensor([2, 0, 1], dtype=torch.uint8),
     torch.tensor([2, 0, 1]), [np.int64(2), 0, 1]],
)
def test_every_form_of_one_class_per_sample_is_read_exactly(model, x, target):
    e = pellucid.explain(model, x, target)
    assert e.target.tolist() == [2, 0, 1]
    torch.testing.assert_close(e.attribution, model.weight[[2, 0, 1]])


@pytest.mark.parametrize("target", [1, np.int64(1), torch.tensor(1)])
def test_one_class_for_every_sample(model, x, target):
    e = pellucid.explain(model, x, target)
    torch.testing.assert_close(e.attribution, model.weight[1].expand(3, 4))


@pytest.mark.parametrize(
    ("fn", "error", "says"),
    [
        (lambda out: out[:, 0].detach(), ArgumentError, "detached"),
        (lambda out: torch.tensor(out[:, 0].tolist()), ArgumentError, "detached"),
        (lambda out: out.argmax(1), ArgumentError, "dtype torch.int64"),
        (lambda out: out[:, 0] * float("nan"), ModelError, "3 NaN"),
        (lambda out: out[:, 0].log() * 0 + 1 / out[:, 0].sub(out[:, 0]), ModelError, "Inf"),
        (lambda out: out[:, :1], ArgumentError, "shape (3, 1)"),
        (lambda out: out[:, 0].detach().numpy(), ArgumentError, "ndarray"),
        (lambda out: None, ArgumentError, "NoneType"),
    ],
)
@pytest.mark.parametrize("method", ["gradient", "integrated_gradients", "occlusion"])
def test_a_target_callable_that_misbehaves_is_named(model, x, fn, error, says, method, snapshot):
    if method == "occlusion" and says == "detached":  # needs no gradient: the same map
        attached = pellucid.explain(model, x, lambda out: out[:, 0], method).attribution
        torch.testing.assert_close(pellucid.explain(model, x, fn, method).attribution, attached)
        return
    e = raises(error, "target", lambda: pellucid.explain(model, x, fn, method), model, snapshot)
    assert says in str(e)


def test_explanation_keeps_a_target_callable_as_given(model, x):
    def difference(out):
        return out[:, 0] - out[:, 2]

    e = pellucid.explain(model, x, difference)
    assert e.target_spec is difference and e.target.tolist() == [-1, -1, -1]
    again = pellucid.explain(model, x, e.target_spec)
    torch.testing.assert_close(again.attribution, e.attribution)
    assert pellucid.explain(model, x, [0, 1, 2]).target_spec is None
    assert pellucid.explain(model, x).target_spec is None


# --------------------------------------------------------------- one-output models


class Regressor(nn.Module):
    """f(x) = w·x + b, returned as (B,) or (B, 1)."""

    def __init__(self, flat: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 1)
        self.flat = flat

    def forward(self, x):
        out = self.fc(x)
        return out[:, 0] if self.flat else out


@pytest.mark.parametrize("flat", [True, False])
@pytest.mark.parametrize(
    "method", methods_without("attention", "spatial")
)
def test_a_one_output_model_is_explained_with_target_none(method, flat, x):
    torch.manual_seed(0)
    model = Regressor(flat).double().eval()
    xd = x.double()
    chosen = pellucid.get_method(method).cheap(xd, evaluations=4, references=torch.zeros(2, 4))
    e = pellucid.explain(model, xd, None, chosen)
    assert e.target.tolist() == [0, 0, 0]
    same = pellucid.explain(model, xd, lambda out: out.reshape(-1), chosen)
    torch.testing.assert_close(e.attribution, same.attribution)
    if method == "gradient":
        torch.testing.assert_close(e.attribution, model.fc.weight.expand(3, 4))
    if method == "integrated_gradients":
        torch.testing.assert_close(e.attribution, model.fc.weight * xd)


# --------------------------------------------------------------------------- model


class NoGrad(nn.Module):
    def __init__(self, mode) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.mode = mode

    def forward(self, x):
        with self.mode():
            return self.fc(x)


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
@pytest.mark.parametrize("method", [*GRADIENT_METHODS, "gradcam"])
def test_a_model_without_gradients_is_named(mode, method, snapshot):
    model = NoGrad(mode).eval()
    inputs = torch.randn(2, 4)
    if method == "gradcam":
        model.fc = nn.Sequential(nn.Conv2d(1, 2, 1), nn.Flatten(), nn.Linear(8, 3)).eval()
        inputs = torch.randn(2, 1, 2, 2)
    e = raises(ModelError, "model", lambda: pellucid.explain(model, inputs, 0, method),
               model, snapshot)
    assert mode.__name__ in str(e)


@pytest.mark.parametrize(
    ("model", "error", "says"),
    [
        (lambda x: x, ArgumentTypeError, "got function"),
        ("resnet18", ArgumentTypeError, "got str"),
        (nn.Linear, ArgumentTypeError, "the class Linear"),
        (nn.LazyLinear(3), UnsupportedModelError, "run one forward pass"),
        (nn.Linear(4, 3, device="meta"), UnsupportedModelError, "load_state_dict"),
    ],
)
def test_a_model_that_cannot_be_explained_is_named(model, error, says, x):
    e = raises(error, "model", lambda: pellucid.explain(model, x, 0))
    assert says in str(e)


def test_the_models_own_exception_propagates_and_the_model_is_restored(x, snapshot, untouched):
    class Mine(Exception):
        pass

    class Raising(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            if self.fc.weight.requires_grad:  # raises once pellucid asked for gradients
                raise Mine("my model's own error")
            return self.fc(x)

    model = Raising().eval()
    before = snapshot(model)
    with pytest.raises(Mine, match="my model's own error"):
        pellucid.explain(model, x, 0, "integrated_gradients")
    untouched(model, before)


def test_a_forward_that_writes_its_parameters_is_the_models_fault(x):
    class Writes(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            with torch.no_grad():
                self.fc.weight.mul_(1.0)
            return self.fc(x)

    e = raises(ModelError, "model", lambda: pellucid.explain(Writes().eval(), x, 0))
    assert "Linear.weight" in str(e)


# --------------------------------------------------------------------------- output=


class Pair(nn.Module):
    def __init__(self, kind) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.kind = kind

    def forward(self, x):
        out = self.fc(x)
        return {"a": out, "b": out * 2} if self.kind == "dict" else (out, out * 2)


@pytest.mark.parametrize(
    ("model", "output", "error", "says"),
    [
        (Pair("dict"), None, ArgumentError, "output='<key>'"),
        (Pair("tuple"), None, ArgumentError, "pass output=0"),
        (Pair("dict"), "c", ArgumentError, "does not select"),
        (Pair("tuple"), 2, ArgumentError, "does not select"),
        (Pair("tuple"), True, ArgumentTypeError, "got True"),
        (Pair("tuple"), 1.0, ArgumentTypeError, "got 1.0"),
        (Pair("tuple"), lambda raw: raw[0].tolist(), ArgumentTypeError, "returned list"),
        (nn.Linear(4, 3), 0, ArgumentError, "single tensor"),  # would pick sample 0
        (nn.Linear(4, 3), "logits", ArgumentError, "single tensor"),
    ],
)
def test_bad_output_selection_is_named(model, output, error, says, x, snapshot):
    model.eval()
    e = raises(error, "output", lambda: pellucid.explain(model, x, 0, output=output),
               model, snapshot)
    assert says in str(e)


def test_a_model_returning_labels_is_the_models_fault(x):
    class Labels(nn.Module):
        def forward(self, x):
            return x.argmax(1, keepdim=True)

    raises(ModelError, "model", lambda: pellucid.explain(Labels(), x))


# --------------------------------------------------------------------------- inputs


@pytest.mark.parametrize(
    ("inputs", "error", "says"),
    [
        (torch.ones(3, 4, dtype=torch.bool), ArgumentTypeError, "torch.bool"),
        (torch.ones(3, 4, dtype=torch.int64), ArgumentTypeError, "torch.int64"),
        (torch.ones(3, 4, dtype=torch.complex64), ArgumentTypeError, "complex"),
        (torch.ones(4), ArgumentError, "batch dimension must come first"),
        (torch.ones(0, 4), ArgumentError, "empty batch"),
        (torch.tensor([[0.0, float("nan"), 0.0, 0.0]]), ArgumentError, "1 NaN"),
        (torch.tensor([[0.0, float("-inf"), 0.0, 0.0]]), ArgumentError, "1 Inf"),
        (torch.ones(3, 4, device="meta"), ArgumentError, "meta"),
        (torch.eye(4)[:3].to_sparse(), ArgumentError, "dense"),
        (np.ones((3, 4), dtype=np.float32), ArgumentTypeError, "torch.as_tensor"),
    ],
)
def test_bad_inputs_name_inputs(model, inputs, error, says, snapshot):
    e = raises(error, "inputs", lambda: pellucid.explain(model, inputs, 0), model, snapshot)
    assert says in str(e)


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_odd_but_valid_inputs_give_the_closed_form_and_stay_untouched(model, method):
    base = torch.randn(4, 3).t()  # non-contiguous (3, 4)
    forms = {
        "non-contiguous": base,
        "expanded": torch.randn(1, 4).expand(3, 4),  # stride 0
        "leaf": base.contiguous().requires_grad_(True),
    }
    for name, inputs in forms.items():
        kept = inputs.detach().clone()
        e = pellucid.explain(model, inputs, 1, method)
        expected = model.weight[1].expand(3, 4)
        if method == "integrated_gradients":
            expected = expected * kept
        torch.testing.assert_close(e.attribution, expected, msg=name)
        assert torch.equal(inputs.detach(), kept) and inputs.grad is None, name
        assert inputs.requires_grad == (name == "leaf"), name


# --------------------------------------------------------------------------- layer=


@pytest.fixture
def cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(2 * 16, 3)).eval()


def test_layer_given_as_a_module_is_found_by_identity(cnn):
    x = torch.randn(2, 1, 4, 4)
    by_module = pellucid.explain(cnn, x, 1, "gradcam", layer=cnn[0])
    by_name = pellucid.explain(cnn, x, 1, "gradcam", layer="0")
    torch.testing.assert_close(by_module.attribution, by_name.attribution)


@pytest.mark.parametrize(
    ("layer", "error", "says"),
    [
        ("00", UnknownNameError, "Did you mean '0'"),
        (nn.Conv2d(1, 2, 3), ArgumentError, "Its Conv2d layers are: ['0']"),
        (0, ArgumentTypeError, "layer must be"),
    ],
)
def test_a_bad_layer_is_named(cnn, layer, error, says, snapshot):
    x = torch.randn(2, 1, 4, 4)
    e = raises(error, "layer", lambda: pellucid.explain(cnn, x, 1, "gradcam", layer=layer),
               cnn, snapshot)
    assert says in str(e)


def test_layer_hooks_on_scripted_or_compiled_models_point_to_the_eager_module(cnn):
    from pellucid.layers import capture

    x = torch.randn(2, 1, 4, 4)
    e = raises(UnsupportedModelError, "model",
               lambda: pellucid.explain(torch.jit.script(cnn), x, 1, "gradcam"))
    assert "TorchScript" in str(e) and "eager" in str(e)
    raises(UnsupportedModelError, "model",
           lambda: pellucid.explain(torch.jit.script(cnn), x, 1, "gradcam", layer="0"))
    compiled = torch.compile(cnn)
    with pytest.raises(UnsupportedModelError, match=r"_orig_mod") as raised, capture(
        compiled, "_orig_mod.0"
    ):
        pass
    assert raised.value.argument == "model"
    assert not any(m._forward_hooks for m in cnn.modules())


# --------------------------------------------------------------------------- model_kwargs


class Scaled(nn.Module):
    """f(x, s) = (W x) · s: per row (s of shape (B,), ``per_row``) or per class (s (C,))."""

    def __init__(self, per_row: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3, bias=False)
        self.per_row = per_row

    def forward(self, x, s):
        out = self.fc(x)
        return out * s[:, None] if self.per_row else out * s


def test_a_vector_the_length_of_the_batch_must_be_marked(x, snapshot):
    model = Scaled(per_row=True).eval()
    s = torch.tensor([1.0, 2.0, -3.0])
    e = raises(ArgumentError, "model_kwargs",
               lambda: pellucid.explain(model, x, 0, model_kwargs={"s": s}), model, snapshot)
    assert "pellucid.per_sample" in str(e) and "pellucid.shared" in str(e)


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_per_sample_and_shared_vectors_of_batch_length(x, method):
    torch.manual_seed(0)
    s = torch.tensor([1.0, 2.0, -3.0])  # length 3 = batch = classes
    settings = {} if method == "gradient" else {"batch_size": 4}  # chunks cut across samples
    if method == "smoothgrad":
        settings["noise"] = 0.0
    per_row = Scaled(per_row=True).eval()
    e = pellucid.explain(per_row, x, 0, method, model_kwargs={"s": pellucid.per_sample(s)},
                         **settings)
    expected = per_row.fc.weight[0] * s[:, None]  # row i scaled by s_i
    if method == "integrated_gradients":
        expected = expected * x
    torch.testing.assert_close(e.attribution, expected)
    per_class = Scaled(per_row=False).eval()
    e = pellucid.explain(per_class, x, 2, method, model_kwargs={"s": pellucid.shared(s)},
                         **settings)
    expected = (per_class.fc.weight[2] * s[2]).expand(3, 4)  # class 2 scaled by s_2
    if method == "integrated_gradients":
        expected = expected * x
    torch.testing.assert_close(e.attribution, expected)


def test_model_kwargs_are_checked_and_marks_survive_take(x):
    from pellucid.task import Task

    model = Scaled(per_row=True).eval()
    raises(ArgumentTypeError, "model_kwargs",
           lambda: pellucid.explain(model, x, 0, model_kwargs=[("s", 1.0)]))
    raises(ArgumentError, "model_kwargs", lambda: pellucid.explain(
        model, x, 0, model_kwargs={"s": pellucid.per_sample(torch.ones(2))}))
    class Many(Scaled):
        def forward(self, x, s, m, w, k):
            return super().forward(x, s) * m.sum(1, keepdim=True) * w * k

    model = Many(per_row=True).eval()
    s, mask = torch.tensor([1.0, 2.0, 3.0]), torch.ones(3, 5)
    task = Task.start(model, x, 0, model_kwargs={"s": pellucid.per_sample(s), "m": mask,
                                                 "w": pellucid.shared(torch.ones(3)), "k": 2})
    assert task.per_sample == {"s", "m"} and torch.equal(task.model_kwargs["s"], s)
    taken = task.take(torch.tensor([2, 2, 0]))
    assert taken.model_kwargs["s"].tolist() == [3.0, 3.0, 1.0]
    assert taken.model_kwargs["w"].shape == (3,) and taken.model_kwargs["k"] == 2
    again = Task.start(model, x[[2, 2, 0]], 0, model_kwargs=taken.marked_kwargs())
    assert again.per_sample == {"s", "m"}


# --------------------------------------------------------------------------- checks


def test_check_finite_number_rejects_what_a_float_setting_cannot_be():
    from pellucid.checks import check_finite_number

    assert check_finite_number(0.5, "epsilon", 0.0) == 0.5
    assert check_finite_number(np.float32(2), "gamma", 0.0) == 2.0
    assert check_finite_number(torch.tensor(3.0), "noise", 0.0) == 3.0
    assert check_finite_number(1, "p", 0.0, maximum=1.0) == 1.0
    for value, error in [(True, ArgumentTypeError), ("0.1", ArgumentTypeError),
                         (None, ArgumentTypeError), (1j, ArgumentTypeError),
                         (float("nan"), ArgumentError), (float("inf"), ArgumentError),
                         (-0.1, ArgumentError)]:
        raises(error, "epsilon", lambda v=value: check_finite_number(v, "epsilon", 0.0))
    raises(ArgumentError, "p", lambda: check_finite_number(0.0, "p", 0.0, inclusive=False))
    raises(ArgumentError, "p", lambda: check_finite_number(1.5, "p", 0.0, maximum=1.0))


def test_check_count_and_check_finite_name_their_argument():
    from pellucid.checks import check_count, check_finite

    assert check_count(np.int64(3), "samples") == 3
    raises(ArgumentError, "samples", lambda: check_count(0, "samples"))
    raises(ArgumentTypeError, "samples", lambda: check_count(2.0, "samples"))
    nan = torch.tensor([float("nan")])
    raises(ArgumentError, "baseline", lambda: check_finite(nan, "the baseline tensor",
                                                           argument="baseline"))
    raises(ModelError, "model", lambda: check_finite(nan, "the outputs", argument="model",
                                                     error=ModelError))
    raises(ArgumentError, "fill", lambda: check_finite(nan, "fill"))


@pytest.mark.parametrize(
    ("value", "error"),
    [("8", ArgumentTypeError), (2.5, ArgumentTypeError), ((2, 0), ArgumentError),
     ((), ArgumentError), (True, ArgumentTypeError)],
)
def test_size_settings_name_the_setting(value, error):
    from pellucid.spatial import positive_sizes

    raises(error, "window", lambda: positive_sizes(value, 2, "window"))
    assert positive_sizes(np.int64(3), 2, "window") == (3, 3)


def test_choice_bool_and_seed_checks_name_the_setting():
    from pellucid.checks import check_bool, check_choice, check_seed

    check_choice("riemann", "rule", ["riemann", "gauss"])
    check_bool(False, "abs")
    check_bool(None, "abs", none=True)
    check_seed(np.int64(3))
    check_seed(None)
    e = raises(ArgumentError, "rule", lambda: check_choice("rieman", "rule", ["riemann", "x"]))
    assert "Did you mean 'riemann'" in str(e)
    raises(ArgumentTypeError, "rule", lambda: check_choice(None, "rule", ["riemann"]))
    raises(ArgumentTypeError, "abs", lambda: check_bool(1, "abs"))
    raises(ArgumentTypeError, "abs", lambda: check_bool(None, "abs"))
    raises(ArgumentTypeError, "seed", lambda: check_seed(1.5))
    raises(ArgumentTypeError, "seed", lambda: check_seed(True))
    raises(ArgumentError, "seed", lambda: check_seed(-1))
    raises(ArgumentError, "seed", lambda: check_seed(2**64))


def test_generator_checks_its_seed_and_is_reproducible():
    from pellucid._seeding import generator

    draw = torch.rand(3, generator=generator(np.int64(7)))
    assert torch.equal(draw, torch.rand(3, generator=generator(7)))
    raises(ArgumentTypeError, "seed", lambda: generator(1.5))
    raises(ArgumentError, "seed", lambda: generator(2**70))


def test_registering_a_taken_name_is_an_error_naming_it():
    with pytest.raises(ArgumentError) as error:
        pellucid.register_method("gradient")(type(pellucid.get_method("gradient")))
    assert error.value.argument == "name" and "'gradient'" in str(error.value)
    assert pellucid.get_method("gradient").name == "gradient"


def test_errors_survive_pickling_for_worker_processes():
    import pickle

    from pellucid.errors import ArgumentTypeError, ModelError, UnsupportedModelError
    from pellucid.lrp.tape import UnsupportedOpError

    for cls in (ArgumentError, UnknownNameError, ArgumentTypeError, UnsupportedModelError,
                ModelError, UnsupportedOpError):
        error = cls("target", "target 7 is out of range; use 0..2")
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is cls and copy.argument == "target" and str(copy) == str(error)
