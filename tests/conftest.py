"""Shared fixtures: deterministic torch, one thread per test worker, model-state snapshots."""

from __future__ import annotations

import pytest
import torch
from torch import nn

torch.set_num_threads(1)


def _uninitialised(t: torch.Tensor) -> bool:
    """A lazy module's parameter before its first forward (it has no values to compare)."""
    return isinstance(t, nn.parameter.UninitializedParameter | nn.parameter.UninitializedBuffer)


def model_state(model: nn.Module) -> dict:
    """Everything the guard promises to keep: values, flags, modes, hooks, grads."""
    return {
        "state": {k: v if _uninitialised(v) else v.detach().clone()
                  for k, v in model.state_dict().items()},
        "params": [(id(p), p.requires_grad, None if p.grad is None else id(p.grad))
                   for p in model.parameters()],
        "modes": [m.training for m in model.modules()],
        "hooks": [
            (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks),
             len(getattr(m, "_backward_pre_hooks", {})))
            for m in model.modules()
        ],
    }


def assert_untouched(model: nn.Module, before: dict) -> None:
    after = model_state(model)
    assert after["params"] == before["params"], "parameters, requires_grad or .grad changed"
    assert after["modes"] == before["modes"], "train/eval mode changed"
    assert after["hooks"] == before["hooks"], "hooks were left on the model"
    assert before["state"].keys() == after["state"].keys()
    for k, v in before["state"].items():
        if _uninitialised(v):
            assert _uninitialised(after["state"][k]), f"{k} was initialised"
        else:
            assert torch.equal(v, after["state"][k]), f"{k} changed"


@pytest.fixture
def snapshot():
    return model_state


@pytest.fixture
def untouched():
    return assert_untouched


@pytest.fixture
def linear_model():
    """A linear model f(x) = Wx + b with 3 outputs over 5 features, in float64."""
    torch.manual_seed(0)
    model = nn.Linear(5, 3).double().eval()
    return model
