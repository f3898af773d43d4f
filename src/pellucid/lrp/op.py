"""The op: one recorded call as the rules see it (its kind, its label, what its rule needs)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .kinds import RESHAPES
from .linear_maps import Affine, linearised_norm, vjp_linear
from .tape import Node


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
    #: the index of the signal among the inputs of a ``gate``
    signal: int = 0
    #: the same call recorded on the baseline input (DeepLIFT)
    baseline: Node | None = None
    #: the messages at all outputs, for rules on ops with several outputs
    output_messages: list[Tensor | None] = field(default_factory=list)

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
        if self.kind == "norm":
            x = self.inputs[0]
            return [vjp_linear(linearised_norm(self.node), x, s)]
        return self.vjp([s])
