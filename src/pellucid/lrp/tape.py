"""Recording a model's forward pass as a tape of torch function calls, without touching it.

A :class:`Recorder` is a ``torch.overrides.TorchFunctionMode`` that is active only during one
call. Every torch function that receives an *input-dependent* tensor (the model input, or the
output of an earlier recorded call) becomes a :class:`Node` holding the function, its
arguments and its outputs. Parameters, buffers and anything computed from them alone stay
constants. Inside ``__torch_function__`` the mode is off, so ``F.relu`` is recorded once, not
together with the ``torch.relu`` it calls.

``F.scaled_dot_product_attention`` is recorded as the ops it fuses (:func:`attention_by_ops`),
so that rules see q·kᵀ, the softmax and attention·v; the model gets the fused call's output.

In-place operations (``x += y``, ``.relu_()``, ``F.relu(x, inplace=True)``) keep the user's
semantics: the op runs in place on the live tensor, while the value it overwrote is cloned
and put back everywhere the tape refers to the old version. The current module path comes
from global module forward hooks that live only for the call (nothing is put on the model).

Only eager modules can be recorded: TorchScript runs outside Python, where no torch function
is seen, so :func:`eager_model` raises for it and unwraps a ``torch.compile``'d module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules import module as _module
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_unflatten

from ..checks import check_eager, compiled_original
from ..errors import ModelError, UnsupportedModelError
from ..sdpa import attention_weights

# functions whose ``inplace`` flag may be passed positionally
_INPLACE_FLAG = {
    "relu", "relu6", "hardtanh", "leaky_relu", "elu", "selu", "celu", "silu", "hardswish",
    "mish", "threshold", "rrelu", "hardsigmoid", "dropout", "dropout1d", "dropout2d",
    "dropout3d", "alpha_dropout", "feature_alpha_dropout",
}
_INPLACE_DUNDER = {"__iadd__", "__isub__", "__imul__", "__itruediv__", "__idiv__", "__setitem__"}
ADAPTIVE_MAXPOOLS = (F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d)
MAXPOOL_FUNCS = (F.max_pool1d, F.max_pool2d, F.max_pool3d, *ADAPTIVE_MAXPOOLS)
# the position of the return_indices argument of each max pooling: the tape records the
# indices of the maxima with the values (free: the kernel finds them anyway)
_RETURN_INDICES_AT = {**{f: 6 for f in MAXPOOL_FUNCS[:3]}, **{f: 2 for f in ADAPTIVE_MAXPOOLS}}
# calls whose outputs never depend on the values of their tensor arguments
_CONSTANT_FACTORIES = {
    "zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like",
    "new_zeros", "new_ones", "new_empty", "new_full", "new_tensor",
}


class UnsupportedOpError(UnsupportedModelError, NotImplementedError):
    """The model runs an operation that the rule engine cannot propagate through (no rule
    for it, or a write it cannot follow); the message names the op and its module."""


def eager_model(model: nn.Module) -> nn.Module:
    """The eager module whose forward pass the rule engine records.

    A ``torch.compile``'d module (``OptimizedModule``) gives its original module, which
    computes the same function with the same parameters and module names. TorchScript
    (``torch.jit.script`` or ``trace``, also as a submodule) raises
    :class:`UnsupportedModelError`: its calls run outside Python, where the engine sees none.
    """
    model = compiled_original(model) or model
    check_eager(model, "pellucid.lrp's rule engine (it records torch calls made in Python)")
    return model


def func_name(func: Callable) -> str:
    """A function's name; for a property getter (``Tensor.T``) the property's name."""
    name = getattr(func, "__name__", "") or ""
    if name == "__get__":
        return getattr(getattr(func, "__self__", None), "__name__", name)
    return name


@dataclass(eq=False)
class Node:
    """One recorded call: ``outputs = func(*args, **kwargs)`` at module path ``module``."""

    index: int
    func: Callable | None
    name: str
    leaves: list[Any]
    spec: Any
    #: (position among the leaves, producing node, index of that node's output)
    inputs: list[tuple[int, Node, int]]
    outputs: list[Tensor]
    module: str
    owner: nn.Module | None
    inplace: bool = False
    #: how many recorded calls read each output (counts, not references: no cycles)
    uses: list[int] = field(default_factory=list)
    _args: Any = field(default=None, repr=False)
    #: version counters of the input and output tensors when the call was recorded
    stamps: list[tuple[Tensor, int]] = field(default_factory=list, repr=False)
    #: a max pooling's flat indices of the maxima in each input plane (recorded with it)
    indices: Tensor | None = field(default=None, repr=False)

    def call_args(self) -> tuple[tuple, dict]:
        """The positional and keyword arguments of the call (cached until a leaf changes)."""
        if self._args is None:
            self._args = unflatten_call(self.leaves, self.spec)
        return self._args

    def replace_leaf(self, position: int, value: Any) -> None:
        """Point one argument at another tensor (the saved old version of an in-place write)."""
        old = self.leaves[position]
        self.leaves[position] = value
        self.stamps = [(value, value._version) if t is old else (t, v) for t, v in self.stamps]
        self._args = None

    def replace_output(self, index: int, value: Tensor) -> None:
        """Point one output at another tensor (the saved old version of an in-place write)."""
        old = self.outputs[index]
        self.outputs[index] = value
        self.stamps = [(value, value._version) if t is old else (t, v) for t, v in self.stamps]

    def arg(self, position: int, keyword: str, default: Any = None) -> Any:
        """An argument given by position or keyword."""
        args, kwargs = self.call_args()
        if len(args) > position:
            return args[position]
        return kwargs.get(keyword, default)

    def input_values(self) -> list[Tensor]:
        """The values of the input-dependent arguments, in order."""
        return [self.leaves[pos] for pos, _, _ in self.inputs]

    def call_again(self, replace: dict[int, Tensor]) -> list[Tensor]:
        """Call the function again with some leaves replaced; its floating tensor outputs."""
        leaves = list(self.leaves)
        for pos, value in replace.items():
            leaves[pos] = value
        args, kwargs = unflatten_call(leaves, self.spec)
        assert self.func is not None
        return floating_tensors(self.func(*args, **kwargs))

    def release(self) -> None:
        """Drop the recorded tensors (a walk is done with the call), so that memory is freed
        during the walk as autograd frees what a backward pass no longer needs."""
        self.leaves = [None] * len(self.leaves)
        self.outputs = [None] * len(self.outputs)  # type: ignore[list-item]
        self.stamps, self._args, self.indices = [], None, None

    def where(self) -> str:
        """'op #i name in module path' for error messages."""
        return f"op #{self.index} {self.name!r} in {self.module or '<model>'}"


def floating_tensors(value: Any) -> list[Tensor]:
    """The floating-point tensors in a (nested) value, in order."""
    if isinstance(value, Tensor):  # the common case, without walking a tree
        return [value] if value.is_floating_point() else []
    leaves, _ = tree_flatten(value)
    return [t for t in leaves if isinstance(t, Tensor) and t.is_floating_point()]


#: argument types that hold no tensor (``tree_flatten`` does not look into a slice either)
_ATOMS = (int, float, bool, str, type(None), slice, type(Ellipsis), torch.dtype, torch.device,
          torch.layout, torch.memory_format)


@dataclass(frozen=True)
class FlatCall:
    """The spec of a call's arguments when none is a container of tensors: one leaf per
    positional argument, then one per keyword argument (a tuple of ints is one leaf)."""

    positional: int
    keywords: tuple[str, ...]


def _plain(value: Any) -> bool:
    return isinstance(value, (Tensor, *_ATOMS)) or (
        type(value) in (tuple, list, torch.Size) and all(isinstance(e, _ATOMS) for e in value))


def flatten_call(args: tuple, kwargs: dict) -> tuple[list[Any], Any]:
    """(leaves, spec) of a call's arguments: one leaf per argument where no argument holds
    tensors in a container (most calls, without walking a tree: the recording's main
    per-call cost), else ``tree_flatten``'s leaves and spec. Tensors are always leaves.

    >>> leaves, spec = flatten_call((torch.ones(1), (1, 1)), {"groups": 2})
    >>> len(leaves), unflatten_call(leaves, spec)[1]
    (3, {'groups': 2})
    """
    if all(_plain(a) for a in args) and all(_plain(v) for v in kwargs.values()):
        leaves = [list(a) if type(a) is list else a for a in (*args, *kwargs.values())]
        return leaves, FlatCall(len(args), tuple(kwargs))  # lists copied: the model may reuse
    return tree_flatten((args, kwargs))


def unflatten_call(leaves: list[Any], spec: Any) -> tuple[tuple, dict]:
    """The (args, kwargs) of :func:`flatten_call`'s leaves and spec."""
    if isinstance(spec, FlatCall):
        n = spec.positional
        return tuple(leaves[:n]), dict(zip(spec.keywords, leaves[n:]))
    return tree_unflatten(leaves, spec)


class Recorder(TorchFunctionMode):
    """Record the input-dependent torch calls of one forward pass (see the module docstring)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.nodes: list[Node] = []
        self._where: dict[int, tuple[Node, int]] = {}
        self._users: dict[int, list[tuple[Node, int]]] = {}
        self._producers: dict[int, list[tuple[Node, int]]] = {}
        self._model = model
        self._names: dict[int, str] = {}
        #: id of a parameter (or of its float32 copy, see :meth:`widen`) → (module name,
        #: module, parameter name)
        self._param_owner: dict[int, tuple[str, nn.Module, str]] = {}
        for name, m in model.named_modules():  # one walk for both
            self._names[id(m)] = name
            for pname, p in m._parameters.items():
                if p is not None:
                    self._param_owner[id(p)] = (name, m, pname)
        self._modules: list[tuple[str, nn.Module]] = []
        #: outputs of modules that do not depend on the input (position embeddings), by id
        self._constants: dict[int, tuple[str, Tensor]] = {}
        #: whether a walk has used the tape up (:meth:`Node.release`): it cannot serve again
        self.released = False
        #: the half-precision dtype the model computed in, after :meth:`widen`
        self.computed_in: torch.dtype | None = None

    def track(self, x: Tensor, name: str = "input") -> Node:
        """Make ``x`` the root of the tape (the model input)."""
        node = Node(len(self.nodes), None, name, [], None, [], [x], "", None)
        self._add(node)
        return node

    def owner_of(self, tensor: Any) -> tuple[str, nn.Module] | None:
        """(dotted name, module) owning a parameter, if ``tensor`` is one of the model's."""
        owned = self._param_owner.get(id(tensor))
        return None if owned is None else owned[:2]

    @contextmanager
    def recording(self) -> Iterator[Recorder]:
        """Activate the mode and the module-path hooks for the duration of the block."""
        pre = _module.register_module_forward_pre_hook(self._enter)
        post = _module.register_module_forward_hook(self._leave, always_call=True)
        try:
            with self:
                yield self
        finally:
            pre.remove()
            post.remove()
            self._modules.clear()

    def _enter(self, module: nn.Module, args: Any) -> None:
        self._modules.append((self._names.get(id(module), f"<{type(module).__name__}>"), module))

    def _leave(self, module: nn.Module, args: Any, output: Any) -> None:
        if self._modules and self._modules[-1][1] is module:
            name = self._modules.pop()[0]
            if isinstance(output, Tensor) and id(output) not in self._where:
                self._constants[id(output)] = (name, output)

    def constant_name(self, tensor: Any) -> str | None:
        """The dotted name of the module that output ``tensor`` without depending on the input
        (``bert.embeddings.position_embeddings``), or of the parameter it is
        (``vit.embeddings.position_embeddings``); None for anything else."""
        found = self._constants.get(id(tensor))
        if found is not None and found[1] is tensor:
            return found[0]
        owned = self._param_owner.get(id(tensor))
        if owned is None:
            return None
        return f"{owned[0]}.{owned[2]}" if owned[0] else owned[2]

    def widen(self, weight: Callable[[Tensor], Tensor]) -> None:
        """Put every float16 / bfloat16 tensor of the tape in float32, so that rules compute in
        float32 (their quotients overflow float16); ``weight(p)`` gives the float32 copy of a
        parameter or buffer (cached by the caller), every other tensor is converted once.
        Owners and constant names follow the copies."""
        params = {id(p) for p in self._model.parameters()} | {
            id(b) for b in self._model.buffers()}
        wide: dict[int, Tensor] = {}

        def convert(t: Any) -> Any:
            if not isinstance(t, Tensor) or t.dtype not in (torch.float16, torch.bfloat16):
                return t
            if id(t) not in wide:
                self.computed_in = t.dtype
                wide[id(t)] = weight(t) if id(t) in params else t.float()
                if id(t) in self._param_owner:
                    self._param_owner[id(wide[id(t)])] = self._param_owner[id(t)]
                if id(t) in self._constants:
                    self._constants[id(wide[id(t)])] = (self._constants[id(t)][0], wide[id(t)])
            return wide[id(t)]

        for node in self.nodes:
            node.leaves = [convert(t) for t in node.leaves]
            node.outputs = [convert(t) for t in node.outputs]
            node._args = None

    def _add(self, node: Node) -> None:
        node.uses = [0] * len(node.outputs)
        for k, t in enumerate(node.outputs):
            self._where[id(t)] = (node, k)
            self._users.setdefault(id(t), [])
            self._producers.setdefault(id(t), []).append((node, k))
        self.nodes.append(node)

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        leaves, spec = flatten_call(args, kwargs)
        where = self._where
        inputs = [
            (pos, *where[id(t)]) for pos, t in enumerate(leaves)
            if isinstance(t, Tensor) and id(t) in where
        ]
        name = func_name(func)
        if not inputs or name in _CONSTANT_FACTORIES:
            return func(*args, **kwargs)
        if name == "scaled_dot_product_attention":
            return self._attention(func, args, kwargs)
        inplace = _is_inplace(name, args, kwargs)
        if inplace:
            self._preserve_old_version(leaves, inputs)
        versions = [leaves[pos]._version for pos, _, _ in inputs]
        indices = None
        if (func in _RETURN_INDICES_AT and len(args) <= _RETURN_INDICES_AT[func]
                and kwargs.get("return_indices", False) is False):
            out, indices = func(*args, **{**kwargs, "return_indices": True})
        else:
            out = func(*args, **kwargs)
        outputs = floating_tensors(out)
        if any(t.is_inference() for t in outputs):
            raise ModelError(
                "model",
                f"{name!r} in {self._path()} ran under torch.inference_mode() inside the "
                "model's forward; pellucid.lrp needs ordinary tensors there: remove "
                "inference_mode from the model's forward (torch.no_grad() is fine)",
            )
        for (pos, _, _), version in zip(inputs, versions):
            if not inplace and leaves[pos]._version != version:
                raise UnsupportedOpError(
                    "model",
                    f"{name!r} in {self._path()} modified an input-dependent tensor in place, "
                    "which pellucid.lrp does not recognise as an in-place op; use its "
                    "out-of-place form in the model's forward (and please report the op)",
                )
        if not outputs and not inplace:
            return out  # sizes, dims, comparisons: nothing relevance can flow through
        module, owner = self._modules[-1] if self._modules else ("", None)
        target = args[0] if inplace and args and isinstance(args[0], Tensor) else None
        if target is not None and not any(t is target for t in outputs):
            outputs.insert(0, target)  # e.g. __setitem__ returns None but writes args[0]
        node = Node(len(self.nodes), func, name, leaves, spec, inputs, outputs,
                    module, owner, inplace, indices=indices)
        node.stamps = [(leaves[pos], leaves[pos]._version) for pos, _, _ in inputs]
        node.stamps += [(t, t._version) for t in outputs]
        for pos, source, k in inputs:
            source.uses[k] += 1
            self._users.setdefault(id(leaves[pos]), []).append((node, pos))
        self._add(node)
        return out

    def _attention(self, func: Callable, args: tuple, kwargs: dict) -> Tensor:
        """``F.scaled_dot_product_attention`` recorded as the ops it fuses (see
        :func:`attention_by_ops`), so that rules see q·kᵀ, the softmax and attention·v; the
        value returned to the model is the fused call's own."""
        out = func(*args, **kwargs)
        with self:
            written = attention_by_ops(*args, **kwargs)
        node, k = self._where.pop(id(written))
        node.replace_output(k, out)
        self._where[id(out)] = (node, k)
        self._producers[id(out)] = self._producers.pop(id(written))
        self._users[id(out)] = self._users.pop(id(written))
        return out

    def _preserve_old_version(self, leaves: list, inputs: list) -> None:
        """Clone the value an in-place op is about to overwrite and re-point the tape to it."""
        target = leaves[0] if leaves and isinstance(leaves[0], Tensor) else None
        if target is None:
            return
        old = target.detach().clone()
        for producer, k in self._producers.pop(id(target), []):
            producer.replace_output(k, old)  # also ops that returned their input unchanged
        for user, pos in self._users.pop(id(target), []):
            user.replace_leaf(pos, old)
        leaves[0] = old  # this op's own record of the value it overwrote

    def check_unchanged(self) -> None:
        """Raise if a recorded tensor was changed afterwards by a write the tape did not see
        (an in-place op on a view writes into its base and every other view of it)."""
        for node in self.nodes:
            for tensor, version in node.stamps:
                if tensor._version != version:
                    raise UnsupportedOpError(
                        "model",
                        f"a tensor that {node.where()} reads or writes was changed later by an "
                        "in-place op through a view (aliasing); pellucid.lrp cannot follow such "
                        "writes. Use the out-of-place op in the model's forward",
                    )

    def _path(self) -> str:
        return self._modules[-1][0] if self._modules else "<model>"

    def source_of(self, t: Tensor) -> tuple[Node, int] | None:
        """The (node, output index) that produced ``t``, if it is on the tape."""
        return self._where.get(id(t))


def attention_by_ops(query: Tensor, key: Tensor, value: Tensor,
                     attn_mask: Tensor | None = None, dropout_p: float = 0.0,
                     is_causal: bool = False, scale: float | None = None,
                     enable_gqa: bool = False) -> Tensor:
    """``F.scaled_dot_product_attention`` written out as its reference implementation:
    softmax(q·kᵀ·scale + mask)·v, scale = 1/√d by default; ``is_causal`` and a boolean mask
    set the excluded scores to −∞, a floating mask is added, ``enable_gqa`` repeats the key and
    value heads. Dropout (``dropout_p > 0``, a model in train mode) raises.

    >>> import torch.nn.functional as F
    >>> q, k, v = torch.randn(3, 1, 2, 4, 8, dtype=torch.float64).unbind(0)
    >>> torch.allclose(attention_by_ops(q, k, v, is_causal=True),
    ...                F.scaled_dot_product_attention(q, k, v, is_causal=True))
    True
    """
    if dropout_p:
        raise ModelError(
            "model",
            f"scaled_dot_product_attention ran with dropout_p={dropout_p}: it draws random "
            "attention masks, so relevance would differ on every call; call model.eval() (or "
            "pass dropout_p=0.0 in the model's forward)",
        )
    weights, value = attention_weights(query, key, value, attn_mask, is_causal, scale,
                                       enable_gqa)
    return weights @ value


def _is_inplace(name: str, args: tuple, kwargs: dict) -> bool:
    if name in _INPLACE_DUNDER or (name.endswith("_") and not name.startswith("__")):
        return True
    if name in _INPLACE_FLAG:
        return kwargs.get("inplace") is True or any(a is True for a in args[1:])
    return False


def record(model: nn.Module, forward: Callable[[Tensor], Tensor], x: Tensor
           ) -> tuple[Recorder, Tensor]:
    """Call ``forward(x)`` (the selected model output) under a recorder rooted at ``x``.

    ``model`` is the eager module that ``forward`` runs (see :func:`eager_model`).
    """
    recorder = Recorder(eager_model(model))
    recorder.track(x)
    with torch.no_grad(), recorder.recording():
        out = forward(x)
    recorder.check_unchanged()
    for node in recorder.nodes:
        node.stamps = []  # checked: the version counters need not hold the tensors any longer
    return recorder, out
