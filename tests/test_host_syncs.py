"""Host synchronisations per call (issue 15): they must not grow with the depth of the
network, integration steps, noise samples, perturbation chunks or metric steps, and stay
within a handful per call.

Counted on CPU with :mod:`tests.helpers.syncs`, which emulates where tensors live (see its
docstring): the counter is first checked against calls whose count is known, then every
registered method and the metrics that loop are counted at two sizes. ``BOUND`` is the
most syncs one ``explain`` may make: the inputs' and the first output's finiteness checks,
a tensor target's range check, one deferred finiteness check for everything else, and a
few copies of per-call values between host and device (surrogate fits, window starts).
"""

from __future__ import annotations

import dataclasses

import numpy
import pytest
import torch
from torch import nn

import pellucid
from pellucid.attribution.integrated import nodes_on
from pellucid.checks import check_finite, deferred_checks
from pellucid.errors import ArgumentError, ModelError
from pellucid.lrp import tape
from pellucid.metrics.base import METRICS
from pellucid.metrics.randomisation import randomise
from pellucid.target_resolution import resolve_target

from .helpers.syncs import count_syncs

#: the most host syncs of one explain call (see the module docstring)
BOUND = 8
#: the most host syncs of one evaluate call with one metric: the case's (inputs, target,
#: one deferred check) and the metric's (one deferred check, its result copied to the CPU)
METRIC_BOUND = 8


def cnn(blocks: int) -> nn.Module:
    """conv-ReLU, then ``blocks - 1`` conv-BN-ReLU blocks (BatchNorm with non-trivial
    statistics), pooled into a linear classifier of 3 classes."""
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()]
    for _ in range(blocks - 1):
        norm = nn.BatchNorm2d(4)
        norm.running_mean.uniform_(-0.1, 0.1)
        norm.running_var.uniform_(0.5, 1.5)
        layers += [nn.Conv2d(4, 4, 3, padding=1), norm, nn.ReLU()]
    layers += [nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 3)]
    return nn.Sequential(*layers).eval()


class Attention(nn.Module):
    """``layers`` blocks x ← x + softmax(q kᵀ/√D)·v over L tokens; token 0 is read out."""

    def __init__(self, layers: int, dim: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.qkv = nn.ModuleList(nn.Linear(dim, 3 * dim) for _ in range(layers))
        self.head = nn.Linear(dim, 3)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for qkv in self.qkv:
            q, k, v = qkv(x).chunk(3, -1)
            x = x + torch.softmax(q @ k.transpose(1, 2) / q.shape[-1] ** 0.5, -1) @ v
        return self.head(x[:, 0])


IMAGES = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
TOKENS = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(1))


def _setting(name: str):
    """(shallow model, deep model, inputs, references) for method ``name``."""
    if "attention" in pellucid.get_method(name).requires:
        return Attention(1), Attention(4), TOKENS, torch.randn(4, 5, 4)
    return cnn(2), cnn(7), IMAGES, torch.randn(4, 3, 8, 8)


def syncs_of(model: nn.Module, x: torch.Tensor, method: pellucid.Method):
    """The syncs of one explain call, as the first of the process: IG's nodes are copied to
    the device once per device, and that copy is counted."""
    nodes_on.cache_clear()
    with count_syncs(model, x) as syncs:
        pellucid.explain(model, x, target=1, method=method)
    return syncs


# ------------------------------------------------------------------ the counter itself


def _count(fn) -> dict[str, int]:
    with count_syncs(DEVICE, REPEATS) as syncs:
        fn()
    return {kind: n for (kind, _), n in syncs.counts.items()}


DEVICE = torch.randn(4)  # given to the counter as a device tensor
REPEATS = torch.ones(4, dtype=torch.long)  # likewise


@pytest.mark.parametrize(("call", "kind"), [
    (lambda: bool(DEVICE.sum() > 0), "__bool__"),
    (lambda: float(DEVICE[0]), "__float__"),
    (lambda: int(DEVICE.argmax()), "__int__"),
    (lambda: DEVICE.sum().item(), "item"),
    (lambda: DEVICE.tolist(), "tolist"),
    (lambda: DEVICE.numpy(), "numpy"),
    (lambda: DEVICE.cpu(), "to host"),
    (lambda: DEVICE.to("cpu"), "to host"),
    (lambda: torch.equal(DEVICE, DEVICE), "equal"),
    (lambda: DEVICE.nonzero(), "nonzero"),
    (lambda: torch.unique(DEVICE), "unique"),
    (lambda: DEVICE[DEVICE > 0], "boolean-mask indexing"),
    (lambda: DEVICE.repeat_interleave(DEVICE.long().abs()), "repeat_interleave"),
    (lambda: torch.tensor(0.5, device=DEVICE.device), "tensor(device=) host→device copy"),
    (lambda: torch.rand(4).to(DEVICE), "host→device copy"),
    (lambda: DEVICE[torch.tensor([0, 1])], "host index into a device tensor"),
])
def test_the_counter_counts_each_synchronising_call_once(call, kind):
    assert _count(call) == {kind: 1}


@pytest.mark.parametrize("call", [
    lambda: DEVICE * 2 + DEVICE.sum(),  # kernels only
    lambda: torch.where(DEVICE > 0, DEVICE, 0.0),
    lambda: torch.full((3,), 2.0, device=DEVICE.device),  # a fill on the device: no copy
    lambda: int(torch.full((3,), 2).sum()),  # a host tensor, read on the host
    lambda: torch.arange(4).tolist(),
    lambda: torch.from_numpy(numpy.ones(2)).sum().item(),  # NumPy data: on the host
    lambda: DEVICE.repeat_interleave(REPEATS, output_size=4),
    lambda: DEVICE.to(DEVICE),  # follows the data
    lambda: 3 + 4,
])
def test_the_counter_ignores_device_work_and_host_tensors(call):
    assert _count(call) == {}


def test_the_counter_sees_syncs_made_inside_the_rule_engines_recording():
    """The recorder is a mode above the counter: what runs inside its __torch_function__
    (the model's own ops) reaches the counter below."""

    class Reads(nn.Module):
        def forward(self, x):
            return x * float(x.abs().max())  # one sync in the model's forward

    x = DEVICE.reshape(2, 2)
    with count_syncs(x) as syncs:
        recorder, _ = tape.record(Reads(), Reads(), x)
    assert syncs.counts and {k for k, _ in syncs.counts} == {"__float__"}
    assert syncs.total == 1
    assert any(node.name == "mul" for node in recorder.nodes)  # it did record


def test_the_counter_names_the_pellucid_line():
    with count_syncs(DEVICE) as syncs:
        check_finite(DEVICE, "x")
    ((kind, where),) = syncs.counts
    assert kind == "__bool__" and where.startswith("pellucid/checks.py:")


# ------------------------------------------------------------------ deferred finiteness


def test_deferred_checks_make_one_sync_for_any_number_of_checks():
    for n in (1, 50):
        with count_syncs(DEVICE) as syncs, deferred_checks():
            for chunk in DEVICE.repeat(n).split(2):
                check_finite(chunk, "chunk")
        assert syncs.total == 1


def test_deferred_checks_raise_the_first_failed_check_with_its_counts_summed():
    bad = torch.tensor([1.0, float("nan"), float("inf")])
    with pytest.raises(ModelError) as raised, deferred_checks():
        check_finite(DEVICE, "fine", argument="inputs")
        check_finite(bad, "the outputs", argument="model", error=ModelError)
        check_finite(bad, "the gradients", argument="method")
        check_finite(bad, "the outputs", argument="model", error=ModelError)
    assert raised.value.argument == "model"
    assert "2 NaN and 2 Inf" in str(raised.value)


def test_deferred_checks_nest_into_the_outermost_and_report_a_nan_that_broke_a_step():
    with count_syncs(DEVICE) as syncs, deferred_checks():
        with deferred_checks():
            check_finite(DEVICE, "inner")
        check_finite(DEVICE, "outer")
    assert syncs.total == 1
    with pytest.raises(ArgumentError, match=r"x .* 1 NaN"), deferred_checks():
        check_finite(torch.tensor([float("nan")]), "x")
        raise RuntimeError("a later step failed on the NaN")
    with pytest.raises(RuntimeError, match="unrelated"), deferred_checks():
        check_finite(DEVICE, "x")
        raise RuntimeError("unrelated")


def test_a_deferred_target_range_check_raises_the_same_error_at_the_end():
    output, classes = torch.zeros(3, 4), torch.tensor([1, 7, 9])
    with pytest.raises(ArgumentError) as now:
        resolve_target(classes, output)
    with count_syncs(output, classes) as syncs, pytest.raises(ArgumentError) as later, \
            deferred_checks():
        target = resolve_target(classes, output)
        assert target.classes.tolist() == [1, 3, 3]  # clamped: indexes safely meanwhile
    assert later.value.argument == now.value.argument == "target"
    assert str(later.value) == str(now.value) and "target 7 is out of range" in str(now.value)
    assert syncs.total == 1 + 1  # the block's one sync, and tolist() in this test


def test_a_nan_in_a_later_chunk_is_still_an_error_naming_the_model():
    class NanOnShiftedRows(nn.Module):
        def forward(self, x):  # finite at x, NaN on the interpolation points (x < 1)
            return torch.where(x.flatten(1).amin(1, keepdim=True) < 1,
                               torch.nan, x.flatten(1)[:, :2].sum(1, keepdim=True)).expand(-1, 2)

    with pytest.raises(ModelError) as raised:
        pellucid.explain(NanOnShiftedRows(), torch.full((2, 3), 2.0), 0,
                         method="integrated_gradients", steps=8, batch_size=2)
    assert raised.value.argument == "model"


# ------------------------------------------------------------------ methods


@pytest.mark.parametrize("name", pellucid.list_methods())
def test_explain_syncs_do_not_grow_with_depth(name):
    shallow, deep, x, references = _setting(name)
    method = pellucid.get_method(name).cheap(x, evaluations=4, references=references)
    few, many = syncs_of(shallow, x, method), syncs_of(deep, x, method)
    assert many.total == few.total, f"{few.report()}\nvs deeper:\n{many.report()}"
    assert many.total <= BOUND, many.report()


@pytest.mark.parametrize("name", pellucid.list_methods())
def test_explain_syncs_do_not_grow_with_budget_or_chunks(name):
    """Steps, samples, coalitions or windows ×4, and one row per chunk against all rows in
    one chunk."""
    model, _, x, references = _setting(name)
    method = pellucid.get_method(name)
    small = method.cheap(x, evaluations=4, references=references)
    large = method.cheap(x, evaluations=16, references=references, batch_size=1)
    few, many = syncs_of(model, x, small), syncs_of(model, x, large)
    assert many.total == few.total, f"{few.report()}\nvs larger:\n{many.report()}"
    assert many.total <= BOUND, many.report()


@pytest.mark.parametrize("target", [1, "tensor", "callable"])
def test_every_form_of_target_is_checked_once_per_call(target):
    """An int is checked in Python, a tensor's range once on the device, a callable's scores
    with the other deferred checks: the same count for 8 steps in one chunk and 32 in 32."""
    model, x = cnn(2), IMAGES
    spec = {1: 1, "tensor": torch.tensor([0, 2]),
            "callable": lambda out: out[:, 0] - out[:, 1]}[target]
    counts = []
    for steps, batch in ((8, None), (32, 2)):
        nodes_on.cache_clear()
        with count_syncs(model, x, *([spec] if target == "tensor" else [])) as syncs:
            pellucid.explain(model, x, spec, method="integrated_gradients", steps=steps,
                             batch_size=batch)
        counts.append(syncs.total)
    assert counts[0] == counts[1] <= BOUND


@pytest.mark.parametrize("base", ["gradient", "integrated_gradients"])
@pytest.mark.parametrize("wrapper", ["smoothgrad", "vargrad"])
def test_noise_wrappers_do_not_sync_per_sample(wrapper, base):
    model, x = cnn(2), IMAGES
    counts = [syncs_of(model, x, pellucid.get_method(wrapper, base=base, samples=n,
                                                     batch_size=b)).total
              for n, b in ((2, None), (12, 3))]
    assert counts[0] == counts[1] <= BOUND


def test_integrated_gradients_steps_8_and_32():
    model = cnn(3)
    counts = [syncs_of(model, IMAGES, pellucid.get_method(
        "integrated_gradients", steps=steps, batch_size=batch)).total
        for steps, batch in ((8, None), (32, 4))]
    assert counts[0] == counts[1] <= BOUND


def test_adaptive_integrated_gradients_syncs_once_per_refinement():
    """``steps="auto"`` decides after each grid which samples go on: one sync per grid
    (8, 24, 72, 216 steps: four), one copy of the nodes of each grid after the first (in
    the first call of the process), one for the closing convergence check and one for the
    count in its warning; none per chunk."""
    model = cnn(3)
    ig = pellucid.get_method("integrated_gradients", steps="auto", tolerance=1e-9,
                             max_steps=216)
    fixed = syncs_of(model, IMAGES, pellucid.get_method("integrated_gradients", steps=8)).total
    with pytest.warns(UserWarning, match="did not reach"):
        adaptive = [syncs_of(model, IMAGES, dataclasses.replace(ig, batch_size=b)).total
                    for b in (None, 2)]
    assert adaptive[0] == adaptive[1] == fixed + 4 + 3 + 2


# ------------------------------------------------------------------ metrics


METRIC_SIZES = {
    "faithfulness.correlation": ("subsets", 4, 16),
    "faithfulness.deletion": ("steps", 4, 16),
    "faithfulness.insertion": ("steps", 4, 16),
    "faithfulness.pixel_flipping": ("steps", 4, 16),
    "faithfulness.region_perturbation": ("steps", 2, 4),
    "faithfulness.infidelity": ("perturbations", 4, 16),
    "robustness.avg_sensitivity": ("draws", 2, 8),
    "robustness.max_sensitivity": ("draws", 2, 8),
    "robustness.continuity": ("max_shift", 1, 3),
    "randomisation.random_logit": (None, 0, 0),
    "randomisation.model_parameter": (None, 0, 0),
}


def metric_syncs(name: str, **settings) -> tuple[int, str]:
    model = cnn(2)
    explanation = pellucid.explain(model, IMAGES, target=1, method="saliency")
    masks = torch.zeros(2, 8, 8)
    masks[:, 2:5, 2:5] = 1
    with count_syncs(model, IMAGES, explanation.attribution, masks) as syncs:
        pellucid.evaluate(model, IMAGES, 1, explanation, [METRICS.get(name)(**settings)],
                          masks=masks, method="saliency")
    return syncs.total, syncs.report()


@pytest.mark.parametrize("name", sorted(METRIC_SIZES))
def test_metric_syncs_do_not_grow_with_steps_or_chunks(name):
    setting, small, large = METRIC_SIZES[name]
    sizes = ({setting: small}, {setting: large}) if setting else ({}, {})
    few, few_report = metric_syncs(name, **sizes[0], batch_size=64)
    many, many_report = metric_syncs(name, **sizes[1], batch_size=1)
    assert many == few, f"{few_report}\nvs larger:\n{many_report}"
    assert many <= METRIC_BOUND, many_report


@pytest.mark.parametrize("order", ["cascading", "independent"])
def test_parameter_randomisation_syncs_do_not_grow_with_layers_or_tensors(order):
    """Every layer of cnn(2) (4 layers, 11 tensors) and of cnn(7) (14 layers, 46 tensors,
    BatchNorm's 5 each) is drawn on the CPU from one copy of the trained values and goes
    back in one copy; each step's explanation defers its checks to the metric's block."""
    counts = []
    for blocks in (2, 7):
        model = cnn(blocks)
        explanation = pellucid.explain(model, IMAGES, target=1, method="saliency")
        metric = METRICS.get("randomisation.model_parameter")(order=order)
        with count_syncs(model, IMAGES, explanation.attribution) as syncs:
            result = pellucid.evaluate(model, IMAGES, 1, explanation, [metric],
                                       method="saliency")
        assert len(result[metric.name].extras["layers"]) == 1 + 2 * blocks
        counts.append(syncs)
    assert counts[0].total == counts[1].total <= METRIC_BOUND, counts[1].report()


def test_randomise_copies_once_each_way_whatever_the_tensors():
    """A Linear (2 tensors) and a BatchNorm (5, one of them int64) or a stack of 12: the
    trained values are read in one copy and the draws installed from one."""
    def norms(n: int) -> nn.Module:
        return nn.Sequential(*(nn.BatchNorm2d(4) for _ in range(n)))

    for module in (nn.Linear(3, 2), norms(1), norms(12)):
        with count_syncs(module) as syncs:
            randomise(module, seed=0)
        assert {kind: n for (kind, _), n in syncs.counts.items()} == {
            "to host": 1, "host→device copy": 1}, syncs.report()


class OnePositionHead(nn.Module):
    """``depth`` convolutions (ReLU between), the last read at position (0, 0) only: the
    score reaches the last one at one position, so Grad-CAM's automatic layer walks back
    through the ``depth - 1`` earlier candidates (to the last of them)."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.convs = nn.ModuleList(nn.Conv2d(3 if i == 0 else 4, 4, 3, padding=1)
                                   for i in range(depth))
        self.head = nn.Linear(4, 3)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs[:-1]:
            x = conv(x).relu()
        return self.head(self.convs[-1](x)[:, :, 0, 0])


@pytest.mark.parametrize("method", ["gradcam", "gradcam_plus_plus"])
def test_the_automatic_layer_reads_its_candidates_at_once(method):
    counts = []
    for depth in (2, 7):
        with count_syncs(model := OnePositionHead(depth), IMAGES) as syncs:
            explanation = pellucid.explain(model, IMAGES, 1, method=method)
        assert explanation.extras["layer"] == f"convs.{depth - 2}"
        counts.append(syncs)
    assert counts[0].total == counts[1].total <= BOUND, counts[1].report()


@pytest.mark.parametrize("name", sorted(set(pellucid.list_metrics()) - set(METRIC_SIZES)
                                        - {"faithfulness.roar", "randomisation.data"}))
def test_metrics_without_a_loop_sync_a_handful_of_times(name):
    total, report = metric_syncs(name)
    assert total <= METRIC_BOUND, report
