"""The engine's closed-form shortcuts (issue 12, item 8: AttnLRP and CP-LRP at about one
forward + backward pass) against what they replace: the direct vector-Jacobian products of
sums, products, matrix products and softmax against autograd, the linearised norms' adjoints
against autograd through the linear map, the fused ε-ratio against its formula, and the
per-sample totals of non-contiguous messages."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pellucid.lrp.engine import per_sample_total
from pellucid.lrp.linear_maps import LinearMap, linearised_norm
from pellucid.lrp.op import direct_vjp
from pellucid.lrp.rules import divide, ratio
from pellucid.lrp.tape import record


def last_node(fn, x):
    recorder, _ = record(nn.Identity(), fn, x)
    return recorder.nodes[-1]


def autograd_vjp(node, m):
    """The generic path: call the op again under autograd."""
    with torch.enable_grad():
        leaves = {pos: node.leaves[pos].detach().requires_grad_(True) for pos, _, _ in node.inputs}
        (out,) = [o for o in node.call_again(leaves)][:1]
        return list(torch.autograd.grad(out, list(leaves.values()), m))


CASES = {
    "a + b": lambda x: x[0] + x[1],
    "torch.add": lambda x: torch.add(x[0], x[1]),
    "a + 2": lambda x: x[0] + 2.0,
    "3 * a": lambda x: 3.0 * x[0],
    "a * b": lambda x: x[0] * x[1],
    "a * a": lambda x: x[0] * x[0],
    "a * constant": lambda x: x[0] * torch.arange(4.0),
    "a @ bᵀ batched": lambda x: x[0] @ x[1].transpose(-2, -1),
    "matmul(a, b)": lambda x: torch.matmul(x[0], x[1].mT),
    "bmm": lambda x: torch.bmm(x[0], x[1].mT),
    "a @ constant": lambda x: x[0] @ torch.linspace(-1, 1, 20).reshape(4, 5),
    "masked_fill": lambda x: x[0].masked_fill(x[1, :1] > 0, float("-inf")),
    "softmax": lambda x: torch.softmax(x[0], dim=-1),
    "F.softmax dim 1": lambda x: F.softmax(x[0], dim=1),
    "Tensor.softmax": lambda x: x[0].softmax(-2),
}


@pytest.mark.parametrize("case", CASES)
def test_direct_vjp_equals_autograd(case):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 3, 4)
    node = last_node(CASES[case], x)
    m = torch.randn_like(node.outputs[0])
    direct = direct_vjp(node, m)
    assert direct is not None, case
    for got, want in zip(direct, autograd_vjp(node, m), strict=True):
        torch.testing.assert_close(got, want)
    only = direct_vjp(node, m, only=0)
    torch.testing.assert_close(only[0], direct[0])
    assert all(g is None for g in only[1:])


@pytest.mark.parametrize("fn", [
    lambda x: x[0] + x[1, 0, 0],          # broadcast operand: its gradient sums
    lambda x: x[0] @ x[1, :1].mT,         # broadcast batch of a matrix product
    lambda x: x[0] - x[1],                # not a sum the shortcut covers
    lambda x: torch.add(x[0], x[1], alpha=2.0),
    lambda x: x[0].sum(-1),
])
def test_direct_vjp_leaves_other_cases_to_autograd(fn):
    x = torch.randn(2, 3, 3, 4)
    node = last_node(fn, x)
    assert direct_vjp(node, torch.ones_like(node.outputs[0])) is None


def test_direct_vjp_leaves_mixed_dtypes_to_autograd():
    node = last_node(lambda x: x @ x.mT, torch.randn(2, 3, 4))
    assert direct_vjp(node, torch.ones(2, 3, 3, dtype=torch.float64)) is None


@pytest.mark.parametrize("norm", [
    lambda x: F.layer_norm(x, (6,), torch.linspace(0.5, 2, 6), torch.ones(6)),
    lambda x: F.layer_norm(x, (6,)),
    lambda x: F.group_norm(x, 2, torch.linspace(0.5, 2, 4), torch.ones(4)),
])
def test_linearised_norm_adjoint_is_the_transpose_of_its_map(norm):
    torch.manual_seed(1)
    x = torch.randn(3, 4, 6)
    node = last_node(norm, x)
    linear = linearised_norm(node)
    assert isinstance(linear, LinearMap)
    s = torch.randn_like(x)
    with torch.enable_grad():
        v = torch.randn_like(x).requires_grad_(True)
        (want,) = torch.autograd.grad(linear(v), v, s)
    torch.testing.assert_close(linear.adjoint(s), want)
    # ⟨L v, s⟩ = ⟨v, Lᵀ s⟩ for a random v
    torch.testing.assert_close((linear(v.detach()) * s).sum(), (v.detach() * want).sum())


def test_ratio_is_the_stabilised_quotient():
    r = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    z = torch.tensor([2.0, -2.0, 0.0, -0.0, 1e-9])
    eps = 0.5
    want = r / (z + eps * torch.where(z.signbit(), -1.0, 1.0))
    torch.testing.assert_close(ratio(r, z, eps), want)
    torch.testing.assert_close(ratio(r, z, eps, scale=2), want / 2)
    assert torch.equal(ratio(r, z, 0.0), divide(r, z))
    assert ratio(r, z, 0.0)[2] == 0  # 0 where the denominator is 0
    assert torch.equal(r, torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])) and z[0] == 2  # untouched
    # broadcasting r against z, and r of another dtype, still give the formula
    torch.testing.assert_close(ratio(r[:1], z, eps), want / r * r[0])
    torch.testing.assert_close(ratio(r.double(), z, eps), want.double())


def test_per_sample_total_of_a_non_contiguous_message():
    t = torch.randn(4, 3, 5, 2).transpose(0, 2)  # batch of 5 at dim 0, not contiguous
    torch.testing.assert_close(per_sample_total(t), t.contiguous().reshape(5, -1).sum(1))
    torch.testing.assert_close(per_sample_total(t, batch_dim=1),
                               t.movedim(1, 0).reshape(3, -1).sum(1))
    torch.testing.assert_close(per_sample_total(t, batch_dim=-1),
                               t.movedim(-1, 0).reshape(2, -1).sum(1))
    torch.testing.assert_close(per_sample_total(torch.arange(3.0)), torch.arange(3.0))


IN_PLACE = {
    "a += b": (lambda a, b: a.__iadd__(b), lambda a, b: a + b),
    "a.add_(b)": (lambda a, b: a.add_(b), lambda a, b: a + b),
    "a *= b": (lambda a, b: a.__imul__(b), lambda a, b: a * b),
    "a.mul_(b)": (lambda a, b: a.mul_(b), lambda a, b: a * b),
}


@pytest.mark.parametrize("case", IN_PLACE)
def test_in_place_sums_and_products_use_the_value_they_overwrote(case):
    """The tape's first argument of an in-place op is the clone of the overwritten value, so
    the closed-form product a ⊙ b uses the old a (and never calls the op again)."""
    in_place, out_of_place = IN_PLACE[case]
    torch.manual_seed(1)
    x = torch.randn(2, 3, 4)
    node = last_node(lambda v: in_place(v[0] * 1.0, v[1].exp()), x)
    assert node.inplace
    m = torch.randn_like(node.outputs[0])
    direct = direct_vjp(node, m)
    assert direct is not None, case
    with torch.enable_grad():
        a, b = (x[0] * 1.0).requires_grad_(True), x[1].exp().requires_grad_(True)
        expected = torch.autograd.grad(out_of_place(a, b), (a, b), m)
    for got, want in zip(direct, expected):
        torch.testing.assert_close(got, want)


POOLS = {
    "MaxPool1d(3, 2)": (nn.MaxPool1d(3, 2), (2, 3, 11)),
    "MaxPool2d(2)": (nn.MaxPool2d(2), (2, 3, 8, 8)),
    "MaxPool2d(3, 2, 1) overlapping, padded": (nn.MaxPool2d(3, 2, 1), (2, 3, 9, 9)),
    "MaxPool2d ceil_mode, dilation": (nn.MaxPool2d(2, 2, 0, 2, ceil_mode=True), (1, 2, 9, 9)),
    "MaxPool2d unbatched": (nn.MaxPool2d(2), (3, 6, 6)),
    "MaxPool3d(2)": (nn.MaxPool3d(2), (1, 2, 4, 4, 4)),
    "AdaptiveMaxPool2d(3)": (nn.AdaptiveMaxPool2d(3), (2, 3, 7, 7)),
    "AdaptiveMaxPool1d(2)": (nn.AdaptiveMaxPool1d(2), (2, 3, 5)),
    "F.max_pool2d(x, 2)": (lambda v: F.max_pool2d(v, 2), (2, 3, 6, 6)),
}


@pytest.mark.parametrize("case", POOLS)
def test_max_pooling_messages_go_to_the_recorded_maxima(case):
    """Max pooling is recorded with the indices of its maxima (the same kernel, so the model's
    values are unchanged), and its vector-Jacobian product scatters messages to them exactly
    as autograd does, with overlapping windows adding up."""
    from pellucid.lrp.op import Op

    pool, shape = POOLS[case]
    torch.manual_seed(2)
    x = torch.randn(*shape, dtype=torch.float64)
    recorder, out = record(nn.Identity(), pool, x)
    node = recorder.nodes[-1]
    assert node.indices is not None, "the tape did not keep the maxima"
    torch.testing.assert_close(out, pool(x), rtol=0, atol=0)
    m = torch.randn_like(out)
    (got,) = Op(node, "maxpool", "pool").vjp([m])
    with torch.enable_grad():
        xg = x.clone().requires_grad_(True)
        (expected,) = torch.autograd.grad(pool(xg), xg, m)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_max_pooling_that_returns_indices_itself_is_recorded_as_called():
    x = torch.randn(1, 2, 4, 4)
    recorder, (values, _) = record(
        nn.Identity(), lambda v: F.max_pool2d(v, 2, return_indices=True), x)
    assert recorder.nodes[-1].indices is None
    torch.testing.assert_close(values, F.max_pool2d(x, 2))


def test_the_tape_keeps_list_arguments_as_they_were_at_the_call():
    """A list of ints (a shape) that the model changes after the call stays as it was in the
    tape's record of that call."""
    shape = [2, -1]

    def forward(v):
        out = v.reshape(shape)
        shape[1] = 99  # reused and changed by the model afterwards
        return out

    recorder, _ = record(nn.Identity(), forward, torch.ones(2, 3))
    assert recorder.nodes[-1].arg(1, "shape") == [2, -1]
