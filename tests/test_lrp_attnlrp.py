"""AttnLRP (Achtibat et al. 2024) and CP-LRP (Ali et al. 2022): the op kinds softmax, product
and exp, their rules against ``lxt`` (AttnLRP's reference implementation) op by op and on a
hand-built attention block, and CP-LRP against its closed form (gradient × input of the block
with the attention weights and the LayerNorm's normaliser held constant)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pellucid
import pellucid.lrp
from pellucid.errors import ArgumentError
from pellucid.lrp import Composite, Epsilon, Zero
from pellucid.lrp.composites import RELEVANCE, attnlrp, cp_lrp
from pellucid.lrp.kinds import classify
from pellucid.lrp.rules import HoldConstant, NoRule, SoftmaxTaylor, UniformProduct
from pellucid.lrp.tape import record
from tests.helpers.zennit import import_lxt

lxt = import_lxt()
from lxt.explicit.functional import layer_norm_grad_fn  # noqa: E402  (after the shim)

B = 3


class Fn(nn.Module):
    """A model that is one function of its input (the op under test)."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn
        self.eval()

    def forward(self, x):
        return self.fn(x)


def _weights(shape) -> torch.Tensor:
    return torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(9))


def _relevance(model, x, w, composite=None) -> torch.Tensor:
    """pellucid's relevance at the input (AttnLRP unless ``composite`` says otherwise),
    starting from R = out ⊙ w at the output."""
    e = pellucid.explain(model, x, target=lambda out: (out * w).flatten(1).sum(1), method="lrp",
                         composite=attnlrp() if composite is None else composite)
    return e.attribution


def _lxt(fn, x, w) -> torch.Tensor:
    """lxt's relevance at the input: its rules run as the backward pass of ``fn``."""
    leaf = x.clone().requires_grad_(True)
    out = fn(leaf)
    out.backward(out.detach() * w)
    return leaf.grad


# ----------------------------------------------------------------------------------------------
# the op kinds
# ----------------------------------------------------------------------------------------------


def test_softmax_product_and_exp_have_their_own_kinds():
    def fn(x):
        q, k = x[:, :, :2], x[:, :, 2:]
        scores = q @ k.transpose(-1, -2)  # product of two signals
        a = torch.softmax(scores, dim=-1)
        return (a @ x).exp() + F.softmax(x, dim=1) * x + torch.bmm(x, x.mT) @ x

    recorder, _ = record(Fn(fn), Fn(fn), torch.randn(2, 3, 4))
    kinds = {(n.name, classify(n)) for n in recorder.nodes}
    assert {("matmul", "product"), ("softmax", "softmax"), ("matmul", "gate"), ("exp", "exp"),
            ("bmm", "product"), ("mul", "gate")} <= kinds
    assert all(kind != "other" for _, kind in kinds)


def test_by_default_relevance_reaching_the_new_kinds_is_an_error_that_names_attnlrp():
    x = torch.randn(B, 4, dtype=torch.float64)
    for fn in (torch.exp, lambda v: torch.softmax(v, 1),
               lambda v: v[:, :2, None] @ v[:, None, 2:]):
        with pytest.raises(pellucid.lrp.UnsupportedOpError, match="attnlrp") as info:
            pellucid.explain(Fn(fn), x, target=lambda out: out.flatten(1).sum(1),
                             method="lrp.epsilon")
        assert info.value.argument == "model"
    with pytest.raises(pellucid.lrp.UnsupportedOpError, match="logits"):
        pellucid.explain(Fn(lambda v: torch.softmax(v, 1)), x, target=0, method="lrp.epsilon")
    for kind in ("softmax", "product", "exp"):
        assert isinstance(RELEVANCE.rule_for(kind), NoRule)
    table = pellucid.lrp.describe(Fn(torch.exp), None, x, show=False)
    assert "NoRule() (relevance reaching it raises" in table
    # gradient-type methods take the chain rule there (DeepLIFT: exp(x) · (x − 0))
    e = pellucid.explain(Fn(torch.exp), x, target=lambda out: out.sum(1), method="deeplift",
                         baseline=torch.zeros_like(x))
    torch.testing.assert_close(e.attribution, x.exp() * x)


# ----------------------------------------------------------------------------------------------
# op by op against lxt
# ----------------------------------------------------------------------------------------------


def test_softmax_is_lxts_taylor_linearisation():
    torch.manual_seed(0)
    x = torch.randn(B, 5, 6, dtype=torch.float64)
    mask = torch.zeros(5, 6, dtype=torch.bool)
    mask[1, 4] = True  # a masked score

    def masked(v):
        return v.masked_fill(mask, -math.inf)

    w = _weights((B, 5, 6))
    ours = _relevance(Fn(lambda v: torch.softmax(masked(v), dim=-1)), x, w)
    reference = _lxt(lambda v: lxt.softmax(masked(v), -1), x, w)
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=1e-10)
    # closed form (Prop. 3.1): R_in = x (R − s ΣR), masked inputs count as 0
    s = torch.softmax(masked(x), -1)
    r = s * w
    expected = x.masked_fill(mask, 0.0) * (r - s * r.sum(-1, keepdim=True))
    torch.testing.assert_close(ours, expected, rtol=1e-9, atol=1e-12)


def test_matmul_of_two_signals_is_lxts_uniform_epsilon_rule():
    torch.manual_seed(1)
    x = torch.randn(B, 14, dtype=torch.float64)
    w = _weights((B, 3, 4))

    def split(v):
        return v[:, :6].reshape(B, 3, 2), v[:, 6:].reshape(B, 2, 4)

    exact = Composite(ops={"product": UniformProduct(0.0)}).over(attnlrp())
    ours = _relevance(Fn(lambda v: torch.matmul(*split(v))), x, w, composite=exact)
    reference = _lxt(lambda v: lxt.matmul(*split(v), epsilon=0.0), x, w)
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=1e-10)
    out = torch.matmul(*split(x))
    torch.testing.assert_close(ours.sum(1), (out * w).flatten(1).sum(1))  # conserves


def test_attention_weights_times_values_are_split_uniformly():
    """softmax(a) ⊙ b is a gate × signal product: AttnLRP gives each factor half (mul2), and
    the softmax its linearisation; CP-LRP gives the values all and the softmax nothing."""
    torch.manual_seed(2)
    x = torch.randn(B, 8, dtype=torch.float64)
    w = _weights((B, 4))

    def gated(v, mul=torch.mul):
        return mul(torch.softmax(v[:, :4], dim=1), v[:, 4:])

    def reference(v):
        return lxt.mul2(lxt.softmax(v[:, :4], 1), v[:, 4:])

    ours = _relevance(Fn(gated), x, w)
    torch.testing.assert_close(ours, _lxt(reference, x, w), rtol=1e-6, atol=1e-10)
    r = gated(x) * w
    torch.testing.assert_close(ours[:, 4:], r / 2)
    cp = _relevance(Fn(gated), x, w, cp_lrp())
    torch.testing.assert_close(cp, torch.cat([torch.zeros_like(r), r], 1))


def test_layer_norm_is_lxts_rule_with_the_normaliser_held_constant():
    torch.manual_seed(3)
    norm = nn.LayerNorm(6).double().eval()
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(B, 4, 6, dtype=torch.float64)
    w = _weights((B, 4, 6))
    ours = _relevance(norm, x, w, Composite(norm=Zero()))
    reference = _lxt(lambda v: layer_norm_grad_fn.apply(v, norm.weight, norm.bias, norm.eps, 0.0),
                     x, w)
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=1e-10)


def test_rms_norm_is_the_identity():
    """x · rsqrt(mean x² + eps) · w (Llama's RMSNorm): the normaliser is held constant and the
    scale passes relevance on, so R_in = R_out (lxt's rms_norm_identity)."""
    torch.manual_seed(4)
    scale = torch.randn(6, dtype=torch.float64)

    def rms(v):
        return v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + 1e-6) * scale

    x = torch.randn(B, 4, 6, dtype=torch.float64)
    w = _weights((B, 4, 6))
    ours = _relevance(Fn(rms), x, w, Composite(linear=Zero()).over(attnlrp()))
    reference = _lxt(lambda v: lxt.rms_norm_identity(v, scale, 1e-6), x, w)
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=1e-10)
    torch.testing.assert_close(ours, rms(x) * w)


@pytest.mark.parametrize("fn", [F.gelu, F.silu, torch.exp])
def test_element_wise_nonlinearities_take_the_identity_rule(fn):
    torch.manual_seed(5)
    x = torch.randn(B, 6, dtype=torch.float64)
    w = _weights((B, 6))
    ours = _relevance(Fn(fn), x, w)
    reference = _lxt(lambda v: lxt_rules().identity(fn, v), x, w)
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=1e-10)
    torch.testing.assert_close(ours, fn(x) * w)


def lxt_rules():
    import lxt.explicit.rules  # imported with lxt.explicit.functional (after the shim)

    return lxt.explicit.rules


# ----------------------------------------------------------------------------------------------
# a single-head attention block
# ----------------------------------------------------------------------------------------------


class Block(nn.Module):
    """LayerNorm(x + W_o softmax(q kᵀ) v), q = W_q x (scaled by 1/√d), k = W_k x, v = W_v x."""

    def __init__(self, d: int = 4) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.norm = nn.LayerNorm(d)

    def forward(self, x, detach=False):
        a = torch.softmax(self.q(x) @ self.k(x).transpose(-1, -2), dim=-1)
        h = x + self.o((a.detach() if detach else a) @ self.v(x))
        if not detach:
            return self.norm(h)
        centred = h - h.mean(-1, keepdim=True)
        std = (centred.pow(2).mean(-1, keepdim=True) + self.norm.eps).sqrt()
        return centred / std.detach() * self.norm.weight + self.norm.bias


def _block() -> Block:
    torch.manual_seed(6)
    block = Block().double().eval()
    with torch.no_grad():
        block.norm.weight.uniform_(0.5, 1.5)
        block.norm.bias.zero_()
    return block


def test_attention_block_agrees_with_lxt():
    block = _block()
    x = torch.randn(B, 5, 4, dtype=torch.float64)
    w = _weights((B, 5, 4))
    eps = 1e-12

    def reference(v):
        q = lxt.linear_epsilon(v, block.q.weight, None, eps)
        k = lxt.linear_epsilon(v, block.k.weight, None, eps)
        val = lxt.linear_epsilon(v, block.v.weight, None, eps)
        a = lxt.softmax(lxt.matmul(q, k.transpose(-1, -2), epsilon=0.0), -1)
        o = lxt.linear_epsilon(lxt.matmul(a, val, epsilon=0.0), block.o.weight, None, eps)
        h = lxt.add2(v, o, epsilon=eps)
        return layer_norm_grad_fn.apply(h, block.norm.weight, block.norm.bias, block.norm.eps,
                                        eps)

    exact = Composite(ops={"product": UniformProduct(0.0), "gate": UniformProduct(0.0)},
                      linear=Epsilon(eps), norm=Epsilon(eps)).over(attnlrp(eps))
    ours = _relevance(block, x, w, exact)
    torch.testing.assert_close(ours, _lxt(reference, x, w), rtol=1e-6, atol=1e-10)
    # the softmax's Taylor bias is all that is not conserved
    assert "NO RULE" not in pellucid.lrp.describe(block, attnlrp(), x, show=False)


def test_cp_lrp_is_gradient_times_input_with_attention_weights_constant():
    """With the attention weights and the normaliser held constant, the bias-free block is
    linear in x: CP-LRP (ε → 0) is gradient × input of that linear map, and conserves."""
    block = _block()
    x = torch.randn(B, 5, 4, dtype=torch.float64)
    w = _weights((B, 5, 4))
    e = pellucid.explain(block, x, target=lambda out: (out * w).flatten(1).sum(1),
                         method="lrp", composite=Composite(
                             linear=Epsilon(1e-12), norm=Epsilon(1e-12)).over(cp_lrp(1e-12)))
    leaf = x.clone().requires_grad_(True)
    score = (block(leaf, detach=True) * w).flatten(1).sum(1)
    (grad,) = torch.autograd.grad(score.sum(), leaf)
    torch.testing.assert_close(e.attribution, grad * x, rtol=1e-6, atol=1e-10)
    torch.testing.assert_close(e.attribution.flatten(1).sum(1), score.detach(), rtol=1e-5,
                               atol=1e-10)
    # no relevance reaches the queries and keys
    assert set(e.extras["layer_relevance"]) >= {"v", "o", "norm"}
    assert "q" not in e.extras["layer_relevance"] and "k" not in e.extras["layer_relevance"]
    assert "q" in pellucid.explain(block, x, target=0, method="lrp", composite=attnlrp()).extras[
        "layer_relevance"]


def test_composites_and_rules():
    assert isinstance(attnlrp().rule_for("softmax"), SoftmaxTaylor)
    assert isinstance(cp_lrp().rule_for("softmax"), HoldConstant)
    assert attnlrp(0.5).rule_for("layer") == Epsilon(0.5)
    with pytest.raises(ArgumentError, match="epsilon"):
        UniformProduct(-1.0)
    with pytest.raises(ArgumentError, match="epsilon"):
        cp_lrp(-1.0)


# ----------------------------------------------------------------------------------------------
# Hugging Face BERT
# ----------------------------------------------------------------------------------------------


class Embedded(nn.Module):
    """A BERT classifier on ``inputs_embeds``."""

    def __init__(self, attention: str) -> None:
        super().__init__()
        transformers = pytest.importorskip("transformers")
        config = transformers.BertConfig(
            vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=16, num_labels=3,
            attn_implementation=attention)
        torch.manual_seed(7)
        self.bert = transformers.BertForSequenceClassification(config).double().eval()
        with torch.no_grad():
            for name, p in self.bert.named_parameters():
                if name.endswith("bias"):
                    p.zero_()

    def forward(self, embeds):
        return self.bert(inputs_embeds=embeds).logits


def test_bert_runs_with_both_composites():
    """Eager attention: both composites run and are finite; relevance reaches the queries
    only with AttnLRP. The position and token-type embeddings absorb a share (they are added
    to the input), so the totals only approximate the logit (reported, not a bound)."""
    model = Embedded("eager").eval()
    x = torch.randn(2, 6, 16, dtype=torch.float64)
    query = "bert.bert.encoder.layer.0.attention.self.query"
    for composite, reaches in ((attnlrp(), True), (cp_lrp(), False)):
        e = pellucid.explain(model, x, target=1, method="lrp", composite=composite)
        assert torch.isfinite(e.attribution).all() and e.attribution.abs().sum() > 0
        assert (query in e.extras["layer_relevance"]) == reaches


@pytest.mark.parametrize(
    ("method", "composite"), [("lrp.attnlrp", attnlrp), ("lrp.cp_lrp", cp_lrp)]
)
def test_registered_methods_are_their_composites(method, composite):
    """``method="lrp.attnlrp"`` is ``method="lrp"`` with ``composite=attnlrp(epsilon)``."""
    block = _block()
    x = torch.randn(B, 5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    target = lambda out: out.sum((1, 2))  # noqa: E731
    named = pellucid.explain(block, x, target, method, epsilon=1e-9).attribution
    spelled = pellucid.explain(block, x, target, "lrp", composite=composite(1e-9)).attribution
    torch.testing.assert_close(named, spelled, rtol=0, atol=0)
