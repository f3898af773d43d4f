"""Finding layers by name or by structure, and capturing what they compute in one call.

- :func:`find_layer`: the submodule at a dotted name, with close-name hints for typos.
- :func:`capture`: temporary forward hooks that record each layer's outputs (one entry
  per call) and are removed when the block ends, however it ends.
- :func:`spatial_layers`, :func:`last_spatial_layer`: the layers, in the order they finish
  in a forward pass, whose output is a feature map N×C×L, N×C×H×W or N×C×D×H×W (or
  tokens N×T×D) with more than one position, and the last of them; :func:`outermost`
  keeps those inside no other.
- :func:`spatial_forward`, :func:`last_reached_layer`: the same candidates captured in a
  call's own first pass, and the last one whose map the explained score depends on (by
  the score's gradient, without another forward pass).
- :func:`layer_gradients`: layer outputs and the gradients of the explained score with
  respect to them (and to the inputs), from one forward and one backward pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from .checks import check_eager
from .errors import ArgumentError, ArgumentTypeError, UnknownNameError
from .guard import preserved
from .registry import suggest
from .spatial import Reshape, as_feature_map
from .task import Forward, Task, require_graph

LayerRef = str | nn.Module


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule of ``model`` at the dotted ``name`` (``""`` is the model itself)."""
    modules = dict(model.named_modules())
    if name in modules:
        return modules[name]
    hint = suggest(name, [n for n in modules if n])
    raise UnknownNameError(
        "layer",
        f"the model has no layer {name!r}.{hint} Layer names (layer=) are the dotted names "
        "of dict(model.named_modules()), e.g. 'features.3' or 'layer4.1.conv2'",
    )


def layer_name(model: nn.Module, layer: LayerRef) -> str:
    """The dotted name of ``layer`` (a name or a submodule object) in ``model``."""
    if isinstance(layer, str):
        find_layer(model, layer)
        return layer
    if not isinstance(layer, nn.Module):
        raise ArgumentTypeError(
            "layer",
            f"layer must be a dotted name from model.named_modules() or a submodule of the "
            f"model, got {type(layer).__name__}",
        )
    names = [name for name, module in model.named_modules() if module is layer]
    if names:
        return names[0]
    same_kind = [n for n, m in model.named_modules() if n and type(m) is type(layer)][:5]
    hint = f" Its {type(layer).__name__} layers are: {same_kind}." if same_kind else ""
    raise ArgumentError(
        "layer",
        f"the {type(layer).__name__} given as layer is not a submodule of the model (a copy, "
        f"or a module of another model?).{hint} Pass one of the model's own submodules or "
        "a dotted name from model.named_modules()",
    )


@contextmanager
def capture(
    model: nn.Module, layers: LayerRef | Sequence[LayerRef]
) -> Iterator[dict[str, list[Any]]]:
    """Record the outputs of ``layers`` while the block runs; the hooks go in ``finally``.

    Yields a dict from each layer's dotted name to the list of its outputs, one per call
    (a layer may run several times in one forward pass). The recorded tensors stay in the
    autograd graph; the rest of the model receives a copy of each, so that in-place
    operations downstream (``nn.ReLU(inplace=True)``, ``out += identity``) cannot change
    what was recorded.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU())
        >>> with capture(net, ["0"]) as seen:
        ...     _ = net(torch.randn(1, 1, 5, 5))
        >>> seen["0"][0].shape
        torch.Size([1, 2, 3, 3])
    """
    check_eager(model, "layer hooks")
    refs = [layers] if isinstance(layers, (str, nn.Module)) else list(layers)
    captured: dict[str, list[Any]] = {}
    handles = []
    try:
        for ref in refs:
            name = layer_name(model, ref)
            if name not in captured:
                captured[name] = []
                hook = _recorder(captured[name])
                handles.append(find_layer(model, name).register_forward_hook(hook))
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def _recorder(store: list[Any]):
    def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
        store.append(output)
        return output.clone() if isinstance(output, Tensor) else None

    return hook


def is_spatial(output: Any) -> bool:
    """A tensor N×C×S₁×… (at least one spatial dimension; tokens N×T×D and channels-last
    maps count too) with more than one position."""
    return isinstance(output, Tensor) and output.ndim >= 3 and math.prod(output.shape[2:]) > 1


def spatial_layers(
    model: nn.Module, x: Tensor, model_kwargs: Mapping[str, Any] | None = None
) -> list[str]:
    """The dotted names of the submodules with a spatial output on ``x``, in the order
    they finish (a module that runs several times is placed at its last call).

    One forward pass (without gradients) records the order in which submodules finish;
    a container finishes after its children, the model itself is not a candidate. A
    spatial output (:func:`is_spatial`) is a tensor N×C×L, N×C×H×W or N×C×D×H×W (or tokens
    N×T×D) with more than one position, so global pooling (1×1) and classifier outputs are
    skipped. Only structure is used, no class names.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.AdaptiveAvgPool2d(1))
        >>> spatial_layers(net, torch.randn(1, 1, 5, 5))
        ['0']
    """
    finished: list[str] = []
    handles = []

    def recorder(name: str):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if is_spatial(output):
                finished.append(name)

        return hook

    check_eager(model, "finding the last spatial layer with hooks")
    with preserved(model):
        try:
            for name, module in model.named_modules():
                if name:
                    handles.append(module.register_forward_hook(recorder(name)))
            with torch.no_grad():
                model(x, **(model_kwargs or {}))
        finally:
            for handle in handles:
                handle.remove()
    if not finished:
        raise _no_spatial_layer(x)
    return list(reversed(dict.fromkeys(reversed(finished))))


def _no_spatial_layer(x: Tensor) -> ArgumentError:
    return ArgumentError(
        "layer",
        f"no layer of the model outputs a spatial feature map (N×C×L, N×C×H×W or "
        f"N×C×D×H×W with more than one position) for inputs of shape {tuple(x.shape)}; "
        "pass layer='<dotted name>' explicitly",
    )


def last_spatial_layer(
    model: nn.Module, x: Tensor, model_kwargs: Mapping[str, Any] | None = None
) -> str:
    """The dotted name of the last submodule to finish with a spatial output on ``x``
    (the last of :func:`spatial_layers`), by structure alone.

    The explained score may not depend on that layer's map: a ViT whose head reads the class
    token reaches its final norm only through that token. Methods that explain a score
    choose with :func:`spatial_forward` and :func:`last_reached_layer` instead.
    """
    return spatial_layers(model, x, model_kwargs)[-1]


def spatial_forward(task: Task, x: Tensor, *, own_inputs: bool = False) -> Forward:
    """A forward pass at ``x`` that records, in the autograd graph, every call of the
    outermost layers with a spatial output (:func:`is_spatial`), in the order they finish.

    The candidates of an automatic layer choice, found and captured in the call's own
    first pass (:func:`last_reached_layer` then picks one from the gradients). The recorded
    tensors are the model's own; if the model changes one of them in place later (e.g.
    ``ReLU(inplace=True)``), the pass is made again with :func:`captured_forward`, which
    records copies. ``own_inputs`` as for :func:`captured_forward`.

    Example:
        >>> from pellucid.task import Task
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(),
        ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        >>> task = Task.start(net, torch.randn(2, 1, 5, 5), 0, first_pass=spatial_forward)
        >>> list(task.first_forward.layers)
        ['0', '1']
    """
    check_eager(task.model, "finding the last spatial layer with hooks")
    finished: dict[str, list[Tensor]] = {}
    versions: list[tuple[Tensor, int]] = []

    def recorder(name: str):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if is_spatial(output):
                finished[name] = [*finished.pop(name, []), output]  # placed at its last call
                if not output.is_inference():  # (no graph, no version: refused later)
                    versions.append((output, output._version))

        return hook

    handles = []
    with torch.enable_grad():
        xg = _graph_input(x, own_inputs)
        try:
            for name, module in task.model.named_modules():
                if name:
                    handles.append(module.register_forward_hook(recorder(name)))
            output = task.output(xg)
        finally:
            for handle in handles:
                handle.remove()
    if not finished:
        raise _no_spatial_layer(x)
    names = outermost(list(finished))
    kept = {id(t) for n in names for t in finished[n]}
    if any(t._version != v for t, v in versions if id(t) in kept):
        return captured_forward(task, x, names, own_inputs=own_inputs)
    return Forward(xg, output, layers={n: finished[n] for n in names})


def last_reached_layer(
    task: Task, recorded: Forward, reshape: Reshape = None
) -> tuple[str, LayerGradients]:
    """The last layer captured in ``recorded`` (a :func:`spatial_forward`) whose output, read
    as a map of the inputs (``spatial.as_feature_map`` with ``reshape``), the explained
    score depends on at more than one position; and its :class:`LayerGradients`.

    One backward pass from the scores to the last layer, which decides for a CNN; only if
    the score does not reach its map (a ViT whose head reads the class token reaches its
    final norm through that token alone), one more backward pass, through the same graph,
    to all earlier layers. No forward pass is repeated. Decided on the first sample; the
    last layer if none is reached.

    Example:
        >>> from pellucid.task import Task
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(),
        ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        >>> task = Task.start(net, torch.randn(2, 1, 5, 5), 0, first_pass=spatial_forward)
        >>> last_reached_layer(task, task.first_forward)[0]
        '1'
    """
    names, x = list(recorded.layers), recorded.inputs
    last = names[-1]
    only_last = replace(recorded, layers={last: recorded.layers[last]})
    found = layer_gradients(task, x, [last], recorded=only_last, retain_graph=len(names) > 1)
    if len(names) == 1 or _reaches([found.grads[last][-1][:1]], x[:1], reshape)[0]:
        return last, found
    earlier = {n: recorded.layers[n] for n in names[:-1]}
    before = layer_gradients(task, x, list(earlier), recorded=replace(recorded, layers=earlier))
    reaches = _reaches([before.grads[n][-1][:1] for n in earlier], x[:1], reshape)
    reached = [n for n, yes in zip(earlier, reaches, strict=True) if yes]
    return (reached[-1], before) if reached else (last, found)


def _reaches(grads: Sequence[Tensor], x: Tensor, reshape: Reshape) -> list[bool]:
    """Whether each gradient ``grads[i]`` of a layer output (one sample), read as a map of
    ``x``, is not zero at more than one position (False where it is no map of ``x``); the
    counts of all of them are read from the device at once."""
    counts = [_positions(grad, x, reshape) for grad in grads]
    maps = [c for c in counts if c is not None]
    read = iter(torch.stack([c.to(maps[0].device) for c in maps]).tolist() if maps else [])
    return [c is not None and next(read) > 1 for c in counts]


def _positions(grad: Tensor, x: Tensor, reshape: Reshape) -> Tensor | None:
    """The number of positions at which ``grad``, read as a map of ``x``, is not zero (on
    its device), or None where it is no map of ``x``."""
    try:
        grad = as_feature_map(grad, x, reshape)
    except ArgumentError as error:
        if error.argument == "layer":  # tokens on no grid: not a map of the inputs
            return None
        raise
    return (grad[0].flatten(1) != 0).any(0).sum() if grad.ndim == x.ndim else None


def outermost(names: Sequence[str]) -> list[str]:
    """The entries of ``names`` (dotted) that lie inside no other entry, in order.

    Example:
        >>> outermost(["blocks.0.norm", "blocks.0", "blocks.1.attn.v", "blocks.1", "norm"])
        ['blocks.0', 'blocks.1', 'norm']
    """
    return [n for n in names if not any(n.startswith(f"{other}.") for other in names)]


@dataclass(frozen=True)
class LayerGradients:
    """Layer outputs and ∂f/∂(layer output) for one batch, one entry per layer call."""

    scores: Tensor
    outputs: dict[str, list[Tensor]]
    grads: dict[str, list[Tensor]]
    input_grad: Tensor | None = None


def captured_forward(
    task: Task, x: Tensor, layers: Sequence[LayerRef], *, own_inputs: bool = False
) -> Forward:
    """A forward pass at ``x`` that records every call of ``layers`` in the autograd graph.

    Methods run it as their first pass (``Method.first_pass``), so that the call's first
    forward pass is also the one whose layer gradients they take: with ``own_inputs`` (``x``
    is the call's private copy) the pass starts from ``x`` itself, which is set to require
    grad, so that ``task.first_forward_at(x)`` finds it; else from a detached copy of ``x``.
    """
    with torch.enable_grad():
        xg = _graph_input(x, own_inputs)
        with capture(task.model, layers) as captured:
            output = task.output(xg)
    return Forward(xg, output, layers=tensor_outputs(captured))


def _graph_input(x: Tensor, own: bool) -> Tensor:
    """The tensor a recorded pass starts from, requiring grad (so that the pass has a graph
    even for frozen parameters): ``x`` itself where the caller owns it and it is a leaf,
    else a detached copy."""
    return x.requires_grad_(True) if own and x.is_leaf else x.detach().requires_grad_(True)


def tensor_output(name: str, out: Any) -> Tensor:
    """``out``, the output of layer ``name``, if it is a tensor; else a clear error."""
    if not isinstance(out, Tensor):
        raise ArgumentTypeError(
            "layer",
            f"layer {name!r} returns a {type(out).__name__}, not a tensor; "
            "pick a layer (or a submodule of it) whose output is a tensor",
        )
    return out


def tensor_outputs(captured: Mapping[str, list[Any]]) -> dict[str, list[Tensor]]:
    """What :func:`capture` recorded, checked to be tensors (:func:`tensor_output`)."""
    return {name: [tensor_output(name, out) for out in outs] for name, outs in captured.items()}


def layer_gradients(
    task: Task,
    x: Tensor,
    layers: Sequence[LayerRef],
    *,
    with_input: bool = False,
    recorded: Forward | None = None,
    retain_graph: bool = False,
) -> LayerGradients:
    """Layer outputs and one backward pass of the scores through them.

    Uses ``recorded`` (a :func:`captured_forward` at ``x``) when given, else makes that pass.
    Returns the detached outputs of every call of every layer, the gradient of the
    explained score with respect to each, and ∂f/∂x when ``with_input`` is set. Gradients
    that do not reach a layer (an unused branch) are zeros. ``retain_graph`` keeps the graph
    of ``recorded`` for another backward pass.
    """
    recorded = recorded if recorded is not None else captured_forward(task, x, layers)
    xg, captured = recorded.inputs, recorded.layers
    with torch.enable_grad():
        scores = task.target.score(recorded.output)
        require_graph(scores)
        flat = [out for outs in captured.values() for out in outs]
        wanted = ([xg] if with_input else []) + [t for t in flat if t.requires_grad]
        found = iter(
            torch.autograd.grad(scores.sum(), wanted, allow_unused=True, retain_graph=retain_graph)
            if wanted else []
        )
    input_grad = _or_zeros(next(found), xg) if with_input else None
    grads = {
        name: [_or_zeros(next(found), t) if t.requires_grad else torch.zeros_like(t) for t in outs]
        for name, outs in captured.items()
    }
    outputs = {name: [t.detach() for t in outs] for name, outs in captured.items()}
    return LayerGradients(scores.detach(), outputs, grads, input_grad)


def _or_zeros(grad: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if grad is None else grad


__all__ = [
    "LayerGradients",
    "capture",
    "captured_forward",
    "find_layer",
    "is_spatial",
    "last_reached_layer",
    "last_spatial_layer",
    "layer_gradients",
    "layer_name",
    "outermost",
    "spatial_forward",
    "spatial_layers",
    "tensor_output",
    "tensor_outputs",
]
