"""Two tiny text classifiers in plain torch: a transformer encoder and an LSTM.

Both take ``forward(input_ids, attention_mask=None) -> logits`` (``attention_mask`` True or 1
on real tokens; None reads every token), expose ``get_input_embeddings()`` (the token
``nn.Embedding``) and carry a ``config`` with ``pad_token_id`` and ``mask_token_id``, as
Hugging Face models do, so that pellucid finds the embedding by structure. The transformer
is written with explicit ops (no ``nn.TransformerEncoderLayer``, whose fused path hides them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..checks import check_count
from ..data.text import CLS, MASK, PAD, VOCAB
from ..errors import ArgumentError, ArgumentTypeError


@dataclass(frozen=True)
class TextConfig:
    """Sizes and special tokens of a text classifier (checked where built); ``max_length``
    is the number of position embeddings of the transformer (the LSTM reads any length)."""

    vocab_size: int = len(VOCAB)
    max_length: int = 32
    classes: int = 4
    dim: int = 32
    hidden: int = 64
    layers: int = 2
    heads: int = 2
    pad_token_id: int = PAD
    mask_token_id: int = MASK
    cls_token_id: int = CLS

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_length", "classes", "dim", "hidden", "layers", "heads"):
            check_count(getattr(self, name), name)
        for name in ("pad_token_id", "mask_token_id", "cls_token_id"):
            if not check_count(getattr(self, name), name, minimum=0) < self.vocab_size:
                raise ArgumentError(
                    name, f"{name}={getattr(self, name)} is not below vocab_size="
                    f"{self.vocab_size}; give an id in the vocabulary"
                )
        if self.dim % self.heads:
            raise ArgumentError(
                "heads", f"dim={self.dim} does not split into heads={self.heads}; use a "
                "divisor of dim"
            )


def _check_call(input_ids: Tensor, attention_mask: Tensor | None, vocab_size: int) -> Tensor:
    """The attention mask as bool (B, L) (all True when None), after checking both."""
    if not isinstance(input_ids, Tensor) or input_ids.is_floating_point() or \
            input_ids.is_complex() or input_ids.dtype == torch.bool or input_ids.ndim != 2:
        got = (f"{input_ids.dtype} {tuple(input_ids.shape)}" if isinstance(input_ids, Tensor)
               else type(input_ids).__name__)
        raise ArgumentTypeError(
            "input_ids", f"input_ids must be an integer tensor (batch, length) of token ids, "
            f"got {got}"
        )
    if input_ids.numel():
        low, high = torch.stack(torch.aminmax(input_ids)).tolist()  # one read from the device
        if not 0 <= low <= high < vocab_size:
            raise ArgumentError(
                "input_ids", f"input_ids hold ids in {low}..{high}; the vocabulary has ids "
                f"0..{vocab_size - 1}"
            )
    if attention_mask is None:
        return torch.ones(input_ids.shape, dtype=torch.bool, device=input_ids.device)
    if not isinstance(attention_mask, Tensor) or attention_mask.shape != input_ids.shape:
        got = tuple(attention_mask.shape) if isinstance(attention_mask, Tensor) else type(
            attention_mask).__name__
        raise ArgumentError(
            "attention_mask", f"attention_mask must be a tensor shaped like input_ids "
            f"{tuple(input_ids.shape)} (1 on real tokens, 0 on padding), got {got}"
        )
    return attention_mask.bool()


class SelfAttention(nn.Module):
    """Multi-head self-attention: ``softmax(q kᵀ / √d + bias) v`` then an output projection
    (Vaswani et al. 2017); ``bias`` is 0 on real keys and the dtype's minimum on padding."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), \
            nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        b, length, dim = x.shape
        q, k, v = (f(x).view(b, length, self.heads, -1).transpose(1, 2)
                   for f in (self.query, self.key, self.value))
        scores = q @ k.transpose(-1, -2) / math.sqrt(dim // self.heads) + bias
        attention = torch.softmax(scores, -1)
        return self.out((attention @ v).transpose(1, 2).reshape(b, length, dim))


class EncoderLayer(nn.Module):
    """Pre-norm transformer layer: ``x + attention(LN(x))``, then ``x + MLP(LN(x))`` with a
    GELU MLP."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        x = x + self.attention(self.norm1(x), bias)
        return x + self.mlp(self.norm2(x))


class TextTransformer(nn.Module):
    """Token + position embeddings, ``layers`` pre-norm encoder layers, a final LayerNorm and
    a linear head on the first ([CLS]) token.

    >>> import torch
    >>> model = TextTransformer(TextConfig())
    >>> model(torch.tensor([[2, 3, 30, 0]]), torch.tensor([[1, 1, 1, 0]])).shape
    torch.Size([1, 4])
    """

    def __init__(self, config: TextConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or TextConfig()
        self.embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.positions = nn.Embedding(config.max_length, config.dim)
        self.layers = nn.ModuleList(EncoderLayer(config.dim, config.heads, config.hidden)
                                    for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.dim)
        self.classifier = nn.Linear(config.dim, config.classes)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        mask = _check_call(input_ids, attention_mask, self.config.vocab_size)
        if input_ids.shape[1] > self.config.max_length:
            raise ArgumentError(
                "input_ids", f"input_ids have length {input_ids.shape[1]}, above the model's "
                f"max_length={self.config.max_length}; truncate them"
            )
        x = self.embeddings(input_ids) + self.positions(
            torch.arange(input_ids.shape[1], device=input_ids.device))
        bias = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill(
            ~mask, torch.finfo(x.dtype).min)[:, None, None, :]
        for layer in self.layers:
            x = layer(x, bias)
        return self.classifier(self.norm(x)[:, 0])


class TextLSTM(nn.Module):
    """Token embeddings, a one-layer ``nn.LSTM`` (``batch_first``), the mean of its outputs
    over the real tokens, and a linear head. Reading left to right, the outputs at real
    tokens never see the padding at the end: a padded sequence gives what it gives alone.

    >>> import torch
    >>> model = TextLSTM(TextConfig())
    >>> model(torch.tensor([[2, 3, 30, 0]]), torch.tensor([[1, 1, 1, 0]])).shape
    torch.Size([1, 4])
    """

    def __init__(self, config: TextConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or TextConfig()
        self.embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.lstm = nn.LSTM(config.dim, config.hidden, batch_first=True)
        self.classifier = nn.Linear(config.hidden, config.classes)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        mask = _check_call(input_ids, attention_mask, self.config.vocab_size)
        out, _ = self.lstm(self.embeddings(input_ids))
        weight = mask.unsqueeze(-1).to(out.dtype)
        return self.classifier((out * weight).sum(1) / weight.sum(1).clamp(min=1))


def text_transformer(classes: int = 4, dim: int = 32, hidden: int = 64, layers: int = 2,
                     heads: int = 2, max_length: int = 32) -> TextTransformer:
    """A :class:`TextTransformer` over the :data:`~pellucid.data.VOCAB` of ``text_evidence``."""
    return TextTransformer(TextConfig(max_length=max_length, classes=classes, dim=dim,
                                      hidden=hidden, layers=layers, heads=heads))


def text_lstm(classes: int = 4, dim: int = 32, hidden: int = 64) -> TextLSTM:
    """A :class:`TextLSTM` over the :data:`~pellucid.data.VOCAB` of ``text_evidence`` (any
    length)."""
    return TextLSTM(TextConfig(classes=classes, dim=dim, hidden=hidden))


TEXT_ARCHITECTURES = {"text_transformer": text_transformer, "text_lstm": text_lstm}
