"""The tiny text classifiers: their forward in closed form, the shipped weights, and training."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from pellucid.data import text_evidence
from pellucid.data.text import CLS, MASK, PAD
from pellucid.errors import PellucidError
from pellucid.models import (
    TEXT_MODELS,
    TextConfig,
    TextDemoModel,
    TextLSTM,
    TextTransformer,
    accuracy,
    evaluate_demo_model,
    load_pretrained,
    manifest,
    pretrained,
    train,
)
from pellucid.models.pretrained import WEIGHTS_DIR

NAMES = sorted(TEXT_MODELS)


@pytest.fixture(scope="module")
def fresh():
    """A test set never used for training nor for the recorded accuracy."""
    return text_evidence(1000, seed=12345)


@pytest.mark.parametrize("name", NAMES)
def test_shipped_weights_load_and_classify_a_fresh_test_set(name: str, fresh) -> None:
    path = WEIGHTS_DIR / f"{name}.pt"
    assert path.stat().st_size <= 200_000
    weights = torch.load(path, weights_only=True)
    assert all(v.dtype in (torch.float16, torch.int64) for v in weights.values())
    model = load_pretrained(name, progress=False)
    assert not model.training and next(model.parameters()).dtype == torch.float32
    embedding = model.get_input_embeddings()
    assert isinstance(embedding, nn.Embedding) and embedding.num_embeddings == 64
    assert (model.config.pad_token_id, model.config.mask_token_id) == (PAD, MASK)
    record = manifest()[name]
    assert record["architecture"] == TEXT_MODELS[name].architecture
    assert evaluate_demo_model(model, name)["test"] == pytest.approx(
        record["accuracy"]["test"], abs=0.01)
    got = accuracy(model, fresh.input_ids, fresh.labels, attention_mask=fresh.attention_mask)
    assert got >= 0.95


@pytest.mark.parametrize("name", NAMES)
def test_the_models_read_the_keys_and_ignore_the_decoys(name: str, fresh) -> None:
    """Replacing the decoys by [MASK] keeps the predictions; replacing the key tokens (the
    evidence mask) leaves chance accuracy: the models decide by the planted evidence."""
    model = load_pretrained(name, progress=False)
    ids, mask, labels = fresh.input_ids, fresh.attention_mask, fresh.labels
    no_decoys = ids.masked_fill(fresh.decoy_masks, MASK)
    no_keys = ids.masked_fill(fresh.masks, MASK)
    assert accuracy(model, no_decoys, labels, attention_mask=mask) >= 0.95
    assert accuracy(model, no_keys, labels, attention_mask=mask) < 0.5


@pytest.mark.parametrize("cls", [TextTransformer, TextLSTM])
def test_forward_with_and_without_the_attention_mask(cls) -> None:
    torch.manual_seed(0)
    model = cls(TextConfig()).eval()
    data = text_evidence(6, seed=1)
    ids, mask = data.input_ids, data.attention_mask
    # no mask reads every token, like an all-ones mask (as ints or bools)
    full = torch.ones_like(ids)
    assert torch.equal(model(ids), model(ids, full))
    assert torch.equal(model(ids, full), model(ids, full.bool()))
    # with the mask, the ids on padding do not matter; without it, they do
    noise = torch.randint(3, 64, ids.shape, generator=torch.Generator().manual_seed(0))
    other = torch.where(mask, ids, noise)
    torch.testing.assert_close(model(other, mask), model(ids, mask), rtol=0, atol=1e-6)
    assert not torch.allclose(model(other), model(ids))
    # and a sequence padded alone gives what it gives in the batch
    n = int(mask[0].sum())
    torch.testing.assert_close(model(ids[:1, :n]), model(ids, mask)[:1], atol=1e-5, rtol=1e-5)


def test_the_transformer_layer_in_closed_form() -> None:
    """One head, q = k = v = out = identity, no bias, LayerNorm and MLP switched off:
    the layer is ``x + softmax(x xᵀ / √d) x`` over the unmasked keys."""
    torch.manual_seed(0)
    model = TextTransformer(TextConfig(dim=4, hidden=8, layers=1, heads=1))
    layer = model.layers[0]
    with torch.no_grad():
        for linear in (layer.attention.query, layer.attention.key, layer.attention.value,
                       layer.attention.out):
            linear.weight.copy_(torch.eye(4))
            linear.bias.zero_()
    layer.norm1 = nn.Identity()
    layer.mlp = nn.Sequential()
    layer.mlp.forward = lambda h: torch.zeros_like(h)
    x = torch.randn(2, 5, 4)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    bias = torch.zeros(2, 5).masked_fill(~mask, torch.finfo(x.dtype).min)[:, None, None]
    scores = x @ x.transpose(1, 2) / math.sqrt(4)
    expected = x + torch.softmax(scores.masked_fill(~mask[:, None], -math.inf), -1) @ x
    torch.testing.assert_close(layer(x, bias), expected)


def test_the_lstm_head_is_the_masked_mean_of_the_lstm_outputs() -> None:
    torch.manual_seed(0)
    model = TextLSTM(TextConfig(hidden=8, dim=6)).eval()
    data = text_evidence(4, seed=2)
    ids, mask = data.input_ids, data.attention_mask
    out, _ = model.lstm(model.embeddings(ids))
    expected = model.classifier((out * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True))
    torch.testing.assert_close(model(ids, mask), expected)
    assert torch.equal(model(ids), model.classifier(out.mean(1)))


def test_training_a_text_demo_model_reproduces(tmp_path, monkeypatch) -> None:
    tiny = TextDemoModel("tiny_text", "text_transformer", (8, 16), n_train=128, n_test=32,
                         epochs=1, batch_size=32)
    monkeypatch.setitem(pretrained.TEXT_MODELS, "tiny_text", tiny)
    first = load_pretrained("tiny_text", directory=tmp_path / "a", progress=False)
    second = pretrained.train_demo_model("tiny_text", directory=tmp_path / "b", progress=False)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
    record = manifest(tmp_path / "a")["tiny_text"]
    assert record["n_train"] == 128 and set(record["accuracy"]) == {"test"}
    again = load_pretrained("tiny_text", directory=tmp_path / "a", progress=False)
    ids = torch.tensor([[CLS, 3, 30, PAD]])
    assert torch.equal(first(ids), again(ids))


def test_train_on_a_token_set_lowers_the_loss_and_is_seeded() -> None:
    data = text_evidence(256, length=12, min_length=8, keys=2, decoys=1, seed=0)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = TextLSTM(TextConfig(dim=8, hidden=8))
        runs.append(train(model, data, epochs=3, lr=1e-2, batch_size=32, progress=False))
    assert runs[0] == runs[1] and runs[0][-1] < runs[0][0]


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda m: m(torch.rand(2, 5)), "input_ids"),
        (lambda m: m(torch.zeros(5, dtype=torch.long)), "input_ids"),
        (lambda m: m(torch.zeros(2, 40, dtype=torch.long)), "input_ids"),
        (lambda m: m(torch.full((2, 5), 64)), "input_ids"),
        (lambda m: TextLSTM(TextConfig())(torch.full((2, 5), -1)), "input_ids"),
        (lambda m: m(torch.zeros(2, 5, dtype=torch.long), torch.ones(2, 4)), "attention_mask"),
        (lambda m: accuracy(m, torch.zeros(2, 5, dtype=torch.long), torch.zeros(2).long(),
                            attention_mask=torch.ones(2, 3)), "attention_mask"),
        (lambda m: accuracy(m, torch.zeros(4, dtype=torch.long), torch.zeros(4).long()),
         "images"),
        (lambda m: TextConfig(dim=10, heads=3), "heads"),
        (lambda m: TextConfig(pad_token_id=64), "pad_token_id"),
        (lambda m: TextConfig(dim=0), "dim"),
        (lambda m: TextDemoModel("x", "vgg_style", (8, 8)), "architecture"),
        (lambda m: TextDemoModel("x", "text_lstm", (8,)), "widths"),
        (lambda m: replace(TEXT_MODELS["text_lstm"], lr=0.0), "lr"),
        (lambda m: load_pretrained("text_transfomer"), "name"),
    ],
)
def test_bad_calls_and_settings_name_the_argument(call, argument: str) -> None:
    model = TextTransformer(TextConfig()).eval()
    with pytest.raises(PellucidError) as info:
        call(model)
    assert info.value.argument == argument and argument in str(info.value)
