"""The op: one recorded call as the rules see it (its kind, its label, what its rule needs).

Everything on an op is set when the plan is built (:mod:`.canonical`); the backward walk
writes nothing on it but releasing its tensors: a rule receives the messages as arguments,
and puts what its shortcuts assumed in the plan's :class:`Assumptions`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .calls import RESHAPES, SOFTMAXES, gate_signal
from .linear_maps import Affine, vjp_linear
from .tape import Node

#: the ops whose vector-Jacobian product :func:`direct_vjp` gives in closed form
#: (in place too: the tape's first argument of an in-place op is the value it overwrote)
_ADDS = {"add", "__add__", "__radd__", "add_", "__iadd__"}
_MULTIPLIES = {"mul", "__mul__", "__rmul__", "multiply", "mul_", "__imul__"}
_MATMULS = {"matmul", "__matmul__", "mm", "bmm"}


@dataclass
class Assumptions:
    """What shortcuts of rules (and the weight cache) assumed about values on the device,
    checked with one host synchronisation at the end of a walk (:meth:`failed`) rather than
    one per layer; when one fails, the model's derived weights are derived again and the
    walk is repeated with ``shortcuts`` off. (Checks that raise go through
    :func:`pellucid.checks.defer`.)"""

    #: 0-d boolean tensors, True where an assumption failed
    checks: list[Tensor] = field(default_factory=list)
    #: whether rules may take shortcuts that a check confirms afterwards
    shortcuts: bool = True

    def add(self, failed: Tensor) -> None:
        """Check at the end of the walk that ``failed`` (a 0-d boolean tensor) is False."""
        self.checks.append(failed)

    def failed(self) -> bool:
        """Whether an assumption failed (one synchronisation, none without checks)."""
        return bool(self.checks) and bool(torch.stack(self.checks).any())


@dataclass(eq=False)
class Op:
    """A recorded call, canonicalised (see :mod:`.canonical`), with what its rule needs."""

    node: Node
    #: the op kind (see :mod:`.kinds`)
    kind: str
    #: the dotted name of the layer, or of the module the call was made in
    label: str
    #: the affine map of a ``layer``
    affine: Affine | None = None
    #: the same call recorded on the baseline input (DeepLIFT)
    baseline: Node | None = None
    #: the linear map of an op that is linear once something is held constant (its kind's
    #: ``linearise``, e.g. a LayerNorm with the normaliser constant); None: the op itself
    linearise: Callable[[Node], Callable[[Tensor], Tensor]] | None = None
    #: for a sum that adds the output of a module that does not depend on the input (a
    #: position or token-type embedding), that module's dotted name: the relevance the sum
    #: gives the constant is reported under it
    constant: str | None = None
    #: what the plan's shortcuts assumed (shared by all its ops)
    assumptions: Assumptions = field(default_factory=Assumptions)
    #: for a layer whose output feeds only a ReLU: relevance arriving where z < 0 is 0 unless
    #: a rule above gives relevance to zero activations, so a rule may skip it (and check)
    relu_fed: bool = False

    def release(self) -> None:
        """Drop the tensors of the call and of its baseline (see :meth:`.Node.release`)."""
        self.node.release()
        if self.baseline is not None:
            self.baseline.release()
        self.affine = None

    @property
    def signal(self) -> int:
        """The index of the signal among the inputs of a gate × signal product (0 otherwise)."""
        found = gate_signal(self.node)
        return 0 if found is None else found

    @property
    def inputs(self) -> list[Tensor]:
        return self.node.input_values()

    @property
    def output(self) -> Tensor:
        return self.node.outputs[0]

    def vjp(self, messages: list[Tensor | None], only: int | None = None) -> list[Tensor | None]:
        """The op's own vector-Jacobian product for messages at its outputs.

        ``only``: the index of the one input to differentiate for (the others held constant,
        their messages None).
        """
        node = self.node
        values = node.input_values()
        if len(values) == 1 and len(messages) == 1 and messages[0] is not None:
            m, x = messages[0], values[0]
            if node.name in RESHAPES and m.numel() == x.numel():
                return [m.reshape(x.shape).to(x)]
            if node.name in ("relu", "relu_") and m.shape == x.shape:
                return [m * (node.outputs[0] > 0)]  # relu(x) > 0 exactly where x > 0
            if node.indices is not None and m.shape == node.indices.shape:
                return [scatter_to_maxima(m, x, node.indices, int(node.name[-2]))]
        if len(messages) == 1 and messages[0] is not None:
            direct = direct_vjp(node, messages[0], only)
            if direct is not None:
                return direct
        with torch.enable_grad():
            leaves = {}
            wrt = []
            for i, (pos, _, _) in enumerate(node.inputs):
                v = node.leaves[pos].detach()
                if only is None or i == only:
                    v.requires_grad_(True)
                    wrt.append(v)
                leaves[pos] = v.clone() if node.inplace else v
            if node.inplace and 0 not in leaves and isinstance(node.leaves[0], Tensor):
                leaves[0] = node.leaves[0].clone()  # never write into the recorded value
            outs = node.call_again(leaves)
            pairs = [(o, m) for o, m in zip(outs, messages) if m is not None and o.requires_grad]
            if pairs:
                grads = torch.autograd.grad([o for o, _ in pairs], wrt, [m for _, m in pairs],
                                            allow_unused=True)
            else:
                grads = (None,) * len(wrt)
        full = [torch.zeros_like(v) if g is None else g for v, g in zip(wrt, grads)]
        if only is None:
            return full
        return [full[0] if i == only else None for i in range(len(node.inputs))]

    def linear_vjp(self, s: Tensor) -> list[Tensor]:
        """The vector-Jacobian product of the op's linear part (normaliser held constant)."""
        if self.linearise is not None:
            return [vjp_linear(self.linearise(self.node), self.inputs[0], s)]
        return self.vjp([s])


def scatter_to_maxima(m: Tensor, x: Tensor, indices: Tensor, dims: int) -> Tensor:
    """The vector-Jacobian product of a max pooling of ``x`` (any dimension, adaptive or not)
    from the flat indices of its maxima in each input plane: every window's message goes to
    its maximum, and overlapping windows add up, as autograd does. ``dims``: the number of
    pooled (trailing) dimensions.

    >>> x = torch.tensor([[[1.0, 3.0, 2.0, 0.0]]])
    >>> values, indices = torch.nn.functional.max_pool1d(x, 2, return_indices=True)
    >>> scatter_to_maxima(torch.tensor([[[10.0, 20.0]]]), x, indices, dims=1)
    tensor([[[ 0., 10., 20.,  0.]]])
    """
    lead = x.ndim - dims
    flat = m.new_zeros(x.shape).flatten(lead)
    return flat.scatter_add_(lead, indices.flatten(lead), m.flatten(lead)).view(x.shape)


def direct_vjp(node: Node, m: Tensor, only: int | None = None) -> list[Tensor | None] | None:
    """The vector-Jacobian product of a two-operand sum, product or matrix product, of a
    softmax and of a masked fill in closed form, as autograd computes it (a + b: m, m;
    a ⊙ b: m ⊙ b, m ⊙ a; a @ b: m bᵀ, aᵀ m; softmax y: y ⊙ (m − Σ m ⊙ y); a filled where
    mask: m, 0 where mask) but without calling the op again; None
    where these do not apply (an input-dependent operand that broadcasts, vectors in a
    matrix product, more arguments, mixed dtypes).

    >>> from pellucid.lrp.tape import record
    >>> recorder, out = record(torch.nn.Identity(), lambda x: x @ (2 * x), torch.eye(2))
    >>> direct_vjp(recorder.nodes[-1], torch.ones(2, 2))  # m (2x)ᵀ and xᵀ m
    [tensor([[2., 2.],
            [2., 2.]]), tensor([[1., 1.],
            [1., 1.]])]
    """
    leaves, name, out = node.leaves, node.name, node.outputs[0]
    if m.shape != out.shape or m.dtype != out.dtype:
        return None
    if name in SOFTMAXES and len(node.inputs) == 1:
        x, dim = node.input_values()[0], node.arg(1, "dim")
        if not isinstance(dim, int) or x.dtype != out.dtype or x.shape != out.shape:
            return None
        return [torch.ops.aten._softmax_backward_data(m, out, dim, x.dtype)]
    if name == "masked_fill" and [pos for pos, _, _ in node.inputs] == [0]:
        mask = node.arg(1, "mask")
        return [m.masked_fill(mask, 0.0)] if leaves[0].shape == m.shape else None
    if len(leaves) != 2 or name not in _ADDS | _MULTIPLIES | _MATMULS:
        return None
    a, b = leaves
    if name in _MATMULS:
        if not (isinstance(a, Tensor) and isinstance(b, Tensor) and a.ndim >= 2
                and b.ndim >= 2 and a.dtype == b.dtype == m.dtype):
            return None
        grads = (lambda: m @ b.mT, lambda: a.mT @ m)
    elif name in _ADDS:
        grads = (lambda: m, lambda: m)
    else:
        grads = (lambda: m * b, lambda: m * a)
    found: list[Tensor | None] = []
    for i, (pos, _, _) in enumerate(node.inputs):
        if only is not None and i != only:
            found.append(None)
            continue
        g, x = grads[pos](), leaves[pos]
        if g.shape != x.shape or g.dtype != x.dtype:
            return None
        found.append(g)
    return found
