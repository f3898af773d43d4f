"""``F.scaled_dot_product_attention`` written out as torch ops, for the code that must see its
attention weights: the attention maps of :mod:`pellucid.attribution.attention` and the rule
engine's tape (:mod:`pellucid.lrp.tape`), which records the ops instead of the fused call."""

from __future__ import annotations

import torch
from torch import Tensor


def attention_weights(
    query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
    is_causal: bool = False, scale: float | None = None, enable_gqa: bool = False,
) -> tuple[Tensor, Tensor]:
    """(softmax(q·kᵀ·scale + mask), the values), as the reference implementation of
    ``F.scaled_dot_product_attention`` computes them; the output is ``weights @ values``.

    ``scale`` is 1/√d by default; ``is_causal`` and a boolean mask set the excluded scores
    to −∞, a floating mask is added; ``enable_gqa`` repeats the key and value heads to the
    query's. Dropout is the caller's.

    >>> import torch.nn.functional as F
    >>> q, k, v = torch.randn(3, 1, 2, 4, 8, dtype=torch.float64).unbind(0)
    >>> weights, values = attention_weights(q, k, v, is_causal=True)
    >>> torch.allclose(weights @ values, F.scaled_dot_product_attention(q, k, v, is_causal=True))
    True
    """
    if enable_gqa:
        key = key.repeat_interleave(query.size(-3) // key.size(-3), -3)
        value = value.repeat_interleave(query.size(-3) // value.size(-3), -3)
    scale = query.size(-1) ** -0.5 if scale is None else scale
    scores = query @ key.transpose(-2, -1) * scale
    if is_causal:
        keep = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        scores = (scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool
                  else scores + attn_mask)
    return torch.softmax(scores, dim=-1), value
