"""AttnLRP and CP-LRP on whole transformers: fused attention (``F.scaled_dot_product_attention``)
recorded as the ops it fuses, products of two signals (SwiGLU), and tiny Hugging Face BERT,
ViT, GPT-2 and Llama with eager and sdpa attention, against closed forms and conservation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pellucid
import pellucid.lrp
from pellucid.errors import ModelError
from pellucid.lrp import Composite
from pellucid.lrp.kinds import classify
from pellucid.lrp.rules import HoldGate, UniformProduct
from pellucid.lrp.tape import record

B, L, D, H = 2, 5, 8, 2


def _explain(model, x, target, method, **settings):
    return pellucid.explain(model, x, target=target, method=method, **settings)


# ----------------------------------------------------------------------------------------------
# fused attention
# ----------------------------------------------------------------------------------------------


class Attention(nn.Module):
    """Multi-head self-attention (``heads`` query heads, ``kv_heads`` key/value heads) followed
    by a linear head, written out (``fused=False``) or through
    ``F.scaled_dot_product_attention`` with the same mask, causality and scale."""

    def __init__(self, fused: bool, mask: str = "none", causal: bool = False,
                 scale: float | None = None, kv_heads: int = H) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fused, self.mask, self.causal, self.scale, self.kv_heads = (
            fused, mask, causal, scale, kv_heads)
        self.q = nn.Linear(D, D, bias=False)
        self.k = nn.Linear(D, D // H * kv_heads, bias=False)
        self.v = nn.Linear(D, D // H * kv_heads, bias=False)
        self.o = nn.Linear(D, 3, bias=False)
        generator = torch.Generator().manual_seed(1)
        self.register_buffer("float_mask", torch.randn(L, L, generator=generator))
        self.register_buffer("bool_mask", (torch.rand(L, L, generator=generator) > 0.3)
                             | torch.eye(L, dtype=torch.bool))

    def _heads(self, t):
        return t.unflatten(-1, (-1, D // H)).transpose(1, 2)  # (B, heads, L, d)

    def forward(self, x):
        q, k, v = self._heads(self.q(x)), self._heads(self.k(x)), self._heads(self.v(x))
        mask = {"none": None, "float": self.float_mask, "bool": self.bool_mask}[self.mask]
        gqa = self.kv_heads != H
        if self.fused:
            extra = {"enable_gqa": True} if gqa else {}
            if self.scale is not None:
                extra["scale"] = self.scale
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=self.causal,
                                               **extra)
        else:
            if gqa:
                k = k.repeat_interleave(H // self.kv_heads, -3)
                v = v.repeat_interleave(H // self.kv_heads, -3)
            scale = q.size(-1) ** -0.5 if self.scale is None else self.scale
            scores = q @ k.transpose(-2, -1) * scale
            if self.causal:
                keep = torch.ones(L, L, dtype=torch.bool).tril()
                scores = scores.masked_fill(~keep, float("-inf"))
            if self.mask == "bool":
                scores = scores.masked_fill(~mask, float("-inf"))
            elif self.mask == "float":
                scores = scores + mask
            a = torch.softmax(scores, dim=-1) @ v
        return self.o(a.transpose(1, 2).flatten(2)).sum(1)


@pytest.mark.parametrize("composite", ["lrp.attnlrp", "lrp.cp_lrp"])
@pytest.mark.parametrize(("mask", "causal", "scale", "kv_heads"), [
    ("none", False, None, H), ("float", False, None, H), ("bool", False, 0.7, H),
    ("none", True, None, H), ("float", True, None, 1),
])
def test_fused_attention_gives_the_relevance_of_the_written_out_ops(
        composite, mask, causal, scale, kv_heads):
    x = torch.randn(B, L, D, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    written = Attention(False, mask, causal, scale, kv_heads).double().eval()
    fused = Attention(True, mask, causal, scale, kv_heads).double().eval()
    fused.load_state_dict(written.state_dict())
    a = _explain(written, x, 1, composite)
    b = _explain(fused, x, 1, composite)
    torch.testing.assert_close(b.attribution, a.attribution, rtol=0, atol=1e-10)
    assert b.attribution.abs().sum() > 0
    # the explained output is the fused call's own
    assert torch.equal(b.output, fused(x))
    assert a.extras["layer_relevance"].keys() == b.extras["layer_relevance"].keys()


def test_fused_attention_is_recorded_as_the_ops_it_fuses():
    model = Attention(True, "float", True).eval()
    recorder, _ = record(model, model, torch.randn(B, L, D))
    kinds = [(n.name, classify(n)) for n in recorder.nodes]
    assert "scaled_dot_product_attention" not in [name for name, _ in kinds]
    assert {("matmul", "product"), ("softmax", "softmax"), ("matmul", "gate")} <= set(kinds)


def test_fused_attention_with_dropout_names_the_model():
    class Dropping(nn.Module):
        def forward(self, x):
            return F.scaled_dot_product_attention(x, x, x, dropout_p=0.5).sum(1)

    x = torch.randn(B, L, D)
    with pytest.raises(ModelError, match="eval") as info:
        _explain(Dropping().eval(), x, 0, "lrp.cp_lrp")  # eval, but dropout_p given
    assert info.value.argument == "model"


# ----------------------------------------------------------------------------------------------
# element-wise products of two signals
# ----------------------------------------------------------------------------------------------


class SwiGLU(nn.Module):
    """down(silu(gate(x)) ⊙ up(x)), bias-free (Llama's MLP)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.gate = nn.Linear(4, 6, bias=False)
        self.up = nn.Linear(4, 6, bias=False)
        self.down = nn.Linear(6, 3, bias=False)

    def forward(self, x, hold_gate=False):
        g = F.silu(self.gate(x))
        return self.down((g.detach() if hold_gate else g) * self.up(x))


def test_swiglu_product_is_split_uniformly_by_attnlrp():
    """R_p = p ⊙ W_downᵀ (R_y / y) at the product p = silu(g) ⊙ u; each factor gets R_p/2
    (Achtibat et al. 2024, Prop. 3.2), SiLU passes it on, and each branch's linear layer
    splits it in proportion to its contributions."""
    model = SwiGLU().double().eval()
    x = torch.randn(B, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    e = _explain(model, x, 1, "lrp.attnlrp", epsilon=1e-12,
                 composite=Composite(ops={"product": UniformProduct(0.0)}))
    g, u = x @ model.gate.weight.T, x @ model.up.weight.T
    p = F.silu(g) * u
    y = p @ model.down.weight.T
    r_y = torch.zeros_like(y)
    r_y[:, 1] = y[:, 1]
    r_p = p * ((r_y / y) @ model.down.weight)
    expected = (x * ((r_p / 2 / g) @ model.gate.weight) + x * ((r_p / 2 / u) @ model.up.weight))
    torch.testing.assert_close(e.attribution, expected, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(e.attribution.sum(1), y[:, 1])  # conserves (bias-free)
    assert classify_products(model, x) == ["product"]


def test_swiglu_gate_is_held_constant_by_cp_lrp():
    """CP-LRP (lxt's cp_gated_mlp_forward): silu(g) held constant, so the bias-free block is
    linear in x and the relevance is gradient × input with the gate detached."""
    model = SwiGLU().double().eval()
    x = torch.randn(B, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    e = _explain(model, x, 2, "lrp.cp_lrp", epsilon=1e-12,
                 composite=Composite(ops={"product": HoldGate(0.0)}))
    leaf = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(leaf, hold_gate=True)[:, 2].sum(), leaf)
    torch.testing.assert_close(e.attribution, grad * x, rtol=1e-8, atol=1e-12)
    assert "gate" not in e.extras["layer_relevance"] and "up" in e.extras["layer_relevance"]


def test_hand_written_silu_gate_gives_half_to_each_factor():
    """h ⊙ sigmoid(h) (SiLU by hand) is a gate × signal product: AttnLRP gives each factor R/2
    and the sigmoid passes its half on, so h gets R whole; LRP-ε at the layer below."""
    lin = nn.Linear(4, 3, bias=False).double().eval()

    class Hand(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

        def forward(self, x):
            h = self.lin(x)
            return h * torch.sigmoid(h)

    x = torch.randn(B, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    e = _explain(Hand().eval(), x, 0, "lrp.attnlrp", epsilon=1e-12)
    h = x @ lin.weight.T
    r_h = torch.zeros_like(h)
    r_h[:, 0] = F.silu(h[:, 0])
    torch.testing.assert_close(e.attribution, x * ((r_h / h) @ lin.weight), rtol=1e-8,
                               atol=1e-12)


def test_products_of_two_signals_keep_raising_under_the_cnn_composites():
    model = SwiGLU().eval()
    x = torch.randn(B, 4)
    with pytest.raises(pellucid.lrp.UnsupportedOpError, match="attnlrp") as info:
        _explain(model, x, 0, "lrp.epsilon")
    assert info.value.argument == "model"
    # gradient-type methods take the chain rule there
    assert torch.isfinite(_explain(model, x, 0, "guided_backprop").attribution).all()


def classify_products(model, x) -> list[str]:
    recorder, _ = record(model, model, x)
    return [classify(n) for n in recorder.nodes if n.name == "mul"]


def test_gpt2_gelu_written_out_is_an_activation_with_the_identity_rule():
    """``0.5 x (1 + tanh(c (x + 0.044715 x³)))`` is x times a gate computed from x alone: the
    gate is held constant (:func:`pellucid.lrp.calls.self_gate`), so R_in = R_out, as AttnLRP's
    identity rule for GELU, in every relevance composite."""
    transformers = pytest.importorskip("transformers")
    act = transformers.activations.NewGELUActivation()
    x = torch.randn(B, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    w = torch.randn(B, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    for method in ("lrp.attnlrp", "lrp.cp_lrp", "lrp.epsilon"):
        e = _explain(act, x, lambda out: (out * w).sum(1), method)
        torch.testing.assert_close(e.attribution, act(x) * w)


def test_addmm_is_a_layer():
    """``torch.addmm(b, x, W)`` (Hugging Face's Conv1D): LRP-ε as for F.linear(x, Wᵀ, b),
    R_j = x_j W_jk z_k / (z_k ± ε) for the target k."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(9)
    conv = transformers.pytorch_utils.Conv1D(3, 4).double().eval()
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(B, 4, dtype=torch.float64)
    e = _explain(conv, x, 1, "lrp.epsilon", epsilon=1e-12)
    z = x @ conv.weight[:, 1] + conv.bias[1]
    torch.testing.assert_close(e.attribution, x * conv.weight[:, 1] * (z / z)[:, None])
    assert list(e.extras["layer_relevance"]) == ["output", "<model>"]


# ----------------------------------------------------------------------------------------------
# whole Hugging Face models
# ----------------------------------------------------------------------------------------------

HF_MODELS = ("bert", "vit", "gpt2", "llama")
LAST_TOKEN = 7  # the target of the decoders: the last position's logit of this token
#: a linear layer in each block, which must appear in ``layer_relevance`` per layer
LAYER = {"bert": "m.bert.encoder.layer.{}.attention.output.dense",
         "vit": "m.vit.layers.{}.mlp.fc1", "gpt2": "m.transformer.h.{}.mlp.c_fc",
         "llama": "m.model.layers.{}.mlp.down_proj"}


class Embedded(nn.Module):
    """A tiny Hugging Face model (hidden 32, 2 layers, 4 heads, random weights) explained at
    its input embeddings (``inputs_embeds=``; ViT: the pixels)."""

    def __init__(self, kind: str, attention: str, zero: bool = False,
                 embeddings: bool = True) -> None:
        super().__init__()
        transformers = pytest.importorskip("transformers")
        common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, attn_implementation=attention)
        torch.manual_seed(10)
        if kind == "bert":
            self.m = transformers.BertForSequenceClassification(transformers.BertConfig(
                vocab_size=50, max_position_embeddings=16, num_labels=3, **common))
        elif kind == "vit":
            self.m = transformers.ViTForImageClassification(transformers.ViTConfig(
                image_size=8, patch_size=4, num_channels=3, num_labels=3, **common))
        elif kind == "gpt2":
            self.m = transformers.GPT2LMHeadModel(transformers.GPT2Config(
                vocab_size=50, n_positions=16, n_embd=32, n_layer=2, n_head=4,
                bos_token_id=0, eos_token_id=0, attn_implementation=attention))
        else:
            self.m = transformers.LlamaForCausalLM(transformers.LlamaConfig(
                vocab_size=50, max_position_embeddings=16, num_key_value_heads=2, **common))
        self.kind = kind
        self.m.double().eval()
        with torch.no_grad():
            for name, p in self.m.named_parameters():
                constant = any(part in name for part in (
                    "position_embeddings", "token_type_embeddings", "wpe", "cls_token"))
                if zero and (name.endswith("bias") or (constant and embeddings)
                             or "cls_token" in name):
                    p.zero_()
        self.eval()

    def forward(self, x):
        if self.kind == "vit":
            return self.m(pixel_values=x).logits
        if self.kind == "bert":
            return self.m(inputs_embeds=x).logits
        return self.m(inputs_embeds=x, use_cache=False).logits

    def inputs(self, batch: int = B) -> torch.Tensor:
        shape = (batch, 3, 8, 8) if self.kind == "vit" else (batch, 6, 32)
        return torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(11))

    def target(self):
        return 1 if self.kind in ("bert", "vit") else lambda out: out[:, -1, LAST_TOKEN]


@pytest.mark.parametrize("method", ["lrp.attnlrp", "lrp.cp_lrp"])
@pytest.mark.parametrize("kind", HF_MODELS)
def test_hf_models_give_the_same_relevance_with_eager_and_sdpa_attention(kind, method):
    eager, sdpa = Embedded(kind, "eager"), Embedded(kind, "sdpa")
    x = eager.inputs()
    a = _explain(eager, x, eager.target(), method)
    b = _explain(sdpa, x, sdpa.target(), method)
    # Hugging Face's eager attention takes the softmax in float32: agreement to its precision
    torch.testing.assert_close(b.attribution, a.attribution, rtol=1e-5, atol=1e-8)
    assert a.attribution.abs().sum() > 0
    layers = a.extras["layer_relevance"]
    assert {LAYER[kind].format(0), LAYER[kind].format(1)} <= set(layers)
    assert layers.keys() == b.extras["layer_relevance"].keys()


@pytest.mark.parametrize("kind", HF_MODELS)
def test_hf_models_batch_is_the_concatenation_of_singles_and_stay_untouched(kind):
    model = Embedded(kind, "sdpa")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = model.inputs(3)
    for method in ("lrp.attnlrp", "lrp.cp_lrp"):
        batch = _explain(model, x, model.target(), method).attribution
        singles = torch.cat([_explain(model, x[i:i + 1], model.target(), method).attribution
                             for i in range(3)])
        torch.testing.assert_close(batch, singles, rtol=1e-7, atol=1e-12)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert not model.training and all(not m._forward_hooks for m in model.modules())
    assert model.m.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("kind", HF_MODELS)
def test_hf_models_conserve_with_biases_and_embeddings_zeroed(kind):
    """Every bias and the position/token-type embeddings (and ViT's CLS token) zero, LRP-ε
    with ε → 0: CP-LRP's input relevance sums to the target logit; AttnLRP's misses it by
    exactly what the softmax layers report as absorbed (their Taylor bias), so every other
    layer conserves."""
    model = Embedded(kind, "sdpa", zero=True)
    x = model.inputs()
    cp = _explain(model, x, model.target(), "lrp.cp_lrp", epsilon=1e-12)
    logit = cp.extras["layer_relevance"]["output"]
    torch.testing.assert_close(cp.attribution.flatten(1).sum(1), logit, rtol=0, atol=1e-5)
    assert all(float(v.abs().max()) < 1e-7 for v in cp.extras.get("absorbed", {}).values())
    attn = _explain(model, x, model.target(), "lrp.attnlrp", epsilon=1e-12)
    absorbed = attn.extras["absorbed"]
    softmax = [name for name in absorbed if name.endswith("attention.self")
               or name.endswith(("attention", "attn", "self_attn"))]
    assert len(softmax) == 2  # one per layer
    gap = logit - attn.attribution.flatten(1).sum(1)
    torch.testing.assert_close(gap, sum(absorbed.values()), rtol=0, atol=1e-5)
    assert float(gap.abs().max()) > 1e-6  # the Taylor bias is not zero


def test_llama_rotary_embeddings_are_linear_in_the_signal():
    """q·cos + rotate_half(q)·sin with constant tables is linear in q: no product of two
    signals inside the attention besides q·kᵀ and attention·v."""
    model = Embedded("llama", "eager")
    recorder, _ = record(model, model, model.inputs())
    attention = [(n.name, classify(n)) for n in recorder.nodes if n.module.endswith("self_attn")]
    assert {kind for name, kind in attention if name == "mul"} == {"linear"}
    assert [name for name, kind in attention if kind == "product"] == ["matmul"] * 2  # q·kᵀ
    mlp = [classify(n) for n in recorder.nodes if n.module.endswith("mlp") and n.name == "mul"]
    assert mlp == ["product", "product"]  # SwiGLU, one per layer


@pytest.mark.parametrize("method", ["lrp.attnlrp", "lrp.cp_lrp"])
def test_bert_reports_what_its_position_and_token_type_embeddings_absorb(method):
    """Biases zero, embeddings not: Σ input + Σ absorbed by the embeddings (+ the softmax
    layers' Taylor bias for AttnLRP) = the logit; the embeddings' shares are reported in
    ``layer_relevance`` under their module names."""
    model = Embedded("bert", "sdpa", zero=True, embeddings=False)
    x = model.inputs()
    e = _explain(model, x, 1, method, epsilon=1e-12)
    names = ["m.bert.embeddings.position_embeddings", "m.bert.embeddings.token_type_embeddings"]
    layers, absorbed = e.extras["layer_relevance"], e.extras["absorbed"]
    for name in names:
        torch.testing.assert_close(layers[name], absorbed[name])
        assert float(layers[name].abs().min()) > 1e-6
    total = e.attribution.flatten(1).sum(1) + sum(absorbed.values())
    torch.testing.assert_close(total, layers["output"], rtol=0, atol=1e-5)
