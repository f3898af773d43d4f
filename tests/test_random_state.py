"""Issue 15, item 4: no public function changes the caller's global random state.

Every registered method (cheap settings), every metric, feature visualisation, CAV training
and the data generators leave ``torch``'s, NumPy's and Python's global generators (and
CUDA's, where there is one) exactly as they were: their draws go through explicit,
seeded ``torch.Generator``s (``pellucid._seeding``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import random

import numpy as np
import pytest
import torch
from torch import nn

import pellucid
from pellucid import concepts, data, features
from pellucid.metrics import evaluate, get_metric, list_metrics
from pellucid.metrics.randomisation import randomise
from tests.helpers.methods import methods_without
from tests.helpers.models import VGGish, randomise_batchnorm


def _states() -> tuple:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return (torch.random.get_rng_state(), cuda, np.random.get_state(), random.getstate())


@contextlib.contextmanager
def unchanged_random_state():
    """Seeds the global generators, runs the block, then checks that all are as they were."""
    torch.manual_seed(1234)
    np.random.seed(1234)
    random.seed(1234)
    before = _states()
    yield
    after = _states()
    assert torch.equal(before[0], after[0]), "torch's CPU random state changed"
    assert all(torch.equal(a, b) for a, b in zip(before[1], after[1], strict=True)), \
        "a CUDA random state changed"
    assert all(np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
               for a, b in zip(before[2], after[2], strict=True)), "NumPy's random state changed"
    assert before[3] == after[3], "Python's random state changed"


@pytest.fixture(scope="module")
def cnn():
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):  # the test's own model; not under test
        torch.manual_seed(0)
        model = randomise_batchnorm(VGGish()).eval()
    return model, torch.rand(2, 3, 16, 16, generator=gen)


@pytest.mark.parametrize("method", methods_without("attention"))
def test_every_method_leaves_the_global_random_state(method, cnn):
    model, x = cnn
    references = torch.rand(4, *x.shape[1:], generator=torch.Generator().manual_seed(2))
    with unchanged_random_state():
        chosen = pellucid.get_method(method).cheap(x, evaluations=4, references=references)
        pellucid.explain(model, x, 1, method=chosen)


def seeds(name: str) -> tuple[int | None, ...]:
    """0, and None where the metric takes it (a fresh seed from a new generator)."""
    try:
        dataclasses.replace(get_metric(name), seed=None)
    except pellucid.errors.ArgumentTypeError:
        return (0,)
    except pellucid.errors.PellucidError:  # another setting is required (train_fn)
        pass
    return (0, None)


@pytest.mark.parametrize("name", list_metrics())
def test_every_metric_leaves_the_global_random_state(name, cnn):
    model, x = cnn
    masks = torch.zeros(2, 16, 16)
    masks[:, 4:12, 4:12] = 1
    fields = {f.name for f in dataclasses.fields(get_metric(name))}
    settings = {"train_fn": lambda a, b: copy.deepcopy(model)} if "train_fn" in fields else {}
    for seed in seeds(name) if "seed" in fields else (0,):  # None: a fresh, unseeded draw
        if "seed" in fields:
            settings["seed"] = seed
        with unchanged_random_state():
            evaluate(model, x, 1, "smoothgrad", [name], masks=masks,
                     method_settings={"samples": 2}, **settings)


def test_randomise_draws_alike_in_every_dtype_and_leaves_the_state():
    """The re-initialisation is drawn on a float32 CPU copy: a float64 or bfloat16 layer gets
    the float32 draws (rounded), the same for the same seed, different for another. (On CUDA
    the draws are the CPU's too, so a GPU run reproduces these values.)"""
    layer = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    drawn = {}
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        twin = copy.deepcopy(layer).to(dtype)
        with unchanged_random_state():
            randomise(twin, seed=7)
        drawn[dtype] = [t.detach().clone() for t in twin.state_dict().values()]
    for dtype in (torch.float64, torch.bfloat16):
        for a, b in zip(drawn[torch.float32], drawn[dtype], strict=True):
            torch.testing.assert_close(b, a.to(b.dtype))
    again, other = copy.deepcopy(layer), copy.deepcopy(layer)
    randomise(again, seed=7)
    randomise(other, seed=8)
    assert torch.equal(again[0].weight, drawn[torch.float32][0])
    assert not torch.equal(other[0].weight, again[0].weight)


@pytest.mark.parametrize("parameterisation", ["pixels", "fourier"])
@pytest.mark.parametrize("seed", [0, None])
def test_feature_visualisation_leaves_the_global_random_state(cnn, parameterisation, seed):
    model, _ = cnn
    transforms = [features.Jitter(2)] if hasattr(features, "Jitter") else []
    with unchanged_random_state():
        features.maximise(model, features.ClassLogit(1), (2, 3, 16, 16), steps=3, seed=seed,
                          parameterisation=parameterisation, regularisers=transforms,
                          progress=False)


@pytest.mark.parametrize("classifier", ["logistic", "svm", "sgd"])
def test_cav_training_leaves_the_global_random_state(cnn, classifier):
    pytest.importorskip("sklearn")
    model, _ = cnn
    gen = torch.Generator().manual_seed(3)
    concept = {"bright": 0.5 + torch.rand(6, 3, 16, 16, generator=gen)}
    random_sets = [torch.rand(6, 3, 16, 16, generator=gen) for _ in range(2)]
    with unchanged_random_state():
        concepts.train_cavs(model, "features.3", concept, random_sets, classifier=classifier)


@pytest.mark.parametrize("make", [
    lambda: data.shapes(4, size=32),
    lambda: data.clever_hans(4, size=32),
    lambda: data.text_evidence(4),
], ids=["shapes", "clever_hans", "text_evidence"])
def test_data_generators_leave_the_global_random_state(make):
    with unchanged_random_state():
        make()
