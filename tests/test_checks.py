"""The shared checks of core (one implementation per idea) and the behaviours they carry.

Counts, seeds, choices, switches and the eager-module check are written once in
``pellucid.checks`` and used by every package; these tests pin down their rules and the
fixes that went with them: ``Task.take`` names a target callable that fails on expanded
rows (methods and metrics alike), metrics re-run methods with the per-sample marks of the
model arguments, ``spatial.upsample`` aligns corners, and ``benchmark`` cuts ``masks=``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pellucid
from pellucid.checks import (
    SEED_LIMIT,
    as_directions,
    as_tensor,
    check_choice,
    check_count,
    check_eager,
    check_seed,
    compiled_original,
)
from pellucid.errors import (
    ArgumentError,
    ArgumentTypeError,
    ModelError,
    UnknownNameError,
    UnsupportedModelError,
)


def raises(error, argument, call):
    with pytest.raises(error) as caught:
        call()
    assert caught.value.argument == argument and argument in str(caught.value)
    return caught.value


# --------------------------------------------------------------------------- counts


def test_check_count_has_a_minimum_and_may_allow_none():
    assert check_count(np.int64(3), "steps") == 3
    assert check_count(torch.tensor(2), "steps") == 2
    assert check_count(0, "n", minimum=0) == 0
    assert check_count(None, "batch_size", none=True) is None
    raises(ArgumentError, "n", lambda: check_count(-1, "n", minimum=0))
    e = raises(ArgumentError, "subsets", lambda: check_count(1, "subsets", minimum=2))
    assert "≥ 2" in str(e)
    raises(ArgumentError, "steps", lambda: check_count(0, "steps"))
    for value in (None, True, 2.0, "3"):
        raises(ArgumentTypeError, "steps", lambda v=value: check_count(v, "steps"))
    e = raises(ArgumentTypeError, "top", lambda: check_count(1.5, "top", "how many", none=True))
    assert "or None" in str(e) and "how many" in str(e)


def test_the_generators_and_maximise_use_the_same_count_rule():
    from pellucid.data import shapes

    assert len(shapes(0, size=16)) == 0  # n = 0 is an empty set
    raises(ArgumentError, "n", lambda: shapes(-1, size=16))
    raises(ArgumentError, "size", lambda: shapes(2, size=4))
    raises(ArgumentTypeError, "distractors", lambda: shapes(2, size=16, distractors=1.0))


# --------------------------------------------------------------------------- seeds


def test_one_seed_range_everywhere():
    assert check_seed(np.int64(SEED_LIMIT - 1)) == SEED_LIMIT - 1
    assert check_seed(None) is None
    raises(ArgumentTypeError, "seed", lambda: check_seed(None, none=False))
    raises(ArgumentError, "seed", lambda: check_seed(SEED_LIMIT))
    raises(ArgumentError, "seed", lambda: check_seed(-1))
    raises(ArgumentTypeError, "seed", lambda: check_seed(True))
    for build in (
        lambda seed: pellucid.get_method("smoothgrad", seed=seed),
        lambda seed: pellucid.get_method("deeplift", seed=seed),
        lambda seed: pellucid.metrics.get_metric("faithfulness.correlation", seed=seed),
    ):
        build(SEED_LIMIT - 1)
        raises(ArgumentError, "seed", lambda b=build: b(SEED_LIMIT))
        raises(ArgumentError, "seed", lambda b=build: b(-1))


def test_derived_seeds_wrap_into_the_range():
    from pellucid._seeding import generator, offset_seed

    assert offset_seed(SEED_LIMIT - 1, 2) == 1
    assert offset_seed(5, 2) == 7
    draw = torch.rand(2, generator=generator(offset_seed(SEED_LIMIT - 1, 2)))
    assert torch.equal(draw, torch.rand(2, generator=generator(1)))


# --------------------------------------------------------------------------- choices


def test_check_choice_suggests_and_explains():
    assert check_choice("sgd", "optimiser", ("adam", "sgd")) == "sgd"
    e = raises(UnknownNameError, "optimiser",
               lambda: check_choice("adma", "optimiser", ("adam", "sgd"), "the update rule"))
    assert "Did you mean 'adam'" in str(e) and "the update rule" in str(e)
    assert isinstance(e, KeyError) and isinstance(e, ValueError)
    raises(ArgumentTypeError, "optimiser", lambda: check_choice(["adam"], "optimiser", ("adam",)))


def test_the_choice_settings_of_every_package_share_the_check():
    from pellucid import lrp
    from pellucid.data import shapes

    e = raises(UnknownNameError, "bias", lambda: lrp.rules.ZPlus(bias="splt"))
    assert "Did you mean 'split'" in str(e) and "Captum" in str(e)
    raises(UnknownNameError, "maxpool", lambda: pellucid.get_method("deeplift",
                                                                    maxpool="max"))
    raises(UnknownNameError, "background", lambda: shapes(2, size=16, background="textur"))
    raises(ArgumentTypeError, "background", lambda: shapes(2, size=16, background=[1]))


# --------------------------------------------------------------------------- eager modules


class Wrapper(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.head = nn.Linear(2, 2)

    def forward(self, x):
        return self.head(self.inner(x))


@pytest.mark.parametrize("form", ["script", "trace", "compile"])
def test_check_eager_walks_every_submodule(form):
    inner = nn.Linear(3, 2)
    if form == "script":
        inner = torch.jit.script(inner)
    elif form == "trace":
        inner = torch.jit.trace(inner, torch.zeros(1, 3))
    else:
        inner = torch.compile(inner, backend="eager")
    model = Wrapper(inner)
    check_eager(Wrapper(nn.Linear(3, 2)), "layer hooks")  # an eager model passes
    e = raises(UnsupportedModelError, "model", lambda: check_eager(model, "layer hooks"))
    assert "'inner'" in str(e) and "layer hooks" in str(e)


def test_compiled_original_unwraps_only_compiled_modules():
    eager = nn.Linear(3, 2)
    assert compiled_original(torch.compile(eager, backend="eager")) is eager
    assert compiled_original(eager) is None


def test_tensor_settings_name_the_setting():
    assert torch.equal(as_tensor([1, 2], "feature_mask", "labels"), torch.tensor([1, 2]))
    raises(ArgumentTypeError, "references",
           lambda: as_tensor(object(), "references", "a tensor of reference inputs"))
    assert as_directions([[1.0, 0.0]], "vectors", "K×D").shape == (1, 2)
    for bad in ([[1, 0]], [float("nan")], torch.zeros(0), torch.zeros(1, 1, 2)):
        raises(ArgumentError, "vectors", lambda b=bad: as_directions(b, "vectors", "K×D"))


# --------------------------------------------------------------------------- model_kwargs


def test_a_list_as_model_kwargs_is_named_by_features_and_concepts():
    from pellucid.concepts import layer_activations
    from pellucid.features import ClassLogit, maximise

    model = nn.Sequential(nn.Linear(3, 2)).eval()
    raises(ArgumentTypeError, "model_kwargs",
           lambda: layer_activations(model, "0", torch.zeros(2, 3), model_kwargs=[1, 2]))
    raises(ArgumentTypeError, "model_kwargs",
           lambda: maximise(model, ClassLogit(0), (1, 3), steps=1, progress=False,
                            model_kwargs=[("scale", 1.0)]))


class Scaled(nn.Module):
    """f(x, scale) = (scale · x) Wᵀ: a per-sample argument that is a 1-D tensor (B,)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2, bias=False)

    def forward(self, x, scale):
        return self.linear(x * scale[:, None])


def test_metrics_that_rerun_the_method_keep_the_per_sample_marks():
    model = Scaled().eval()
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    scale = pellucid.per_sample(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    result = pellucid.evaluate(model, x, 0, "gradient", ["robustness.max_sensitivity"],
                               model_kwargs={"scale": scale}, draws=3)
    # the gradient scale·W[0] does not depend on x: a perturbed input explains the same
    torch.testing.assert_close(result["robustness.max_sensitivity"].scores,
                               torch.zeros(4, dtype=torch.float64), check_dtype=False)


# --------------------------------------------------------------------------- expanded rows


def test_task_take_names_a_target_callable_that_fails_on_expanded_rows_once():
    from pellucid.targets import Target
    from pellucid.task import Task

    weights = torch.tensor([1.0, 2.0, 3.0])
    task = Task(nn.Linear(2, 2), Target(fn=lambda out: out[:, 0] * weights), rows=3)
    taken = task.take(torch.tensor([0, 0, 1, 1, 2]), "noisy copies").take(torch.tensor([0, 1]))
    with pytest.raises(ModelError) as error:
        taken.score(torch.zeros(2, 2))
    message = str(error.value)
    assert error.value.argument == "target" and "of the 3 samples" in message
    assert message.count("the target callable") == 1  # taken twice, wrapped once


def test_a_metric_names_a_target_callable_that_fails_on_perturbed_rows():
    model = nn.Linear(4, 2).eval()
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    weights = torch.tensor([1.0, 2.0, 3.0])  # one per sample: fits only unexpanded rows
    with pytest.raises(ModelError, match="one row per sample") as error:
        pellucid.evaluate(model, x, lambda out: out[:, 0] * weights, "gradient",
                          ["faithfulness.correlation"], subsets=4, subset_size=2)
    assert error.value.argument == "target"


# --------------------------------------------------------------------------- upsample


def test_upsample_aligns_corners_when_asked():
    from pellucid.spatial import upsample

    ramp = torch.tensor([[[0.0, 1.0]]])
    aligned = upsample(ramp, (4,), align_corners=True)
    torch.testing.assert_close(aligned, torch.tensor([[[0.0, 1 / 3, 2 / 3, 1.0]]]))
    torch.testing.assert_close(upsample(ramp, (4,)), torch.tensor([[[0.0, 0.25, 0.75, 1.0]]]))
    maps = torch.randn(1, 1, 3, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        upsample(maps, (7, 7), "bicubic", align_corners=True),
        F.interpolate(maps, size=(7, 7), mode="bicubic", align_corners=True),
    )
    raises(ArgumentError, "align_corners",
           lambda: upsample(maps, (7, 7), "nearest", align_corners=True))
    raises(ArgumentError, "interpolation", lambda: upsample(maps, (7, 7), "trilinear"))


# --------------------------------------------------------------------------- benchmark


def test_benchmark_cuts_the_masks_argument_to_n_and_checks_its_length(capsys):
    from pellucid import benchmark

    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2)).eval()
    x = torch.randn(6, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(6, 4, 4, dtype=torch.bool)
    masks[:, :2] = True
    masks[3:] = ~masks[3:]  # samples 3..5 have other masks: n=3 must not see them
    common = {"methods": ["gradient"], "metrics": ["localisation.relevance_mass"],
              "target": 0}
    cut = benchmark(model, x, n=3, masks=masks, **common)  # progress=True, not a terminal
    first = benchmark(model, x[:3], n=None, masks=masks[:3], progress=False, **common)
    (key,) = cut.scores
    torch.testing.assert_close(cut.scores[key], first.scores[key])
    assert capsys.readouterr().err == ""  # tqdm writes only to a terminal
    raises(ArgumentError, "masks", lambda: benchmark(model, x, n=None, masks=masks[:5],
                                                     progress=False, **common))
    raises(ArgumentError, "masks", lambda: benchmark(model, x, n=4, masks=masks[:3],
                                                     progress=False, **common))
    raises(ArgumentTypeError, "masks", lambda: benchmark(model, x, n=3, masks=[1, 2, 3],
                                                         progress=False, **common))
