"""Activation maximisation: gradient ascent on images so that an objective is large.

x* = argmax_x  objective(model(T(x))) − Σ weight · penalty(x),  subject to the constraints,

with T a random transform per step (transformation robustness). Several images are
optimised in one batch. Only the image parameters are optimised: the model's parameters
are frozen for the call (and restored by :func:`pellucid.guard.preserved`) and their
``.grad`` is never written.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._seeding import generator
from ..checks import (
    check_bool,
    check_choice,
    check_count,
    check_finite,
    check_finite_number,
    check_seed,
)
from ..errors import ArgumentError, ArgumentTypeError
from ..guard import preserved
from ..layers import LayerRef, capture, layer_name, tensor_outputs
from ..outputs import OutputSelector
from ..placement import placement, to_model
from ..targets import Target
from ..task import Forward, Task
from .objectives import Objective
from .parameterisations import ParameterisationSpec, make_parameterisation
from .regularisers import Constraint, Penalty, Regulariser, Transform, transform_images


def maximise(
    model: nn.Module,
    objective: Objective,
    shape: Sequence[int],
    steps: int = 256,
    lr: float = 0.05,
    seed: int | None = 0,
    parameterisation: ParameterisationSpec = "pixels",
    regularisers: Sequence[Regulariser] = (),
    progress: bool = True,
    optimiser: str = "adam",
    init: Tensor | None = None,
    output: OutputSelector = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> list[Tensor]:
    """Optimise ``shape[0]`` images of shape ``shape[1:]`` to maximise ``objective``.

    Args:
        model: the network (ideally in eval mode); it comes out unchanged.
        objective: e.g. ``ClassLogit(3)``, ``Channel("features.4", 7) + Diversity("features.4")``.
        shape: (number of images, *input shape), e.g. (4, 3, 32, 32).
        steps, lr: optimisation steps and learning rate on the image parameters.
        seed: seeds the starting point and the random transforms (None: fresh randomness).
        parameterisation: ``"pixels"``, ``"fourier"`` or a Parameterisation object.
        regularisers: penalties, transforms and constraints (see ``features.regularisers``).
        progress: show a progress bar.
        optimiser: ``"adam"`` (default) or ``"sgd"`` (plain gradient ascent). Use ``"sgd"``
            with constraints when the exact constrained optimum matters: Adam rescales each
            coordinate, so projected Adam stops where its rescaled step, not the gradient,
            is normal to the constraint.
        init: starting images (shape ``shape``) instead of random ones.
        output, model_kwargs: as in :func:`pellucid.explain`.

    Returns:
        The images, one tensor of shape ``shape[1:]`` each (detached, on the model's device,
        in float32 for a float16 or bfloat16 model: the parameters, their FFT and the
        optimiser's state stay in float32 and the images are cast to the model's dtype just
        before each forward pass; Adam's ε = 1e-8 is 0 in float16).
    """
    if not isinstance(objective, Objective):
        raise ArgumentTypeError(
            "objective",
            f"objective must be an Objective (e.g. ClassLogit(3)), got {type(objective).__name__}",
        )
    shape = _check_shape(shape)
    steps = check_count(steps, "steps", "optimisation steps", minimum=0)
    check_finite_number(lr, "lr", 0.0, inclusive=False, meaning="the learning rate")
    check_seed(seed)
    check_bool(progress, "progress")
    param = make_parameterisation(parameterisation)
    penalties, transforms, constraints = _split(regularisers)
    check_choice(optimiser, "optimiser", ("adam", "sgd"))
    gen = generator(seed)

    with preserved(model):
        for name in objective.layers():
            layer_name(model, name)  # a layer the model does not have fails before optimising
        for p in model.parameters():
            p.requires_grad_(False)  # restored by preserved(); no weight gradients at all
        device, dtype = placement(model)
        wide = torch.promote_types(dtype, torch.float32)  # images and FFTs: ≥ float32
        if init is None:
            params = param.init(shape, gen).to(device, wide)
        else:
            start = _check_init(init, shape).detach().to(device, wide, copy=True)
            params = param.from_image(start)
        params.requires_grad_(True)
        step = _optimiser(optimiser, params, lr)
        for _ in tqdm(range(steps), disable=not progress, desc="maximising", leave=False):
            with torch.enable_grad():
                image = param.to_image(params, shape)
                forward = _observe(
                    model,
                    transform_images(image, transforms, gen).to(dtype),
                    objective.layers(),
                    output,
                    model_kwargs,
                )
                value = objective(forward) - _total_penalty(image, penalties)
                check_finite(
                    value.detach(), "the objective values", argument="objective",
                    fix="a term of the objective or a penalty in regularisers (e.g. "
                    "ExpertPrior's log_density) is not finite for these images; check them, "
                    "or lower lr",
                )
                (grad,) = torch.autograd.grad(value.sum(), params)
            params.grad = -grad  # the optimiser minimises; ascend the objective
            step.step()
            if constraints:
                with torch.no_grad():
                    params.copy_(
                        param.from_image(_project(param.to_image(params, shape), constraints))
                    )
        with torch.no_grad():
            images = param.to_image(params.detach(), shape)
    return list(images.unbind(0))


def observe(
    model: nn.Module,
    x: Tensor,
    layers: LayerRef | Iterable[LayerRef],
    output: OutputSelector = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Forward:
    """One forward pass of ``x`` recording every call of ``layers`` (hooks removed after).

    ``layers`` are dotted names or submodules; the :class:`Forward` is keyed by dotted name.
    The pass stays in the autograd graph of ``x``, so that objectives on it can be
    differentiated with respect to whatever ``x`` was made from. The model sees a copy of
    ``x`` on its device and in its floating dtype (:func:`pellucid.placement.to_model`), and
    comes out unchanged (:func:`pellucid.guard.preserved`); the recorded tensors are on the
    model's device.
    """
    if not isinstance(x, Tensor):
        raise ArgumentTypeError("x", f"x must be a tensor (batch first), got {type(x).__name__}")
    refs = [layers] if isinstance(layers, (str, nn.Module)) else list(layers)
    with preserved(model):
        return _observe(model, x, [layer_name(model, ref) for ref in refs], output, model_kwargs)


def _observe(
    model: nn.Module,
    x: Tensor,
    layers: Iterable[str],
    output: OutputSelector,
    model_kwargs: Mapping[str, Any] | None,
) -> Forward:
    """:func:`observe` without the guard (for callers that hold it)."""
    x = to_model(x, model)  # differentiable: the graph reaches whatever x was made from
    task = Task(model, Target(), output, model_kwargs, len(x))
    with capture(model, sorted(set(layers))) as captured:
        out = task.output(x)
    return Forward(x, out, tensor_outputs(captured))


def _optimiser(name: str, params: Tensor, lr: float) -> torch.optim.Optimizer:
    return (torch.optim.Adam if name == "adam" else torch.optim.SGD)([params], lr=lr)


def _split(
    regularisers: Sequence[Regulariser],
) -> tuple[list[Penalty], list[Transform], list[Constraint]]:
    if isinstance(regularisers, Regulariser) or not isinstance(regularisers, Iterable):
        raise ArgumentTypeError(
            "regularisers",
            f"regularisers must be a list of regularisers, e.g. regularisers=[L2(), Jitter()], "
            f"got {type(regularisers).__name__}",
        )
    kinds: tuple[list[Penalty], list[Transform], list[Constraint]] = ([], [], [])
    for reg in regularisers:
        for kind, bucket in zip((Penalty, Transform, Constraint), kinds):
            if isinstance(reg, kind):
                bucket.append(reg)  # type: ignore[arg-type]
                break
        else:
            raise ArgumentTypeError(
                "regularisers",
                f"{reg!r} in regularisers is not a regulariser; use penalties (L2, "
                "TotalVariation, Blur, ExpertPrior), transforms (Jitter, RandomScale, "
                "RandomRotate) or constraints (L2Ball, ValueRange) from pellucid.features",
            )
    return kinds


def _total_penalty(image: Tensor, penalties: Sequence[Penalty]) -> Tensor:
    total = image.new_zeros(image.shape[0])
    for penalty in penalties:
        total = total + penalty.weight * penalty.cost(image)
    return total


def _project(image: Tensor, constraints: Sequence[Constraint]) -> Tensor:
    for constraint in constraints:
        image = constraint.project(image)
    return image


def _check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """(number of images, *input shape): at least 2 positive ints."""
    try:
        dims = tuple(operator.index(s) for s in shape if not isinstance(s, bool))
        ok = len(dims) == len(shape)
    except TypeError:
        ok = False
    if not ok or len(dims) < 2 or any(s < 1 for s in dims):
        raise ArgumentError(
            "shape",
            f"shape {shape!r} must be (number of images, *input shape) with positive int "
            "sizes, e.g. (4, 3, 32, 32)",
        )
    return dims


def _check_init(init: Tensor, shape: tuple[int, ...]) -> Tensor:
    if not isinstance(init, Tensor) or tuple(init.shape) != shape:
        got = tuple(init.shape) if isinstance(init, Tensor) else type(init).__name__
        raise ArgumentError(
            "init", f"init must be a tensor of shape {shape} (the images), got {got}"
        )
    if init.is_complex() or init.dtype == torch.bool:
        raise ArgumentTypeError("init", f"init must hold real numbers, got dtype {init.dtype}")
    check_finite(init, "init")
    return init.detach()


__all__ = ["maximise", "observe"]
