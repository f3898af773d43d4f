"""Explaining at a layer: the explained tensor enters the model at a layer instead of its input.

``explain(model, x, layer="encoder.2")`` attributes the score to the activations of a layer
(its output, or its input with ``layer_side="input"``) instead of to ``x``, for every method,
as Captum's ``Layer*`` classes do. Token ids (integer inputs) are explained this way at the
output of the input embedding layer: the ids themselves have no gradient.

How: one forward pass at ``x`` that stops as soon as the layer has run gives its activation
h (:func:`activation`); the method then explains h, and every forward pass of the method
runs the model on ``x`` with a temporary hook that puts the method's tensor in place of the
layer's activation (:meth:`Entry.entering`). So every method works unchanged, and the
part of the model before the layer is recomputed at ``x`` (it no longer depends on h).

Embeddings (B, L, D) are given to the method channels-first, (B, D, L): the layout of a
sequence with D channels, which windows, patches, masks and CAM maps already read per
position (one token = one position). :func:`per_token` sums the attribution over D (the
per-dimension map stays in the extras).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from .errors import ArgumentError, ArgumentTypeError
from .layers import LayerRef, find_layer, layer_name
from .targets import continuation
from .task import Task, split_model_kwargs
from .tokens import ids_like, is_token_ids

#: where the explained tensor enters: the layer's output, or its (first) input
SIDES = ("output", "input")


class _Reached(Exception):
    """Stops a forward pass once the layer has run (nothing after it is needed)."""


@dataclass(frozen=True, eq=False)
class Entry:
    """Where the explained tensor enters the model, and the model's own inputs (one row per
    row of the task, following the rows when a method expands the batch).

    ``argument`` names the setting that chose the layer (``"layer"`` or ``"embeddings"``);
    ``channels_first`` says that the explained tensor is the activation (B, L, D) moved to
    (B, D, L).
    """

    name: str
    module: nn.Module
    side: str
    inputs: Tensor
    argument: str = "layer"
    channels_first: bool = False

    def take(self, index: Tensor) -> Entry:
        """The entry for rows ``index`` of the batch."""
        return replace(self, inputs=self.inputs[index.to(self.inputs.device)])

    def model_inputs(self) -> Tensor:
        """A copy of the model's inputs for one forward pass (the model may write to it)."""
        return self.inputs.clone()

    def as_activation(self, x: Tensor) -> Tensor:
        """The method's tensor in the layer's own layout."""
        return x.transpose(1, -1) if self.channels_first else x

    def as_explained(self, h: Tensor) -> Tensor:
        """The layer's activation in the layout the method explains."""
        return h.transpose(1, -1) if self.channels_first else h

    @contextmanager
    def entering(self, x: Tensor) -> Iterator[None]:
        """During the block, the layer's activation is replaced by ``x`` (in its layout).

        The layer must run exactly once per forward pass: a second call would be given the
        same tensor, so it is an error naming the layer.
        """
        value = self.as_activation(x)
        calls = 0

        def count() -> None:
            nonlocal calls
            calls += 1
            if calls > 1:
                raise ArgumentError(
                    self.argument,
                    f"{self.argument} {self.name!r} runs more than once in one forward pass "
                    "(a shared or recurrent module), so its activation is not one tensor; "
                    "pick a layer that runs once",
                )

        def on_output(module: nn.Module, args: Any, output: Any) -> Any:
            count()
            return _with_first(output, value, self)

        def on_input(module: nn.Module, args: Any) -> Any:
            count()
            return _with_first(args, value, self)

        handle = (self.module.register_forward_hook(on_output) if self.side == "output"
                  else self.module.register_forward_pre_hook(on_input))
        try:
            yield
        finally:
            handle.remove()
        if calls == 0:
            raise ArgumentError(
                self.argument,
                f"{self.argument} {self.name!r} did not run in the model's forward pass; pick "
                "a layer that the forward pass uses",
            )


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, tuple | list) and value else value


def _with_first(value: Any, tensor: Tensor, entry: Entry) -> Any:
    """``value`` (a tensor, or a tuple/list whose first item is the activation) with its
    activation replaced by ``tensor`` of the same shape."""
    current = _first(value)
    if current.shape != tensor.shape:
        raise ArgumentError(
            entry.argument,
            f"{entry.argument} {entry.name!r} computed an activation of shape "
            f"{tuple(current.shape)}, but the method gave {tuple(tensor.shape)}: the layer's "
            "activation must have the batch first and the same shape on every forward pass",
        )
    tensor = tensor.to(current.dtype)
    if isinstance(value, tuple | list):
        return type(value)((tensor, *value[1:]))
    return tensor


def check_side(side: Any) -> str:
    """``layer_side`` must be ``"output"`` or ``"input"``."""
    if side not in SIDES:
        raise ArgumentError(
            "layer_side", f"layer_side={side!r} is not one of {SIDES}: attribute to the layer's "
            "output (the default) or to its input",
        )
    return side


def _run_until_reached(
    model: nn.Module, inputs: Tensor, kwargs: Mapping[str, Any], handles: list[Any]
) -> None:
    """A forward pass without gradients that ends when one of the hooks behind ``handles``
    raises :class:`_Reached` (or when the model returns); the hooks are removed."""
    try:
        with torch.no_grad():
            model(inputs.clone(), **kwargs)
    except _Reached:
        pass
    finally:
        for handle in handles:
            handle.remove()


def activation(
    model: nn.Module, module: nn.Module, side: str, inputs: Tensor, kwargs: Mapping[str, Any],
    *, name: str, argument: str,
) -> Tensor:
    """The layer's activation (its output, or first input) at ``inputs``, detached.

    The forward pass stops once the layer has run. The activation must be a floating tensor
    (or a tuple whose first item is one) with the batch first.
    """
    seen: list[Any] = []

    def grab(*hook_args: Any) -> None:
        seen.append(_first(hook_args[-1] if side == "output" else hook_args[1]))
        raise _Reached

    handle = (module.register_forward_hook(grab) if side == "output"
              else module.register_forward_pre_hook(grab))
    _run_until_reached(model, inputs, kwargs, [handle])
    if not seen:
        raise ArgumentError(
            argument,
            f"{argument} {name!r} did not run in the model's forward pass; pick a layer that "
            "the forward pass uses",
        )
    value = seen[0]
    if not isinstance(value, Tensor) or not value.is_floating_point():
        what = (f"dtype {value.dtype}" if isinstance(value, Tensor) else type(value).__name__)
        raise ArgumentTypeError(
            argument,
            f"the {side} of {argument} {name!r} is {what}, not a floating tensor, so it "
            "cannot be attributed; pick a layer whose "
            f"{side} is a floating tensor (or a tuple whose first item is one)",
        )
    if value.ndim == 0 or value.shape[0] != inputs.shape[0]:
        raise ArgumentError(
            argument,
            f"the {side} of {argument} {name!r} has shape {tuple(value.shape)}, without the "
            f"batch of {inputs.shape[0]} first (e.g. a sequence-first layer); pick a layer "
            "whose activation has the batch first",
        )
    return value.detach().clone()


def embedding_layer(
    model: nn.Module, ids: Tensor, kwargs: Mapping[str, Any], embeddings: LayerRef | None
) -> tuple[str, nn.Module]:
    """The layer that turns the token ids into vectors: ``embeddings`` when given, else the
    model's ``get_input_embeddings()`` (Hugging Face), else its only ``nn.Embedding``, else
    the ``nn.Embedding`` that receives the ids in a forward pass."""
    if embeddings is not None:
        name = layer_name(model, embeddings) if not isinstance(embeddings, str) else embeddings
        return name, _named(model, name, "embeddings")
    getter = getattr(model, "get_input_embeddings", None)
    if callable(getter):
        try:
            module = getter()
        except (NotImplementedError, AttributeError):
            module = None
        names = [n for n, m in model.named_modules() if m is module]
        if module is not None and names:
            return names[0], module
    candidates = [(n, m) for n, m in model.named_modules()
                  if isinstance(m, nn.Embedding | nn.EmbeddingBag)]
    if not candidates:
        raise ArgumentTypeError(
            "inputs",
            f"inputs have dtype {ids.dtype}, read as token ids, but the model has no "
            "nn.Embedding and no get_input_embeddings(); pass floating-point inputs "
            "(inputs.float()), or embeddings=<the layer that turns ids into vectors>",
        )
    if len(candidates) == 1:
        return candidates[0]
    return _receiving(model, ids, kwargs, candidates)


def _named(model: nn.Module, name: str, argument: str) -> nn.Module:
    try:
        return find_layer(model, name)
    except ArgumentError as error:
        raise type(error)(argument, str(error).replace("layer=", f"{argument}=")) from None


def _receiving(
    model: nn.Module, ids: Tensor, kwargs: Mapping[str, Any],
    candidates: list[tuple[str, nn.Module]],
) -> tuple[str, nn.Module]:
    """The first of ``candidates`` called with the ids themselves in a forward pass."""
    found: list[tuple[str, nn.Module]] = []

    def hook_for(name: str, module: nn.Module) -> Any:
        def check(_: nn.Module, args: Any) -> None:
            given = _first(args)
            if isinstance(given, Tensor) and given.shape == ids.shape and torch.equal(given, ids):
                found.append((name, module))
                raise _Reached
        return check

    handles = [m.register_forward_pre_hook(hook_for(n, m)) for n, m in candidates]
    _run_until_reached(model, ids, kwargs, handles)
    if not found:
        names = [n for n, _ in candidates]
        raise ArgumentError(
            "embeddings",
            f"inputs are token ids, and none of the model's embedding layers {names} receives "
            "them directly; pass embeddings=<the layer that turns ids into vectors>",
        )
    return found[0]


def is_token_layout(ids: Tensor, h: Tensor) -> bool:
    """Whether the activation ``h`` holds one vector per token of ``ids``: (B, L, D)."""
    return ids.ndim == 2 and h.ndim == 3 and h.shape[:2] == ids.shape


def reported(
    entry: Entry, attribution: Tensor, extras: dict[str, Any], inputs: Tensor,
    per_position: bool,
) -> tuple[Tensor, dict[str, Any], Tensor | None]:
    """(attribution, extras, kept inputs) of an Explanation made at ``entry``: per token for
    token ids, with the per-dimension map (B, L, D) in ``extras["embedding_attribution"]``
    and the ids kept; the activation's attribution for ``layer=``, with no inputs kept (the
    metrics perturb model inputs, not activations). ``extras["attributed_layer"]`` names
    the layer."""
    extras = {**extras, "attributed_layer": entry.name}
    if not entry.channels_first:
        return attribution, extras, None
    extras["embedding_attribution"] = entry.as_activation(attribution).to(inputs.device)
    return per_token(attribution, per_position), extras, inputs.detach().clone()


def per_token(attribution: Tensor, per_position: bool) -> Tensor:
    """The attribution (B, D, L) per token (B, L): the sum over the D dimensions, or their
    mean for a method that gives every dimension of a position the same value
    (``Method.per_position``: occlusion, RISE, LIME, KernelSHAP, CAM, attention maps)."""
    return attribution.mean(1) if per_position else attribution.sum(1)


def enter(
    model: nn.Module, x: Tensor, model_kwargs: Any, *,
    layer: LayerRef | None, side: str, embeddings: LayerRef | None,
) -> tuple[Entry | None, Tensor]:
    """(the entry, the tensor to explain) for the private inputs ``x``: ``(None, x)`` for
    float inputs without ``layer``; token ids enter at their embedding layer."""
    tokens = is_token_ids(x)
    side = check_side(side)
    if layer is None and not tokens:
        if embeddings is not None:
            raise ArgumentError(
                "embeddings", "embeddings= names the layer that turns token ids into vectors, "
                "but the inputs are not token ids; drop it (or pass layer= to explain at a layer)",
            )
        return None, x
    if layer is not None and embeddings is not None:
        raise ArgumentError(
            "embeddings", "give layer= or embeddings=, not both: embeddings= is the layer where "
            "token ids are explained when layer= is not given",
        )
    kwargs, _ = split_model_kwargs(model_kwargs, x.shape[0])
    if layer is not None:
        name, argument = layer_name(model, layer), "layer"
        module = find_layer(model, name)
    else:
        (name, module), argument, side = embedding_layer(model, x, kwargs, embeddings), (
            "embeddings"), "output"
    h = activation(model, module, side, x, kwargs, name=name, argument=argument)
    entry = Entry(name, module, side, x, argument, tokens and is_token_layout(x, h))
    return entry, entry.as_explained(h).contiguous()


#: the method settings that hold a reference input; token roles or ids given there are
#: turned into the layer's activation at those ids (``references`` are a batch of their
#: own, the others are broadcast to the inputs)
REFERENCE_SETTINGS = ("baseline", "fill", "references")


def with_token_references(
    method: Any, entry: Entry, model: nn.Module, model_kwargs: Any
) -> Any:
    """``method`` with each reference setting that names tokens (``"pad"``, ``"mask"``, or
    a tensor of ids broadcastable to the inputs) replaced by the layer's activation at
    those ids: e.g. the pad token's embedding at every position for ``baseline="pad"``."""
    if not is_token_ids(entry.inputs):
        return method
    kwargs, per_sample = split_model_kwargs(model_kwargs, entry.inputs.shape[0])
    changes = {}
    for setting in REFERENCE_SETTINGS:
        ids = _reference_ids(getattr(method, setting, None), entry.inputs, model, setting)
        if ids is not None:
            # references are a batch of their own: the per-sample arguments of the inputs
            # (an attention mask) do not belong to them
            own = kwargs if setting != "references" else {
                k: v for k, v in kwargs.items() if k not in per_sample}
            h = activation(model, entry.module, entry.side, ids, own, name=entry.name,
                           argument=setting)
            changes[setting] = entry.as_explained(h).contiguous()
    return dataclasses.replace(method, **changes) if changes else method


def _reference_ids(spec: Any, ids: Tensor, model: nn.Module, setting: str) -> Tensor | None:
    if setting != "references" or not is_token_ids(spec):
        return ids_like(spec, ids, model, setting)
    if bool((spec < 0).any()):
        raise ArgumentError(setting, "the references tensor holds negative token ids; token "
                            "ids are ≥ 0")
    if spec.ndim != ids.ndim or spec.shape[1:] != ids.shape[1:]:
        raise ArgumentError(
            setting, f"references hold token ids of shape {tuple(spec.shape)}; give a "
            f"batch of sequences like the inputs, (R, {', '.join(map(str, ids.shape[1:]))})",
        )
    return spec.to(ids.device)


def check_token_target(task: Task, entry: Entry) -> None:
    """A language model's output (B, L, V) needs a target that says which position to
    explain, and a :class:`~pellucid.targets.continuation` must be the end of the ids."""
    ids, output = entry.inputs, task.first_forward.output
    if not is_token_ids(ids):
        return
    if task.target.classes is not None and output.ndim == 3 and output.shape[1] == ids.shape[-1]:
        raise ArgumentError(
            "target",
            f"the model returns one score vector per token (output {tuple(output.shape)}), so "
            "a class index does not say which position to explain; use "
            "target=pellucid.targets.next_token() for the next token of a language model, "
            "targets.continuation(ids) for the log-probability of a continuation, or a "
            "callable, e.g. lambda out: out[:, 0, label] for a classifier reading position 0",
        )
    fn = task.target.fn
    if isinstance(fn, continuation) and not fn.matches(ids):
        raise ArgumentError(
            "target",
            f"target={fn!r}: the inputs do not end with the continuation's tokens; pass the "
            "prompt followed by the continuation, torch.cat([prompt_ids, continuation_ids], 1)",
        )
