"""Targets beyond one class per sample: callables that see their samples, ready-made targets
(region, logit_difference, contrast, multilabel, output) and regression with target=None.

Every method and metric expands the batch differently (integration points, noisy copies,
perturbed inputs, chunks of rows); a per-sample target must give each sample exactly what
explaining it alone gives (batch = concatenation of singles), and closed forms hold on
linear models.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import pellucid
from pellucid import targets
from pellucid.errors import ArgumentError, ArgumentTypeError, ModelError
from pellucid.targets import RowScores, Target, takes_rows
from tests.helpers.methods import methods_without

B, H, W = 3, 6, 6


class Pixelwise(nn.Module):
    """A small segmentation model: conv features, then a per-pixel linear classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.classifier = nn.Linear(4, 3)

    def forward(self, x):
        return self.classifier(self.features(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def segmentation_case():
    torch.manual_seed(0)
    model = Pixelwise().eval()
    x = torch.randn(B, 3, H, W)
    mask = torch.rand(B, H, W, generator=torch.Generator().manual_seed(1)) > 0.5
    return model, x, mask


def cheap(method: str, x: torch.Tensor) -> pellucid.Method:
    references = torch.randn(4, *x.shape[1:], generator=torch.Generator().manual_seed(2))
    chosen = pellucid.get_method(method).cheap(x, evaluations=4, references=references)
    if method.startswith("gradcam"):  # a layer with a spatial map that is not all negative
        chosen = dataclasses.replace(chosen, layer="features.0")
    return chosen


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    scale = max(float(a.abs().max()), 1e-6)
    return torch.allclose(a, b, atol=1e-4 * scale, rtol=1e-4)


# --------------------------------------------------------------------------- callables with rows


@pytest.mark.parametrize("method", methods_without("attention"))
def test_every_method_explains_a_per_sample_region_as_each_sample_alone(method):
    model, x, mask = segmentation_case()
    chosen = cheap(method, x)
    batch = pellucid.explain(model, x, targets.region(mask, 1), method=chosen).attribution
    two = pellucid.explain(
        model, x, lambda out, rows: (out[:, 1] * mask[rows]).sum((1, 2)), method=chosen
    ).attribution
    singles = torch.cat([
        pellucid.explain(model, x[i : i + 1], lambda out, i=i: (out[:, 1] * mask[i]).sum((1, 2)),
                         method=chosen).attribution
        for i in range(B)
    ])
    assert batch.abs().max() > 0
    assert close(batch, singles), "a batch must explain each sample's own region"
    assert close(two, singles)


def test_smoothgrad_over_integrated_gradients_maps_rows_of_rows():
    model, x, mask = segmentation_case()
    seen = []

    def target(out, rows):
        seen.append(rows.clone())
        return (out[:, 2] * mask[rows]).sum((1, 2))

    method = pellucid.get_method("smoothgrad", base="integrated_gradients", samples=3,
                                 base_settings={"steps": 4}, batch_size=5)
    batch = pellucid.explain(model, x, target, method=method).attribution
    singles = torch.cat([
        pellucid.explain(model, x[i : i + 1], lambda out, i=i: (out[:, 2] * mask[i]).sum((1, 2)),
                         method=method).attribution
        for i in range(B)
    ])
    assert close(batch, singles)
    rows = torch.cat(seen[1:])  # after the first pass: every (noise, step) row of each sample
    assert set(rows.tolist()) == set(range(B))
    counts = torch.bincount(rows, minlength=B).tolist()  # steps, and the ends for completeness
    assert counts[0] >= 3 * 4 and counts == [counts[0]] * B


def test_take_composes_the_rows_of_rows():
    scores = RowScores.of(lambda out, rows: out + rows.to(out))
    once = scores.take(torch.tensor([2, 2, 0, 1]), "copies", samples=3)
    twice = once.take(torch.tensor([3, 0]))
    assert twice(torch.zeros(2)).tolist() == [1.0, 2.0]
    assert twice.samples == 3 and twice.what == "copies"
    target = Target(fn=lambda out, rows: out + rows.to(out)).take(torch.tensor([1, 1]), samples=2)
    assert target.score(torch.zeros(2, requires_grad=True)).tolist() == [1.0, 1.0]


def test_the_form_of_a_callable_is_read_from_its_signature():
    assert takes_rows(lambda out, rows: out)
    assert takes_rows(lambda out, rows=None: out)
    assert not takes_rows(lambda out: out)
    assert not takes_rows(lambda out, scale=2.0: out)  # a default is never given rows
    assert not takes_rows(lambda *outs: outs[0])
    assert takes_rows(targets.region(torch.ones(2, 2), 0))
    for bad in (lambda: 0, lambda out, rows, extra: out, lambda out, *, k: out):
        with pytest.raises(ArgumentTypeError, match="target") as error:
            pellucid.explain(nn.Linear(2, 2).eval(), torch.zeros(1, 2), bad, method="gradient")
        assert error.value.argument == "target" and "rows" in str(error.value)


def test_a_one_parameter_per_sample_callable_on_expanded_rows_suggests_rows():
    model, x, mask = segmentation_case()
    with pytest.raises(ModelError, match="one row per sample") as error:
        pellucid.explain(model, x, lambda out: (out[:, 1] * mask).sum((1, 2)),
                         method="integrated_gradients", steps=4)
    assert error.value.argument == "target"
    assert "lambda out, rows" in str(error.value)


def test_a_two_parameter_callable_that_fails_on_expanded_rows_says_what_rows_are():
    model, x, _ = segmentation_case()
    weights = torch.ones(B)

    def wrong(out, rows):  # indexes by position instead of by rows
        return out[:, 1].sum((1, 2)) * weights

    with pytest.raises(ModelError, match="rows") as error:
        pellucid.explain(model, x, wrong, method="integrated_gradients", steps=4)
    assert error.value.argument == "target" and f"0..{B - 1}" in str(error.value)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("metric", pellucid.list_metrics())
def test_every_metric_scores_a_per_sample_region_as_each_sample_alone(metric):
    model, x, mask = segmentation_case()
    truth = torch.rand(B, H, W, generator=torch.Generator().manual_seed(3)) > 0.5
    needs_classes = {"faithfulness.roar", "randomisation.data", "randomisation.random_logit"}
    retrains = metric in {"faithfulness.roar", "randomisation.data"}
    settings = {"train_fn": lambda inputs, labels: model} if retrains else {}
    if metric in needs_classes:  # they retrain or draw other classes: a class per sample
        with pytest.raises(ArgumentError, match="class per sample") as error:
            pellucid.evaluate(model, x, targets.region(mask, 1), "gradient", [metric],
                              masks=truth, **settings)
        assert error.value.argument == "target"
        return
    batch = pellucid.evaluate(model, x, targets.region(mask, 1), "integrated_gradients",
                              [metric], masks=truth)[metric].scores
    singles = torch.cat([
        pellucid.evaluate(model, x[i : i + 1], lambda out, i=i: (out[:, 1] * mask[i]).sum((1, 2)),
                          "integrated_gradients", [metric], masks=truth[i : i + 1])[metric].scores
        for i in range(B)
    ])
    torch.testing.assert_close(batch, singles, atol=1e-5, rtol=1e-4, equal_nan=True)


# --------------------------------------------------------------------------- region


def linear_segmentation(bias: bool = True, dims: int = 2):
    """out[b, c, p] = Σ_k W[c, k] x[b, k, p] + bias[c]: ∂/∂x[b, k, p] of Σ_p m[b, p]
    out[b, c, p] is W[c, k] m[b, p]."""
    torch.manual_seed(4)
    conv = (nn.Conv2d if dims == 2 else nn.Conv1d)(3, 4, 1, bias=bias).double().eval()
    return conv, conv.weight.detach().flatten(1)


@pytest.mark.parametrize("mask_form", ["per_sample", "channel", "shared", "float", "numpy"])
@pytest.mark.parametrize(
    "method", ["gradient", "gradient_x_input", "integrated_gradients", "smoothgrad", "lrp.zero"]
)
def test_region_gradient_has_the_closed_form_of_a_linear_segmentation_model(method, mask_form):
    model, weight = linear_segmentation(bias=method != "lrp.zero")
    x = torch.randn(B, 3, H, W, dtype=torch.float64)
    weights = torch.rand(B, H, W, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    mask = {
        "per_sample": weights > 0.5, "channel": (weights > 0.5)[:, None], "shared": weights[0],
        "float": weights, "numpy": (weights > 0.5).numpy(),
    }[mask_form]
    m = torch.as_tensor(np.asarray(mask)).double().reshape(-1, H, W).expand(B, H, W)
    grad = weight[2][None, :, None, None] * m[:, None]  # W[c, k] m[b, p]
    expected = grad if method in ("gradient", "smoothgrad") else grad * x
    e = pellucid.explain(model, x, targets.region(mask, 2), method=method)
    torch.testing.assert_close(e.attribution, expected)
    assert e.target.tolist() == [-1] * B


def test_region_on_sequences_with_a_class_per_sample():
    model, weight = linear_segmentation(dims=1)
    x = torch.randn(B, 3, 7, dtype=torch.float64)
    mask, cls = torch.rand(B, 7) > 0.3, [0, 3, 1]
    e = pellucid.explain(model, x, targets.region(mask, cls), method="integrated_gradients")
    expected = weight[cls][:, :, None] * mask[:, None].double() * x
    torch.testing.assert_close(e.attribution, expected)


def test_region_refuses_masks_that_do_not_fit_the_output():
    model, _ = linear_segmentation()
    x = torch.randn(2, 3, H, W, dtype=torch.float64)
    for mask, match in [(torch.ones(2, H, W + 1), "does not match"),
                        (torch.ones(3, H, W), "3 samples"),
                        (torch.ones(2, 2, H, W), "does not match")]:
        with pytest.raises(ArgumentError, match=match) as error:
            pellucid.explain(model, x, targets.region(mask, 0), method="gradient")
        assert error.value.argument == "target" and "mask" in str(error.value)
    with pytest.raises(ArgumentError, match="out of range"):
        pellucid.explain(model, x, targets.region(torch.ones(H, W), 9), method="gradient")
    with pytest.raises(ArgumentError, match="positions"):
        pellucid.explain(nn.Linear(3, 2).eval(), torch.zeros(2, 3),
                         targets.region(torch.ones(2, 3), 0), method="gradient")
    for bad, name in [(torch.tensor(float("nan")).expand(H, W), "mask"), (torch.ones(0), "mask"),
                      ("mask", "mask")]:
        with pytest.raises((ArgumentError, ArgumentTypeError)) as error:
            targets.region(bad, 0)
        assert error.value.argument == name
    with pytest.raises(ArgumentError) as error:
        targets.region(torch.ones(H, W), -1)
    assert error.value.argument == "cls"


def test_ready_made_targets_show_their_settings():
    assert repr(targets.region(torch.ones(2, 8, 8, dtype=torch.bool), 1)) == (
        "region(mask=<bool tensor (2, 8, 8)>, cls=1)"
    )
    assert repr(targets.logit_difference(0, [1, 2])) == "logit_difference(a=0, b=[1, 2])"
    assert repr(targets.contrast(3)) == "contrast(cls=3, others=None)"
    assert repr(targets.multilabel([[0, 2]])) == "multilabel(labels=[[0, 2]])"
    assert repr(targets.output("scores", 0)) == "output(key='scores', then=0)"


# --------------------------------------------------------------------------- class scores


def linear_classifier(classes: int = 4):
    torch.manual_seed(6)
    model = nn.Linear(5, classes).double().eval()
    return model, model.weight.detach()


def test_logit_difference_has_the_closed_form_with_classes_per_sample():
    model, w = linear_classifier()
    x = torch.randn(B, 5, dtype=torch.float64)
    a, b = [0, 3, 1], 2
    e = pellucid.explain(model, x, targets.logit_difference(a, b), method="integrated_gradients")
    torch.testing.assert_close(e.attribution, (w[a] - w[b]) * x)
    with pytest.raises(ArgumentError) as error:
        targets.logit_difference(1, 1)
    assert error.value.argument == "b" and "same class" in str(error.value)
    with pytest.raises(ArgumentError) as error:
        targets.logit_difference([0, 1], [1, 2, 3])
    assert error.value.argument == "b"
    with pytest.raises(ArgumentError, match="out of range"):
        pellucid.explain(model, x, targets.logit_difference(0, 7), method="gradient")


def test_contrast_is_the_class_against_the_mean_of_the_others():
    model, w = linear_classifier()
    x = torch.randn(B, 5, dtype=torch.float64)
    cls = [0, 2, 3]
    e = pellucid.explain(model, x, targets.contrast(cls), method="smoothgrad")
    others = (w.sum(0) - w[cls]) / 3
    torch.testing.assert_close(e.attribution, w[cls] - others)
    e = pellucid.explain(model, x, targets.contrast(1, others=[0, 3]), method="gradient")
    torch.testing.assert_close(e.attribution, (w[1] - (w[0] + w[3]) / 2).expand(B, 5))
    for bad in ({"cls": 1, "others": [1, 2]}, {"cls": 1, "others": [0, 0]}):
        with pytest.raises(ArgumentError) as error:
            targets.contrast(**bad)
        assert error.value.argument == "others"
    with pytest.raises(ArgumentError, match="one-output"):
        pellucid.explain(nn.Linear(5, 1).eval(), torch.zeros(2, 5), targets.contrast(0),
                         method="gradient")


@pytest.mark.parametrize("form", ["lists", "tensor", "numpy"])
def test_multilabel_sums_the_positive_labels(form):
    model, w = linear_classifier()
    x = torch.randn(B, 5, dtype=torch.float64)
    lists = [[0, 2], [3], [1, 2, 3]]
    hot = torch.zeros(B, 4, dtype=torch.bool)
    for i, row in enumerate(lists):
        hot[i, row] = True
    labels = {"lists": lists, "tensor": hot, "numpy": hot.numpy().astype(np.int64)}[form]
    e = pellucid.explain(model, x, targets.multilabel(labels), method="integrated_gradients")
    torch.testing.assert_close(e.attribution, (hot.double() @ w) * x)


def test_multilabel_refuses_labels_that_are_not_multi_hot():
    for bad in (torch.tensor([[0, 2]]), [[1, 1]], torch.ones(3), [[-1]]):
        with pytest.raises(ArgumentError) as error:
            targets.multilabel(bad)
        assert error.value.argument == "labels"
    with pytest.raises(ArgumentError, match="classes"):
        pellucid.explain(nn.Linear(5, 4).eval(), torch.zeros(1, 5),
                         targets.multilabel(torch.ones(1, 3)), method="gradient")


# --------------------------------------------------------------------------- output


class Detector(nn.Module):
    """A detection-style dict output: boxes (B, N, 4), scores (B, N), masks (B, N, 4, 4)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.head = nn.Linear(8, 3).double()

    def forward(self, x):
        scores = self.head(x)
        masks = scores[:, :, None, None] * torch.ones(4, 4, dtype=x.dtype)
        return {"boxes": x[:, :4].unsqueeze(1).repeat(1, 3, 1), "scores": scores, "masks": masks}


def test_output_explains_one_entry_of_a_dict_like_output_equals():
    model = Detector().eval()
    x = torch.randn(B, 8, dtype=torch.float64)
    w = model.head.weight.detach()
    e = pellucid.explain(model, x, targets.output("scores", [0, 2, 1]), method="gradient")
    torch.testing.assert_close(e.attribution, w[[0, 2, 1]])
    same = pellucid.explain(model, x, [0, 2, 1], method="gradient", output="scores")
    assert torch.equal(e.attribution, same.attribution) and e.target.tolist() == [0, 2, 1]
    mask = torch.zeros(B, 4, 4)
    mask[:, :2] = 1  # 8 of 16 positions
    region = targets.output("masks", targets.region(mask, 1))
    e = pellucid.explain(model, x, region, method="integrated_gradients")
    torch.testing.assert_close(e.attribution, 8 * w[1] * x)


def test_output_called_directly_reads_the_raw_output():
    out = Detector().eval()(torch.ones(2, 8, dtype=torch.float64))
    assert torch.equal(targets.output("scores", 1)(out), out["scores"][:, 1])
    assert torch.equal(targets.output("scores", [1, 0])(out, torch.tensor([1, 1])),
                       out["scores"][[1, 1], [0, 0]])
    single = targets.output(0)((torch.ones(2, 1), torch.zeros(2, 3)))
    assert single.tolist() == [1.0, 1.0]


def test_output_refuses_a_second_selection_and_bad_keys():
    model = Detector().eval()
    x = torch.zeros(1, 8, dtype=torch.float64)
    with pytest.raises(ArgumentError) as error:
        pellucid.explain(model, x, targets.output("scores", 0), method="gradient",
                         output="boxes")
    assert error.value.argument == "output"
    # the same selection given twice is one selection
    twice = pellucid.explain(model, x, targets.output("scores", 0), method="gradient",
                             output="scores")
    once = pellucid.explain(model, x, targets.output("scores", 0), method="gradient")
    assert torch.equal(twice.attribution, once.attribution)
    for bad in (True, None, 1.5):
        with pytest.raises(ArgumentTypeError) as error:
            targets.output(bad)
        assert error.value.argument == "key"
    with pytest.raises(ArgumentError) as error:
        targets.output("scores", -1)
    assert error.value.argument == "then"
    with pytest.raises(ArgumentError, match="no_such"):
        pellucid.explain(model, torch.zeros(1, 8, dtype=torch.float64),
                         targets.output("no_such", 0), method="gradient")


# --------------------------------------------------------------------------- regression


def regressor(shape: str):
    """f(x) = w·x + b as (B,) or (B, 1)."""
    torch.manual_seed(8)
    linear = nn.Linear(6, 1).double()
    layers = [linear] if shape == "(B, 1)" else [linear, nn.Flatten(0)]
    return nn.Sequential(*layers).eval(), linear.weight.detach()[0]


def closed_form(method: str, w: torch.Tensor, x: torch.Tensor, reference: torch.Tensor):
    """The attribution of a linear regressor w·x + b, where one is known in closed form."""
    w = w.expand_as(x)
    return {
        "gradient": w, "saliency": w.abs(), "sensitivity": w.square(), "smoothgrad": w,
        "smoothgrad_squared": w.square(), "vargrad": torch.zeros_like(x),
        "guided_backprop": w, "deconvnet": w,
        "gradient_x_input": w * x, "integrated_gradients": w * x, "deeplift": w * x,
        "occlusion": w * x, "kernel_shap": w * x, "lrp.zero": w * x, "lrp.epsilon": w * x,
        "lrp": w * x, "expected_gradients": w * (x - reference),
    }.get(method)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("shape", ["(B,)", "(B, 1)"])
@pytest.mark.parametrize("method", methods_without("attention"))
def test_every_method_explains_a_linear_regressor_with_target_none(method, shape):
    model, w = regressor(shape)
    x = torch.randn(B, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    reference = torch.full((2, 6), 0.5, dtype=torch.float64)
    settings = {"expected_gradients": {"references": reference},
                "occlusion": {"window": 1}}.get(method, {})
    if method.startswith("gradcam"):
        with pytest.raises(ArgumentError, match="spatial"):
            pellucid.explain(model, x, None, method=method)
        return
    e = pellucid.explain(model, x, None, method=method, **settings)
    assert e.target.tolist() == [0] * B
    expected = closed_form(method, w, x, reference[0])
    if expected is not None:  # ε-rules: x·w·f/(f + ε), ε = 1e-6
        torch.testing.assert_close(e.attribution, expected, rtol=1e-5, atol=1e-9)
    else:  # no closed form: the same as naming the one output
        named = pellucid.explain(model, x, lambda out: out.reshape(-1), method=method, **settings)
        torch.testing.assert_close(e.attribution, named.attribution)
        assert torch.isfinite(e.attribution).all()


def test_grad_cam_of_a_linear_image_regressor_has_its_closed_form():
    """Layer A = x: α_c = mean_p w[c, p], map = relu(Σ_c α_c x[c])."""
    torch.manual_seed(10)
    model = nn.Sequential(nn.Identity(), nn.Flatten(), nn.Linear(2 * 3 * 3, 1)).double().eval()
    x = torch.randn(B, 2, 3, 3, dtype=torch.float64)
    w = model[2].weight.detach().reshape(2, 3, 3)
    e = pellucid.explain(model, x, None, method="gradcam", layer="0")
    expected = torch.einsum("c,bchw->bhw", w.mean((1, 2)), x).clamp_min(0)
    torch.testing.assert_close(e.attribution, expected[:, None].expand_as(x))


def test_regression_metrics_score_the_raw_output():
    model, _ = regressor("(B,)")
    x = torch.randn(B, 6, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = pellucid.evaluate(model, x, None, "integrated_gradients",
                                   ["axiomatic.completeness"])
    # IG on a linear model is complete: Σ attribution = f(x) − f(0) exactly
    torch.testing.assert_close(result["axiomatic.completeness"].scores,
                               torch.zeros(B, dtype=result["axiomatic.completeness"].scores.dtype),
                               atol=1e-6, rtol=0)


def test_an_explanation_records_its_output_selector_for_rescoring():
    class TwoHeads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.main, self.aux = torch.nn.Linear(4, 3), torch.nn.Linear(4, 2)

        def forward(self, x):
            return {"main": self.main(x), "aux": self.aux(x)}

    torch.manual_seed(0)
    model, x = TwoHeads().eval(), torch.randn(3, 4)
    e = pellucid.explain(model, x, 1, method="gradient", output="aux")
    assert e.target_spec.key == "aux" and e.target.tolist() == [1, 1, 1]
    assert torch.equal(e.target_spec(model(x)), model(x)["aux"][:, 1])
    # re-scoring selects "aux" again, with or without output= given once more
    again = pellucid.evaluate(model, x, None, e, ["axiomatic.completeness"], baseline=0.0)
    same = pellucid.evaluate(model, x, None, e, ["axiomatic.completeness"], baseline=0.0,
                             output="aux")
    assert torch.equal(again["axiomatic.completeness"].scores,
                       same["axiomatic.completeness"].scores)
    with pytest.raises(ArgumentError, match="give the selection once") as error:
        pellucid.evaluate(model, x, None, e, ["axiomatic.completeness"], output="main")
    assert error.value.argument == "output"
