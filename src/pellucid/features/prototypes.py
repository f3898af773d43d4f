"""Class prototypes: one image per class that the model scores highly for that class.

Montavon et al. (2018), activation maximisation: x*_c = argmax_x log p(ω_c | x) + log p(x)
− λ‖x‖², where the expert p(x) keeps the prototype a likely input. Pass the expert as
``prior`` (a :class:`GaussianPrior` fitted to data or any log-density callable).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from .maximise import maximise
from .objectives import ClassLogit, ClassProbability, Objective
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
    classes = [int(c) for c in classes]
    if not classes:
        raise ValueError("classes is empty; give the class indices to visualise, e.g. [0, 1, 2]")
    objective = _class_objective(score, classes)
    regs = list(regularisers) + ([ExpertPrior(prior, prior_weight)] if prior is not None else [])
    return maximise(model, objective, (len(classes), *shape), regularisers=regs, **settings)


def _class_objective(score: str, classes: list[int]) -> Objective:
    if score == "logit":
        return ClassLogit(classes)
    if score in ("probability", "log_probability"):
        return ClassProbability(classes, log=score == "log_probability")
    raise ValueError(f"score must be 'logit', 'probability' or 'log_probability', got {score!r}")


__all__ = ["class_prototypes"]
