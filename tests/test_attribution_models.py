"""Models and targets that misbehave only on the rows a method creates itself.

Integration points, noisy copies and masked copies are inputs the first forward pass never
saw. A model or a target callable that is not finite there, a gradient that is not finite,
and a target callable that cannot take expanded rows must each give a pellucid error that
names who is to blame, never a NaN map or a traceback from inside torch. Layer methods
refuse compiled and TorchScript models, whose graphs skip the hooks they record with.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pellucid
from pellucid.errors import ModelError, UnsupportedModelError

pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit:DeprecationWarning", "ignore:the model is in train mode:UserWarning"
)

EXPANDING = {
    "integrated_gradients": {"steps": 4},
    "expected_gradients": {"samples": 4, "references": torch.full((2, 4), -1.0)},
    "smoothgrad": {"samples": 8, "noise": 0.5},
    "occlusion": {"window": 1},
    "rise": {"samples": 16},
    "lime": {"samples": 16},
    "kernel_shap": {"samples": 16},
}


class RootOfShift(nn.Module):
    """f(x) = (Σ √(x − ½), −Σ √(x − ½)): finite for inputs > ½, NaN below."""

    def forward(self, x):
        s = (x - 0.5).sqrt().sum(1)
        return torch.stack([s, -s], 1)


def positive_inputs() -> torch.Tensor:
    return 1 + torch.rand(3, 4, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("method", sorted(EXPANDING))
def test_a_model_that_is_nan_only_on_the_created_rows_is_a_model_error(method, snapshot,
                                                                        untouched):
    model, x = RootOfShift().eval(), positive_inputs()
    assert torch.isfinite(model(x)).all()
    before, kept = snapshot(model), x.clone()
    with pytest.raises(ModelError) as error:
        pellucid.explain(model, x, 0, method=method, **EXPANDING[method])
    assert error.value.argument == "model" and "model" in str(error.value)
    untouched(model, before)
    assert torch.equal(x, kept)


def positive_linear() -> nn.Module:
    model = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        model.weight.uniform_(0.5, 1.0, generator=torch.Generator().manual_seed(1))
    return model.eval()


@pytest.mark.parametrize("method", sorted(EXPANDING))
def test_a_target_that_is_nan_only_on_the_created_rows_is_blamed(method):
    model, x = positive_linear(), positive_inputs()
    floor = model(x)[:, 0].min().item() - 1e-3

    def target(out):  # finite at the inputs, NaN where the score drops below them
        return (out[:, 0] - floor).sqrt()

    with pytest.raises(ModelError) as error:
        pellucid.explain(model, x, target, method=method, **EXPANDING[method])
    assert error.value.argument == "target" and "target" in str(error.value)


@pytest.mark.parametrize("method", sorted(EXPANDING))
def test_a_per_sample_target_callable_on_expanded_rows_gets_a_clear_error(method):
    model, x = positive_linear(), positive_inputs()
    weights = torch.tensor([1.0, 2.0, 3.0])  # one per sample: fits only the first pass

    with pytest.raises(ModelError, match="one row per sample") as error:
        pellucid.explain(model, x, lambda out: out[:, 0] * weights, method=method,
                         **EXPANDING[method])
    assert error.value.argument == "target"
    assert f"of the {len(x)} samples" in str(error.value)
    assert isinstance(error.value.__cause__, RuntimeError)  # the callable's own error


def test_a_row_wise_target_callable_works_on_expanded_rows():
    model, x = positive_linear(), positive_inputs()
    by_callable = pellucid.explain(model, x, lambda out: out[:, 0] - out[:, 1],
                                   method="integrated_gradients", steps=4)
    w = model.weight.detach()
    torch.testing.assert_close(by_callable.attribution, x * (w[0] - w[1]))


class RootOfAbs(nn.Module):
    """f(x) = Σ √|x|: finite everywhere, with a NaN gradient at 0."""

    def forward(self, x):
        s = x.abs().sqrt().sum(1)
        return torch.stack([s, -s], 1)


@pytest.mark.parametrize(
    ("method", "settings"),
    [("gradient", {}), ("saliency", {}), ("gradient_x_input", {}),
     ("integrated_gradients", {"steps": 3}),
     ("expected_gradients", {"samples": 3, "references": torch.zeros(2, 4)}),
     ("smoothgrad", {"samples": 2, "noise": 0.0})],
)
def test_a_gradient_that_is_not_finite_is_a_model_error_not_a_nan_map(method, settings):
    x = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    with pytest.raises(ModelError, match="NaN or Inf") as error:
        pellucid.explain(RootOfAbs().eval(), x, 0, method=method, **settings)
    assert error.value.argument == "model"


# ---------------------------------------------------------------- compiled and TorchScript


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 3)).eval()


IMAGES = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
LAYER_METHODS = ("gradcam", "gradcam_plus_plus", "fullgrad")


def compiled() -> nn.Module:
    model = torch.compile(small_cnn(), backend="aot_eager")
    model(IMAGES)  # has run once: its graph no longer sees new hooks
    return model


def with_compiled_part() -> nn.Module:
    model = nn.Sequential(torch.compile(small_cnn(), backend="aot_eager"))
    model(IMAGES)
    return model


MODEL_FORMS = {
    "compiled": compiled,
    "compiled submodule": with_compiled_part,
    "scripted": lambda: torch.jit.script(small_cnn()),
    "traced": lambda: torch.jit.trace(small_cnn(), IMAGES),
}


@pytest.fixture(scope="module")
def forms():
    return {name: build() for name, build in MODEL_FORMS.items()}


@pytest.mark.parametrize("form", sorted(MODEL_FORMS))
@pytest.mark.parametrize("method", LAYER_METHODS)
def test_layer_methods_refuse_compiled_and_torchscript_models(method, form, forms):
    with pytest.raises(UnsupportedModelError, match="eager") as error:
        pellucid.explain(forms[form], IMAGES, 0, method=method)
    assert error.value.argument == "model"


def test_a_model_compiled_in_place_keeps_its_hooks_and_its_fullgrad():
    eager = pellucid.explain(small_cnn(), IMAGES, 0, method="fullgrad")
    model = small_cnn()
    model.compile(backend="aot_eager")
    model(IMAGES)
    e = pellucid.explain(model, IMAGES, 0, method="fullgrad")
    torch.testing.assert_close(e.attribution, eager.attribution)
    torch.testing.assert_close(e.extras["completeness_gap"], eager.extras["completeness_gap"])


@pytest.mark.parametrize("method", ["gradcam", "gradcam_plus_plus"])
def test_a_layer_given_as_a_module_is_the_layer_given_by_name(method):
    model = small_cnn()
    by_module = pellucid.explain(model, IMAGES, 1, method=method, layer=model[0])
    by_name = pellucid.explain(model, IMAGES, 1, method=method, layer="0")
    assert by_module.extras["layer"] == "0"
    torch.testing.assert_close(by_module.attribution, by_name.attribution)
