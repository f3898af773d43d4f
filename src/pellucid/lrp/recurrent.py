"""Recurrent layers in the rule engine: ``nn.LSTM``, ``nn.GRU`` and ``nn.RNN``.

Each runs as one fused torch call (``torch._VF.lstm``, ``gru``, ``rnn_tanh``, ``rnn_relu``),
recorded as one op of kind ``recurrent``. Its rule, :class:`Recurrent`, decomposes the call
into its cells and gates: the gates are recomputed from the recorded inputs and the layer's
weights (batched over samples, one step at a time) and relevance goes back through time by
the LSTM-LRP rules of Arras et al. 2017 ("Explaining recurrent neural network predictions in
sentiment analysis"):

- linear maps ``z = W [x_t; h_{t-1}] + b`` by the composite's rule for the layer (or
  ``Recurrent.layer``);
- a sigmoid gate times a signal (``o ⊙ tanh(c)``, ``f ⊙ c``, ``i ⊙ g``, ``z ⊙ h``,
  ``r ⊙ (W_hn h + b_hn)``): signal-takes-all, the gate gets nothing;
- sums (``c_t = f ⊙ c_{t-1} + i ⊙ g``, the GRU's ``(1 − z) ⊙ n + z ⊙ h``): the proportional
  rule R_a = a / (a + b ± ε) · R;
- element-wise tanh / ReLU: relevance passes unchanged.

This equals the rule engine run on the same cell written out in plain torch ops, step by step
(``tests/test_lrp_recurrent.py`` checks it). Initial states that depend on the input receive
their share (it flows back to where they were computed); constant ones absorb it, as a bias.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ArgumentTypeError, ModelError, UnsupportedModelError
from .linear_maps import Affine
from .op import Op
from .rules import Epsilon, Rule, _check_epsilon, ratio
from .tape import Node

#: the fused recurrent calls, by name, and their number of gate blocks in a weight matrix
CELLS = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
#: the rule of the linear maps inside the cells where neither ``Recurrent.layer`` nor the
#: composite names one
DEFAULT_LAYER = Epsilon(1e-6)


@dataclass(frozen=True)
class Recurrent(Rule):
    """LSTM-LRP (Arras et al. 2017) for ``nn.LSTM``, ``nn.GRU`` and ``nn.RNN``.

    ``layer``: the rule of the linear maps inside the cells (any rule with a ``layer``
    handler); None (the default): the composite's rule for this layer, chosen when the plan
    is built like any layer's (selectors by name, module class, ``LINEAR``, then
    ``default``; LRP-ε with ε = 1e-6 where the composite names none). ``epsilon``: the
    stabiliser of the proportional rule at the cell-state sum and of the signal-takes-all
    gates.

    >>> import torch, pellucid
    >>> lstm = torch.nn.LSTM(3, 4, batch_first=True)
    >>> last = lambda out: out[0][:, -1]  # the output at the last step
    >>> e = pellucid.explain(lstm, torch.randn(2, 5, 3), method="lrp", output=last, target=0)
    >>> e.attribution.shape
    torch.Size([2, 5, 3])
    """

    layer: Rule | None = None
    epsilon: float = 1e-9

    def __post_init__(self) -> None:
        if self.layer is not None and (not isinstance(self.layer, Rule)
                                       or not self.layer.handles("layer")):
            raise ArgumentTypeError(
                "layer",
                f"Recurrent's layer must be a rule for linear layers (e.g. Epsilon(1e-6), "
                f"Gamma(0.25)), got {self.layer!r}",
            )
        object.__setattr__(self, "epsilon", _check_epsilon(self.epsilon, "Recurrent"))

    def recurrent(self, op: Op, messages: list[Tensor | None]) -> list[Tensor | None]:
        """Relevance at the inputs (sequence, and initial states that depend on the input)
        from the relevance at the outputs (output sequence, final h, final c)."""
        return propagate_recurrent(op, messages, self)


def batch_dims(node: Node) -> list[int]:
    """The batch dimension of each input-dependent input of a recorded recurrent call: the
    sequence's is 0 with ``batch_first`` and 1 without; the initial states' (h0, c0) is 1.

    >>> import torch
    >>> from pellucid.lrp.tape import record
    >>> lstm = torch.nn.LSTM(3, 4)  # batch_first=False: x is (T, B, 3)
    >>> recorder, _ = record(lstm, lambda x: lstm(x)[0], torch.randn(5, 2, 3))
    >>> batch_dims(recorder.nodes[-1])
    [1]
    """
    x, batch_first = node.arg(0, "input"), bool(node.arg(8, "batch_first"))
    return [0 if node.leaves[pos] is x and batch_first else 1 for pos, _, _ in node.inputs]


@dataclass
class _Call:
    """A recorded fused recurrent call, read from its arguments."""

    cell: str
    x: Tensor  # (B, T, I), batch first
    h0: Tensor  # (layers·directions, B, H)
    c0: Tensor | None
    #: (w_ih, w_hh, b_ih, b_hh) per layer and direction
    weights: list[tuple[Tensor, Tensor, Tensor | None, Tensor | None]]
    layers: int
    directions: int
    batch_first: bool


def _read_call(op: Op) -> _Call:
    node = op.node
    hx = node.arg(1, "hx")
    if isinstance(hx, Tensor) and not hx.is_floating_point():
        raise UnsupportedModelError(
            "model",
            f"the model's {node.where()} runs on a PackedSequence, which pellucid.lrp's rule "
            "for recurrent layers does not support; pass the padded batch to the recurrent "
            "layer instead of pack_padded_sequence(...) and read each sequence's output at "
            "its own length",
        )
    params, has_bias = node.arg(2, "params"), bool(node.arg(3, "has_biases"))
    layers, dropout, train = node.arg(4, "num_layers"), node.arg(5, "dropout"), node.arg(6, "train")
    directions = 2 if node.arg(7, "bidirectional") else 1
    if train and dropout > 0 and layers > 1:
        raise ModelError(
            "model",
            f"the model's {node.where()} applies dropout between its layers (train mode), "
            "so it draws random masks; call model.eval() before explaining it",
        )
    per = 4 if has_bias else 2
    if len(params) != layers * directions * per:
        raise UnsupportedModelError(
            "model",
            f"the model's {node.where()} is an LSTM with proj_size > 0, which pellucid.lrp's "
            "rule for recurrent layers does not support; use proj_size=0 (or a Linear after it)",
        )
    weights = [
        (p[0], p[1], p[2], p[3]) if has_bias else (p[0], p[1], None, None)
        for p in (params[k:k + per] for k in range(0, len(params), per))
    ]
    x = node.arg(0, "input")
    batch_first = bool(node.arg(8, "batch_first"))
    h0, c0 = (hx[0], hx[1]) if node.name == "lstm" else (hx, None)
    return _Call(node.name, x if batch_first else x.transpose(0, 1), h0, c0, weights, layers,
                 directions, batch_first)


def propagate_recurrent(op: Op, messages: list[Tensor | None], rule: Recurrent
                        ) -> list[Tensor | None]:
    """The LSTM-LRP backward pass through a recorded fused recurrent call (see the module
    docstring): one message per input-dependent input of the call."""
    call = _read_call(op)
    node = op.node
    hidden = call.h0.shape[-1]
    out_seq, h_n = (_filled(m, o) for m, o in zip(messages[:2], node.outputs[:2]))
    c_n = _filled(messages[2], node.outputs[2]) if call.cell == "lstm" else None
    r_seq = out_seq if call.batch_first else out_seq.transpose(0, 1)  # (B, T, D·H)
    r_h0, r_c0 = torch.zeros_like(call.h0), None if call.c0 is None else torch.zeros_like(call.c0)
    inputs, runs = _run(call)
    for layer in reversed(range(call.layers)):
        r_x = torch.zeros_like(inputs[layer])
        for d in range(call.directions):
            k = layer * call.directions + d
            flip = _flip if d == 1 else _same
            r_out = flip(r_seq[..., d * hidden:(d + 1) * hidden])
            r_xd, r_h0[k], c_rel = _direction(
                call.cell, flip(inputs[layer]), runs[k], call.weights[k], r_out, h_n[k],
                None if c_n is None else c_n[k], rule, op,
            )
            r_x = r_x + flip(r_xd)
            if r_c0 is not None:
                r_c0[k] = c_rel
        r_seq = r_x
    r_input = r_seq if call.batch_first else r_seq.transpose(0, 1)
    found = {id(node.arg(0, "input")): r_input, id(call.h0): r_h0}
    if call.c0 is not None:
        found[id(call.c0)] = r_c0
    result: list[Tensor | None] = []
    for pos, _, _ in node.inputs:
        leaf = node.leaves[pos]
        if id(leaf) not in found:
            raise UnsupportedModelError(
                "model",
                f"a weight of the model's {node.where()} depends on the model's input; "
                "pellucid.lrp's rule for recurrent layers needs the layer's own parameters",
            )
        result.append(found[id(leaf)])
    return result


def _filled(message: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if message is None else message


def _flip(t: Tensor) -> Tensor:
    return t.flip(1)


def _same(t: Tensor) -> Tensor:
    return t


def _run(call: _Call) -> tuple[list[Tensor], list[dict[str, list]]]:
    """The input sequence of every layer (B, T, ·) and the saved steps of every layer and
    direction (in processing order), recomputed from the call's inputs and weights."""
    inputs, runs = [call.x], []
    for layer in range(call.layers):
        outs = []
        for d in range(call.directions):
            k = layer * call.directions + d
            flip = _flip if d == 1 else _same
            run = _forward(call.cell, flip(inputs[-1]), call.h0[k],
                           None if call.c0 is None else call.c0[k], call.weights[k])
            runs.append(run)
            outs.append(flip(torch.stack(run["h"][1:], 1)))
        inputs.append(torch.cat(outs, -1))
    return inputs, runs


def _forward(cell: str, x: Tensor, h: Tensor, c: Tensor | None,
             weights: tuple[Tensor, Tensor, Tensor | None, Tensor | None]) -> dict[str, list]:
    """One direction of one layer, step by step (batched over samples): the states and the
    intermediate values the rules need, per step."""
    w_ih, w_hh, b_ih, b_hh = weights
    xw = F.linear(x, w_ih, b_ih)  # all steps at once
    saved: dict[str, list] = {"h": [h], "c": [c], "z": [], "xw": [], "hw": [], "gates": []}
    for t in range(x.shape[1]):
        hw = F.linear(h, w_hh, b_hh)
        if cell == "lstm":
            z = xw[:, t] + hw
            i, f, g, o = z.chunk(4, 1)
            i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
            saved["gates"].append((f * c, i * g))
            c = f * c + i * g
            h = o * torch.tanh(c)
        elif cell == "gru":
            xr, xz, xn = xw[:, t].chunk(3, 1)
            hr, hz, hn = hw.chunk(3, 1)
            r, u = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            new = (1 - u) * torch.tanh(xn + r * hn)
            saved["gates"].append((r, u, xn, hn, new))
            h = new + u * h
        else:
            z = xw[:, t] + hw
            h = torch.tanh(z) if cell == "rnn_tanh" else torch.relu(z)
        saved["z"].append(xw[:, t] + hw)
        saved["xw"].append(xw[:, t])
        saved["hw"].append(hw)
        saved["h"].append(h)
        saved["c"].append(c)
    return saved


def _direction(cell: str, x: Tensor, saved: dict[str, list],
               weights: tuple[Tensor, Tensor, Tensor | None, Tensor | None], r_out: Tensor,
               r_h: Tensor, r_c: Tensor | None, rule: Recurrent, op: Op
               ) -> tuple[Tensor, Tensor, Tensor | None]:
    """Relevance through one direction of one layer, last step first: (R at the input
    sequence, R at h0, R at c0). ``x``, ``saved`` and ``r_out`` are in processing order."""
    eps = rule.epsilon
    w_ih, w_hh, b_ih, b_hh = weights
    size = x.shape[-1]
    blocks = CELLS[cell]
    joint_w = torch.cat([w_ih, w_hh], 1)
    joint_b = None if b_ih is None else b_ih + b_hh
    r_x = torch.zeros_like(x)

    def share(r: Tensor, total: Tensor) -> Tensor:
        return ratio(r, total, eps)

    def gated(product: Tensor, r: Tensor) -> Tensor:
        """Signal-takes-all at ``gate ⊙ signal``: R_signal = R · p / (p ± ε) (≈ R)."""
        return product * share(r, product)

    def through(v: Tensor, w: Tensor, b: Tensor | None, out: Tensor, r: Tensor,
                block: int) -> Tensor:
        """The layer rule at ``out = v wᵀ + b``, relevance ``r`` on gate block ``block``."""
        parts = [r if j == block else torch.zeros_like(r) for j in range(blocks)]
        aff = Affine("linear", v, w, b, out, F.linear, lambda s, w_: s @ w_)
        layer = DEFAULT_LAYER if rule.layer is None else rule.layer
        at_gate = Op(op.node, "layer", op.label, affine=aff, assumptions=op.assumptions)
        return layer.layer(at_gate, torch.cat(parts, 1))[0]

    for t in reversed(range(x.shape[1])):
        h_prev, r_h = saved["h"][t], r_h + r_out[:, t]
        if cell == "gru":
            r, u, xn, hn, new = saved["gates"][t]
            h = saved["h"][t + 1]
            kept = u * h_prev  # z ⊙ h_{t-1}: the gate gets nothing, h_{t-1} all
            r_new, r_kept = gated(new, new * share(r_h, h)), gated(kept, kept * share(r_h, h))
            a_n, r_hn = xn + r * hn, r * hn
            r_xn, r_rhn = xn * share(r_new, a_n), gated(r_hn, r_hn * share(r_new, a_n))
            r_x[:, t] = through(x[:, t], w_ih, b_ih, saved["xw"][t], r_xn, 2)
            r_h = r_kept + through(h_prev, w_hh, b_hh, saved["hw"][t], r_rhn, 2)
            continue
        if cell == "lstm":
            kept, new = saved["gates"][t]
            c = saved["c"][t + 1]
            # h = o ⊙ tanh(c): the gate o gets nothing, tanh(c) passes all to c
            r_c = r_c + gated(saved["h"][t + 1], r_h)
            r_z, r_c = gated(new, new * share(r_c, c)), gated(kept, kept * share(r_c, c))
            block = 2
        else:
            r_z, block = r_h, 0  # tanh / ReLU pass relevance unchanged
        joint = through(torch.cat([x[:, t], h_prev], 1), joint_w, joint_b, saved["z"][t],
                        r_z, block)
        r_x[:, t], r_h = joint[:, :size], joint[:, size:]
    return r_x, r_h, r_c
