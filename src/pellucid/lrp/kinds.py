"""Op kinds: what a recorded call is, each defined once in the registry :data:`KINDS`.

An :class:`OpKind` says how to recognise the kind from a recorded call, which method of a
:class:`~.rules.Rule` handles it, and its default rule (the rule of every relevance method
unless a composite says otherwise). A composite chooses rules by kind name
(``Composite(ops={"linear": Epsilon(0.5)})``). Adding a rule for a new op is one
:func:`register_kind` here, a method of that name on the rules that handle it, and its test.

The kinds, in the order they are tried (the first that recognises a call wins):

- ``layer``: a convolution of any dimension (also transposed), ``F.linear`` or
  ``torch.addmm(bias, x, weight)`` (Hugging Face's ``Conv1D``), with weights;
  a BatchNorm that no such layer feeds is a ``layer`` too (a per-channel scale and shift).
- ``norm``: ``F.layer_norm`` and ``F.group_norm``, linearised with the normaliser constant.
- ``activation``: element-wise non-linearities (ReLU family, GELU, SiLU, ELU, tanh, ...).
- ``maxpool``: max pooling of any dimension, adaptive or not.
- ``shape``: cat, split, reshape, flatten, permute, indexing, padding, dropout in eval mode:
  they only move values, so messages go back by the op's own vector-Jacobian product and
  no rule is chosen.
- ``linear``: parameter-free linear ops: sums of input-dependent tensors (``+``, ``+=``,
  ``torch.add``, ``sum``, ``-``), means, average pooling, interpolation, and products or
  quotients with a constant (e.g. layer scale) or matrix products with a constant matrix.
- ``gate``: an element-wise product of a gate and a signal, a quotient by an
  input-dependent normaliser, attention weights times values (``softmax(q kᵀ) @ v``; the tape
  records ``F.scaled_dot_product_attention`` as the ops it fuses); see
  :func:`.calls.gate_signal`.
- ``softmax``: ``softmax`` along any dimension (attention weights; AttnLRP's linearisation).
- ``product``: a product of two input-dependent tensors that is no gate × signal product:
  a matrix product (``@``, ``matmul``, ``bmm``, ``einsum``), e.g. ``q @ k.transpose(-1, -2)``,
  or an element-wise one (SwiGLU's ``silu(gate(x)) * up(x)``, ``h * h``).
- ``exp``: the element-wise exponential (handled by the ``activation`` method).
- ``recurrent``: the fused calls of ``nn.LSTM``, ``nn.GRU`` and ``nn.RNN``, decomposed into
  cells and gates by their rule (LSTM-LRP, Arras et al. 2017; see :mod:`.recurrent`).
- ``other``: everything else; an error names it if relevance reaches it without a rule.

``softmax``, ``product`` and ``exp`` have no relevance rule by default (:class:`~.rules.NoRule`:
relevance reaching them is an error naming the composites that give them one,
``pellucid.lrp.composites.attnlrp()`` and ``cp_lrp()``); gradient-type methods take the chain
rule there.

Two structural kinds are not in the registry: ``input`` (the root of the tape) and ``pass``
(a BatchNorm folded into the layer that feeds it, see :mod:`.canonical`), which
:func:`classify` gives as ``batch_norm`` until then.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from ..checks import check_choice
from .calls import (
    ACTIVATIONS,
    CONVOLUTIONS,
    DROPOUTS,
    EXPS,
    MATMULS,
    MAXPOOLS,
    NORMS,
    PRODUCTS,
    QUOTIENTS,
    RECURRENTS,
    SHAPES,
    SOFTMAXES,
    SUMS,
    gate_signal,
    is_signal_product,
    tracked_positions,
)
from .linear_maps import linearised_norm
from .recurrent import Recurrent, batch_dims
from .rules import Epsilon, NoRule, Pass, Rule, SignalTakesAll, WinnerTakeAll
from .tape import MAXPOOL_FUNCS, Node

#: structural kinds outside the registry
INPUT, PASS, BATCH_NORM = "input", "pass", "batch_norm"


@dataclass(frozen=True)
class OpKind:
    """One kind of op: how it is recognised, which rule method handles it, its default rule.

    ``handler``: the name of the :class:`~.rules.Rule` method that takes the op and the
    message at its output (or, with ``all_outputs``, the list of messages at all its outputs,
    None where none arrived) and returns one message per input-dependent input; None for
    ``shape``, whose messages go back by the op's own vector-Jacobian product.
    ``default``: the rule of every relevance method (None: relevance reaching such an op is
    an error unless a composite gives it a rule). ``linearise``: for an op that is linear
    once something is held constant, that linear map (``op.linear_vjp`` uses it).
    ``reported``: the total message arriving at its input appears in ``layer_relevance``.
    ``batch_dims``: the batch dimension of each input-dependent input's message (None: 0).
    ``absorbs``: its rule need not conserve (the softmax's Taylor bias); what it takes out of
    the flow (Σ message at the output − Σ messages at the inputs) is reported in ``absorbed``.
    """

    name: str
    recognise: Callable[[Node], bool]
    handler: str | None
    default: Rule | None
    all_outputs: bool = False
    linearise: Callable[[Node], Callable[[Tensor], Tensor]] | None = None
    reported: bool = False
    batch_dims: Callable[[Node], list[int]] | None = None
    absorbs: bool = False


#: every op kind, by name, in the order they are tried
KINDS: dict[str, OpKind] = {}


def register_kind(kind: OpKind, *, before: str | None = None) -> OpKind:
    """Add ``kind`` to :data:`KINDS` (tried before the kind ``before``, or last).

    >>> from pellucid.lrp.kinds import KINDS
    >>> list(KINDS)[:3]
    ['layer', 'norm', 'activation']
    """
    items = [(k, v) for k, v in KINDS.items() if k != kind.name]
    names = [k for k, _ in items]
    at = len(items) if before is None else names.index(check_choice(before, "before", names))
    items.insert(at, (kind.name, kind))
    KINDS.clear()
    KINDS.update(items)
    return kind


def rule_kinds() -> list[str]:
    """The names of the kinds a composite gives rules to (those with a handler)."""
    return [name for name, kind in KINDS.items() if kind.handler is not None]


def check_kind_name(name: object, argument: str = "ops") -> str:
    """``name`` must name a kind that takes rules (an :class:`UnknownNameError` suggests the
    closest names)."""
    return check_choice(name, argument, rule_kinds(),
                        "the op kinds a composite gives rules to (see docs/lrp.md)")


def classify(node: Node) -> str:
    """The kind of a recorded call: the first registered kind that recognises it, or
    ``input`` / ``batch_norm`` (resolved in :mod:`.canonical`)."""
    if node.func is None:
        return INPUT
    if node.name == "batch_norm":
        return BATCH_NORM
    return next(name for name, kind in KINDS.items() if kind.recognise(node))


def _is_layer(node: Node) -> bool:
    # a layer whose weights depend on the input (dynamic filters) has no layer rule
    if node.name == "addmm":  # bias + x @ weight (Hugging Face's Conv1D, GPT-2)
        _, kwargs = node.call_args()
        unscaled = kwargs.get("beta", 1) == kwargs.get("alpha", 1) == 1
        return tracked_positions(node) == [1] and unscaled
    return (node.name in CONVOLUTIONS or node.name == "linear") and tracked_positions(node) == [0]


def _is_shape(node: Node) -> bool:
    if node.name in DROPOUTS and bool(node.arg(2, "training", True)):
        return False  # random masks: the model is in train mode
    return node.name in SHAPES


def _is_linear(node: Node) -> bool:
    if node.name in SUMS:
        return True
    if node.name in PRODUCTS or node.name in MATMULS:
        return len(node.inputs) == 1
    return node.name in QUOTIENTS and tracked_positions(node) == [0]


for _kind in (
    OpKind("layer", _is_layer, "layer", Epsilon(1e-6), reported=True),
    OpKind("norm", lambda n: n.name in NORMS, "linear", Epsilon(1e-6),
           linearise=linearised_norm, reported=True),
    OpKind("activation", lambda n: n.name in ACTIVATIONS, "activation", Pass()),
    OpKind("maxpool", lambda n: n.name in MAXPOOLS or n.func in MAXPOOL_FUNCS, "maxpool",
           WinnerTakeAll()),
    OpKind("shape", _is_shape, None, None),
    OpKind("linear", _is_linear, "linear", Epsilon(1e-9)),
    OpKind("gate", lambda n: gate_signal(n) is not None, "gate", SignalTakesAll()),
    OpKind("softmax", lambda n: n.name in SOFTMAXES and len(n.inputs) == 1, "softmax",
           NoRule(), absorbs=True),
    OpKind("product", is_signal_product, "product", NoRule()),
    OpKind("exp", lambda n: n.name in EXPS, "activation", NoRule()),
    OpKind("recurrent", lambda n: n.name in RECURRENTS, "recurrent", Recurrent(),
           all_outputs=True, reported=True, batch_dims=batch_dims),
    OpKind("other", lambda n: True, "other", None, all_outputs=True),
):
    register_kind(_kind)
