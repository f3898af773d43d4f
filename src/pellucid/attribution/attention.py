"""Attention-specific methods: rollout, flow (Abnar & Zuidema 2020) and the generic
gradient-weighted relevancy of Chefer, Gur & Wolf (2021).

With Aˡ the attention maps (B×H×L×L, rows sum to 1) of the self-attention layers l = 1…N
in the order they run, and t the explained query token (``token``, default 0, the CLS
token):

- ``attention_rollout``: Āˡ = 0.5·I + 0.5·Eₕ[Aˡ] (rows renormalised),
  R = Āᴺ ⋯ Ā¹, relevance = R[t, :].
- ``attention_flow``: the maximum flow from token t after the last layer to each input
  token j through the layered graph whose edge (l, i) → (l−1, j) has capacity Āˡ[i, j];
  the flows are divided by their sum (as in the authors' code).
- ``generic_attention``: R = I, then for every layer R ← R + Āˡ·R with
  Āˡ = Eₕ[(∂y/∂Aˡ ⊙ Aˡ)⁺] (y the explained score); relevance = R[t, :].

The attention maps are read during the call's one forward pass, without touching the model:
a ``torch.overrides.TorchFunctionMode`` sees every softmax whose output is a square
B×(H×)L×L map over its last dimension (eager attention, ``nn.MultiheadAttention``), and
every ``F.scaled_dot_product_attention``, which it computes as softmax(q·kᵀ·scale + mask)·v
so that the map exists (and, for ``generic_attention``, is in the autograd graph).

The relevance of the L tokens becomes an attribution with the inputs' shape: inputs B×L×D
(embeddings) get each token's relevance repeated over D; images B×C×H×W (a ViT) get each
patch token's relevance on its patch's pixels, repeated over the channels, the prefix tokens
(CLS, distillation, registers) dropped (see :func:`tokens_to_inputs`).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

from ..checks import check_count
from ..errors import ArgumentError
from ..method import Method, register_method
from ..task import Forward, Task, require_graph
from .rows import check_finite_values

_SOFTMAX = (F.softmax, torch.softmax, Tensor.softmax, torch.special.softmax)
_MULTI_HEAD = inspect.signature(F.multi_head_attention_forward)


class _AttentionMaps(TorchFunctionMode):
    """Collect the self-attention maps computed while the mode is active.

    ``maps`` holds each map as B×H×L×L; ``nodes`` the tensor of the autograd graph it is a
    view of (the gradient w.r.t. the map is taken there).
    """

    def __init__(self) -> None:
        super().__init__()
        self.maps: list[Tensor] = []
        self.nodes: list[Tensor] = []

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

    def _keep(self, weights: Any, dim: Any, node: Tensor | None = None) -> None:
        if not isinstance(weights, Tensor) or weights.ndim not in (3, 4) or dim is None:
            return
        if dim % weights.ndim == weights.ndim - 1 and weights.shape[-1] == weights.shape[-2]:
            self.maps.append(weights if weights.ndim == 4 else weights.unsqueeze(1))
            self.nodes.append(weights if node is None else node)

    def _multi_head(self, *args: Any, **kwargs: Any) -> Any:
        """``nn.MultiheadAttention``'s fused function, asked for its per-head weights (the
        view of its softmax output, which is where the gradient is taken)."""
        call = _MULTI_HEAD.bind(*args, **kwargs)
        call.apply_defaults()
        wanted, average = call.arguments["need_weights"], call.arguments["average_attn_weights"]
        call.arguments.update(need_weights=True, average_attn_weights=False)
        out, weights = F.multi_head_attention_forward(*call.args, **call.kwargs)
        heads = weights if weights.ndim == 4 else weights.unsqueeze(0)
        self._keep(heads, -1, node=heads._base if heads._base is not None else heads)
        if not wanted:
            return out, None
        return out, weights.mean(-3) if average else weights

    def _attention(
        self, query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
        dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
        enable_gqa: bool = False,
    ) -> Tensor:
        """``F.scaled_dot_product_attention`` written out (its reference implementation)."""
        if enable_gqa:
            key = key.repeat_interleave(query.size(-3) // key.size(-3), -3)
            value = value.repeat_interleave(query.size(-3) // value.size(-3), -3)
        scale = query.size(-1) ** -0.5 if scale is None else scale
        logits = query @ key.transpose(-2, -1) * scale
        if is_causal:
            keep = torch.ones(logits.shape[-2:], dtype=torch.bool, device=logits.device).tril()
            logits = logits.masked_fill(~keep, float("-inf"))
        if attn_mask is not None:
            logits = (logits.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool
                      else logits + attn_mask)
        weights = torch.softmax(logits, dim=-1)
        self._keep(weights, -1)
        return F.dropout(weights, dropout_p, training=dropout_p > 0) @ value


@contextmanager
def attention_maps() -> Iterator[_AttentionMaps]:
    """Collect the self-attention maps computed in the block: ``.maps`` (B×H×L×L, in call
    order) and ``.nodes`` (the autograd-graph tensor each map is a view of).

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
    #: keep the maps in the autograd graph (the score's gradient w.r.t. each map is needed)
    needs_gradient: ClassVar[bool] = False

    def __post_init__(self) -> None:
        check_count(self.token, "token", "the index of the explained query token", minimum=0)

    def first_pass(self, task: Task, x: Tensor) -> Forward:
        """The call's first forward pass, with the attention maps it computes kept as state."""
        with torch.set_grad_enabled(self.needs_gradient), attention_maps() as seen:
            if self.needs_gradient:
                x.requires_grad_(True)
            output = task.output(x)
        _check_maps(seen.maps, x, self.name)
        return Forward(x, output, state=seen)

    def attribute(self, task: Task, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        recorded = task.first_forward_at(x) or self.first_pass(task, x)
        maps: list[Tensor] = recorded.state.maps
        tokens = maps[0].shape[-1]
        if self.token >= tokens:
            raise ArgumentError(
                "token",
                f"token={self.token} is not one of the {tokens} tokens the model attends over; "
                f"use a query token index in 0..{tokens - 1} (0 is the CLS token of BERT and ViT)",
            )
        relevance = self.token_relevance(task, recorded, maps).to(x.dtype)
        check_finite_values(relevance, self.name, "token relevance", "the attention maps")
        extras = {"token_relevance": relevance, "layers": len(maps)}
        return tokens_to_inputs(relevance, x, self.name), extras

    def token_relevance(self, task: Task, recorded: Forward, maps: list[Tensor]) -> Tensor:
        """The relevance (B, L) of every token for query token ``self.token``."""
        raise NotImplementedError


def _check_maps(maps: list[Tensor], x: Tensor, method: str) -> None:
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

    def token_relevance(self, task: Task, recorded: Forward, maps: list[Tensor]) -> Tensor:
        rollout = _mean_with_residual(maps[0])
        for attention in maps[1:]:
            rollout = _mean_with_residual(attention) @ rollout
        return rollout[:, self.token]


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

    def token_relevance(self, task: Task, recorded: Forward, maps: list[Tensor]) -> Tensor:
        capacities = torch.stack([_mean_with_residual(m) for m in maps], 1)  # B×N×L×L
        flows = torch.tensor(
            [_max_flows(sample, self.token) for sample in capacities.double().cpu().numpy()],
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

    Example:
        >>> import torch, pellucid
        >>> layer = torch.nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True)
        >>> model = torch.nn.Sequential(layer, torch.nn.Flatten(), torch.nn.Linear(12, 2)).eval()
        >>> e = pellucid.explain(model, torch.randn(2, 3, 4), 0, method="generic_attention")
        >>> bool((e.extras["token_relevance"] >= 0).all())
        True
    """

    needs_gradient = True

    def token_relevance(self, task: Task, recorded: Forward, maps: list[Tensor]) -> Tensor:
        with torch.enable_grad():
            scores = task.target.score(recorded.output)
            require_graph(scores)
            nodes = recorded.state.nodes
            grads = torch.autograd.grad(scores.sum(), nodes, allow_unused=True)
        eye = torch.eye(maps[0].shape[-1], dtype=maps[0].dtype, device=maps[0].device)
        relevance = eye.expand(maps[0].shape[0], -1, -1)
        for attention, grad in zip(maps, grads, strict=True):
            if grad is None:  # a map the score does not depend on adds nothing
                continue
            check_finite_values(grad, self.name, "gradients", "an attention map")
            weighted = (grad.reshape(attention.shape) * attention.detach()).clamp_min(0).mean(1)
            relevance = relevance + weighted @ relevance
        return relevance[:, self.token]


def tokens_to_inputs(relevance: Tensor, x: Tensor, method: str) -> Tensor:
    """Token relevance (B, L) as an attribution with the shape of ``x``.

    - ``x`` B×L×D (embeddings): token j's relevance repeated over its D features.
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
    if x.ndim == 3 and x.shape[1] == tokens:
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
