"""Every method and metric on a CUDA device (issue 15, item 6), against the same call on the
CPU. Skipped where no CUDA device is present: no GPU has been lent to this project yet, so
these tests have not run; they are what `make test` checks on a GPU machine.

Tolerances: recent GPUs run float32 convolutions in TF32 by default (10 bits of mantissa,
``torch.backends.cudnn.allow_tf32``), so a float32 attribution on CUDA is compared with the
CPU's at a relative L2 error of 1e-2, not at float32 rounding; the TF32-free comparison
(``allow_tf32 = False``) holds at 1e-4.

``PELLUCID_TEST_DEVICE=cpu`` runs the same code against the CPU (a check of the tests
themselves, not of CUDA).
"""

from __future__ import annotations

import os

import pytest
import torch

import pellucid
from tests.helpers.models import VGGish, randomise_batchnorm
from tests.test_contract import cheap
from tests.test_metrics_attributions import scores

DEVICE = os.environ.get("PELLUCID_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(),
                                reason="needs a CUDA device")

METHODS = [m for m in pellucid.list_methods()
           if "attention" not in pellucid.get_method(m).requires]


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    return ((a - b).norm() / b.norm().clamp_min(1e-12)).item()


@pytest.fixture(params=[True, False], ids=["tf32", "exact"])
def tf32(request):
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = request.param
    yield request.param
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


@pytest.mark.parametrize("method", METHODS)
def test_every_method_on_cuda_matches_the_cpu_and_lives_on_the_device(method, tf32):
    model = randomise_batchnorm(VGGish(), seed=1).eval()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    chosen = cheap(method, x)
    on_cpu = pellucid.explain(model, x, 0, method=chosen)
    on_gpu = pellucid.explain(model.to(DEVICE), x, 0, method=chosen)  # CPU inputs: moved
    assert on_gpu.attribution.device.type == DEVICE
    assert on_gpu.output.device.type == on_gpu.target.device.type == DEVICE
    assert _relative(on_gpu.attribution, on_cpu.attribution) < (1e-2 if tf32 else 1e-4)


@pytest.mark.parametrize("method", ["gradient", "lrp.epsilon", "lrp.epsilon_plus_flat",
                                    "integrated_gradients", "smoothgrad", "occlusion"])
def test_bfloat16_models_on_cuda_give_finite_results_near_float32(method):
    model = randomise_batchnorm(VGGish(), seed=1).eval().to(DEVICE)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)).to(DEVICE)
    chosen = cheap(method, x)
    reference = pellucid.explain(model, x, 0, method=chosen).attribution
    half = pellucid.explain(model.to(torch.bfloat16), x, 0, method=chosen).attribution
    assert half.dtype == torch.bfloat16 and half.isfinite().all()
    assert _relative(half, reference) < 0.3


def test_metrics_on_cuda_match_the_cpu():
    model = randomise_batchnorm(VGGish(), seed=1).eval()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    names = ["faithfulness.deletion", "faithfulness.correlation", "complexity.sparseness",
             "robustness.max_sensitivity"]
    on_cpu = scores(pellucid.evaluate(model, x, 0, "gradient", names, draws=4))
    on_gpu = scores(pellucid.evaluate(model.to(DEVICE), x, 0, "gradient", names, draws=4))
    for name in names:
        torch.testing.assert_close(on_gpu[name], on_cpu[name], rtol=2e-2, atol=1e-3)
