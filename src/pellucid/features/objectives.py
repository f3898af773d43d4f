"""What activation maximisation maximises: one score per image, composable by ``+`` and ``*``.

An :class:`Objective` maps what one forward pass recorded (a :class:`pellucid.task.Forward`:
the model output and the outputs of the layers it names) to one score per image.
Objectives add and scale:
``ClassLogit(3) - 0.5 * Channel("features.2", 7) + Diversity("features.2")``.

Indices (class, unit, channel) may be one int for every image or one per image, so that a
single batch optimises different images for different targets.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .._deprecation import deprecated_names
from ..checks import as_directions, check_bool, check_finite_number
from ..errors import ArgumentError, ArgumentTypeError
from ..task import Forward

Index = int | Sequence[int] | Tensor
Position = Sequence[int] | None


class Objective:
    """A score per image to maximise. ``a + b``, ``w * a``, ``a - b`` and ``-a`` compose."""

    def layers(self) -> frozenset[str]:
        """The dotted names of the layers whose outputs the objective reads."""
        return frozenset()

    def __call__(self, forward: Forward) -> Tensor:
        """One score per image of the forward pass."""
        raise NotImplementedError

    def __add__(self, other: Objective) -> Objective:
        if not isinstance(other, Objective):
            return NotImplemented
        return Sum((*_terms(self), *_terms(other)))

    def __radd__(self, other: object) -> Objective:
        if isinstance(other, (int, float)) and other == 0:  # sum([...]) starts at 0
            return self
        return NotImplemented

    def __mul__(self, weight: float) -> Objective:
        if not isinstance(weight, (int, float)) or isinstance(weight, bool):
            return NotImplemented
        return Weighted(weight, self)

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return Weighted(-1.0, self)

    def __sub__(self, other: Objective) -> Objective:
        if not isinstance(other, Objective):
            return NotImplemented
        return self + (-other)


def _terms(objective: Objective) -> tuple[Objective, ...]:
    return objective.terms if isinstance(objective, Sum) else (objective,)


@dataclass(frozen=True, eq=False)
class Sum(Objective):
    """The sum of several objectives."""

    terms: tuple[Objective, ...]

    def __post_init__(self) -> None:
        for term in self.terms:
            _check_objective(term, "terms")

    def layers(self) -> frozenset[str]:
        return frozenset().union(*(t.layers() for t in self.terms))

    def __call__(self, forward: Forward) -> Tensor:
        return torch.stack([t(forward) for t in self.terms]).sum(0)


@dataclass(frozen=True, eq=False)
class Weighted(Objective):
    """An objective times a constant weight."""

    weight: float
    term: Objective

    def __post_init__(self) -> None:
        weight = check_finite_number(self.weight, "weight", meaning="the objective's weight")
        object.__setattr__(self, "weight", weight)
        _check_objective(self.term, "term")

    def layers(self) -> frozenset[str]:
        return self.term.layers()

    def __call__(self, forward: Forward) -> Tensor:
        return self.weight * self.term(forward)


@dataclass(frozen=True, eq=False)
class LayerObjective(Objective):
    """An objective that reads the output of the layer at dotted name ``layer``."""

    layer: str

    def __post_init__(self) -> None:
        if not isinstance(self.layer, str):
            raise ArgumentTypeError(
                "layer",
                f"layer must be the dotted name of a layer (a key of "
                f"dict(model.named_modules()), e.g. 'features.3'), got {type(self.layer).__name__}",
            )

    def layers(self) -> frozenset[str]:
        return frozenset({self.layer})


@dataclass(frozen=True, eq=False)
class ClassLogit(Objective):
    """The model output (logit) of class ``classes`` (one int, or one per image)."""

    classes: Index

    def __post_init__(self) -> None:
        _check_index(self.classes, "classes")

    def __call__(self, forward: Forward) -> Tensor:
        output = _as_matrix(forward.output, "the model output")
        return _pick(output, self.classes, "class", "classes")


@dataclass(frozen=True, eq=False)
class ClassProbability(Objective):
    """The softmax probability p(class | x), or its logarithm with ``log=True``."""

    classes: Index
    log: bool = False

    def __post_init__(self) -> None:
        _check_index(self.classes, "classes")
        check_bool(self.log, "log")

    def __call__(self, forward: Forward) -> Tensor:
        logp = torch.log_softmax(_as_matrix(forward.output, "the model output"), dim=1)
        picked = _pick(logp, self.classes, "class", "classes")
        return picked if self.log else picked.exp()


@dataclass(frozen=True, eq=False)
class Neuron(LayerObjective):
    """One unit of a layer: channel ``unit`` at spatial ``position`` (default: the centre)."""

    unit: Index
    position: Position = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_index(self.unit, "unit")
        _check_position(self.position)

    def __call__(self, forward: Forward) -> Tensor:
        act = forward.layer(self.layer)
        picked = _pick(act, self.unit, f"unit of layer {self.layer!r}", "unit")
        return at_position(picked, self.position)


@dataclass(frozen=True, eq=False)
class Channel(LayerObjective):
    """The mean over space of one channel of a layer (N×C×... outputs; N×C gives the unit)."""

    channel: Index

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_index(self.channel, "channel")

    def __call__(self, forward: Forward) -> Tensor:
        act = forward.layer(self.layer)
        picked = _pick(act, self.channel, f"channel of layer {self.layer!r}", "channel")
        return picked.flatten(1).mean(1) if picked.ndim > 1 else picked


@dataclass(frozen=True, eq=False)
class Direction(LayerObjective):
    """The dot product ⟨a(x), v⟩ of a layer's activation vector with ``vector`` (Olah 2018).

    ``vector`` has the layer's channel count C (or one row per image, B×C). For feature
    maps, the dot product is taken at ``position``, or averaged over all positions when
    ``position`` is None. This visualises a whole activation vector (semantic dictionaries).
    A vector with as many entries as the whole layer output (C·H·W, e.g. a CAV from
    :mod:`pellucid.concepts`) is dotted with the flattened output instead.
    """

    vector: Tensor
    position: Position = None

    def __post_init__(self) -> None:
        super().__post_init__()
        as_directions(
            self.vector, "vector", "C (one entry per channel) or B×C (one row per image)"
        )
        _check_position(self.position)

    def __call__(self, forward: Forward) -> Tensor:
        act = forward.layer(self.layer)
        v = torch.as_tensor(self.vector, dtype=act.dtype, device=act.device)
        if act.ndim > 2 and v.ndim == 1 and v.numel() == act[0].numel() != act.shape[1]:
            return act.flatten(1) @ v
        rows_ok = v.ndim == 1 or v.shape[0] in (1, act.shape[0])
        if act.ndim < 2 or v.shape[-1] != act.shape[1] or not rows_ok:
            raise ArgumentError(
                "vector",
                f"the direction (vector) has shape {tuple(v.shape)} but layer {self.layer!r} "
                f"outputs {tuple(act.shape)}; give a vector of its "
                f"{act.shape[1] if act.ndim > 1 else 1} channels (or one per image)",
            )
        v = v.reshape(-1, act.shape[1], *([1] * (act.ndim - 2)))
        dots = (act * v).sum(1)
        if self.position is None:
            return dots.flatten(1).mean(1) if dots.ndim > 1 else dots
        return at_position(dots, self.position)


@dataclass(frozen=True, eq=False)
class Diversity(LayerObjective):
    """Minus the mean cosine similarity of an image's Gram matrix with the others' (Olah 2017).

    For layer outputs A_i (C×S, S positions), G_i = A_i A_iᵀ / S and image i scores
    −1/(B−1) Σ_{j≠i} cos(G_i, G_j); maximising it pushes a batch towards different styles.
    A batch of one image scores 0.
    """

    def __call__(self, forward: Forward) -> Tensor:
        act = forward.layer(self.layer)
        batch = act.shape[0]
        if batch < 2:
            return act.new_zeros(batch)
        features = act.reshape(batch, act.shape[1], -1) if act.ndim > 1 else act.view(batch, 1, 1)
        gram = features @ features.transpose(1, 2) / features.shape[2]
        flat = torch.nn.functional.normalize(gram.flatten(1), dim=1)
        cos = flat @ flat.T
        return -(cos.sum(1) - cos.diagonal()) / (batch - 1)


def _check_objective(term: Any, argument: str) -> None:
    if not isinstance(term, Objective):
        raise ArgumentTypeError(
            argument,
            f"{argument} must be an Objective (e.g. ClassLogit(3)), got {type(term).__name__}",
        )


def _check_index(index: Any, argument: str) -> None:
    """One non-negative int, or a 1-D sequence/tensor of them (one per image)."""
    try:
        idx = torch.as_tensor(index)
    except (TypeError, ValueError, RuntimeError):
        idx = None
    if (
        idx is None or isinstance(index, bool) or idx.dtype == torch.bool
        or idx.is_floating_point() or idx.is_complex() or idx.ndim > 1 or idx.numel() == 0
    ):
        raise ArgumentTypeError(
            argument,
            f"{argument} must be one int or a list of ints (one per image), got {index!r}",
        )
    if bool((idx < 0).any()):
        raise ArgumentError(argument, f"{argument} must be non-negative indices, got {index!r}")


def _check_position(position: Any) -> None:
    """None (the centre), or one non-negative int per spatial dimension."""
    if position is None:
        return
    try:
        pos = [operator.index(p) for p in position if not isinstance(p, bool)]
        ok = len(pos) == len(position)
    except TypeError:
        ok = False
    if not ok or any(p < 0 for p in pos):
        raise ArgumentError(
            "position",
            f"position must be None (the centre) or one non-negative int per spatial "
            f"dimension, e.g. (row, column), got {position!r}",
        )


def _as_matrix(output: Tensor, what: str) -> Tensor:
    if output.ndim != 2:
        raise ArgumentError(
            "output",
            f"{what} has shape {tuple(output.shape)}; class objectives need one row of class "
            "scores per image (B×K); pass output= to select it",
        )
    return output


def _pick(values: Tensor, index: Index, what: str, argument: str) -> Tensor:
    """``values[b, index[b]]`` for every row b; ``index`` is one int or one per row."""
    batch, size = values.shape[0], values.shape[1] if values.ndim > 1 else 1
    idx = torch.as_tensor(index, device=values.device)
    if idx.numel() not in (1, batch):
        raise ArgumentError(
            argument,
            f"the {what} index {argument}={index!r} must be one int or one int per image "
            f"({batch} images)",
        )
    idx = idx.long().reshape(-1).expand(batch)
    if values.ndim < 2 or bool(((idx < 0) | (idx >= size)).any()):
        raise ArgumentError(
            argument,
            f"{what} index {argument}={index!r} is out of range for an output of shape "
            f"{tuple(values.shape)}; use an index in 0..{size - 1} along dimension 1",
        )
    return values[torch.arange(batch, device=values.device), idx]


def at_position(values: Tensor, position: Position) -> Tensor:
    """``values[:, *position]`` for maps (R, *S), one per row; the centre when position is None.

    Rows are images (per-image maps of a unit) or channels (one image's feature map).
    """
    spatial = tuple(values.shape[1:])
    if not spatial:
        if position:
            raise ArgumentError(
                "position", "the layer has no spatial dimensions; leave position=None"
            )
        return values
    _check_position(position)
    pos = tuple(s // 2 for s in spatial) if position is None else tuple(position)
    if len(pos) != len(spatial) or any(not 0 <= p < s for p, s in zip(pos, spatial)):
        raise ArgumentError(
            "position",
            f"position {position!r} does not fit a feature map of size {spatial}; give one "
            f"index per spatial dimension, each in range",
        )
    return values[(slice(None), *pos)]


def _seen(output: Tensor, activations: Mapping[str, Tensor]) -> Forward:
    """The :class:`Forward` that ``Seen(output, activations)`` described (one call per layer).

    Its ``inputs`` are unknown, so they are an empty tensor.
    """
    layers = {name: [act] for name, act in activations.items()}
    return Forward(output.new_empty(0), output, layers)


__getattr__ = deprecated_names(
    __name__,
    {"Seen": ("pellucid.task.Forward(inputs, output, layers={name: [layer output]})",
              lambda: _seen)},
)


__all__ = [
    "Channel",
    "ClassLogit",
    "ClassProbability",
    "Direction",
    "Diversity",
    "LayerObjective",
    "Neuron",
    "Objective",
    "Sum",
    "Weighted",
    "at_position",
]
