"""Token ids and ``layer=``: explaining at a layer's activation, for every method.

Closed forms on a bag-of-embeddings model f(ids) = w · Σ_t E[ids_t] (every method's per-token
value is known), hand-computed layer attributions on an MLP, Captum's
``LayerIntegratedGradients`` on a Hugging Face BERT, causality of decoder targets, and the
errors of each argument.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pellucid
from pellucid import targets
from pellucid.errors import ArgumentError, ArgumentTypeError, UnknownNameError
from pellucid.layer_inputs import per_token
from pellucid.task import cache_off
from tests.helpers.methods import methods_without


class Bag(nn.Module):
    """logits = W Σ_t mask_t E[ids_t]: a token's share of class c is exactly W_c · E[id]."""

    def __init__(self, vocab: int = 10, dim: int = 4, classes: int = 3) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, classes, bias=False)
        self.config = type("Config", (), {"pad_token_id": 0, "mask_token_id": 1})()

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        h = self.embed(ids)
        if attention_mask is not None:
            h = h * attention_mask.unsqueeze(-1)
        return self.head(h.sum(1))


def bag() -> Bag:
    torch.manual_seed(0)
    return Bag().double().eval()


IDS = torch.tensor([[2, 3, 4, 5], [6, 7, 8, 9]])


def share(model: Bag, ids: torch.Tensor, cls: int, reference: int | None = None) -> torch.Tensor:
    """W_c · (E[id] − E[reference]) per token: the exact contribution of each token."""
    w, e = model.head.weight[cls], model.embed.weight
    values = e[ids] @ w
    if reference is not None:
        values = values - e[reference] @ w
    return values.detach()


# methods whose per-token value on the bag model is exactly the token's share (against the
# zero embedding): linear in the embedding, so gradient×input, IG, LRP-0/ε, DeepLIFT, and
# occlusion / KernelSHAP of one token at a time
EXACT = {
    "gradient_x_input": {},
    "integrated_gradients": {"steps": 4},
    "lrp.epsilon": {},
    "lrp.zero": {},
    "deeplift": {},
    "occlusion": {"window": 1},
    "kernel_shap": {"samples": 64},
}


@pytest.mark.parametrize("method", sorted(EXACT))
def test_token_ids_get_each_tokens_exact_share(method):
    model = bag()
    before = IDS.clone()
    e = pellucid.explain(model, IDS, 1, method=method, **EXACT[method])
    assert e.attribution.shape == IDS.shape
    torch.testing.assert_close(e.attribution, share(model, IDS, 1), atol=1e-6, rtol=1e-6)
    assert e.extras["attributed_layer"] == "embed"
    assert e.extras["embedding_attribution"].shape == (2, 4, 4)
    assert torch.equal(IDS, before) and torch.equal(e.inputs, IDS)
    assert not model.embed._forward_hooks and not model.embed._forward_pre_hooks


def test_the_per_dimension_map_sums_to_the_token_value():
    model = bag()
    e = pellucid.explain(model, IDS, 2, method="gradient_x_input")
    per_dim = e.extras["embedding_attribution"]
    w = model.head.weight[2].detach()
    torch.testing.assert_close(per_dim, model.embed.weight[IDS].detach() * w)
    torch.testing.assert_close(per_dim.sum(-1), e.attribution)


def test_per_token_reads_one_value_per_position_for_window_methods():
    a = torch.arange(6.0).reshape(1, 2, 3).expand(1, 2, 3)  # (B, D, L), D equal rows
    same = torch.tensor([[[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]])
    assert torch.equal(per_token(a, False), a.sum(1))
    assert torch.equal(per_token(same, True), torch.tensor([[1.0, 2.0, 3.0]]))


@pytest.mark.parametrize("baseline, token", [("pad", 0), ("mask", 1), (torch.tensor(7), 7)])
def test_token_baselines_are_the_embedding_of_that_token(baseline, token):
    model = bag()
    e = pellucid.explain(model, IDS, 0, method="integrated_gradients", steps=4,
                         baseline=baseline)
    torch.testing.assert_close(e.attribution, share(model, IDS, 0, token))
    gap = e.extras["completeness_gap"]
    assert gap.abs().max() < 1e-10


def test_token_id_references_are_embedded_for_expected_gradients():
    model = bag()
    references = torch.tensor([[0, 0, 0, 0], [1, 1, 1, 1]])
    e = pellucid.explain(model, IDS, 0, method="expected_gradients", samples=64,
                         references=references, seed=0)
    assert e.attribution.shape == IDS.shape
    # each token's value lies between its shares against the two reference tokens
    low, high = share(model, IDS, 0, 0), share(model, IDS, 0, 1)
    assert ((e.attribution - torch.minimum(low, high)) > -1e-9).all()
    assert ((torch.maximum(low, high) - e.attribution) > -1e-9).all()


def test_attention_mask_follows_the_rows_and_padding_gets_nothing():
    model = bag()
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    e = pellucid.explain(model, IDS, 1, method="integrated_gradients", steps=8,
                         model_kwargs={"attention_mask": mask})
    torch.testing.assert_close(e.attribution, share(model, IDS, 1) * mask)


def test_a_batch_is_the_concatenation_of_its_samples():
    model = bag()
    batch = pellucid.explain(model, IDS, 1, method="occlusion", window=1).attribution
    singles = [pellucid.explain(model, IDS[i : i + 1], 1, method="occlusion", window=1)
               for i in range(2)]
    torch.testing.assert_close(batch, torch.cat([s.attribution for s in singles]))


class TwoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(3, 4)
        self.relu = nn.ReLU()
        self.second = nn.Linear(4, 2)

    def forward(self, x):
        return self.second(self.relu(self.first(x)))


def test_layer_attributes_to_the_layers_activation():
    torch.manual_seed(1)
    model = TwoLayers().double().eval()
    x = torch.randn(5, 3, dtype=torch.float64)
    e = pellucid.explain(model, x, 1, method="gradient_x_input", layer="relu")
    a = model.relu(model.first(x)).detach()
    torch.testing.assert_close(e.attribution, a * model.second.weight[1].detach())
    assert e.extras["attributed_layer"] == "relu" and e.inputs is None
    # IG at the layer: completeness against the zero activation, exact for the linear rest
    ig = pellucid.explain(model, x, 1, method="integrated_gradients", layer=model.relu)
    torch.testing.assert_close(ig.attribution, e.attribution)


def test_layer_side_input_attributes_to_what_the_layer_receives():
    torch.manual_seed(1)
    model = TwoLayers().double().eval()
    x = torch.randn(5, 3, dtype=torch.float64)
    e = pellucid.explain(model, x, 0, method="gradient", layer="second", layer_side="input")
    expected = model.second.weight[0].detach().expand(5, 4)
    torch.testing.assert_close(e.attribution, expected)
    inside = pellucid.explain(model, x, 0, method="gradient", layer="relu", layer_side="input")
    pre = model.first(x).detach()
    torch.testing.assert_close(inside.attribution, (pre > 0) * model.second.weight[0].detach())


def test_rule_engine_at_a_layer_conserves_from_there():
    torch.manual_seed(2)
    model = TwoLayers().double().eval()
    for layer in (model.first, model.second):
        nn.init.zeros_(layer.bias)
    x = torch.randn(4, 3, dtype=torch.float64)
    e = pellucid.explain(model, x, 0, method="lrp.zero", layer="relu")
    torch.testing.assert_close(e.attribution.sum(1), model(x)[:, 0].detach())


def test_captum_layer_integrated_gradients_on_bert_embeddings():
    captum_attr = pytest.importorskip("captum.attr")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, num_labels=3, pad_token_id=0, attn_implementation="eager",
    )
    model = transformers.BertForSequenceClassification(config).double().eval()
    ids = torch.randint(1, 40, (2, 6))
    mask = torch.ones_like(ids)
    mask[0, -2:] = 0
    ours = pellucid.explain(model, ids, 2, method="integrated_gradients", steps=16,
                            baseline="pad", model_kwargs={"attention_mask": mask})
    assert ours.extras["attributed_layer"] == "bert.embeddings.word_embeddings"

    def logits(i, m):
        return model(i, attention_mask=m).logits

    lig = captum_attr.LayerIntegratedGradients(logits, model.bert.embeddings.word_embeddings)
    theirs = lig.attribute(ids, baselines=torch.zeros_like(ids), target=2, n_steps=16,
                           method="gausslegendre", additional_forward_args=(mask,))
    torch.testing.assert_close(ours.attribution, theirs.sum(-1), atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(ours.extras["embedding_attribution"], theirs)
    # the masked-out padding reaches nothing: exactly zero for a gradient method
    gxi = pellucid.explain(model, ids, 2, method="gradient_x_input",
                           model_kwargs={"attention_mask": mask})
    assert torch.equal(gxi.attribution[0, -2:], torch.zeros(2, dtype=torch.float64))


def gpt2():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=30, n_embd=16, n_layer=2, n_head=2,
                                     n_positions=16, bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(config).double().eval()


def test_next_token_depends_on_no_later_token():
    model = gpt2()
    ids = torch.randint(0, 30, (2, 6))
    e = pellucid.explain(model, ids, targets.next_token(position=2), method="gradient_x_input")
    assert e.extras["attributed_layer"] == "transformer.wte"
    assert torch.equal(e.attribution[:, 3:], torch.zeros(2, 3, dtype=torch.float64))
    assert (e.attribution[:, :3] != 0).all()
    # token=None is the prediction at the first pass, fixed for every integration point
    predicted = model(ids).logits[:, 2].argmax(-1)
    ig = pellucid.explain(model, ids, targets.next_token(position=2), method="integrated_gradients",
                          steps=8)
    fixed = pellucid.explain(model, ids, targets.next_token(predicted, position=2),
                             method="integrated_gradients", steps=8)
    torch.testing.assert_close(ig.attribution, fixed.attribution)
    assert ig.extras["completeness_gap"].abs().max() < 1e-2


def test_continuation_log_probability_and_its_closed_form():
    model = gpt2()
    prompt, more = torch.randint(0, 30, (1, 4)), torch.tensor([[5, 9]])
    ids = torch.cat([prompt, more], 1)
    target = targets.continuation([5, 9])
    logits = model(ids).logits
    log_p = torch.log_softmax(logits, -1)
    expected = log_p[0, 3, 5] + log_p[0, 4, 9]
    torch.testing.assert_close(target(logits), expected.reshape(1))
    e = pellucid.explain(model, ids, target, method="gradient_x_input")
    assert e.attribution[0, -1] == 0  # the last token predicts nothing that is scored
    with pytest.raises(ArgumentError, match="do not end with") as error:
        pellucid.explain(model, torch.cat([ids, more], 1)[:, :5], target, method="gradient")
    assert error.value.argument == "target"


def test_a_class_index_on_a_language_models_output_is_refused():
    model = gpt2()
    with pytest.raises(ArgumentError, match="next_token") as error:
        pellucid.explain(model, torch.randint(0, 30, (1, 5)), None, method="gradient")
    assert error.value.argument == "target"


def test_the_key_value_cache_is_switched_off():
    class Decoder(nn.Module):
        def forward(self, x, use_cache=True):
            return x

    kwargs = cache_off(Decoder(), None)
    assert kwargs["use_cache"].value is False
    assert cache_off(Decoder(), {"use_cache": True}) == {"use_cache": True}
    assert cache_off(TwoLayers(), None) is None


class Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Linear(3, 3)

    def forward(self, x):
        return self.block(self.block(x))


class SequenceFirst(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Identity()

    def forward(self, x):
        return self.inner(x.transpose(0, 1)).sum(0)


@pytest.mark.parametrize(
    "model, inputs, kwargs, error, argument, says",
    [
        (Shared(), torch.randn(2, 3), {"layer": "block"}, ArgumentError, "layer",
         "more than once"),
        (TwoLayers(), torch.randn(2, 3), {"layer": "nope"}, UnknownNameError, "layer", "nope"),
        (SequenceFirst(), torch.randn(2, 3, 4), {"layer": "inner"}, ArgumentError, "layer",
         "batch"),
        (TwoLayers(), torch.randn(2, 3), {"layer_side": "middle"}, ArgumentError,
         "layer_side", "middle"),
        (TwoLayers(), torch.randn(2, 3), {"embeddings": "first"}, ArgumentError, "embeddings",
         "not token ids"),
        (Bag(), IDS, {"layer": "embed", "embeddings": "embed"}, ArgumentError, "embeddings",
         "not both"),
        (Bag(), -IDS, {}, ArgumentError, "inputs", "≥ 0"),
        (TwoLayers(), IDS[:, :3], {}, ArgumentTypeError, "inputs", "floating-point"),
        (Bag(), IDS, {"method": "integrated_gradients", "baseline": torch.tensor([[1, 2]])},
         ArgumentError, "baseline", "broadcast"),
    ],
)
def test_errors_name_the_argument(model, inputs, kwargs, error, argument, says):
    kwargs = {"method": "gradient", **kwargs}
    with pytest.raises(error, match=says) as raised:
        pellucid.explain(model.eval(), inputs, 0, **kwargs)
    assert raised.value.argument == argument
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_a_token_role_the_model_does_not_name_is_an_error():
    model = nn.Sequential(nn.Embedding(5, 3), nn.Flatten(), nn.Linear(6, 2)).eval()
    with pytest.raises(ArgumentError, match="pad_token_id") as raised:
        pellucid.explain(model, torch.tensor([[1, 2]]), 0, method="integrated_gradients",
                         baseline="pad")
    assert raised.value.argument == "baseline"


def test_gradcam_keeps_layer_as_its_own_setting():
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(32, 2)).eval()
    x = torch.rand(1, 3, 6, 6)
    e = pellucid.explain(model, x, 0, method="gradcam", layer="1")
    assert e.attribution.shape == x.shape and e.settings["layer"] == "1"
    with pytest.raises(ArgumentError, match="setting") as raised:
        pellucid.get_method("gradcam")(model, x, 0, layer="1")
    assert raised.value.argument == "layer"


@pytest.mark.parametrize("method", methods_without("attention"))
def test_every_method_explains_token_ids_per_token(method):
    model = bag()
    chosen = pellucid.get_method(method).cheap(IDS, references=IDS[:1])
    e = chosen(model, IDS, 1)
    assert e.attribution.shape == IDS.shape and e.attribution.isfinite().all()
    assert e.extras["embedding_attribution"].shape == (*IDS.shape, 4)
    first = chosen(model, IDS[:1], 1).attribution
    torch.testing.assert_close(first, e.attribution[:1], atol=1e-6, rtol=1e-5)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("method", ["attention_rollout", "generic_attention", "attention_flow"])
def test_attention_maps_land_on_their_tokens_when_width_equals_length(method):
    # the shipped text transformer has embedding width 32 = sequence length 32: the map
    # must follow the token axis of the channels-first embedding, not the feature axis
    from pellucid.data import text_evidence
    from pellucid.models import load_pretrained

    model = load_pretrained("text_transformer")
    data = text_evidence(3, seed=5)
    assert model.get_input_embeddings().embedding_dim == data.input_ids.shape[1]
    e = pellucid.explain(model, data.input_ids, None, method=method,
                         model_kwargs={"attention_mask": data.attention_mask})
    torch.testing.assert_close(e.attribution, e.extras["token_relevance"])
    per_dim = e.extras["embedding_attribution"]
    torch.testing.assert_close(per_dim, e.attribution.unsqueeze(-1).expand_as(per_dim))


def test_references_of_another_size_ignore_the_inputs_per_sample_arguments():
    from pellucid.data import text_evidence
    from pellucid.models import load_pretrained

    model = load_pretrained("text_transformer")
    data, references = text_evidence(3, seed=5), text_evidence(7, seed=6)
    e = pellucid.explain(model, data.input_ids, None, method="expected_gradients",
                         references=references.input_ids, samples=8,
                         model_kwargs={"attention_mask": data.attention_mask})
    assert e.attribution.shape == data.input_ids.shape and e.attribution.isfinite().all()
