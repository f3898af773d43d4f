"""nn.LSTM, nn.GRU and nn.RNN in the rule engine (LSTM-LRP, Arras et al. 2017).

The closed form: the same cells written out in plain torch ops (linear maps, sigmoid gates
times signals, sums, tanh), which the engine already handles op by op, must give the SAME
relevance as the fused module, whose rule decomposes the one recorded call. Conservation
with every bias zero: Σ relevance at the input (initial states included) = the logit.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import pellucid
from pellucid.errors import ArgumentError, ArgumentTypeError, ModelError, UnsupportedModelError
from pellucid.lrp import Composite, Epsilon, Pass, Zero
from pellucid.lrp.engine import per_sample_total
from pellucid.lrp.recurrent import Recurrent

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn_tanh": nn.RNN, "rnn_relu": nn.RNN}
#: (layers, bidirectional, batch_first, initial states computed from the input)
CONFIGS = [(1, False, True, False), (2, True, False, False), (2, True, True, True),
           (1, False, False, True)]
INPUT, HIDDEN, STEPS, CLASSES = 3, 4, 5, 3


def _cell(kind: str, x: Tensor, h: Tensor, c: Tensor | None, w_ih: Tensor, w_hh: Tensor,
          b_ih: Tensor, b_hh: Tensor) -> tuple[Tensor, Tensor | None]:
    """One step of the cell in plain torch ops, as Arras et al. 2017 write it."""
    if kind == "gru":
        xr, xz, xn = F.linear(x, w_ih, b_ih).chunk(3, 1)
        hr, hz, hn = F.linear(h, w_hh, b_hh).chunk(3, 1)
        r, a_z = torch.sigmoid(xr + hr), xz + hz
        n = torch.tanh(xn + r * hn)
        return torch.sigmoid(-a_z) * n + torch.sigmoid(a_z) * h, None  # σ(−a) = 1 − σ(a)
    z = F.linear(torch.cat([x, h], 1), torch.cat([w_ih, w_hh], 1), b_ih + b_hh)
    if kind == "lstm":
        i, f, g, o = z.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    return (torch.tanh(z) if kind == "rnn_tanh" else torch.relu(z)), None


def unrolled(rnn: nn.RNNBase, seq: Tensor, hx: object = None) -> tuple[Tensor, object]:
    """``rnn(seq, hx)`` written out step by step in plain torch ops.

    Without ``hx`` the initial states are zeros computed from the input, so that the GRU's
    ``r ⊙ (W_hn h + b_hn)`` at the first step is a gate times a signal (the bias, absorbed at
    h0), as in the fused rule, not a gate times a constant (which would pass to the gate)."""
    kind = "lstm" if isinstance(rnn, nn.LSTM) else "gru" if isinstance(rnn, nn.GRU) else (
        "rnn_tanh" if rnn.nonlinearity == "tanh" else "rnn_relu")
    x = seq if rnn.batch_first else seq.transpose(0, 1)
    dirs = 2 if rnn.bidirectional else 1
    shape = (rnn.num_layers * dirs, x.shape[0], rnn.hidden_size)
    zeros = (x[:, 0, :1] * 0).unsqueeze(0).expand(shape)
    h0, c0 = (hx if hx is not None else (zeros, zeros)) if kind == "lstm" else (
        hx if hx is not None else zeros, None)
    finals_h, finals_c = [], []
    for layer in range(rnn.num_layers):
        outs = []
        for d in range(dirs):
            k, suffix = layer * dirs + d, f"_l{layer}" + ("_reverse" if d else "")
            w = [getattr(rnn, f"{n}{suffix}") for n in ("weight_ih", "weight_hh", "bias_ih",
                                                         "bias_hh")]
            h, c = h0[k], None if c0 is None else c0[k]
            steps = x.flip(1) if d else x
            hs = []
            for t in range(steps.shape[1]):
                h, c = _cell(kind, steps[:, t], h, c, *w)
                hs.append(h)
            out = torch.stack(hs, 1)
            outs.append(out.flip(1) if d else out)
            finals_h.append(h)
            finals_c.append(c)
        x = torch.cat(outs, -1)
    out = x if rnn.batch_first else x.transpose(0, 1)
    h_n = torch.stack(finals_h, 0)
    return out, ((h_n, torch.stack(finals_c, 0)) if kind == "lstm" else h_n)


class Classifier(nn.Module):
    """A recurrent layer and a linear head on the mean output, the final h (and c)."""

    def __init__(self, kind: str, layers: int = 1, bidirectional: bool = False,
                 batch_first: bool = True, states: bool = False, unroll: bool = False) -> None:
        super().__init__()
        extra = {"nonlinearity": kind[4:]} if kind.startswith("rnn") else {}
        self.rnn = CELLS[kind](INPUT, HIDDEN, num_layers=layers, bidirectional=bidirectional,
                               batch_first=batch_first, **extra)
        self.lstm, self.unroll = kind == "lstm", unroll
        dirs = 2 if bidirectional else 1
        self.n_states = layers * dirs * (2 if self.lstm else 1)
        self.init = nn.Linear(INPUT, self.n_states * HIDDEN) if states else None
        self.head = nn.Linear(HIDDEN * dirs + HIDDEN * (2 if self.lstm else 1), CLASSES)

    def forward(self, x: Tensor) -> Tensor:  # x: (B, T, INPUT)
        seq = x if self.rnn.batch_first else x.transpose(0, 1)
        hx = None
        if self.init is not None:
            s = self.init(x[:, 0]).reshape(x.shape[0], self.n_states, HIDDEN).transpose(0, 1)
            h0, c0 = s.chunk(2, 0) if self.lstm else (s, None)
            hx = (h0, c0) if self.lstm else h0
        out, states = (unrolled if self.unroll else nn.Module.__call__)(self.rnn, seq, hx)
        out = out if self.rnn.batch_first else out.transpose(0, 1)
        finals = [states[0][-1], states[1][-1]] if self.lstm else [states[-1]]
        return self.head(torch.cat([out.mean(1), *finals], 1))


def pair(kind: str, *config: bool | int, biases: bool = True, seed: int = 0
         ) -> tuple[Classifier, Classifier]:
    """(the fused model, the same model unrolled), float64, eval mode."""
    torch.manual_seed(seed)
    fused = Classifier(kind, *config).double().eval()
    if not biases:
        with torch.no_grad():
            for name, p in fused.named_parameters():
                if "bias" in name:
                    p.zero_()
    plain = Classifier(kind, *config, unroll=True).double().eval()
    plain.load_state_dict(fused.state_dict())
    return fused, plain


def lrp(model: nn.Module, x: Tensor, **settings: object) -> pellucid.Explanation:
    return pellucid.explain(model, x, method="lrp", target=1, **settings)


def sequences(n: int = 4, seed: int = 1) -> Tensor:
    return torch.randn(n, STEPS, INPUT, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("kind", list(CELLS))
def test_fused_equals_hand_unrolled_cell(kind: str, config: tuple) -> None:
    fused, plain = pair(kind, *config)
    x = sequences()
    torch.testing.assert_close(fused(x), plain(x))
    ours, reference = lrp(fused, x), lrp(plain, x)
    assert reference.attribution.abs().sum() > 0
    torch.testing.assert_close(ours.attribution, reference.attribution, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("kind", list(CELLS))
def test_conservation_without_biases(kind: str, config: tuple) -> None:
    fused, _ = pair(kind, *config, biases=False)
    x = sequences(6)
    logit = fused(x)[:, 1].detach()
    # LRP-0 in every linear map (ε = 1e-9 only at sums and gates): Σ R = logit
    zero = Composite(default=Zero(), ops={"recurrent": Recurrent(layer=Zero())})
    e = lrp(fused, x, composite=zero)
    torch.testing.assert_close(e.attribution.sum((1, 2)), logit, rtol=1e-5, atol=1e-9)
    if config[3]:  # states computed from the input: their share arrives at `init`
        assert bool((e.extras["layer_relevance"]["init"].abs() > 1e-6).all())
    # the default LRP-ε (ε = 1e-6) loses a little at small pre-activations (measured ≤ 2e-3)
    default = lrp(fused, x).attribution.sum((1, 2))
    torch.testing.assert_close(default, logit, rtol=5e-3, atol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_composite_layer_rule_applies_inside(kind: str) -> None:
    # lrp.epsilon(0.25): ε = 0.25 in the cells' linear maps too, as on the unrolled cell
    fused, plain = pair(kind, 2, True, False, True)
    x = sequences()
    composite = pellucid.lrp.composites.epsilon(0.25)
    ours = lrp(fused, x, composite=composite).attribution
    torch.testing.assert_close(ours, lrp(plain, x, composite=composite).attribution,
                               rtol=1e-6, atol=1e-9)
    default = lrp(fused, x, composite=pellucid.lrp.composites.epsilon()).attribution
    assert not torch.allclose(ours, default)
    # selected like a linear layer: by module class (the head keeps the default)
    by_class = Composite({nn.LSTM if kind == "lstm" else nn.GRU: Epsilon(0.25)},
                         default=Epsilon(1e-6), base=pellucid.lrp.composites.RELEVANCE)
    inside = Composite({"head": Epsilon(1e-6), "init": Epsilon(1e-6)}, default=Epsilon(0.25))
    torch.testing.assert_close(lrp(fused, x, composite=by_class).attribution,
                               lrp(plain, x, composite=inside).attribution, rtol=1e-6, atol=1e-9)


def test_composite_without_a_layer_rule_inside_is_refused() -> None:
    fused, _ = pair("lstm")
    bad = Composite({nn.LSTM: Pass()}, default=Epsilon(1e-6),
                    base=pellucid.lrp.composites.RELEVANCE)
    with pytest.raises(ArgumentError, match="composite") as info:
        lrp(fused, sequences(), composite=bad)
    assert info.value.argument == "composite"


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("kind", list(CELLS))
def test_layer_relevance_reports_the_input_and_initial_states(kind: str, config: tuple) -> None:
    # biases zero, LRP-0: the share of the sequence + that of the initial states (batch at
    # dim 1, the sequence's too without batch_first) = the relevance at the layer's outputs
    fused, _ = pair(kind, *config, biases=False)
    x = sequences(2)  # B = 2 ≠ T = 5
    zero = Composite(default=Zero(), ops={"recurrent": Recurrent(layer=Zero())},
                     base=pellucid.lrp.composites.RELEVANCE)
    totals = lrp(fused, x, composite=zero).extras["layer_relevance"]
    torch.testing.assert_close(totals["rnn"], totals["head"], rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(totals["rnn"], totals["output"], rtol=1e-6, atol=1e-9)
    if config[3]:  # the states' share is part of it and arrives at `init`
        assert bool((totals["init"].abs() > 1e-6).all())


def test_per_sample_total_sums_all_but_the_batch_dimension() -> None:
    t = torch.arange(24.0).reshape(2, 3, 4)
    torch.testing.assert_close(per_sample_total(t, 1), t.sum((0, 2)))
    torch.testing.assert_close(per_sample_total(t), t.sum((1, 2)))


def test_layer_rule_inside_is_chosen_by_recurrent() -> None:
    fused, plain = pair("lstm", 2, True, True, True)
    x = sequences()
    wide = Composite(default=Epsilon(0.3), ops={"recurrent": Recurrent(layer=Epsilon(0.3))})
    ours = lrp(fused, x, composite=wide)
    torch.testing.assert_close(ours.attribution,
                               lrp(plain, x, composite=Composite(default=Epsilon(0.3))).attribution,
                               rtol=1e-6, atol=1e-9)
    assert not torch.allclose(ours.attribution, lrp(fused, x).attribution)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_batch_is_the_concatenation_of_single_samples(kind: str) -> None:
    fused, _ = pair(kind, 2, True, False, True)
    x = sequences(3)
    together = lrp(fused, x).attribution
    alone = torch.cat([lrp(fused, x[i:i + 1]).attribution for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=1e-9, atol=1e-12)


@pytest.mark.filterwarnings("ignore:the model is in train mode")
def test_model_is_left_untouched() -> None:
    fused, _ = pair("lstm", 2, True, True, True)
    fused.train()
    flags = {n: p.requires_grad for n, p in fused.named_parameters()}
    fused.rnn.weight_hh_l0.requires_grad_(False)
    flags["rnn.weight_hh_l0"] = False
    before = {k: v.clone() for k, v in fused.state_dict().items()}
    x = sequences()
    x_before = x.clone()
    lrp(fused, x)
    assert fused.training and fused.rnn.training
    assert {n: p.requires_grad for n, p in fused.named_parameters()} == flags
    for k, v in fused.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert torch.equal(x, x_before)
    assert not fused.rnn._forward_hooks and not fused.rnn._forward_pre_hooks


def test_gradient_methods_take_the_chain_rule() -> None:
    fused, _ = pair("gru", 2, True, True, True)
    x = sequences()
    leaf = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(fused(leaf)[:, 1].sum(), leaf)
    e = pellucid.explain(fused, x, method="guided_backprop", target=1)  # no ReLU: the gradient
    torch.testing.assert_close(e.attribution, grad, rtol=1e-6, atol=1e-10)


class Packed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(INPUT, HIDDEN, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        lengths = torch.full((x.shape[0],), x.shape[1])
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True)
        return self.rnn(packed)[1][0][-1]


def test_packed_sequences_are_refused_naming_the_model() -> None:
    with pytest.raises(UnsupportedModelError, match="PackedSequence") as info:
        pellucid.explain(Packed().eval(), sequences().float(), method="lrp", target=0)
    assert info.value.argument == "model"


@pytest.mark.filterwarnings("ignore:the model is in train mode")
def test_dropout_between_layers_in_train_mode_is_refused() -> None:
    model = nn.LSTM(INPUT, HIDDEN, num_layers=2, dropout=0.5, batch_first=True).double()
    with pytest.raises(ModelError, match="eval") as info:
        pellucid.explain(model, sequences(), method="lrp", output=lambda o: o[0][:, -1],
                         target=0)
    assert info.value.argument == "model"


def test_projections_are_refused() -> None:
    model = nn.LSTM(INPUT, HIDDEN, proj_size=2, batch_first=True).double().eval()
    with pytest.raises(UnsupportedModelError, match="proj_size"):
        pellucid.explain(model, sequences(), method="lrp", output=lambda o: o[0][:, -1],
                         target=0)


def test_bad_settings_name_the_setting() -> None:
    with pytest.raises(ArgumentTypeError, match="layer") as info:
        Recurrent(layer=Pass())
    assert info.value.argument == "layer"
    with pytest.raises(ArgumentError, match="epsilon") as info:
        Recurrent(epsilon=-1.0)
    assert info.value.argument == "epsilon"


def test_recurrent_is_public_and_describe_names_a_bad_composite():
    assert pellucid.lrp.Recurrent is pellucid.lrp.recurrent.Recurrent
    model = nn.Sequential(nn.Linear(3, 2)).eval()
    with pytest.raises(ArgumentTypeError) as error:
        pellucid.lrp.describe(model, "lrp", torch.randn(1, 3), show=False)
    assert error.value.argument == "composite" and "epsilon_plus()" in str(error.value)
