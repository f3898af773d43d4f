"""The planted-evidence token data: the label is a closed-form function of the tokens and the
masks mark exactly the tokens that decide it."""

from __future__ import annotations

import pytest
import torch

from pellucid.data import TEXT_CLASSES, VOCAB, TokenSet, key_class, text_evidence
from pellucid.data.text import CLS, MASK, PAD
from pellucid.errors import PellucidError

KEY_WORDS = {w: c for c, (keys, _) in enumerate(TEXT_CLASSES.values()) for w in keys}
DECOY_WORDS = {w for _, decoys in TEXT_CLASSES.values() for w in decoys}


@pytest.fixture(scope="module")
def data() -> TokenSet:
    return text_evidence(2000, length=32, keys=3, decoys=4, min_length=16, seed=0)


def test_shapes_dtypes_and_layout(data: TokenSet) -> None:
    n, length = 2000, 32
    assert data.input_ids.shape == data.attention_mask.shape == data.masks.shape == (n, length)
    assert data.input_ids.dtype == data.labels.dtype == torch.int64
    assert data.masks.dtype == data.attention_mask.dtype == data.decoy_masks.dtype == torch.bool
    assert (data.input_ids[:, 0] == CLS).all()
    lengths = data.attention_mask.sum(1)
    assert lengths.min() >= 16 and lengths.max() <= length
    # padding at the end: the mask is a prefix, and padded ids are [PAD]
    assert torch.equal(data.attention_mask, torch.arange(length) < lengths.unsqueeze(1))
    assert (data.input_ids[~data.attention_mask] == PAD).all()
    assert (data.input_ids[data.attention_mask] != PAD).all()
    assert len(VOCAB) == len(set(VOCAB)) == 64
    assert (VOCAB[PAD], VOCAB[MASK], VOCAB[CLS]) == ("[PAD]", "[MASK]", "[CLS]")
    assert data.class_names == tuple(TEXT_CLASSES)


def test_the_label_is_the_group_of_the_key_words_read_from_the_text(data: TokenSet) -> None:
    """Decoded to words: the key words present all belong to the label's group, and the
    evidence mask marks exactly them; decoys are marked by decoy_masks."""
    for i in range(0, len(data), 97):
        words = [data.vocab[t] for t in data.input_ids[i].tolist()]
        keys = [j for j, w in enumerate(words) if w in KEY_WORDS]
        assert keys and {KEY_WORDS[words[j]] for j in keys} == {int(data.labels[i])}
        assert data.masks[i].nonzero().flatten().tolist() == keys
        decoys = [j for j, w in enumerate(words) if w in DECOY_WORDS]
        assert data.decoy_masks[i].nonzero().flatten().tolist() == decoys
        assert data.tokens(i) == words[: int(data.attention_mask[i].sum())]


def test_label_and_masks_in_closed_form_for_the_whole_batch(data: TokenSet) -> None:
    groups = key_class(data.input_ids)
    assert torch.equal(data.masks, groups >= 0)
    assert (groups[data.masks] == data.labels.repeat_interleave(data.masks.sum(1))).all()
    counts = data.masks.sum(1)
    assert counts.min() == 1 and counts.max() == 3
    assert data.decoy_masks.sum(1).max() == 4 and data.decoy_masks.sum(1).min() == 0
    assert not (data.masks & data.decoy_masks).any()
    assert not ((data.masks | data.decoy_masks) & ~data.attention_mask).any()
    assert not data.masks[:, 0].any()
    # balanced labels; decoys of every class appear with every label (they carry no signal)
    assert torch.bincount(data.labels).tolist() == [500] * 4
    for label in range(4):
        decoys = data.input_ids[data.decoy_masks & (data.labels == label).unsqueeze(1)]
        assert len(decoys.unique()) == 2 * len(TEXT_CLASSES)


def test_deterministic_by_seed_and_subsets() -> None:
    a, b = text_evidence(50, seed=3), text_evidence(50, seed=3)
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.input_ids, text_evidence(50, seed=4).input_ids)
    part = a.subset(slice(10, 20))
    assert len(part) == 10 and torch.equal(part.masks, a.masks[10:20])
    ids, label, mask = a.dataset()[3]
    assert torch.equal(ids, a.input_ids[3]) and label == a.labels[3]
    assert torch.equal(mask, a.attention_mask[3])


def test_fewer_classes_fixed_length_and_empty() -> None:
    two = text_evidence(40, length=10, min_length=10, classes=2, keys=1, decoys=0, seed=1)
    assert two.class_names == ("animal", "food") and set(two.labels.tolist()) == {0, 1}
    assert two.attention_mask.all() and (two.masks.sum(1) == 1).all()
    assert torch.equal(key_class(two.input_ids)[two.masks], two.labels)
    empty = text_evidence(0)
    assert empty.input_ids.shape == (0, 32) and len(empty) == 0


@pytest.mark.parametrize(
    ("settings", "argument"),
    [
        ({"n": -1}, "n"),
        ({"n": 2.5}, "n"),
        ({"length": 0}, "length"),
        ({"classes": 5}, "classes"),
        ({"classes": 1}, "classes"),
        ({"keys": 0}, "keys"),
        ({"decoys": -1}, "decoys"),
        ({"min_length": 5}, "min_length"),
        ({"min_length": 40}, "min_length"),
        ({"seed": -1}, "seed"),
        ({"seed": None}, "seed"),
    ],
)
def test_bad_settings_name_themselves(settings: dict, argument: str) -> None:
    kwargs = {"n": 4, **settings}
    with pytest.raises(PellucidError) as info:
        text_evidence(**kwargs)
    assert info.value.argument == argument and argument in str(info.value)


def test_a_token_set_needs_one_row_per_label() -> None:
    data = text_evidence(4, seed=0)
    with pytest.raises(PellucidError, match="masks") as info:
        TokenSet(data.input_ids, data.attention_mask, data.labels, data.masks[:3],
                 data.decoy_masks, data.class_names)
    assert info.value.argument == "masks"
