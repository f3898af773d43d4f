"""Concept activation vectors (Kim et al. 2018, TCAV).

A CAV is the unit normal of a linear decision boundary that separates a layer's
activations for examples of a concept from those for random examples, oriented towards
the concept. It is fitted by a scikit-learn linear classifier on the flattened activations
(no standardisation: the direction must live in the layer's own coordinates).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._seeding import offset_seed, python_random_kept
from ..checks import check_bool, check_inputs, check_seed
from ..errors import ArgumentError, ArgumentTypeError, PellucidError, UnknownNameError
from ..guard import preserved
from ..layers import LayerRef, layer_name
from ..registry import suggest
from .activations import layer_activations

CLASSIFIERS = ("logistic", "svm", "sgd")


@dataclass(frozen=True, eq=False)
class CAV:
    """A concept activation vector: unit ``vector`` over the flattened layer output, on
    the CPU in the activations' dtype (fitted in float64 by scikit-learn); ``tcav`` moves it
    to the model's device."""

    concept: str
    layer: str
    vector: Tensor
    accuracy: float
    classifier: str


@dataclass(frozen=True, eq=False)
class CAVSet:
    """CAVs for significance testing: per concept one CAV per random set, and the null.

    ``concepts[name][i]`` separates the concept from random set i; ``random[i]`` separates
    random set i from random set i+1 (mod N): a CAV of a concept that means nothing.
    The t-test needs N ≥ 2 runs, and every concept has one CAV per run.
    """

    layer: str
    concepts: dict[str, list[CAV]]
    random: list[CAV]

    def __post_init__(self) -> None:
        runs = len(self.random)
        if runs < 2:
            raise ArgumentError(
                "random",
                f"random holds {runs} random CAV(s); the significance test needs at least 2 "
                "runs (train_cavs with at least 2 random sets)",
            )
        if not self.concepts:
            raise ArgumentError("concepts", "concepts is empty; a CAVSet needs at least one")
        counts = {name: len(cavs) for name, cavs in self.concepts.items()}
        uneven = {name: n for name, n in counts.items() if n != runs}
        if uneven:
            raise ArgumentError(
                "concepts",
                f"concepts must hold one CAV per random run ({runs}), but {uneven} have "
                "other counts; train them together with train_cavs",
            )
        sizes = {cav.vector.numel() for cavs in (*self.concepts.values(), self.random)
                 for cav in cavs}
        if len(sizes) != 1:
            raise ArgumentError(
                "concepts",
                f"the CAVs have different lengths {sorted(sizes)}; they must come from one layer",
            )


def train_cav(
    concept_acts: Tensor,
    random_acts: Tensor,
    classifier: str | Any = "logistic",
    seed: int = 0,
    concept: str = "concept",
    layer: str = "",
) -> CAV:
    """Fit a linear classifier (concept = 1, random = 0) and return its unit normal.

    ``classifier`` is ``"logistic"`` (logistic regression, C = 0.1), ``"svm"`` (linear SVM,
    C = 0.01), ``"sgd"`` (hinge loss by averaged SGD, alpha = 0.01 as in Kim et al.'s code),
    or an unfitted scikit-learn linear classifier with ``coef_`` for other settings. The
    regularisation is fairly strong on purpose: with few examples in many dimensions it
    gives steadier directions than a maximum-margin fit. ``accuracy`` is the training
    accuracy. Each set needs at least 2 examples, with the same number of features.
    """
    for acts, name in ((concept_acts, "concept_acts"), (random_acts, "random_acts")):
        _check_set(acts, name, name)
    model = _classifier(classifier, check_seed(seed, none=False))
    return _fit(concept_acts, random_acts, model, classifier, concept, layer,
                ("concept_acts", "random_acts"))


def train_cavs(
    model: nn.Module,
    layer: LayerRef,
    concepts: Mapping[str, Tensor],
    random_sets: Sequence[Tensor],
    classifier: str | Any = "logistic",
    seed: int = 0,
    batch_size: int | None = None,
    split_concepts: bool = False,
) -> CAVSet:
    """Activations of every set at ``layer`` (each computed once), then all the CAVs.

    For N random sets: N CAVs per concept (concept vs. random set i) and N random CAVs
    (random set i vs. random set i+1 mod N), the null distribution of TCAV (Kim et al. 2018).
    ``layer`` is a dotted name or a submodule of ``model``; every set is a tensor of at
    least 2 examples (batch first), and the model sees private copies of them.

    With ``split_concepts``, run i uses only the i-th of N disjoint parts of each concept's
    examples. Kim et al. reuse all concept examples in every run, which makes the runs'
    scores share the concept sample's noise: the t-test, which assumes independent runs,
    then calls random concepts significant more often than alpha (measured in
    docs/concepts.md). Splitting restores independence at the cost of N times as many
    examples.
    """
    if isinstance(random_sets, Tensor) or not isinstance(random_sets, Sequence):
        raise ArgumentTypeError(
            "random_sets",
            f"random_sets must be a list of tensors (one random set each), got "
            f"{_described(random_sets)}; split one tensor x into sets, e.g. "
            "random_sets=[x[i::20] for i in range(20)]",
        )
    if len(random_sets) < 2:
        raise ArgumentError(
            "random_sets",
            f"significance testing needs at least 2 random sets, got {len(random_sets)}; "
            "Kim et al. use tens to hundreds (e.g. random_sets=[x[i::20] for i in range(20)])",
        )
    if not isinstance(concepts, Mapping):
        raise ArgumentTypeError(
            "concepts",
            f"concepts must be a dict {{name: examples of the concept}}, got "
            f"{_described(concepts)}",
        )
    if not concepts:
        raise ArgumentError("concepts", "concepts is empty; give {name: examples of the concept}")
    check_bool(split_concepts, "split_concepts")
    n = len(random_sets)
    for i, examples in enumerate(random_sets):
        _check_set(examples, "random_sets", f"random_sets[{i}]")
    for name, examples in concepts.items():
        if not isinstance(name, str):
            raise ArgumentTypeError(
                "concepts", f"concept names must be strings, got {name!r} in concepts"
            )
        _check_set(examples, "concepts", f"concepts[{name!r}]")
        if split_concepts and len(examples) < 2 * n:
            raise ArgumentError(
                "concepts",
                f"split_concepts needs at least 2 examples per run: concepts[{name!r}] has "
                f"{len(examples)} for {n} runs; give more examples or fewer random sets",
            )
    seed = check_seed(seed, none=False)
    _classifier(classifier, seed)  # a bad classifier fails before any forward pass
    with preserved(model):
        name = layer_name(model, layer)
    randoms = [layer_activations(model, name, r, batch_size) for r in random_sets]
    seeds = [offset_seed(seed, i) for i in range(n)]  # run i uses seed + i
    concept_cavs = {}
    for concept, examples in concepts.items():
        acts = layer_activations(model, name, examples, batch_size)
        parts = acts.tensor_split(n) if split_concepts else [acts] * n
        concept_cavs[concept] = [
            _fit(parts[i], randoms[i], _classifier(classifier, seeds[i]), classifier, concept,
                 name, ("concepts", "random_sets"))
            for i in range(n)
        ]
    random_cavs = [
        _fit(randoms[i], randoms[(i + 1) % n], _classifier(classifier, seeds[i]), classifier,
             f"random{i}", name, ("random_sets", "random_sets"))
        for i in range(n)
    ]
    return CAVSet(name, concept_cavs, random_cavs)


def _fit(
    concept_acts: Tensor,
    random_acts: Tensor,
    model: Any,
    spec: str | Any,
    concept: str,
    layer: str,
    blame: tuple[str, str],
) -> CAV:
    """The CAV of one classifier fit; ``blame`` names the arguments behind the two sets."""
    pos, neg = concept_acts.flatten(1), random_acts.flatten(1)
    if pos.shape[1] != neg.shape[1]:
        raise ArgumentError(
            blame[1],
            f"the {blame[0]} activations have {pos.shape[1]} features, the {blame[1]} ones "
            f"{neg.shape[1]}; they must come from the same layer (inputs of the same shape)",
        )
    x = torch.cat([pos, neg]).double().cpu().numpy()
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    model.fit(x, y)
    if not hasattr(model, "coef_"):
        raise ArgumentError(
            "classifier",
            f"the classifier {type(model).__name__} has no coef_ after fitting; use a linear "
            f"classifier (one of {list(CLASSIFIERS)} or e.g. RidgeClassifier())",
        )
    normal = torch.as_tensor(np.asarray(model.coef_, dtype=np.float64).reshape(-1))
    if normal.numel() != x.shape[1]:
        raise ArgumentError(
            "classifier",
            f"the classifier's coef_ has {normal.numel()} entries for {x.shape[1]} features; "
            "use a linear classifier with one weight per feature",
        )
    if int(np.asarray(model.classes_)[-1]) != 1:  # coef_ points to classes_[1]
        normal = -normal
    norm = normal.norm()
    if not norm > 0:
        raise ArgumentError(
            blame[0],
            f"the classifier for concept {concept!r} found no direction (zero weights): its "
            f"{blame[0]} and {blame[1]} activations at layer {layer!r} cannot be told apart; "
            "give examples that differ, or pick another layer",
        )
    name = spec if isinstance(spec, str) else type(spec).__name__
    vector = (normal / norm).to(concept_acts.dtype)
    return CAV(concept, layer, vector, float(model.score(x, y)), name)


def _check_set(examples: Any, argument: str, label: str) -> None:
    """A set of examples (or activations): a finite floating tensor of ≥ 2 rows."""
    try:
        check_inputs(examples, label)
    except PellucidError as error:
        raise type(error)(argument, str(error)) from None
    if len(examples) < 2:
        raise ArgumentError(
            argument,
            f"{label} holds {len(examples)} example; a CAV needs at least 2 examples on each "
            "side of its boundary",
        )


def _described(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return type(value).__name__


def _classifier(spec: str | Any, seed: int) -> Any:
    """An unfitted classifier for ``spec`` (a name in CLASSIFIERS or a scikit-learn estimator)."""
    if not isinstance(spec, str):
        if isinstance(spec, type) or not callable(getattr(spec, "fit", None)):
            raise ArgumentTypeError(
                "classifier",
                f"classifier must be one of {list(CLASSIFIERS)} or an unfitted scikit-learn "
                f"linear classifier instance (e.g. RidgeClassifier()), got {spec!r}",
            )
        from sklearn.base import clone

        return clone(spec)
    with python_random_kept():  # importing scikit-learn draws from Python's generator
        from sklearn.linear_model import LogisticRegression, SGDClassifier
        from sklearn.svm import LinearSVC

    makers = {
        "logistic": lambda: LogisticRegression(
            C=0.1, solver="liblinear", max_iter=2000, random_state=seed
        ),
        "svm": lambda: LinearSVC(C=0.01, max_iter=20000, random_state=seed),
        "sgd": lambda: SGDClassifier(
            alpha=0.01, average=True, max_iter=2000, tol=1e-4, random_state=seed
        ),
    }
    if spec not in makers:
        raise UnknownNameError(
            "classifier",
            f"unknown classifier {spec!r}.{suggest(spec, list(CLASSIFIERS))} Use one of "
            f"{list(CLASSIFIERS)} or an unfitted scikit-learn linear classifier",
        )
    return makers[spec]()


__all__ = ["CAV", "CLASSIFIERS", "CAVSet", "train_cav", "train_cavs"]
