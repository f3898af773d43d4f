"""Class prototypes: one image per class that the model scores highly for that class.

Montavon et al. (2018), activation maximisation: x*_c = argmax_x log p(ω_c | x) + log p(x)
− λ‖x‖², where the expert p(x) keeps the prototype a likely input. Pass the expert as
``prior`` (a :class:`GaussianPrior` fitted to data or any log-density callable).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from ..checks import check_choice
from ..errors import ArgumentError, ArgumentTypeError, PellucidError
from .maximise import maximise
from .objectives import ClassLogit, ClassProbability, Objective, _check_index
from .regularisers import ExpertPrior, LogDensity, Regulariser


def class_prototypes(
    model: nn.Module,
    classes: Sequence[int],
    shape: Sequence[int],
    *,
    score: str = "logit",
    prior: LogDensity | None = None,
    prior_weight: float = 1.0,
    regularisers: Sequence[Regulariser] = (),
    **settings: Any,
) -> list[Tensor]:
    """One prototype per class in ``classes``, optimised together in one batch.

    Args:
        shape: the shape of one input (without the batch), e.g. (3, 32, 32).
        score: ``"logit"``, ``"probability"`` or ``"log_probability"`` of the class.
        prior: an expert log-density log p(x) (e.g. ``GaussianPrior.fit(train_images)``),
            added with weight ``prior_weight``.
        regularisers: further penalties, transforms and constraints.
        settings: passed to :func:`maximise` (steps, lr, seed, parameterisation, progress, ...).
    """
    if isinstance(classes, Tensor):
        classes = classes.tolist() if classes.ndim == 1 else classes
    if isinstance(classes, (int, str)) or not isinstance(classes, Sequence) or not classes:
        raise ArgumentError(
            "classes",
            f"classes must be a non-empty list of class indices to visualise, e.g. [0, 1, 2], "
            f"got {classes!r}",
        )
    _check_index(list(classes), "classes")
    if isinstance(shape, (int, str)) or not isinstance(shape, Sequence):
        raise ArgumentTypeError(
            "shape", f"shape must be the shape of one input, e.g. (3, 32, 32), got {shape!r}"
        )
    if isinstance(regularisers, Regulariser) or not isinstance(regularisers, Sequence):
        raise ArgumentTypeError(
            "regularisers",
            f"regularisers must be a list, e.g. [L2()], got {type(regularisers).__name__}",
        )
    objective = _class_objective(score, list(classes))
    try:
        expert = [ExpertPrior(prior, prior_weight)] if prior is not None else []
    except PellucidError as error:  # name the arguments of this function
        renamed = {"log_density": "prior", "weight": "prior_weight"}[error.argument]
        raise type(error)(renamed, f"{renamed}: {error}") from None
    regs = list(regularisers) + expert
    return maximise(model, objective, (len(classes), *shape), regularisers=regs, **settings)


def _class_objective(score: str, classes: list[int]) -> Objective:
    check_choice(score, "score", ("logit", "probability", "log_probability"))
    if score == "logit":
        return ClassLogit(classes)
    return ClassProbability(classes, log=score == "log_probability")


__all__ = ["class_prototypes"]
