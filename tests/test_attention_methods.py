"""attention_rollout, attention_flow and generic_attention against closed forms on
hand-built single-head attention models, and on tiny Hugging Face ViT and BERT models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pellucid
from pellucid.attribution.attention import attention_maps
from pellucid.errors import ArgumentError, ArgumentTypeError

METHODS = ["attention_rollout", "attention_flow", "generic_attention"]
D, L = 3, 4


class SingleHead(nn.Module):
    """x ← x + softmax(q kᵀ/√D)·v per layer (q, k, v linear, no bias); the output is a
    linear read-out of token 0. ``sdpa`` uses F.scaled_dot_product_attention instead."""

    def __init__(self, layers: int, sdpa: bool = False) -> None:
        super().__init__()
        self.sdpa = sdpa
        self.q = nn.ModuleList(nn.Linear(D, D, bias=False) for _ in range(layers))
        self.k = nn.ModuleList(nn.Linear(D, D, bias=False) for _ in range(layers))
        self.v = nn.ModuleList(nn.Linear(D, D, bias=False) for _ in range(layers))
        self.head = nn.Linear(D, 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_tokens(x)[:, 0])

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        for q, k, v in zip(self.q, self.k, self.v, strict=True):
            if self.sdpa:
                x = x + nn.functional.scaled_dot_product_attention(q(x), k(x), v(x))
            else:
                x = x + torch.softmax(q(x) @ k(x).transpose(1, 2) / D**0.5, dim=-1) @ v(x)
        return x


def hand_attention(model: SingleHead, x: torch.Tensor) -> tuple[list, list]:
    """(attention maps, layer inputs) by hand, without autograd."""
    maps, inputs = [], []
    with torch.no_grad():
        for q, k, v in zip(model.q, model.k, model.v, strict=True):
            a = torch.softmax((x @ q.weight.T) @ (x @ k.weight.T).transpose(1, 2) / D**0.5, -1)
            maps.append(a)
            inputs.append(x)
            x = x + a @ (x @ v.weight.T)
    return maps, inputs


def model_and_inputs(layers: int, sdpa: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    model = SingleHead(layers, sdpa).double().eval()
    x = torch.randn(3, L, D, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return model, x


def residual(a: torch.Tensor) -> torch.Tensor:
    return 0.5 * a + 0.5 * torch.eye(L, dtype=a.dtype)


@pytest.mark.parametrize("sdpa", [False, True])
@pytest.mark.parametrize("layers", [1, 2])
def test_rollout_is_the_product_of_the_residual_attention(layers, sdpa):
    model, x = model_and_inputs(layers, sdpa)
    maps, _ = hand_attention(model, x)
    expected = residual(maps[0])
    for a in maps[1:]:
        expected = residual(a) @ expected
    for token in (0, 2):
        e = pellucid.explain(model, x, 1, method="attention_rollout", token=token)
        torch.testing.assert_close(e.extras["token_relevance"], expected[:, token])
        torch.testing.assert_close(e.attribution, expected[:, token, :, None].expand_as(x))


def test_flow_of_one_layer_is_rollout_and_of_two_the_sum_of_path_minima():
    model, x = model_and_inputs(1)
    (a,), _ = hand_attention(model, x)
    e = pellucid.explain(model, x, 0, method="attention_flow")
    torch.testing.assert_close(e.extras["token_relevance"], residual(a)[:, 0])

    model, x = model_and_inputs(2, seed=3)
    a1, a2 = (residual(a) for a in hand_attention(model, x)[0])
    # paths (2, 0) → (1, i) → (0, j) share no edge: flow(j) = Σᵢ min(Ā²[0, i], Ā¹[i, j])
    flows = torch.minimum(a2[:, 0, :, None], a1).sum(1)
    e = pellucid.explain(model, x, 0, method="attention_flow")
    torch.testing.assert_close(e.extras["token_relevance"], flows / flows.sum(1, keepdim=True))


@pytest.mark.parametrize("sdpa", [False, True])
def test_generic_attention_of_one_layer_has_its_closed_form(sdpa):
    """y = w·(x₀ + Σⱼ A[0, j] V xⱼ): ∂y/∂A[0, j] = w·V xⱼ and 0 for other rows, so
    R[0] = e₀ + (A[0] ⊙ (w·V xⱼ))⁺."""
    model, x = model_and_inputs(1, sdpa)
    (a,), _ = hand_attention(model, x)
    w = model.head.weight[1].detach()
    values = x @ model.v[0].weight.detach().T  # B×L×D
    expected = torch.eye(L, dtype=x.dtype)[0] + (a[:, 0] * (values @ w)).clamp_min(0)
    e = pellucid.explain(model, x, 1, method="generic_attention")
    torch.testing.assert_close(e.extras["token_relevance"], expected)


def test_generic_attention_of_two_layers_has_its_closed_form():
    """Layer 2 with q = k = 0 attends uniformly (A² = 1/L), so y = w·(x¹₀ + (1/L) Σᵢ V² x¹ᵢ),
    ∂y/∂x¹ᵢ = gᵢ = δᵢ₀ w + (1/L) V²ᵀ w and ∂y/∂A¹[i, j] = gᵢ·V¹ x⁰ⱼ; then
    R¹ = I + Ā¹, R² = R¹ + Ā² R¹ with Āˡ = (∂y/∂Aˡ ⊙ Aˡ)⁺ and ∂y/∂A²[0, j] = w·V² x¹ⱼ."""
    model, x = model_and_inputs(2, seed=5)
    with torch.no_grad():
        model.q[1].weight.zero_()
        model.k[1].weight.zero_()
    (a1, a2), (x0, x1) = hand_attention(model, x)
    w = model.head.weight[0].detach()
    v1, v2 = model.v[0].weight.detach(), model.v[1].weight.detach()
    g = (v2.T @ w / L).expand(L, D).clone()
    g[0] += w
    grad1 = torch.einsum("id,bjd->bij", g, x0 @ v1.T)
    grad2 = torch.zeros_like(a2)
    grad2[:, 0] = (x1 @ v2.T) @ w
    eye = torch.eye(L, dtype=x.dtype)
    r1 = eye + (grad1 * a1).clamp_min(0)
    r2 = r1 + (grad2 * a2).clamp_min(0) @ r1
    e = pellucid.explain(model, x, 0, method="generic_attention")
    torch.testing.assert_close(e.extras["token_relevance"], r2[:, 0])


@pytest.mark.parametrize("method", METHODS)
def test_models_without_attention_and_bad_tokens_are_errors_naming_their_argument(
    method, snapshot, untouched
):
    mlp = nn.Sequential(nn.Linear(4, 3)).eval()
    before = snapshot(mlp)
    with pytest.raises(ArgumentError, match="self-attention") as raised:
        pellucid.explain(mlp, torch.randn(2, 4), 0, method=method)
    assert raised.value.argument == "model"
    untouched(mlp, before)
    model, x = model_and_inputs(1)
    with pytest.raises(ArgumentError, match="token=4") as raised:
        pellucid.explain(model, x, 0, method=method, token=4)
    assert raised.value.argument == "token"
    with pytest.raises(ArgumentError, match=r"token=-5 .*-4\.\.3") as raised:
        pellucid.explain(model, x, 0, method=method, token=-5)
    assert raised.value.argument == "token"
    for bad in (1.5, True, "0", None):
        with pytest.raises(ArgumentTypeError, match="token must be an int") as raised:
            pellucid.get_method(method, token=bad)
        assert raised.value.argument == "token"
    with pytest.raises(ArgumentError, match="inputs") as raised:  # 4 tokens, no 4-token grid
        pellucid.explain(SingleHeadOnImages(model).eval(), torch.randn(1, 1, 3, 5), 0,
                         method=method)
    assert raised.value.argument == "inputs"


class SingleHeadOnImages(nn.Module):
    """A 1×H×W image read as L tokens of D features (for the placement error)."""

    def __init__(self, inner: SingleHead) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.double().flatten(1)[:, : L * D].reshape(-1, L, D))


def test_multihead_attention_modules_are_read_without_changing_what_they_return():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True).double().eval()
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    with torch.no_grad():
        _, a = layer.self_attn(x, x, x, average_attn_weights=False)
    e = pellucid.explain(nn.Sequential(layer, nn.Flatten(), nn.Linear(12, 2).double()).eval(),
                         x, 0, method="attention_rollout")
    torch.testing.assert_close(e.extras["token_relevance"],
                               (0.5 * a.mean(1) + 0.5 * torch.eye(3, dtype=x.dtype))[:, 0])


@pytest.mark.parametrize("method", METHODS)
def test_negative_token_counts_from_the_end(method):
    model, x = model_and_inputs(2)
    for negative in range(-L, 0):
        got = pellucid.explain(model, x, 0, method=method, token=negative)
        expected = pellucid.explain(model, x, 0, method=method, token=L + negative)
        torch.testing.assert_close(got.extras["token_relevance"],
                                   expected.extras["token_relevance"])
    maps, _ = hand_attention(model, x)
    if method == "attention_rollout":  # the last token's row of the hand-computed rollout
        r = (residual(maps[1]) @ residual(maps[0]))[:, -1]
        got = pellucid.explain(model, x, 0, method=method, token=-1)
        torch.testing.assert_close(got.extras["token_relevance"], r)


# ------------------------------------------------------------------------ cross-attention

Q = 2  # decoder queries


class EncoderDecoder(nn.Module):
    """A one-layer SingleHead encoder over the L input tokens (the memory m), Q learned
    decoder tokens t with a self-attention layer t ← t + softmax(qt kttᵀ/√D)·vt t, then
    cross-attention from t to m (Lq = Q ≠ L = Lk), y = w·(t₀ + Σⱼ A[0, j] V mⱼ).
    ``sdpa`` computes the cross-attention with F.scaled_dot_product_attention."""

    def __init__(self, sdpa: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = SingleHead(1)
        self.decoder = SingleHead(1)  # its q, k, v and head serve the decoder tokens
        self.queries = nn.Parameter(torch.randn(Q, D))
        self.q, self.k, self.v = (nn.Linear(D, D, bias=False) for _ in range(3))
        self.sdpa = sdpa

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.encoder.forward_tokens(x)
        t = self.decoder.forward_tokens(self.queries.expand(len(x), -1, -1))
        queries, keys, values = self.q(t).unsqueeze(1), self.k(m).unsqueeze(1), self.v(m)[:, None]
        if self.sdpa:
            out = nn.functional.scaled_dot_product_attention(queries, keys, values)
        else:
            out = torch.softmax(queries @ keys.mT / D**0.5, -1) @ values
        return self.decoder.head(t[:, 0] + out[:, 0, 0])


class DecoderLayerOnItself(nn.Module):
    """nn.TransformerDecoderLayer with its input as both target and memory: the
    cross-attention map is square (L×L) but its keys are the memory, not the query."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = nn.TransformerDecoderLayer(D + 1, 1, 8, dropout=0.0, batch_first=True)
        self.head = nn.Linear(L * (D + 1), 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        memory = x + 1.0  # another sequence of the same length
        return self.head(self.layer(x, memory).flatten(1))


@pytest.mark.parametrize("sdpa", [False, True])
def test_cross_attention_is_recorded_apart_from_self_attention(sdpa):
    model, x = EncoderDecoder(sdpa).double().eval(), model_and_inputs(1)[1]
    with attention_maps() as seen:
        model(x)
    hand, _ = hand_attention(model.encoder, x)
    assert [tuple(m.shape) for m in seen.maps] == [(3, 1, L, L), (3, 1, Q, Q)]
    torch.testing.assert_close(seen.maps[0][:, 0], hand[0])
    assert [tuple(m.shape) for m in seen.cross] == [(3, 1, Q, L)]
    assert [cross for _, _, cross in seen.calls] == [False, False, True]


def normalised(r: torch.Tensor) -> torch.Tensor:
    """I + (R − I) with rows summing to 1; a row of R − I that is all zero stays zero."""
    eye = torch.eye(r.shape[-1], dtype=r.dtype)
    total = (r - eye).sum(-1, keepdim=True)
    return (r - eye) / total.where(total > 0, 1.0) + eye


@pytest.mark.parametrize("sdpa", [False, True])
def test_generic_attention_follows_an_encoder_decoder_by_chefers_rules(sdpa, snapshot, untouched):
    """With the score's attention logits constant (encoder and decoder q = 0, cross k = 0)
    every map is uniform and the gradients have closed forms: the cross map's only at its
    row 0, ∂y/∂A^c[0, j] = w·V m_j; the memory's ∂y/∂m_j = h = V^T w / L, so
    ∂y/∂A^e[i, j] = h·V^e x_j; the decoder tokens reach y only through t₀, so
    ∂y/∂A^d[0, j] = w·V^d t_j (0 in other rows). Then R^ee = I + Ā^e, R^dd = I + Ā^d,
    R^de = (R̄^dd)ᵀ Ā^c R̄^ee (R^de + Ā^d·R^de adds nothing to 0)."""
    model, x = EncoderDecoder(sdpa).double().eval(), model_and_inputs(1, seed=3)[1]
    with torch.no_grad():
        for weight in (model.encoder.q[0].weight, model.decoder.q[0].weight, model.k.weight):
            weight.zero_()
        w_vd = model.decoder.head.weight[1] @ model.decoder.v[0].weight
        model.queries.mul_(torch.sign(model.queries @ w_vd).unsqueeze(1))  # all of Ā^d[0] > 0
    before, kept = snapshot(model), x.clone()
    e = pellucid.explain(model, x, 1, method="generic_attention", token=0)
    untouched(model, before)
    assert torch.equal(x, kept)
    w = model.decoder.head.weight[1].detach()
    ve, vd, vc = (v.weight.detach() for v in (model.encoder.v[0], model.decoder.v[0], model.v))
    with torch.no_grad():
        m = x + (x @ ve.T).mean(1, keepdim=True)  # uniform encoder attention
        t = model.queries.expand(3, -1, -1)
    a_e, a_d, a_c = torch.full((L, L), 1 / L), torch.full((Q, Q), 1 / Q), torch.full((L,), 1 / L)
    h = vc.T @ w / L
    bar_e = (a_e * ((x @ ve.T) @ h).unsqueeze(1)).clamp_min(0)  # B×L×L, every row the same
    bar_d = torch.zeros(3, Q, Q, dtype=x.dtype)
    bar_d[:, 0] = (a_d[0] * ((t @ vd.T) @ w)).clamp_min(0)
    bar_c = torch.zeros(3, Q, L, dtype=x.dtype)
    bar_c[:, 0] = (a_c * ((m @ vc.T) @ w)).clamp_min(0)
    eye_l, eye_q = torch.eye(L, dtype=x.dtype), torch.eye(Q, dtype=x.dtype)
    r_de = normalised(eye_q + bar_d).mT @ bar_c @ normalised(eye_l + bar_e)
    torch.testing.assert_close(e.extras["token_relevance"], r_de[:, 0])
    assert (r_de[:, 0] > 0).sum() > 3 and (bar_e > 0).any() and (bar_d[:, 0] > 0).all()
    assert e.extras["layers"] == 3
    last = pellucid.explain(model, x, 1, method="generic_attention", token=-1)  # row Q - 1
    torch.testing.assert_close(last.extras["token_relevance"], r_de[:, Q - 1])
    assert torch.equal(e.attribution, e.extras["token_relevance"].unsqueeze(-1).expand_as(x))
    with pytest.raises(ArgumentError, match=f"token={Q} .*{Q} decoder tokens") as raised:
        pellucid.explain(model, x, 1, method="generic_attention", token=Q)
    assert raised.value.argument == "token"


@pytest.mark.parametrize("sdpa", [False, True])
def test_generic_attention_on_an_encoder_decoder_batch_is_singles(sdpa):
    model, x = EncoderDecoder(sdpa).double().eval(), model_and_inputs(1)[1]
    e = pellucid.explain(model, x, 0, method="generic_attention")
    singles = torch.cat([pellucid.explain(model, x[i:i + 1], 0, method="generic_attention"
                                          ).extras["token_relevance"] for i in range(3)])
    torch.testing.assert_close(e.extras["token_relevance"], singles)
    assert (e.extras["token_relevance"] >= 0).all()
    other = pellucid.explain(EncoderDecoder(not sdpa).double().eval(), x, 0,
                             method="generic_attention")
    torch.testing.assert_close(e.extras["token_relevance"], other.extras["token_relevance"])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", ["softmax", "sdpa", "square_multihead"])
def test_cross_attention_that_a_method_cannot_follow_is_refused_naming_it(
    method, case, snapshot, untouched
):
    if case == "square_multihead":
        model, x = DecoderLayerOnItself().double().eval(), torch.randn(2, L, D + 1).double()
    elif method == "generic_attention":
        return  # followed (above)
    else:
        model, x = EncoderDecoder(case == "sdpa").double().eval(), model_and_inputs(1)[1]
    before, kept = snapshot(model), x.clone()
    expected = ("decoder and encoder of equal length" if method == "generic_attention" else
                f"{method} follows self-attention.*cross-attention.*method='generic_attention'")
    with pytest.raises(ArgumentError, match=expected) as raised:
        pellucid.explain(model, x, 0, method=method)
    assert raised.value.argument == "model"
    assert method in str(raised.value) and "explain the encoder alone" in str(raised.value)
    untouched(model, before)
    assert torch.equal(x, kept)


def test_a_softmax_over_classes_is_not_taken_for_attention():
    """A 3-D softmax B×L×K (per-token class probabilities) is neither self- nor
    cross-attention: the rollout is that of the attention alone."""
    model, x = model_and_inputs(2)

    class PerTokenProbabilities(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner, self.classes = model, nn.Linear(D, 5).double()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.inner(x)
            return torch.softmax(self.classes(x), -1).sum(1)

    with attention_maps() as seen:
        PerTokenProbabilities()(x)
    assert len(seen.maps) == 2 and seen.cross == []
    maps, _ = hand_attention(model, x)
    e = pellucid.explain(PerTokenProbabilities().eval(), x, 0, method="attention_rollout")
    torch.testing.assert_close(e.extras["token_relevance"],
                               (residual(maps[1]) @ residual(maps[0]))[:, 0])


# --------------------------------------------------------------------------- Hugging Face

transformers = pytest.importorskip("transformers")


def vit(implementation: str) -> nn.Module:
    config = transformers.ViTConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        image_size=8, patch_size=4, num_channels=3, num_labels=3,
        attn_implementation=implementation,
    )
    torch.manual_seed(0)
    return transformers.ViTForImageClassification(config).eval()


class BertOnEmbeddings(nn.Module):
    """A BERT classifier that takes its input embeddings (B, L, D) directly."""

    def __init__(self, implementation: str) -> None:
        super().__init__()
        config = transformers.BertConfig(
            vocab_size=30, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=16, num_labels=3,
            attn_implementation=implementation,
        )
        torch.manual_seed(0)
        self.bert = transformers.BertForSequenceClassification(config)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None):
        return self.bert(inputs_embeds=x, attention_mask=attention_mask).logits


def hf_case(kind: str, implementation: str):
    gen = torch.Generator().manual_seed(1)
    if kind == "vit":
        return vit(implementation), torch.randn(3, 3, 8, 8, generator=gen)
    return BertOnEmbeddings(implementation).eval(), torch.randn(3, 5, 16, generator=gen)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", ["vit", "bert"])
def test_hugging_face_models_eager_and_sdpa_agree_and_batch_is_singles(
    kind, method, snapshot, untouched
):
    results = {}
    for implementation in ("eager", "sdpa"):
        model, x = hf_case(kind, implementation)
        before, kept = snapshot(model), x.clone()
        e = pellucid.explain(model, x, 1, method=method)
        untouched(model, before)
        assert torch.equal(x, kept)
        assert e.attribution.shape == x.shape and torch.isfinite(e.attribution).all()
        assert e.extras["layers"] == 2
        singles = torch.cat([pellucid.explain(model, x[i:i + 1], 1, method=method).attribution
                             for i in range(len(x))])
        torch.testing.assert_close(e.attribution, singles, rtol=1e-4, atol=1e-6)
        results[implementation] = e
    torch.testing.assert_close(results["eager"].attribution, results["sdpa"].attribution,
                               rtol=1e-4, atol=1e-6)
    if kind == "vit":  # CLS dropped, each of the 2×2 patches on its 4×4 pixels
        r = results["eager"].extras["token_relevance"][:, 1:].reshape(3, 1, 2, 2)
        expected = r.repeat_interleave(4, 2).repeat_interleave(4, 3).expand(3, 3, 8, 8)
        torch.testing.assert_close(results["eager"].attribution, expected)


def test_bert_padding_mask_takes_masked_tokens_out_of_the_rollout():
    model, x = hf_case("bert", "eager")
    mask = torch.ones(3, 5, dtype=torch.long)
    mask[:, 3:] = 0
    e = pellucid.explain(model, x, 0, method="attention_rollout",
                         model_kwargs={"attention_mask": mask})
    assert torch.all(e.extras["token_relevance"][:, 3:] < 1e-6)
    torch.testing.assert_close(e.extras["token_relevance"].sum(1), torch.ones(3))
