"""Half-precision models: BatchNorm folding in bfloat16, and a clear error where float16
overflows (the start of issue 15; measured precision per rule is documented there)."""

from __future__ import annotations

import pytest
import torch

import pellucid
from pellucid.errors import ModelError
from tests.helpers.models import VGGish


def vgg_with_statistics() -> torch.nn.Module:
    torch.manual_seed(0)
    model = VGGish().eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("method", ["lrp.epsilon", "lrp.epsilon_plus", "lrp.epsilon_gamma_box"])
def test_bfloat16_batchnorm_models_fold_and_stay_near_float32(method):
    model, x = vgg_with_statistics(), torch.rand(2, 3, 32, 32)
    reference = pellucid.explain(model, x, 0, method=method).attribution
    half = pellucid.explain(model.to(torch.bfloat16), x, 0, method=method).attribution
    assert half.dtype == torch.bfloat16 and half.isfinite().all()  # the model's dtype
    half = half.float()
    # bfloat16 keeps 8 bits of mantissa: a few per cent over a deep network
    assert (half - reference).norm() / reference.norm() < 0.2


def test_float16_overflow_is_an_error_that_says_what_to_do():
    model, x = vgg_with_statistics().to(torch.float16), torch.rand(2, 3, 32, 32)
    with pytest.raises(ModelError, match="bfloat16 or float32") as error:
        pellucid.explain(model, x, 0, method="lrp.epsilon")
    assert error.value.argument == "model"
