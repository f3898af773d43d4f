"""Randomisation sanity checks: an explanation should depend on what the model learned.

- ``randomisation.model_parameter`` (Adebayo et al. 2018, "Sanity checks for saliency
  maps"): re-draw the layers of a deep copy of the model from the top down (:func:`randomise`),
  either cascading (layers stay randomised) or independently (one layer at a time), explain
  each randomised model, and compare with the original explanation by Spearman rank
  correlation (absolute or signed), SSIM or HOG similarity. Curve point 0 explains the
  unrandomised copy (similarity 1 for a deterministic method); the score is the mean
  similarity over the randomised layers (lower is better: the explanation noticed).
- ``randomisation.random_logit`` (Sixt et al. 2020): similarity of the explanation of the
  target and of a random other class (lower is better).
- ``randomisation.data`` (Adebayo et al. 2018, data randomisation test): similarity of the
  explanation and that of a model trained by ``train_fn`` on randomly permuted labels.

The Spearman tests report both Spearman measures in ``extras``: the absolute one (Adebayo
et al.'s default) counts a map whose signs flipped as unchanged, which Binder et al. 2023
("Shortcomings of top-down randomization-based sanity checks") show flatters some methods.

The user's model is never changed: every randomisation works on ``copy.deepcopy(model)``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .._seeding import generator, offset_seed
from ..batching import check_batch_size
from ..checks import check_choice, check_seed
from ..errors import ArgumentError, ArgumentTypeError, UnsupportedModelError
from ..registry import suggest
from .base import Case, Metric, Scores, TrainFn, register_metric, required_train_fn
from .settings import check_callable
from .similarity import SIMILARITIES, similarity

ORDERS = ("cascading", "independent")
#: the Spearman similarities that the Spearman-based tests always report in their extras
SPEARMAN = ("spearman", "spearman_abs")
#: running statistics a normalisation layer learned from data (torch's BatchNorm and
#: InstanceNorm, the modules with ``reset_running_stats``); they are re-drawn with it
STATISTICS = ("running_mean", "running_var")
#: spread of the re-draw of a tensor whose trained elements are all equal (an untrained
#: normalisation layer): N(0, 0.1²) for a bias of zeros, exp N(0, 0.1²) for a weight of ones
FLOOR = 0.1


def parameter_layers(model: nn.Module) -> list[str]:
    """Names of the modules that own parameters or running statistics, from the output down."""
    names = [n for n, m in model.named_modules() if _owns_state(m)]
    return names[::-1]


def randomise(module: nn.Module, seed: int) -> None:
    """Re-draw what ``module`` and every module inside it learned, with a seeded draw that
    leaves the global random state as it was.

    A module's own parameters get its ``reset_parameters`` (torch's initialisation, e.g.
    Kaiming-uniform for convolutions and linear layers, as Adebayo et al. 2018
    re-initialise). Three things are re-drawn from the trained values instead, element-wise
    from N(m, s²) with m and s the mean and standard deviation of the trained tensor's
    elements (s = ``FLOOR`` when they are all equal): a parameter that ``reset_parameters``
    sets to a constant rather than drawing it (the weight 1 and bias 0 of BatchNorm,
    LayerNorm, GroupNorm: a reset to the identity is not a random layer), every parameter
    of a module without ``reset_parameters``, and the running mean and variance of
    BatchNorm and InstanceNorm. A tensor whose trained values are all positive (running
    variances) is drawn in log space, so it stays positive. The layer keeps its scale and
    loses what each channel learned.

    The draws are made on a float32 CPU copy of the module under a forked CPU generator
    seeded with ``seed``, then copied in (rounded to the module's dtype): the same values on
    CPU and CUDA and in every dtype, and no device's global random state changes
    (``torch.manual_seed`` would seed every CUDA device too). The module's tensors travel
    packed into one buffer each way (:func:`redraws`), so the host waits twice.

    Example:
        >>> import torch
        >>> layer, state = torch.nn.Linear(3, 2), torch.random.get_rng_state()
        >>> randomise(layer, seed=0)
        >>> torch.equal(state, torch.random.get_rng_state())
        True
    """
    install(module, redraws([module], [seed])[0])


def redraws(modules: Sequence[nn.Module], seeds: Sequence[int], *,
            cascading: bool = True) -> list[list[Tensor]]:
    """For each k, the values of ``modules[k]``'s parameters and buffers (in the order of
    :func:`install`) once :func:`randomise` re-drew it with ``seeds[k]``: after
    ``modules[:k]`` were re-drawn too (``cascading``, Adebayo et al. 2018's cascade), or
    from the trained values (independent).

    The whole cascade is drawn on float32 CPU twins that share the trained values, read
    from the device in one copy (the modules' tensors packed into one buffer, per device);
    the drawn values go back in one copy too, as views of one buffer that holds the
    randomised modules' tensors once per step (in their dtypes, on their devices). So the
    host waits twice whatever the number of layers and tensors.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
        >>> steps = redraws([net[1], net[0]], [0, 1])
        >>> [[tuple(t.shape) for t in step] for step in steps]
        [[(1, 2), (1,)], [(2, 3), (2,)]]
        >>> install(net[1], steps[0]); torch.equal(net[1].weight, steps[0][0])
        True
    """
    if len(seeds) != len(modules):
        raise ArgumentError(
            "seeds", f"redraws got {len(modules)} modules and {len(seeds)} seeds; give one "
            "seed per module (step k of the metric uses offset_seed(seed, k))",
        )
    trained = list({id(t): t for m in modules for t in _state(m)}.values())
    host = _copied(trained, [torch.device("cpu")] * len(trained))
    # the twins: float32 CPU copies that share the tensors the modules share (plain tensors
    # for the parameters: nothing is run on them, so they need no autograd)
    memo: dict[int, Any] = {id(t): h.float() if h.is_floating_point() else h
                            for t, h in zip(trained, host, strict=True)}
    twins = [copy.deepcopy(m, memo) for m in modules]
    start = [memo[id(t)].clone() for t in trained] if not cascading else []
    steps = []
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        for module, twin, seed in zip(modules, twins, seeds, strict=True):
            for t, value in zip(trained, start):
                memo[id(t)].copy_(value)
            torch.random.default_generator.manual_seed(seed)  # the CPU generator alone
            for part in twin.modules():
                _redraw(part)
            pairs = list(zip(_state(twin), _state(module), strict=True))
            steps.append([drawn.to(t.dtype, copy=True) for drawn, t in pairs])
            for (drawn, _), rounded in zip(pairs, steps[-1]):
                drawn.copy_(rounded)  # what the device holds, for the next step's statistics
    moved = iter(_copied([v for step in steps for v in step],
                         [t.device for m in modules for t in _state(m)]))
    return [[next(moved) for _ in step] for step in steps]


def install(module: nn.Module, values: Sequence[Tensor]) -> None:
    """Copy ``values`` into ``module``'s parameters, then buffers (``module.parameters()``,
    ``module.buffers()`` order), as :func:`redraws` returns them.

    Example:
        >>> import torch
        >>> norm = torch.nn.BatchNorm1d(3)  # the identity: weight 1, running variance 1
        >>> install(norm, redraws([norm], [0])[0])
        >>> bool((norm.weight != 1).all() and (norm.running_var > 0).all())
        True
    """
    state = _state(module)
    if len(values) != len(state):
        raise ArgumentError(
            "values", f"install got {len(values)} values for a {type(module).__name__} with "
            f"{len(state)} parameters and buffers; give the step of redraws drawn for it",
        )
    with torch.no_grad():
        for tensor, value in zip(state, values, strict=True):
            tensor.copy_(value)


def _state(module: nn.Module) -> list[Tensor]:
    return [*module.parameters(), *module.buffers()]


def _copied(tensors: Sequence[Tensor], places: Sequence[torch.device]) -> list[Tensor]:
    """``tensors[i]`` copied to ``places[i]`` with one copy per pair of devices: the bytes of
    the tensors packed into one buffer, widest element first (so that each tensor starts at
    a multiple of its element size and is a view of the buffer on arrival)."""
    copied: list[Tensor] = [torch.empty(0)] * len(tensors)
    routes: dict[tuple[torch.device, torch.device], list[int]] = {}
    for i, (t, place) in enumerate(zip(tensors, places, strict=True)):
        routes.setdefault((t.device, place), []).append(i)
    for (_, place), indices in routes.items():
        indices.sort(key=lambda i: -tensors[i].element_size())
        parts = [tensors[i].detach().reshape(-1).view(torch.uint8) for i in indices]
        packed = torch.cat(parts).to(place)
        for i, piece in zip(indices, packed.split([p.numel() for p in parts]), strict=True):
            copied[i] = piece.view(tensors[i].dtype).view(tensors[i].shape)
    return copied


def _statistics(module: nn.Module) -> list[Tensor]:
    """The running statistics ``module`` learned from data (BatchNorm, InstanceNorm)."""
    if not callable(getattr(module, "reset_running_stats", None)):
        return []
    found = [getattr(module, name, None) for name in STATISTICS]
    return [t for t in found if isinstance(t, Tensor)]


def _owns_state(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False)) or bool(_statistics(module))


def _redraw(module: nn.Module) -> None:
    """Re-draw ``module``'s own parameters and running statistics (see :func:`randomise`)."""
    parameters = list(module.parameters(recurse=False))
    statistics = _statistics(module)
    trained = [t.detach().clone() for t in [*parameters, *statistics]]
    reset = getattr(module, "reset_parameters", None)
    drawn: set[int] = set()
    if parameters and callable(reset):
        reset()
        first = [p.detach().clone() for p in parameters]
        reset()  # a parameter that two resets set alike is a constant, not a random draw
        drawn = {id(p) for p, f in zip(parameters, first, strict=True) if not torch.equal(p, f)}
    for tensor, value in zip([*parameters, *statistics], trained, strict=True):
        if id(tensor) not in drawn:
            tensor.copy_(_drawn_like(value))


def _drawn_like(trained: Tensor) -> Tensor:
    """Element-wise N(mean, std²) of ``trained``'s elements (std ``FLOOR`` when they are all
    equal), in log space when they are all positive."""
    values = trained.to("cpu", torch.float64)
    positive = values.numel() > 0 and bool((values > 0).all())
    if positive:
        values = values.log()
    mean = float(values.mean()) if values.numel() else 0.0
    spread = float(values.std(correction=0)) if values.numel() > 1 else 0.0
    draw = torch.randn(values.shape, dtype=torch.float64) * (spread or FLOOR) + mean
    return (draw.exp() if positive else draw).to(trained)


def private_twin(model: nn.Module, metric: str) -> nn.Module:
    """``copy.deepcopy(model)``, or an error that says how to make the model copyable."""
    try:
        return copy.deepcopy(model)
    except Exception as error:  # deepcopy raises TypeError, RuntimeError, PicklingError, …
        raise UnsupportedModelError(
            "model",
            f"{metric} randomises layers of copy.deepcopy(model), so that your model stays "
            f"untouched, but copying the model failed ({type(error).__name__}: {error}). "
            "Make the model deep-copyable: keep locks, open files, sockets and similar "
            "handles out of its attributes (or give the module that holds one a "
            "__deepcopy__ that shares it), and detach tensors it caches",
        ) from error


def _check_common(metric: Any) -> None:
    """The settings the three tests share: similarity, batch_size, seed."""
    check_choice(metric.similarity, "similarity", SIMILARITIES)
    check_batch_size(metric.batch_size)
    check_seed(metric.seed, none=not isinstance(metric, ModelParameterRandomisation))


def _similarities(kind: str, a: Tensor, b: Tensor) -> dict[str, Tensor]:
    """Similarity per sample by ``kind`` and by both Spearman measures."""
    return {k: similarity(k, a, b) for k in dict.fromkeys([kind, *SPEARMAN])}


def _spearman_extras(scores: dict[str, Tensor], curves: dict[str, Tensor] | None = None
                     ) -> dict[str, Tensor]:
    """``extras`` entries ``spearman`` / ``spearman_abs`` (and their ``_curves``)."""
    extras = {k: scores[k] for k in SPEARMAN}
    if curves is not None:
        extras |= {f"{k}_curves": curves[k] for k in SPEARMAN}
    cpu = torch.device("cpu")  # in one copy: the host waits once
    return dict(zip(extras, _copied(list(extras.values()), [cpu] * len(extras)), strict=True))


@register_metric("randomisation.model_parameter")
@dataclass(frozen=True, eq=False)
class ModelParameterRandomisation(Metric):
    """Model parameter randomisation test (Adebayo et al. 2018), cascading or independent.

    Layer k of the order (top first) is re-drawn by :func:`randomise` with seed
    ``seed + k`` (all layers drawn at once on the CPU by :func:`redraws`, then installed
    one step at a time, so the host waits for the device a fixed number of times; the
    drawn values occupy the randomised layers' size once more on the model's device):
    torch's initialisation for weights, a draw matched to the trained values for
    normalisation parameters and BatchNorm statistics (never the identity). Curve point
    k is similarity(original map, map of the model with layers 1..k randomised (cascading)
    or only layer k (independent)); score = mean of points 1..K.

    Settings:
        order: ``"cascading"`` (top layer first, layers accumulate) or ``"independent"``.
        similarity: ``"spearman_abs"``, ``"spearman"``, ``"ssim"`` or ``"hog"``; the score.
            ``extras["spearman"]`` and ``extras["spearman_abs"]`` always hold both Spearman
            scores (and ``extras["spearman_curves"]``, ``extras["spearman_abs_curves"]``).
        layers: modules to randomise (dotted names or submodules of the model), top first;
            a container randomises every module inside it. ``None`` takes every module that
            owns parameters or running statistics, from the output down.
    """

    direction = "lower"
    order: str = "cascading"
    similarity: str = "spearman_abs"
    layers: tuple[str | nn.Module, ...] | None = None
    batch_size: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice(self.order, "order", ORDERS)
        _check_common(self)
        if self.layers is None:
            return
        if isinstance(self.layers, (str, nn.Module)) or not isinstance(self.layers, Sequence):
            raise ArgumentTypeError(
                "layers",
                f"layers must be a tuple of layer names or submodules, top layer first (e.g. "
                f"layers=('fc',)), or None for every layer; got {self.layers!r}",
            )
        wrong = [layer for layer in self.layers if not isinstance(layer, (str, nn.Module))]
        if wrong:
            raise ArgumentTypeError(
                "layers", f"layers holds {wrong[0]!r}; give dotted names from "
                "model.named_modules() or submodules of the model",
            )
        if not self.layers:
            raise ArgumentError(
                "layers", "layers is empty, so nothing would be randomised; name at least one "
                "layer, or pass layers=None for every layer with parameters",
            )

    def compute(self, case: Case) -> Scores:
        model = case.task.model
        names = (parameter_layers(model) if self.layers is None
                 else [self._name(model, layer) for layer in self.layers])
        if not names:
            raise ArgumentError(
                "model", f"{self.name}: the model has no layer with parameters or running "
                "statistics to randomise",
            )
        twin = private_twin(model, self.name)
        modules = dict(twin.named_modules())
        cascading = self.order == "cascading"
        trained = None if cascading else copy.deepcopy(twin.state_dict())
        drawn = redraws([modules[n] for n in names],
                        [offset_seed(self.seed, k) for k in range(len(names))],
                        cascading=cascading)
        steps = [_similarities(self.similarity, case.attribution, self._explain(case, twin))]
        for name, values in zip(names, drawn, strict=True):
            if trained is not None:
                twin.load_state_dict(trained)
            install(modules[name], values)
            steps.append(_similarities(self.similarity, case.attribution,
                                       self._explain(case, twin)))
        curves = {k: torch.stack([s[k] for s in steps], 1) for k in steps[0]}
        scores = {k: c[:, 1:].mean(1) for k, c in curves.items()}
        return Scores(scores[self.similarity], curves[self.similarity],
                      torch.arange(len(names) + 1.0),
                      {"layers": ["none", *names], **_spearman_extras(scores, curves)})

    def _name(self, model: nn.Module, layer: str | nn.Module) -> str:
        """The dotted name of a layer given by name or as a submodule; it must own state."""
        modules = dict(model.named_modules())
        if isinstance(layer, nn.Module):
            name = next((n for n, m in modules.items() if m is layer), None)
            if name is None:
                raise ArgumentError(
                    "layers", f"the {type(layer).__name__} in layers is not a submodule of the "
                    "model; give a dotted name from model.named_modules() or a submodule",
                )
        elif layer not in modules:
            hint = suggest(layer, [n for n in modules if n])
            raise ArgumentError(
                "layers", f"layers names the unknown layer {layer!r}.{hint} Layer names are "
                f"the dotted names of model.named_modules(); with parameters: "
                f"{', '.join(parameter_layers(model)) or 'none'}",
            )
        else:
            name = layer
        if not any(_owns_state(m) for m in modules[name].modules()):
            raise ArgumentError(
                "layers", f"layers names {name!r} ({type(modules[name]).__name__}), which owns "
                "no parameters or running statistics, so randomising it changes nothing; "
                f"choose from: {', '.join(parameter_layers(model)) or 'none'}",
            )
        return name

    def _explain(self, case: Case, model: nn.Module) -> Tensor:
        return case.explain(case.forward.inputs, model=model, batch_size=self.batch_size,
                            metric=self.name)


@register_metric("randomisation.random_logit")
@dataclass(frozen=True, eq=False)
class RandomLogit(Metric):
    """Random logit test (Sixt et al. 2020): similarity of the explanations of the target
    and of a random other class, drawn per sample (seeded).
    """

    direction = "lower"
    similarity: str = "ssim"
    batch_size: int | None = None
    seed: int | None = 0

    def __post_init__(self) -> None:
        _check_common(self)

    def compute(self, case: Case) -> Scores:
        labels = case.labels(self.name)
        output = case.forward.output
        classes = output.shape[1] if output.ndim >= 2 else 1
        if classes < 2:
            raise ArgumentError(
                "model", f"{self.name} compares the explanations of two classes, but the model "
                f"output has shape {tuple(output.shape)} (one class); use it on a classifier "
                "with at least two outputs",
            )
        draw = torch.randint(1, classes, (len(labels),), generator=generator(self.seed))
        other = (labels + draw.to(labels.device)) % classes
        explained = case.explain(case.forward.inputs, target=other, batch_size=self.batch_size,
                                 metric=self.name)
        return Scores(similarity(self.similarity, case.attribution, explained),
                      extras={"random_class": other.cpu()})


@register_metric("randomisation.data")
@dataclass(frozen=True, eq=False)
class DataRandomisation(Metric):
    """Data randomisation test (Adebayo et al. 2018): similarity to the explanation of a model
    that ``train_fn(inputs, labels)`` trains on randomly permuted labels.

    ``data`` = (inputs, labels) to train on; by default the evaluated batch and its targets.
    ``extras["spearman"]`` and ``extras["spearman_abs"]`` hold both Spearman scores.
    """

    direction = "lower"
    train_fn: TrainFn | None = None
    data: tuple[Tensor, Tensor] | None = None
    similarity: str = "spearman_abs"
    batch_size: int | None = None
    seed: int | None = 0

    def __post_init__(self) -> None:
        _check_common(self)
        check_callable(self.train_fn, "train_fn", "(inputs, labels) -> trained model")
        if self.data is None:
            return
        pair = isinstance(self.data, (tuple, list)) and len(self.data) == 2
        if not pair or not all(isinstance(t, Tensor) for t in self.data):
            raise ArgumentTypeError(
                "data", "data must be a pair (inputs, labels) of tensors, or None for the "
                f"evaluated batch; got {type(self.data).__name__}",
            )
        if len(self.data[0]) != len(self.data[1]) or len(self.data[0]) == 0:
            raise ArgumentError(
                "data", f"data holds {len(self.data[0])} inputs and {len(self.data[1])} "
                "labels; give one label per input (and at least one input)",
            )

    def compute(self, case: Case) -> Scores:
        train_fn = required_train_fn(self.name, self.train_fn)
        x = case.forward.inputs
        if self.data is None and case.one_output:
            raise ArgumentError(
                "data",
                f"{self.name} permutes the labels of the evaluated batch, but the model has one "
                f"output per sample (shape {tuple(case.forward.output.shape)}), so its only "
                "class is 0 and permuting changes nothing; pass data=(inputs, targets) with the "
                "regression targets to permute",
            )
        inputs, labels = self.data if self.data is not None else (x, case.labels(self.name))
        permuted = labels[torch.randperm(len(labels), generator=generator(self.seed))]
        trained = train_fn(inputs.clone(), permuted.clone())
        if not isinstance(trained, nn.Module):
            raise ArgumentTypeError(
                "train_fn", f"train_fn must return the trained model (an nn.Module); it "
                f"returned {type(trained).__name__}. End train_fn with `return model`",
            )
        explained = case.explain(x, model=trained.eval(), batch_size=self.batch_size,
                                 metric=self.name)
        scores = _similarities(self.similarity, case.attribution, explained)
        return Scores(scores[self.similarity], extras=_spearman_extras(scores))
