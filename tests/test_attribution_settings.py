"""Settings of the methods in pellucid.attribution are checked where they are built.

Every setting of every method is given values of the wrong type and out of range; the
error must be a pellucid error whose ``argument`` is the setting and whose message names
it. The cases that are only wrong for given inputs (a stride that leaves gaps, a single
feature group, a baseline of the wrong shape) are checked on a call.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

import pellucid
from pellucid.attribution.integrated import quadrature
from pellucid.errors import ArgumentError, ArgumentTypeError, PellucidError, UnknownNameError

METHODS = sorted(
    name for name in pellucid.list_methods()
    if type(pellucid.get_method(name)).__module__.startswith("pellucid.attribution")
)
FIELDS = [(m, f.name) for m in METHODS for f in dataclasses.fields(pellucid.get_method(m))]
BAD_VALUES = {"a str": "nonsense", "NaN": math.nan, "-1": -1, "True": True, "a list": [object()]}
#: (setting, value) pairs that are valid settings (or whose fault shows only with inputs)
VALID = {
    ("baseline", "-1"), ("fill", "-1"),  # constants
    ("relu", "True"), ("max_over_channels", "True"), ("align_corners", "True"),
    ("token", "-1"),  # Python indexing: -1 is the last token
    ("layer", "a str"),  # a layer name: checked against the model on a call
    ("feature_mask", "-1"),  # one label for every element: refused on a call (one group)
}


def test_every_attribution_method_is_covered():
    assert {"integrated_gradients", "occlusion", "smoothgrad", "fullgrad", "lime"} <= set(METHODS)
    assert not any(m.startswith("lrp") for m in METHODS)


@pytest.mark.parametrize("label", sorted(BAD_VALUES))
@pytest.mark.parametrize(("method", "setting"), FIELDS)
def test_a_bad_setting_is_refused_by_name_where_it_is_built(method, setting, label):
    if (setting, label) in VALID:
        pellucid.get_method(method, **{setting: BAD_VALUES[label]})
        return
    with pytest.raises(PellucidError) as error:
        pellucid.get_method(method, **{setting: BAD_VALUES[label]})
    assert error.value.argument == setting, (method, setting, label, error.value)
    assert setting in str(error.value)


@pytest.mark.parametrize(
    ("method", "settings", "argument", "message"),
    [
        ("integrated_gradients", {"steps": 0}, "steps", "positive int"),
        ("integrated_gradients", {"steps": 2.0}, "steps", "positive int"),
        ("integrated_gradients", {"rule": "riemann_trapezoid", "steps": 1}, "steps", ">= 2"),
        ("integrated_gradients", {"rule": "gauss-legendre"}, "rule",
         "Did you mean 'gauss_legendre'"),
        ("integrated_gradients", {"baseline": "zeros"}, "baseline", "Did you mean 'zero'"),
        ("integrated_gradients", {"baseline": math.inf}, "baseline", "finite"),
        ("integrated_gradients", {"baseline": torch.tensor([0.0, math.nan])}, "baseline", "NaN"),
        ("integrated_gradients", {"blur_sigma": 0.0}, "blur_sigma", "> 0"),
        ("integrated_gradients", {"batch_size": 0}, "batch_size", "positive int"),
        ("integrated_gradients", {"batch_size": True}, "batch_size", "positive int"),
        ("expected_gradients", {"references": torch.zeros(0, 3)}, "references", "R >= 1"),
        ("expected_gradients", {"references": torch.full((2, 3), math.nan)}, "references", "NaN"),
        ("expected_gradients", {"samples": True}, "samples", "positive int"),
        ("smoothgrad", {"samples": 0}, "samples", "positive int"),
        ("smoothgrad", {"noise": -0.1}, "noise", "≥ 0"),
        ("smoothgrad", {"noise": "0.1"}, "noise", "real number"),
        ("smoothgrad", {"base": "gradients"}, "base", "Did you mean 'gradient'"),
        ("smoothgrad", {"base": pellucid.attribution.Gradient}, "base", "method object"),
        ("smoothgrad", {"base": "integrated_gradients", "base_settings": {"steps": 0}},
         "steps", "positive int"),
        ("vargrad", {"samples": 1}, "samples", "samples >= 2"),
        ("vargrad", {"noise": 0.0}, "noise", "variance is zero"),
        ("occlusion", {"window": 0}, "window", "positive int"),
        ("occlusion", {"stride": (2, 0)}, "stride", "positive int"),
        ("occlusion", {"fill": "uniform"}, "fill", "not a fill"),
        ("occlusion", {"fill": "gray"}, "fill", "unknown fill"),
        ("rise", {"p": 1.0}, "p", "p = 1 keeps everything"),
        ("rise", {"p": 0.0}, "p", "probability"),
        ("rise", {"cells": 0}, "cells", "positive int"),
        ("rise", {"fill": torch.tensor(math.nan)}, "fill", "NaN"),
        ("lime", {"kernel_width": 0.0}, "kernel_width", "> 0"),
        ("lime", {"samples": 1}, "samples", "samples >= 2"),
        ("lime", {"ridge": -1.0}, "ridge", "≥ 0"),
        ("lime", {"feature_mask": torch.zeros(4), "patch": 2}, "feature_mask", "not both"),
        ("kernel_shap", {"feature_mask": torch.zeros(4)}, "feature_mask", "integer group labels"),
        ("kernel_shap", {"patch": (2, -2)}, "patch", "positive int"),
        ("gradcam", {"interpolation": "bilinar"}, "interpolation", "Did you mean 'bilinear'"),
        ("gradcam", {"relu": 1}, "relu", "True or False"),
        ("gradcam", {"layer": 3}, "layer", "dotted layer name"),
        ("fullgrad", {"rescale_eps": -1e-6}, "rescale_eps", "≥ 0"),
        ("saliency", {"max_over_channels": "yes"}, "max_over_channels", "True or False"),
    ],
)
def test_settings_errors_name_the_setting_and_the_fix(method, settings, argument, message):
    with pytest.raises(PellucidError, match=message) as error:
        pellucid.get_method(method, **settings)
    assert error.value.argument == argument
    assert argument in str(error.value)


def test_type_and_value_errors_keep_the_builtin_classes():
    with pytest.raises(ArgumentTypeError):  # also a TypeError
        pellucid.get_method("integrated_gradients", steps="8")
    with pytest.raises(TypeError):
        pellucid.get_method("occlusion", fill=True)
    with pytest.raises(ValueError):
        pellucid.get_method("integrated_gradients", steps=-1)
    with pytest.raises(KeyError):
        pellucid.get_method("smoothgrad", base="no_such_method")
    with pytest.raises(UnknownNameError):
        pellucid.get_method("smoothgrad", base="no_such_method")


def test_numpy_numbers_are_accepted_and_replace_rechecks():
    ig = pellucid.get_method("integrated_gradients", steps=np.int64(4), baseline=np.float32(0.5))
    assert ig.steps == 4
    with pytest.raises(ArgumentError):
        dataclasses.replace(ig, steps=0)
    with pytest.raises(ArgumentError, match="evaluations"):
        ig.cheap(torch.zeros(1, 3), evaluations=0)


def test_quadrature_checks_its_arguments():
    with pytest.raises(ArgumentTypeError, match="steps"):
        quadrature("gauss_legendre", True)
    with pytest.raises(ArgumentError, match="rule"):
        quadrature("simpson", 4)


# ---------------------------------------------------------------- faults that need inputs


class FlatLinear(nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(features, 3)

    def forward(self, x):
        return self.fc(x.flatten(1))


@pytest.mark.parametrize(
    ("shape", "method", "settings", "argument", "message"),
    [
        ((2, 6), "integrated_gradients", {"baseline": torch.zeros(5)}, "baseline",
         "does not broadcast"),
        ((2, 6), "integrated_gradients", {"baseline": "blur"}, "baseline",
         "blurs over spatial dimensions"),
        ((2, 6), "expected_gradients", {}, "references", "needs references"),
        ((2, 6), "expected_gradients", {"references": torch.zeros(3, 5)}, "references",
         "sample shape"),
        ((2, 6), "occlusion", {"window": 2, "stride": 3}, "stride", "no window covers"),
        ((2, 1, 7), "occlusion", {"window": (1, 8)}, "window", "does not fit"),
        ((2, 6), "occlusion", {"fill": torch.zeros(4)}, "fill", "does not broadcast"),
        ((2, 1, 4, 4), "lime", {"patch": 4}, "patch", "single feature group"),
        ((2, 6), "kernel_shap", {"feature_mask": torch.zeros(6, dtype=torch.long)},
         "feature_mask", "single feature group"),
        ((2, 1), "kernel_shap", {}, "inputs", "single feature group"),
        ((2, 6), "lime", {"patch": 2}, "patch", "tabular"),
        ((2, 6), "lime", {"feature_mask": torch.zeros(5, dtype=torch.long)}, "feature_mask",
         "does not broadcast"),
        ((2, 1, 6), "rise", {"cells": (2, 2)}, "cells", "one entry per spatial dim"),
        ((2, 6), "saliency", {"max_over_channels": True}, "max_over_channels", "no channels"),
        ((2, 1), "integrated_gradients", {"baseline": "mean"}, "baseline", "equal the inputs"),
        ((2, 1, 1), "rise", {"fill": "mean"}, "fill", "equal the inputs"),
        ((2, 1, 1), "integrated_gradients", {"baseline": "blur"}, "baseline",
         "none longer than 1"),
        ((2, 6), "lime", {"kernel_width": 1e-3}, "kernel_width", "underflows"),
        ((2, 1, 6), "fullgrad", {"interpolation": "bilinear"}, "interpolation",
         "does not fit maps with 1 spatial dims"),
        ((2, 1, 6), "gradcam", {"interpolation": "bicubic"}, "interpolation",
         "does not fit maps with 1 spatial dims"),
    ],
)
def test_settings_that_do_not_fit_the_inputs(shape, method, settings, argument, message,
                                              snapshot, untouched):
    features = math.prod(shape[1:])
    model = FlatLinear(features).eval()
    if len(shape) == 3:
        model = nn.Sequential(nn.Conv1d(1, 2, 3, padding=1), nn.Flatten(),
                              nn.Linear(2 * shape[-1], 3)).eval()
    x = torch.randn(shape)
    kept, before = x.clone(), snapshot(model)
    with pytest.raises(PellucidError, match=message) as error:
        pellucid.explain(model, x, 0, method=method, **settings)
    assert error.value.argument == argument
    assert argument in str(error.value)
    untouched(model, before)
    assert torch.equal(x, kept)


def test_gradcam_refuses_a_layer_with_a_single_position():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(2, 3)).eval()
    with pytest.raises(ArgumentError, match="single position") as error:
        pellucid.explain(model, torch.randn(2, 1, 6, 6), 0, method="gradcam", layer="2")
    assert error.value.argument == "layer"
