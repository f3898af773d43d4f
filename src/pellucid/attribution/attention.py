"""Attention-specific methods: rollout, flow (Abnar & Zuidema 2020) and the generic
gradient-weighted relevancy of Chefer, Gur & Wolf (2021).

With Aˡ the attention maps (B×H×L×L, rows sum to 1) of the self-attention layers l = 1…N
in the order they run, and t the explained query token (``token``, default 0, the CLS
token; negative counts from the end, -1 the last token, the query of a causal LM):

- ``attention_rollout``: Āˡ = 0.5·I + 0.5·Eₕ[Aˡ] (rows renormalised),
  R = Āᴺ ⋯ Ā¹, relevance = R[t, :].
- ``attention_flow``: the maximum flow from token t after the last layer to each input
  token j through the layered graph whose edge (l, i) → (l−1, j) has capacity Āˡ[i, j];
  the flows are divided by their sum (as in the authors' code).
- ``generic_attention``: R = I, then for every layer R ← R + Āˡ·R with
  Āˡ = Eₕ[(∂y/∂Aˡ ⊙ Aˡ)⁺] (y the explained score); relevance = R[t, :]. With
  cross-attention from decoder tokens d (queries) to encoder tokens e (keys, the inputs'
  tokens), Chefer et al.'s encoder-decoder rules: Rᵉᵉ = I, Rᵈᵈ = I, Rᵈᵉ = 0, then per map in
  call order Rᵉᵉ ← Rᵉᵉ + Ā·Rᵉᵉ (encoder self-attention), Rᵈᵈ ← Rᵈᵈ + Ā·Rᵈᵈ and
  Rᵈᵉ ← Rᵈᵉ + Ā·Rᵈᵉ (decoder self-attention), Rᵈᵉ ← Rᵈᵉ + (R̄ᵈᵈ)ᵀ·Ā·R̄ᵉᵉ (cross-attention),
  with R̄ = I + (R − I) rows normalised to sum 1; relevance = Rᵈᵉ[t, :], t a decoder token.

The attention maps are read during the call's one forward pass, without touching the model:
a ``torch.overrides.TorchFunctionMode`` sees every softmax whose output is a square
B×(H×)L×L map over its last dimension (eager attention, ``nn.MultiheadAttention``), and
every ``F.scaled_dot_product_attention``, which it computes as softmax(q·kᵀ·scale + mask)·v
so that the map exists (and, for ``generic_attention``, is in the autograd graph).

Cross-attention (queries from one sequence, keys from another: encoder-decoder and bi-modal
models) is told apart by structure: an ``nn.MultiheadAttention`` whose key is not its query,
or a map B×H×Lq×Lk with Lq ≠ Lk from ``F.scaled_dot_product_attention`` or a 4-D softmax.
Rollout and flow are defined for self-attention only, so they refuse such a model (an
error naming ``model``) rather than explain it through part of its attention;
``generic_attention`` follows it where the two sequences have different lengths (which tell
its self-attention maps apart) and refuses it otherwise.

The relevance of the L tokens becomes an attribution with the inputs' shape: inputs B×L×D
(embeddings) get each token's relevance repeated over D; images B×C×H×W (a ViT) get each
patch token's relevance on its patch's pixels, repeated over the channels, the prefix tokens
(CLS, distillation, registers) dropped (see :func:`tokens_to_inputs`).
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

from ..errors import ArgumentError, ArgumentTypeError
from ..method import Method, register_method
from ..sdpa import attention_weights
from ..task import Forward, Task, require_graph
from .rows import check_finite_values

_SOFTMAX = (F.softmax, torch.softmax, Tensor.softmax, torch.special.softmax)
_MULTI_HEAD = inspect.signature(F.multi_head_attention_forward)


class _AttentionMaps(TorchFunctionMode):
    """Collect the attention maps computed while the mode is active.

    ``calls`` holds, in call order, each map as B×H×Lq×Lk, the tensor of the autograd graph
    it is a view of (the gradient w.r.t. the map is taken there) and whether it is
    cross-attention; ``maps``/``nodes`` are the self-attention ones, ``cross`` the others.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Tensor, Tensor, bool]] = []

    @property
    def maps(self) -> list[Tensor]:
        return [m for m, _, cross in self.calls if not cross]

    @property
    def nodes(self) -> list[Tensor]:
        return [n for _, n, cross in self.calls if not cross]

    @property
    def cross(self) -> list[Tensor]:
        return [m for m, _, cross in self.calls if cross]

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            return self._attention(*args, **kwargs)
        if func is F.multi_head_attention_forward:
            return self._multi_head(*args, **kwargs)
        out = func(*args, **kwargs)
        if func in _SOFTMAX:
            dim = args[1] if len(args) > 1 else kwargs.get("dim")
            self._keep(out, dim)
        return out

    def _keep(
        self, weights: Any, dim: Any, node: Tensor | None = None, *, attention: bool = False,
        same_keys: bool = True,
    ) -> None:
        """Keep ``weights`` if it is a map over its last dim: square and with ``same_keys``
        as self-attention, else as cross-attention where it surely is attention (from
        ``attention`` functions, or with a heads dim), else not at all (a 3-D softmax over
        classes, say)."""
        if not isinstance(weights, Tensor) or weights.ndim not in (3, 4) or dim is None:
            return
        if dim % weights.ndim != weights.ndim - 1:
            return
        cross = weights.shape[-1] != weights.shape[-2] or not same_keys
        if not cross or attention or weights.ndim == 4:
            heads = weights if weights.ndim == 4 else weights.unsqueeze(1)
            self.calls.append((heads, weights if node is None else node, cross))

    def _multi_head(self, *args: Any, **kwargs: Any) -> Any:
        """``nn.MultiheadAttention``'s fused function, asked for its per-head weights (the
        view of its softmax output, which is where the gradient is taken)."""
        call = _MULTI_HEAD.bind(*args, **kwargs)
        call.apply_defaults()
        wanted, average = call.arguments["need_weights"], call.arguments["average_attn_weights"]
        call.arguments.update(need_weights=True, average_attn_weights=False)
        out, weights = F.multi_head_attention_forward(*call.args, **call.kwargs)
        heads = weights if weights.ndim == 4 else weights.unsqueeze(0)
        query, key = call.arguments["query"], call.arguments["key"]
        self._keep(heads, -1, node=heads._base if heads._base is not None else heads,
                   attention=True, same_keys=_same_view(query, key))
        if not wanted:
            return out, None
        return out, weights.mean(-3) if average else weights

    def _attention(
        self, query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
        dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
        enable_gqa: bool = False,
    ) -> Tensor:
        """``F.scaled_dot_product_attention`` written out (its reference implementation)."""
        weights, value = attention_weights(query, key, value, attn_mask, is_causal, scale,
                                           enable_gqa)
        self._keep(weights, -1, attention=True)
        return F.dropout(weights, dropout_p, training=dropout_p > 0) @ value


def _same_view(a: Tensor, b: Tensor) -> bool:
    """``a`` and ``b`` are the same tensor or the same view of the same memory (the query and
    key of self-attention, which ``nn.MultiheadAttention`` may transpose separately)."""
    return a is b or (
        a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride()
    )


@contextmanager
def attention_maps() -> Iterator[_AttentionMaps]:
    """Collect the attention maps computed in the block: ``.maps`` (self-attention,
    B×H×L×L, in call order), ``.nodes`` (the autograd-graph tensor each map is a view of),
    ``.cross`` (cross-attention, B×H×Lq×Lk) and ``.calls`` (all of them in call order, as
    (map, node, is_cross)).

    Example:
        >>> import torch
        >>> mha = torch.nn.MultiheadAttention(4, 2, batch_first=True).eval()
        >>> x = torch.randn(1, 3, 4)
        >>> with attention_maps() as maps:
        ...     _ = mha(x, x, x, average_attn_weights=False)
        >>> [tuple(m.shape) for m in maps.maps]
        [(1, 2, 3, 3)]
    """
    mode = _AttentionMaps()
    with mode:
        yield mode


@dataclass(frozen=True, eq=False)
class _AttentionMethod(Method):
    token: int = 0

    #: the method reads the model's attention maps (inapplicable to models without them)
    requires: ClassVar[frozenset[str]] = frozenset({"attention"})
    per_position: ClassVar[bool] = True
    #: keep the maps in the autograd graph (the score's gradient w.r.t. each map is needed)
    needs_gradient: ClassVar[bool] = False
    #: the method follows cross-attention (else a model with it is refused)
    follows_cross: ClassVar[bool] = False

    def __post_init__(self) -> None:
        _check_token(self.token)

    def first_pass(self, task: Task, x: Tensor) -> Forward:
        """The call's first forward pass, with the attention maps it computes kept as state."""
        with torch.set_grad_enabled(self.needs_gradient), attention_maps() as seen:
            if self.needs_gradient:
                x.requires_grad_(True)
            output = task.output(x)
        _check_maps(seen, x, self.name, self.follows_cross)
        return Forward(x, output, state=seen)

    def attribute(self, task: Task, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        recorded = task.first_forward_at(x) or self.first_pass(task, x)
        seen: _AttentionMaps = recorded.state
        cross = seen.cross
        tokens = cross[0].shape[-2] if cross else seen.maps[0].shape[-1]
        if not -tokens <= self.token < tokens:
            what = "decoder tokens whose cross-attention" if cross else "tokens"
            raise ArgumentError(
                "token",
                f"token={self.token} is not one of the {tokens} {what} the model attends over; "
                f"use a query token index in {-tokens}..{tokens - 1} (0 is the CLS token of "
                "BERT and ViT; -1 the last token, the query of a causal LM)",
            )
        token = int(self.token) % tokens
        relevance = self.token_relevance(task, recorded, seen.maps, token).to(x.dtype)
        check_finite_values(relevance, self.name, "token relevance", "the attention maps")
        extras = {"token_relevance": relevance, "layers": len(seen.calls)}
        channels_first = task.entry is not None and task.entry.channels_first
        return tokens_to_inputs(relevance, x, self.name, channels_first=channels_first), extras

    def token_relevance(
        self, task: Task, recorded: Forward, maps: list[Tensor], token: int
    ) -> Tensor:
        """The relevance (B, L) of every token for query token ``token`` (in 0..L−1)."""
        raise NotImplementedError


def _check_token(token: Any) -> None:
    """``token`` is an int (not a bool); negative ones count from the end of the sequence."""
    try:
        operator.index(token)
    except TypeError:
        ok = False
    else:
        ok = not isinstance(token, bool)
    if not ok:
        raise ArgumentTypeError(
            "token",
            f"token must be an int, the index of the explained query token (negative counts "
            f"from the end: -1 is the last token), got {token!r}",
        )


def _check_maps(seen: _AttentionMaps, x: Tensor, method: str, follows_cross: bool) -> None:
    maps, cross = seen.maps, seen.cross
    if cross:
        _check_cross(seen, x, method, follows_cross)
        return
    if not maps:
        raise ArgumentError(
            "model",
            f"{method} explains a model through its self-attention maps, but the model computed "
            "no softmax over a square B×(heads×)L×L map and no "
            "F.scaled_dot_product_attention; pass a transformer (self-attention), or use a "
            "method for any model (e.g. method='integrated_gradients')",
        )
    shapes = {(m.shape[0], m.shape[-1]) for m in maps}
    if shapes != {(x.shape[0], maps[0].shape[-1])}:
        raise ArgumentError(
            "model",
            f"{method} needs global self-attention over one token sequence per sample, but the "
            f"model's attention maps have shapes {sorted({tuple(m.shape) for m in maps})} for "
            f"a batch of {x.shape[0]} (windowed attention, token pooling or merging?); use a "
            "model whose every attention layer sees all L tokens of each sample",
        )


def _check_cross(seen: _AttentionMaps, x: Tensor, method: str, follows_cross: bool) -> None:
    """Cross-attention is followed (``generic_attention``) from one decoder sequence to one
    encoder sequence of another length, the self-attention maps of each told by length."""
    pairs = {(m.shape[-2], m.shape[-1]) for m in seen.cross}
    shapes = sorted({tuple(m.shape) for m in seen.cross})
    (queries, keys), *others = pairs
    lengths = {m.shape[-1] for m in seen.maps}
    if not follows_cross:
        raise ArgumentError(
            "model",
            f"{method} follows self-attention over one token sequence, but the model also "
            f"computes cross-attention (maps of shapes {shapes}, B×H×Lq×Lk with keys from "
            "another sequence, as in an encoder-decoder or a bi-modal model), which "
            f"{method} is not defined for, so it would explain part of the model only; use "
            "method='generic_attention' (Chefer et al.'s encoder-decoder rules), explain the "
            "encoder alone (a model that runs only its self-attention layers), or use a "
            "method for any model (e.g. method='integrated_gradients')",
        )
    if others or queries == keys or not lengths <= {queries, keys} or any(
        m.shape[0] != x.shape[0] for m, _, _ in seen.calls
    ):
        raise ArgumentError(
            "model",
            f"{method} follows cross-attention from one decoder sequence to one encoder "
            "sequence of another length (the lengths tell which self-attention maps belong "
            f"to which), but the model's cross-attention maps have shapes {shapes} and its "
            f"self-attention maps lengths {sorted(lengths)} for a batch of {x.shape[0]} "
            "(decoder and encoder of equal length, several sequences, or attention both "
            "ways?); explain the encoder alone (a model that runs only its self-attention "
            "layers), or use a method for any model (e.g. method='integrated_gradients')",
        )


def _mean_with_residual(attention: Tensor) -> Tensor:
    """0.5·I + 0.5·Eₕ[A], rows renormalised: the attention with the skip connection."""
    mixed = 0.5 * attention.detach().mean(1) + 0.5 * torch.eye(
        attention.shape[-1], dtype=attention.dtype, device=attention.device
    )
    return mixed / mixed.sum(-1, keepdim=True)


@register_method("attention_rollout")
@dataclass(frozen=True, eq=False)
class AttentionRollout(_AttentionMethod):
    """Attention rollout (Abnar & Zuidema 2020): R = Āᴺ⋯Ā¹ with Ā = 0.5·I + 0.5·Eₕ[A].

    The relevance of token j is R[token, j]; each row of R sums to 1.

    Example:
        >>> import torch, pellucid
        >>> layer = torch.nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True)
        >>> model = torch.nn.Sequential(layer, torch.nn.Flatten(), torch.nn.Linear(12, 2)).eval()
        >>> e = pellucid.explain(model, torch.randn(2, 3, 4), 0, method="attention_rollout")
        >>> torch.allclose(e.extras["token_relevance"].sum(1), torch.ones(2))
        True
    """

    def token_relevance(
        self, task: Task, recorded: Forward, maps: list[Tensor], token: int
    ) -> Tensor:
        rollout = _mean_with_residual(maps[0])
        for attention in maps[1:]:
            rollout = _mean_with_residual(attention) @ rollout
        return rollout[:, token]


@register_method("attention_flow")
@dataclass(frozen=True, eq=False)
class AttentionFlow(_AttentionMethod):
    """Attention flow (Abnar & Zuidema 2020): the maximum flow from the query token after the
    last layer to each input token, capacities Ā = 0.5·I + 0.5·Eₕ[A], divided by their sum.

    Exact maximum flows (networkx's preflow-push, float capacities): L flows of a graph with
    (N+1)·L nodes and N·L² edges per sample, so it suits small models (seconds for 12 layers
    of 64 tokens). For one layer it equals rollout; for two, flow(j) ∝ Σᵢ min(Ā²[t,i], Ā¹[i,j]).

    Example:
        >>> import torch, pellucid
        >>> layer = torch.nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True)
        >>> model = torch.nn.Sequential(layer, torch.nn.Flatten(), torch.nn.Linear(12, 2)).eval()
        >>> e = pellucid.explain(model, torch.randn(2, 3, 4), 0, method="attention_flow")
        >>> e.attribution.shape
        torch.Size([2, 3, 4])
    """

    def token_relevance(
        self, task: Task, recorded: Forward, maps: list[Tensor], token: int
    ) -> Tensor:
        capacities = torch.stack([_mean_with_residual(m) for m in maps], 1)  # B×N×L×L
        flows = torch.tensor(
            [_max_flows(sample, token) for sample in capacities.double().cpu().numpy()],
            dtype=torch.float64,
        )
        return (flows / flows.sum(1, keepdim=True)).to(capacities.device)


def _max_flows(capacities: Any, token: int) -> list[float]:
    """The maximum flow from node (N, token) to each node (0, j) of the layered graph whose
    edge (l, i) → (l−1, j) has capacity ``capacities[l−1][i, j]`` (an N×L×L array)."""
    import networkx as nx  # installed with torch; imported only by this method

    layers, tokens, _ = capacities.shape
    graph = nx.DiGraph()
    for layer in range(layers):
        for i in range(tokens):
            for j in range(tokens):
                if capacities[layer, i, j] > 0:
                    graph.add_edge((layer + 1, i), (layer, j),
                                   capacity=float(capacities[layer, i, j]))
    source = (layers, token)
    return [nx.maximum_flow_value(graph, source, (0, j)) for j in range(tokens)]


@register_method("generic_attention")
@dataclass(frozen=True, eq=False)
class GenericAttention(_AttentionMethod):
    """Gradient-weighted attention relevancy (Chefer, Gur & Wolf 2021, "Generic
    attention-model explainability"): R = I, then R ← R + Ā·R per layer in forward order,
    with Ā = Eₕ[(∂y/∂A ⊙ A)⁺]; the relevance of token j is R[token, j].

    With cross-attention (an encoder-decoder), their encoder-decoder rules: encoder
    self-attention updates Rᵉᵉ, decoder self-attention Rᵈᵈ and Rᵈᵉ, cross-attention
    Rᵈᵉ ← Rᵈᵉ + (R̄ᵈᵈ)ᵀ·Ā·R̄ᵉᵉ (R̄ = I + (R − I) with rows summing to 1); the relevance of
    encoder token j for decoder token ``token`` is Rᵈᵉ[token, j].

    Example:
        >>> import torch, pellucid
        >>> layer = torch.nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True)
        >>> model = torch.nn.Sequential(layer, torch.nn.Flatten(), torch.nn.Linear(12, 2)).eval()
        >>> e = pellucid.explain(model, torch.randn(2, 3, 4), 0, method="generic_attention")
        >>> bool((e.extras["token_relevance"] >= 0).all())
        True
    """

    needs_gradient = True
    follows_cross = True

    def token_relevance(
        self, task: Task, recorded: Forward, maps: list[Tensor], token: int
    ) -> Tensor:
        calls = recorded.state.calls
        with torch.enable_grad():
            scores = task.target.score(recorded.output)
            require_graph(scores)
            grads = torch.autograd.grad(scores.sum(), [n for _, n, _ in calls], allow_unused=True)
        cross = recorded.state.cross
        first = (cross or maps)[0]
        decoder, encoder = first.shape[-2:]
        options = {"dtype": first.dtype, "device": first.device}
        r_ee, r_dd = torch.eye(encoder, **options), torch.eye(decoder, **options)
        r_de = torch.zeros(decoder, encoder, **options)
        for (attention, _, is_cross), grad in zip(calls, grads, strict=True):
            if grad is None:  # a map the score does not depend on adds nothing
                continue
            check_finite_values(grad, self.name, "gradients", "an attention map")
            weighted = (grad.reshape(attention.shape) * attention.detach()).clamp_min(0).mean(1)
            if is_cross:
                r_de = r_de + _normalised(r_dd).mT @ weighted @ _normalised(r_ee)
            elif attention.shape[-1] == encoder:
                r_ee = r_ee + weighted @ r_ee
            else:
                r_dd, r_de = r_dd + weighted @ r_dd, r_de + weighted @ r_de
        relevance = r_de if cross else r_ee
        return relevance.expand(first.shape[0], -1, -1)[:, token]


def _normalised(relevance: Tensor) -> Tensor:
    """R̄ = I + (R − I) with rows scaled to sum 1 (rows of R − I that are 0 stay 0): the
    self-attention relevancy without the weight of the skip connection (Chefer et al. 2021,
    eqs. 8–9)."""
    eye = torch.eye(relevance.shape[-1], dtype=relevance.dtype, device=relevance.device)
    mixed = relevance - eye
    total = mixed.sum(-1, keepdim=True)
    return torch.where(total > 0, mixed / torch.where(total > 0, total, 1), 0) + eye


def tokens_to_inputs(
    relevance: Tensor, x: Tensor, method: str, *, channels_first: bool = False
) -> Tensor:
    """Token relevance (B, L) as an attribution with the shape of ``x``.

    - ``x`` B×L×D (embeddings): token j's relevance repeated over its D features; B×D×L
      with ``channels_first`` (token ids, explained at their embeddings channels-first by
      :mod:`pellucid.layer_inputs`).
    - ``x`` B×C×H×W (an image ViT): the last P tokens are the patches of a gh×gw grid
      (P = gh·gw, the tokens before them CLS, distillation or register tokens, fewer
      than P, which are dropped); the patches are square, p×p with p dividing H and W, and
      the smallest such p (the most patches) is taken. Each patch's relevance is put on its
      p×p pixels and repeated over the C channels.

    Example:
        >>> import torch
        >>> r = torch.tensor([[9.0, 1.0, 2.0, 3.0, 4.0]])  # CLS, then a 2×2 grid of patches
        >>> tokens_to_inputs(r, torch.zeros(1, 3, 4, 4), "attention_rollout")[0, 0]
        tensor([[1., 1., 2., 2.],
                [1., 1., 2., 2.],
                [3., 3., 4., 4.],
                [3., 3., 4., 4.]])
    """
    tokens = relevance.shape[1]
    if channels_first and x.ndim == 3 and x.shape[2] == tokens:
        return relevance.unsqueeze(1).expand_as(x).contiguous()
    if not channels_first and x.ndim == 3 and x.shape[1] == tokens:
        return relevance.unsqueeze(-1).expand_as(x).contiguous()
    if x.ndim == 4:
        height, width = x.shape[2:]
        grid = _patch_grid(tokens, height, width)
        if grid is not None:
            rows, cols, patch = grid
            maps = relevance[:, tokens - rows * cols:].reshape(-1, 1, rows, cols)
            pixels = maps.repeat_interleave(patch, 2).repeat_interleave(patch, 3)
            return pixels.expand_as(x).contiguous()
    raise ArgumentError(
        "inputs",
        f"{method} found attention over {tokens} tokens, which it cannot place on inputs of "
        f"shape {tuple(x.shape)}: it takes embeddings B×L×D with L = {tokens}, or images "
        f"B×C×H×W cut into a grid of square patches whose side divides H and W (the last gh·gw "
        f"of the {tokens} tokens, fewer prefix tokens than patches); "
        "pass the inputs in one of these forms",
    )


def _patch_grid(tokens: int, height: int, width: int) -> tuple[int, int, int] | None:
    """(gh, gw, p): the grid of square p×p patches (p dividing H and W) with the most patches
    gh·gw ≤ ``tokens`` that leaves fewer prefix tokens than patches; None if there is none."""
    for patch in range(1, min(height, width) + 1):
        rows, cols = height // patch, width // patch
        if height % patch == 0 and width % patch == 0 and tokens - rows * cols in range(
            rows * cols
        ):
            return rows, cols, patch
    return None


__all__ = ["AttentionFlow", "AttentionRollout", "GenericAttention", "attention_maps",
           "tokens_to_inputs"]
