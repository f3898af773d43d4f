"""Token sequences whose class is decided by planted key tokens: ground truth for text.

The rule (exact, so that every token's role is known):

- a sequence is ``[CLS]`` then ``length - 1`` word slots; its real length is uniform in
  ``min_length..length`` and the rest is ``[PAD]`` (``attention_mask`` False);
- it holds 1 to ``keys`` KEY tokens, all from the key group of its class: the class is
  *which key group appears* (``label = group of any key token``);
- 0 to ``decoys`` DECOY tokens, drawn from every class's decoys whatever the label
  (words that look like keys, such as "catalog" or "songbird", but carry no information);
- every other word slot is a NEUTRAL filler word ("the", "of", ...), or with probability
  ``mask_rate`` the ``[MASK]`` token (so that a model trained on it learns that ``[MASK]``
  carries nothing, as masking baselines and deletion metrics assume).

``masks`` (the evidence) marks exactly the key tokens, ``decoy_masks`` the decoys.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .._seeding import generator
from ..checks import check_count, check_finite_number, check_seed
from ..errors import ArgumentError

PAD, MASK, CLS = 0, 1, 2
#: class name -> (key words, decoy words); a class is decided by its key words only
TEXT_CLASSES = {
    "animal": (("cat", "dog", "horse", "bird"), ("catalog", "dogma")),
    "food": (("bread", "apple", "cheese", "soup"), ("breadth", "applet")),
    "sport": (("goal", "tennis", "runner", "match"), ("matchbox", "runway")),
    "music": (("guitar", "piano", "song", "drum"), ("songbird", "drumstick")),
}
_NEUTRAL = (
    "the", "a", "an", "of", "and", "to", "in", "is", "it", "that", "was", "for", "on", "are",
    "with", "as", "at", "be", "this", "have", "from", "or", "by", "one", "had", "not", "but",
    "what", "all", "were", "when", "we", "there", "can", "said", "which", "do",
)
#: the vocabulary: id -> word; specials, then the key words, the decoys, the neutral words
VOCAB: tuple[str, ...] = (
    "[PAD]", "[MASK]", "[CLS]",
    *(w for keys, _ in TEXT_CLASSES.values() for w in keys),
    *(w for _, decoys in TEXT_CLASSES.values() for w in decoys),
    *_NEUTRAL,
)
_KEYS_PER_CLASS = 4
_FIRST_KEY = 3
_FIRST_DECOY = _FIRST_KEY + _KEYS_PER_CLASS * len(TEXT_CLASSES)
_FIRST_NEUTRAL = _FIRST_DECOY + 2 * len(TEXT_CLASSES)


def key_class(input_ids: Tensor) -> Tensor:
    """The class whose key word each token id is, -1 for every other token (closed form).

    >>> import torch
    >>> key_class(torch.tensor([[2, 3, 7, 40]])).tolist()
    [[-1, 0, 1, -1]]
    """
    is_key = (input_ids >= _FIRST_KEY) & (input_ids < _FIRST_DECOY)
    return torch.where(is_key, (input_ids - _FIRST_KEY) // _KEYS_PER_CLASS, -1)


@dataclass(frozen=True)
class TokenSet:
    """Token sequences with labels and per-token ground truth.

    ``input_ids``: int64 N×L; ``attention_mask``: bool N×L (False on padding); ``labels``:
    int64 N; ``masks``: bool N×L, the key tokens that decide the class; ``decoy_masks``: bool
    N×L, the decoy tokens; ``class_names``: one per label; ``vocab``: id -> word.
    ``pad_token_id``, ``mask_token_id`` and ``cls_token_id`` are 0, 1 and 2.
    """

    input_ids: Tensor
    attention_mask: Tensor
    labels: Tensor
    masks: Tensor
    decoy_masks: Tensor
    class_names: tuple[str, ...]
    vocab: tuple[str, ...] = VOCAB
    pad_token_id: int = PAD
    mask_token_id: int = MASK
    cls_token_id: int = CLS

    def __post_init__(self) -> None:
        n = len(self.labels)
        for name in ("input_ids", "attention_mask", "masks", "decoy_masks"):
            if len(getattr(self, name)) != n:
                raise ArgumentError(
                    name, f"{name} has {len(getattr(self, name))} rows for {n} labels; give "
                    "one per sequence"
                )

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: Tensor | slice | list[int]) -> TokenSet:
        """The sequences at ``index`` (a slice, a list, a LongTensor or a bool mask)."""
        return replace(self, **{f.name: getattr(self, f.name)[index] for f in fields(self)
                                if isinstance(getattr(self, f.name), Tensor)})

    def tokens(self, i: int) -> list[str]:
        """The words of sequence ``i`` without its padding.

        >>> text_evidence(1, seed=0).tokens(0)[0]
        '[CLS]'
        """
        ids = self.input_ids[i][self.attention_mask[i]]
        return [self.vocab[t] for t in ids.tolist()]

    def dataset(self) -> TokenDataset:
        """A torch ``Dataset`` yielding (input_ids, label, attention_mask)."""
        return TokenDataset(self)


class TokenDataset(Dataset):
    """A torch ``Dataset`` over a :class:`TokenSet`: item i is (input_ids, label,
    attention_mask)."""

    def __init__(self, data: TokenSet) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        return self.data.input_ids[i], self.data.labels[i], self.data.attention_mask[i]


def text_evidence(
    n: int,
    length: int = 32,
    classes: int = 4,
    keys: int = 3,
    decoys: int = 4,
    min_length: int = 16,
    mask_rate: float = 0.0,
    seed: int = 0,
) -> TokenSet:
    """``n`` token sequences whose class is the key group that appears in them.

    See the module docstring for the rule. Sequences are ``length`` ids ([CLS] first, padding
    last), real lengths uniform in ``min_length..length``; 1..``keys`` key tokens of the
    class and 0..``decoys`` decoys at random word slots, neutral words (or ``[MASK]`` with
    probability ``mask_rate``) elsewhere; ``classes`` (2 to 4) of animal, food, sport, music.
    Labels are balanced and shuffled; deterministic by ``seed``; generated for
    the whole batch at once.

    >>> data = text_evidence(8, length=16, min_length=12, seed=0)
    >>> data.input_ids.shape, data.masks.shape, data.class_names[:2]
    (torch.Size([8, 16]), torch.Size([8, 16]), ('animal', 'food'))
    """
    n = check_count(n, "n", minimum=0)
    classes = check_count(classes, "classes", "classes")
    if not 2 <= classes <= len(TEXT_CLASSES):
        raise ArgumentError(
            "classes", f"classes={classes}: choose between 2 and {len(TEXT_CLASSES)} classes"
        )
    keys = check_count(keys, "keys", "key tokens per sequence (at most)")
    decoys = check_count(decoys, "decoys", "decoy tokens per sequence (at most)", minimum=0)
    length = check_count(length, "length", "tokens per sequence")
    min_length = check_count(min_length, "min_length", "tokens of the shortest sequence")
    check_finite_number(mask_rate, "mask_rate", 0.0, maximum=1.0, meaning="a probability")
    seed = check_seed(seed, none=False)
    if min_length < 1 + keys + decoys:
        raise ArgumentError(
            "min_length", f"min_length={min_length} leaves no room for [CLS], {keys} keys and "
            f"{decoys} decoys; use min_length >= {1 + keys + decoys} or fewer keys/decoys"
        )
    if min_length > length:
        raise ArgumentError(
            "min_length", f"min_length={min_length} is above length={length}; use "
            f"min_length <= length"
        )

    gen = generator(seed)
    labels = (torch.arange(n) % classes)[torch.randperm(n, generator=gen)]
    lengths = torch.randint(min_length, length + 1, (n,), generator=gen)
    slot = torch.arange(length)
    real = slot < lengths.unsqueeze(1)
    # word slots in random order: the first k are keys, the next d decoys
    score = torch.rand(n, length, generator=gen).masked_fill(~real | (slot == 0), 2.0)
    rank = score.argsort(1).argsort(1)
    k = torch.randint(1, keys + 1, (n, 1), generator=gen)
    d = torch.randint(0, decoys + 1, (n, 1), generator=gen)
    is_key = rank < k
    is_decoy = (rank >= k) & (rank < k + d)
    key_ids = _FIRST_KEY + _KEYS_PER_CLASS * labels.unsqueeze(1) + torch.randint(
        _KEYS_PER_CLASS, (n, length), generator=gen)
    decoy_ids = _FIRST_DECOY + torch.randint(2 * len(TEXT_CLASSES), (n, length), generator=gen)
    neutral_ids = _FIRST_NEUTRAL + torch.randint(len(_NEUTRAL), (n, length), generator=gen)
    if mask_rate:
        masked = torch.rand(n, length, generator=gen) < mask_rate
        neutral_ids = neutral_ids.masked_fill(masked, MASK)
    ids = torch.where(is_key, key_ids, torch.where(is_decoy, decoy_ids, neutral_ids))
    ids = torch.where(real, ids, PAD)
    ids[:, 0] = CLS
    return TokenSet(ids, real, labels, is_key, is_decoy, tuple(list(TEXT_CLASSES)[:classes]))
