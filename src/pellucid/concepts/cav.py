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

from .activations import layer_activations

CLASSIFIERS = ("logistic", "svm", "sgd")


@dataclass(frozen=True, eq=False)
class CAV:
    """A concept activation vector: unit ``vector`` over the flattened layer output."""

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
    """

    layer: str
    concepts: dict[str, list[CAV]]
    random: list[CAV]


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
    accuracy.
    """
    pos, neg = concept_acts.flatten(1), random_acts.flatten(1)
    if pos.shape[1] != neg.shape[1]:
        raise ValueError(
            f"concept activations have {pos.shape[1]} features, random ones {neg.shape[1]}; "
            "they must come from the same layer"
        )
    if min(len(pos), len(neg)) < 2:
        raise ValueError("a CAV needs at least 2 concept and 2 random examples")
    x = torch.cat([pos, neg]).double().cpu().numpy()
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    model = _classifier(classifier, seed)
    model.fit(x, y)
    normal = torch.as_tensor(np.asarray(model.coef_, dtype=np.float64).reshape(-1))
    if int(np.asarray(model.classes_)[-1]) != 1:  # coef_ points to classes_[1]
        normal = -normal
    norm = normal.norm()
    if not norm > 0:
        raise ValueError(
            f"the classifier for concept {concept!r} found no direction (zero weights); the "
            "concept and random activations may be identical"
        )
    name = classifier if isinstance(classifier, str) else type(classifier).__name__
    vector = (normal / norm).to(concept_acts.dtype)
    return CAV(concept, layer, vector, float(model.score(x, y)), name)


def train_cavs(
    model: nn.Module,
    layer: str,
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

    With ``split_concepts``, run i uses only the i-th of N disjoint parts of each concept's
    examples. Kim et al. reuse all concept examples in every run, which makes the runs'
    scores share the concept sample's noise: the t-test, which assumes independent runs,
    then calls random concepts significant more often than alpha (measured in
    docs/concepts.md). Splitting restores independence at the cost of N times as many
    examples.
    """
    if len(random_sets) < 2:
        raise ValueError(
            f"significance testing needs at least 2 random sets, got {len(random_sets)}; "
            "Kim et al. use tens to hundreds (e.g. random_sets=[x[i::20] for i in range(20)])"
        )
    if not concepts:
        raise ValueError("concepts is empty; give {name: examples of the concept}")
    randoms = [layer_activations(model, layer, r, batch_size) for r in random_sets]
    n = len(randoms)
    concept_cavs = {}
    for name, examples in concepts.items():
        acts = layer_activations(model, layer, examples, batch_size)
        if split_concepts and len(acts) < 2 * n:
            raise ValueError(
                f"split_concepts needs at least 2 examples per run: concept {name!r} has "
                f"{len(acts)} for {n} runs; give more examples or fewer random sets"
            )
        parts = acts.tensor_split(n) if split_concepts else [acts] * n
        concept_cavs[name] = [
            train_cav(parts[i], randoms[i], classifier, seed + i, name, layer) for i in range(n)
        ]
    random_cavs = [
        train_cav(randoms[i], randoms[(i + 1) % n], classifier, seed + i, f"random{i}", layer)
        for i in range(n)
    ]
    return CAVSet(layer, concept_cavs, random_cavs)


def _classifier(spec: str | Any, seed: int) -> Any:
    if not isinstance(spec, str):
        from sklearn.base import clone

        return clone(spec)
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
        raise ValueError(
            f"unknown classifier {spec!r}; use one of {list(CLASSIFIERS)} or an unfitted "
            "scikit-learn linear classifier"
        )
    return makers[spec]()


__all__ = ["CAV", "CLASSIFIERS", "CAVSet", "train_cav", "train_cavs"]
