"""The guard restores only the buffers that changed, and keeps its copies between calls.

Version counters decide what changed (an in-place write bumps them), except for
BatchNorm's running statistics in train mode, which its kernel updates without a bump:
the guard then follows the module's ``num_batches_tracked``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pellucid
import pellucid.lrp
from pellucid import guard
from pellucid.guard import ModelSnapshot, clear_buffer_copies, preserved
from pellucid.lrp import canonical
from pellucid.lrp.engine import WEIGHT_CACHE


class Counter(nn.Module):
    """Adds its input's row count to a buffer in place on every forward (a tracked write)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("seen", torch.zeros(()))
        self.register_buffer("scale", torch.ones(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.add_(len(x))
        return x * self.scale


def bn_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 3))
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


def versions(model: nn.Module) -> list[int]:
    return [b._version for b in model.buffers()]


def test_a_buffer_written_in_place_during_a_call_is_restored():
    model = nn.Sequential(Counter(), nn.Linear(3, 2)).eval()
    model[0].seen.fill_(5.0)
    pellucid.explain(model, torch.randn(4, 3), target=0, method="integrated_gradients", steps=4)
    assert model[0].seen.item() == 5.0  # the forward passes added 4 + 4·4 rows, put back
    # the user's own write between calls is what the next call restores to, not the copy
    # the guard kept from the previous call
    model[0].seen.fill_(7.0)
    pellucid.explain(model, torch.randn(2, 3), target=0, method="gradient")
    assert model[0].seen.item() == 7.0


def test_an_unchanged_buffer_keeps_its_version_counter():
    model = bn_model()
    x = torch.randn(2, 3, 6, 6)
    pellucid.explain(model, x, target=0, method="gradient")
    before = versions(model)
    pellucid.explain(model, x, target=0, method="lrp.epsilon")
    pellucid.explain(model, x, target=0, method="gradient")
    assert versions(model) == before


def test_the_folded_batch_norm_is_not_rebuilt_on_a_second_call(monkeypatch):
    model = bn_model()
    x = torch.randn(2, 3, 6, 6)
    folds = []
    real = canonical._folded
    monkeypatch.setattr(canonical, "_folded", lambda *a: folds.append(1) or real(*a))
    first = pellucid.explain(model, x, target=0, method="lrp.epsilon").attribution
    entries = len(WEIGHT_CACHE)
    assert folds == [1]
    second = pellucid.explain(model, x, target=0, method="lrp.epsilon").attribution
    assert folds == [1] and len(WEIGHT_CACHE) == entries  # the cache hit
    assert torch.equal(first, second)


def test_batch_norm_trained_between_calls_is_folded_again():
    """Train mode updates the running statistics without bumping their counters: the guard
    bumps them at the next call, so the rule engine folds the new statistics."""
    model = bn_model()
    x = torch.randn(2, 3, 6, 6)
    stale = pellucid.explain(model, x, target=0, method="lrp.epsilon").attribution
    model.train()
    with torch.no_grad():
        model(3.0 * torch.randn(16, 3, 6, 6) + 2.0)  # new statistics, no version bump
    model.eval()
    after = pellucid.explain(model, x, target=0, method="lrp.epsilon").attribution
    pellucid.lrp.clear_weight_cache()
    fresh = pellucid.explain(model, x, target=0, method="lrp.epsilon").attribution
    assert not torch.allclose(stale, fresh)
    torch.testing.assert_close(after, fresh)


def test_batch_norm_in_train_mode_is_restored_with_its_statistics():
    model = bn_model().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(UserWarning, match="train mode"):
        pellucid.explain(model, torch.randn(4, 3, 6, 6) + 1.0, target=0, method="gradient")
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_statistics_trained_between_calls_are_what_the_next_call_restores():
    """A copy kept from an earlier call is not used once the module's buffers moved: the
    statistics written during the call are restored to the trained ones, not older ones."""
    model = bn_model()
    x = torch.randn(2, 3, 6, 6)
    pellucid.explain(model, x, target=0, method="gradient")
    model.train()
    with torch.no_grad():
        model(3.0 * torch.randn(16, 3, 6, 6) + 2.0)
    model.eval()
    trained = model[1].running_mean.clone()
    with preserved(model), torch.no_grad():
        model[1].running_mean.add_(100.0)  # a write during the call
    assert torch.equal(model[1].running_mean, trained)


def test_unchanged_buffers_are_not_copied_again():
    model = bn_model()
    ModelSnapshot(model).restore()
    first = ModelSnapshot(model)
    copies = [c for b in first.buffers for c in b.copies]
    first.restore()
    again = ModelSnapshot(model)
    assert all(a is b for a, b in zip(copies, (c for b in again.buffers for c in b.copies)))
    again.restore()
    with torch.no_grad():
        model[1].running_var.mul_(2.0)  # a write between calls: copied again
    moved = ModelSnapshot(model)
    fresh = [c for b in moved.buffers for c in b.copies]
    assert not any(a is b for a, b in zip(copies, fresh))
    assert torch.equal(fresh[1], model[1].running_var)
    moved.restore()


def test_nested_guards_share_the_copies_and_both_restore():
    model = nn.Sequential(Counter(), nn.Linear(3, 2)).eval()
    with preserved(model) as outer:
        with preserved(model) as inner:
            assert inner.buffers[0].copies is outer.buffers[0].copies
            model(torch.randn(3, 3))
        assert model[0].seen.item() == 0.0  # restored by the inner guard
        model(torch.randn(2, 3))
    assert model[0].seen.item() == 0.0


def test_clear_buffer_copies_drops_the_copies():
    model = bn_model()
    ModelSnapshot(model).restore()
    kept = ModelSnapshot(model)
    kept.restore()
    clear_buffer_copies()
    assert all(seen.copies is None for seen in guard._SEEN[model].values())
    again = ModelSnapshot(model)
    assert not any(a is b for a, b in zip(kept.buffers[0].copies, again.buffers[0].copies))
    again.restore()


def test_hooks_added_during_a_call_are_removed_and_earlier_ones_kept():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU()).eval()
    calls = []
    earlier = model[0].register_forward_hook(lambda *a: calls.append("earlier"))
    with preserved(model):
        model[0].register_forward_hook(lambda *a: calls.append("during"))
        model[1].register_forward_pre_hook(lambda *a: calls.append("during"))
        model.register_full_backward_hook(lambda *a: calls.append("during"))
    model(torch.randn(1, 3))
    assert calls == ["earlier"]
    earlier.remove()


def test_a_replaced_buffer_and_a_buffer_given_new_data_are_put_back():
    model = bn_model()
    bn = model[1]
    mean, values = bn.running_mean, bn.running_mean.clone()
    with preserved(model):
        bn.running_mean = torch.zeros(4)
        bn.running_var.data = torch.zeros(7)
    assert bn.running_mean is mean and torch.equal(mean, values)
    assert bn.running_var.shape == (4,) and bool((bn.running_var > 0).all())
