"""Testing with CAVs (Kim et al. 2018): how much a concept matters to a class.

For class k and a CAV v at layer l, the conceptual sensitivity of example x is the
directional derivative S(x) = ∇_h f_k(h) · v at h = f_l(x). The TCAV score is the fraction
of class examples with S(x) > 0; the magnitude variant is Σ max(S, 0) / Σ |S|.

Significance: the score of the concept against each of N random sets is compared with
the score of N random-vs-random CAVs (the null) by a two-sided t-test; the concept is
significant when p < alpha (alpha / number of concepts with the Bonferroni correction).
The verdict says which way: "positive" (the concept raises the class score more often than
random directions do), "negative", or "not significant"; ``alternative="greater"`` makes
the test itself one-sided.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..batching import row_chunks
from ..checks import (
    as_directions,
    check_bool,
    check_choice,
    check_finite_number,
    check_inputs,
)
from ..errors import ArgumentError, ArgumentTypeError, UnknownNameError
from ..guard import preserved
from ..layers import LayerRef, captured_forward, layer_gradients, layer_name
from ..outputs import OutputSelector
from ..placement import to_model
from ..registry import suggest
from ..targets import TargetSpec
from ..task import Forward, Task
from .cav import CAVSet


def directional_derivatives(
    model: nn.Module,
    layer: LayerRef,
    inputs: Tensor,
    target: TargetSpec,
    vectors: Tensor,
    batch_size: int | None = None,
    output: OutputSelector = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Tensor:
    """∇_h f_k · v for every vector v (rows of ``vectors``, K×D) and input: shape K×N.

    One forward and one backward pass per chunk of at most ``batch_size`` inputs serve
    every vector. ``target`` is resolved as in :func:`pellucid.explain` (a class index, one
    per input, None for the predicted class, or a callable on the output), on the model
    output for all inputs. ``layer`` is a dotted name or a submodule of ``model``. The model
    sees a private copy of ``inputs`` in its device and dtype, so a model that writes to its
    input in place leaves ``inputs`` unchanged. The result is on the model's device, in its
    dtype (``vectors`` may be on any device).
    """
    check_inputs(inputs)
    vectors = _check_vectors(vectors)
    chunks = []
    with preserved(model):
        name = layer_name(model, layer)
        x = to_model(inputs.detach(), model, copy=True)
        task = Task.start(
            model, x, target, select=output, model_kwargs=model_kwargs,
            first_pass=_chunked_forward(batch_size),
        )
        for rows in row_chunks(len(x), batch_size, x.device):
            grad = _layer_gradient(task.take(rows), x[rows], name)
            if grad[0].numel() != vectors.shape[1]:
                raise ArgumentError(
                    "vectors",
                    f"the vectors have {vectors.shape[1]} entries but layer {name!r} outputs "
                    f"{grad[0].numel()} values per example; train them on the same layer",
                )
            chunks.append(vectors.to(grad) @ grad.flatten(1).T)
    return torch.cat(chunks, dim=1)


def _check_vectors(vectors: object) -> Tensor:
    """The directions as a finite real K×D tensor (one vector D becomes 1×D)."""
    v = as_directions(
        vectors, "vectors", "K×D or D (e.g. torch.stack([cav.vector for cav in cavs]))"
    )
    return v.unsqueeze(0) if v.ndim == 1 else v


def _chunked_forward(batch_size: int | None) -> Callable[[Task, Tensor], Forward]:
    """A first pass that computes the output of every row in chunks, without gradients.

    The target is resolved once on it; chunks of the task then take their rows of it.
    """

    def first_pass(task: Task, x: Tensor) -> Forward:
        with torch.no_grad():
            chunks = row_chunks(len(x), batch_size, x.device)
            return Forward(x, torch.cat([task.take(rows).output(x[rows]) for rows in chunks]))

    return first_pass


def _layer_gradient(task: Task, x: Tensor, layer: str) -> Tensor:
    """∂f/∂h for the output h of the last call of ``layer``, one row per row of ``x``."""
    recorded = captured_forward(task, x, [layer])
    if not recorded.layer(layer).requires_grad:
        raise ArgumentError(
            "layer",
            f"the output of layer {layer!r} does not depend on the inputs; pick a layer "
            "between the inputs and the model output",
        )
    return layer_gradients(task, x, [layer], recorded=recorded).grads[layer][-1]


def tcav_scores(derivatives: Tensor, magnitude: bool = False) -> Tensor:
    """Per row of directional derivatives (K×N): fraction positive, or Σ positive / Σ |·|."""
    if not isinstance(derivatives, Tensor) or derivatives.ndim != 2 or derivatives.shape[1] == 0:
        got = tuple(derivatives.shape) if isinstance(derivatives, Tensor) else type(derivatives)
        raise ArgumentError(
            "derivatives",
            f"derivatives must be a tensor K×N (vectors × inputs, N ≥ 1), got {got}; "
            "see directional_derivatives",
        )
    d = derivatives.double()
    if magnitude:
        total = d.abs().sum(1)
        return torch.where(total > 0, d.clamp_min(0).sum(1) / total, 0.0)
    return (d > 0).double().mean(1)


@dataclass(frozen=True)
class TCAVResult:
    """The TCAV test of one concept for one target."""

    concept: str
    scores: tuple[float, ...]
    random_scores: tuple[float, ...]
    mean: float
    std: float
    random_mean: float
    random_std: float
    p_value: float
    alpha: float
    significant: bool

    @property
    def verdict(self) -> str:
        """``"positive"`` or ``"negative"`` (significant, above or below the random scores),
        or ``"not significant"``."""
        if not self.significant:
            return "not significant"
        return "positive" if self.mean > self.random_mean else "negative"


@dataclass(frozen=True, eq=False)
class TCAVReport:
    """TCAV results at one layer for one target class, one :class:`TCAVResult` per concept."""

    layer: str
    target: Any
    magnitude: bool
    results: tuple[TCAVResult, ...]

    def __getitem__(self, concept: str) -> TCAVResult:
        for result in self.results:
            if result.concept == concept:
                return result
        names = [r.concept for r in self.results]
        raise UnknownNameError(
            "concept",
            f"no concept {concept!r}.{suggest(str(concept), names)} The report has {names}",
        )

    def plot(self, ax: Any = None) -> Any:
        """A bar chart of the scores (see :func:`pellucid.concepts.plot_tcav`)."""
        from .plot import plot_tcav

        return plot_tcav(self, ax=ax)


def tcav(
    model: nn.Module,
    inputs: Tensor,
    target: TargetSpec,
    cavs: CAVSet,
    alpha: float = 0.05,
    bonferroni: bool = False,
    alternative: str = "two-sided",
    magnitude: bool = False,
    batch_size: int | None = None,
    output: OutputSelector = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> TCAVReport:
    """TCAV scores of every concept in ``cavs`` for class ``target`` on ``inputs``.

    ``inputs`` are examples of the class. Each concept gets one score per random run, their
    mean, the p-value of a two-sided t-test (``scipy.stats.ttest_ind``) against the scores
    of the random CAVs, and the verdict p < alpha (alpha divided by the number of concepts
    when ``bonferroni`` is set). ``alternative="greater"`` asks the one-sided question
    "does the concept raise the class score more often than random directions do?", so
    that a concept that lowers the score is not significant (``"less"``: the reverse).
    ``cavs`` must come from a layer of ``model`` (its ``layer`` name).
    """
    if not isinstance(cavs, CAVSet):
        raise ArgumentTypeError(
            "cavs", f"cavs must be a CAVSet from train_cavs, got {type(cavs).__name__}"
        )
    check_finite_number(alpha, "alpha", 0.0, maximum=1.0, inclusive=False,
                        meaning="the significance level")
    check_choice(alternative, "alternative", ("two-sided", "greater", "less"))
    check_bool(bonferroni, "bonferroni")
    check_bool(magnitude, "magnitude")
    with preserved(model):
        layers = [n for n, _ in model.named_modules() if n]
    if cavs.layer not in layers and cavs.layer != "":
        raise ArgumentError(
            "cavs",
            f"the cavs were trained at layer {cavs.layer!r}, which the model does not have."
            f"{suggest(cavs.layer, layers)} Train them with train_cavs on this model",
        )
    names = list(cavs.concepts)
    all_cavs = [cav for name in names for cav in cavs.concepts[name]] + list(cavs.random)
    vectors = torch.stack([cav.vector for cav in all_cavs])
    derivs = directional_derivatives(
        model, cavs.layer, inputs, target, vectors, batch_size, output, model_kwargs
    )
    scores = tcav_scores(derivs, magnitude).tolist()
    runs = len(cavs.random)
    null = scores[len(scores) - runs :]
    level = alpha / len(names) if bonferroni else alpha
    results = tuple(
        _test(name, scores[i * runs : (i + 1) * runs], null, level, alternative)
        for i, name in enumerate(names)
    )
    return TCAVReport(cavs.layer, target, magnitude, results)


def _test(
    concept: str, scores: Sequence[float], null: Sequence[float], alpha: float, alternative: str
) -> TCAVResult:
    from scipy.stats import ttest_ind

    a, b = torch.tensor(scores, dtype=torch.float64), torch.tensor(null, dtype=torch.float64)
    if float(a.std()) == 0 and float(b.std()) == 0:  # no spread: equal or fully separated
        above, below = float(a[0]) > float(b[0]), float(a[0]) < float(b[0])
        separated = {"two-sided": above or below, "greater": above, "less": below}[alternative]
        p = 0.0 if separated else 1.0
    else:
        with warnings.catch_warnings():  # one constant group is fine for a pooled variance
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(ttest_ind(scores, null, alternative=alternative).pvalue)
    p = 1.0 if math.isnan(p) else p
    return TCAVResult(
        concept,
        tuple(scores),
        tuple(null),
        float(a.mean()),
        float(a.std()),
        float(b.mean()),
        float(b.std()),
        p,
        alpha,
        p < alpha,
    )


__all__ = ["TCAVReport", "TCAVResult", "directional_derivatives", "tcav", "tcav_scores"]
