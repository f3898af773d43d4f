"""ROAR, remove and retrain (Hooker et al. 2019, "A benchmark for interpretability methods
in deep neural networks").

For each fraction t, the top-t locations of every input by attribution are replaced by the
per-channel mean of the data set; a fresh model is trained on the modified training split
by ``train_fn(inputs, labels)`` and its accuracy measured on the modified test split. The
same is done with t of the locations chosen at random. A faithful attribution makes the
accuracy fall faster than random removal.

Scores are per test sample: the mean correctness over the fractions with attribution-
ranked removal (lower is better); ``curves`` hold the correctness per fraction, and
``extras`` the accuracies for both removals.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .._seeding import generator
from ..checks import check_finite_number, check_seed
from ..errors import ArgumentError
from ..placement import to_model
from .base import (
    Case,
    Metric,
    Scores,
    TrainFn,
    register_metric,
    required_train_fn,
    train_model,
)
from .maps import flat_map, ranks
from .settings import check_callable, check_fractions


def remove_top(x: Tensor, order: Tensor, fraction: float, fill: Tensor) -> Tensor:
    """``x`` with the locations of rank < fraction·N (per sample) replaced by ``fill``."""
    locations = order.shape[1]
    removed = order < round(fraction * locations)
    shape = (len(x), 1, *x.shape[2:]) if x.ndim > 2 else x.shape
    return torch.where(removed.view(shape), fill, x)


@register_metric("faithfulness.roar")
@dataclass(frozen=True, eq=False)
class Roar(Metric):
    """ROAR (Hooker et al. 2019): accuracy after removing the top-t% and retraining.

    ``train_fn(inputs, labels)`` returns a trained ``nn.Module`` whose output is (N, classes);
    ``fractions`` in (0, 1); ``test_fraction`` in (0, 1) of the batch is held out (at least
    one sample in each split). ``train_fn`` gets the inputs and labels on the explained
    model's device and in its dtype; the model it returns may live on another device or in
    another dtype: the test inputs are moved to it (:func:`pellucid.placement.to_model`).
    The result is on the CPU, as every metric's.
    """

    direction = "lower"
    train_fn: TrainFn | None = None
    fractions: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
    test_fraction: float = 0.3
    seed: int | None = 0

    def __post_init__(self) -> None:
        check_callable(self.train_fn, "train_fn", "(inputs, labels) -> trained nn.Module")
        check_fractions(self.fractions, "fractions")
        check_finite_number(self.test_fraction, "test_fraction", 0.0, maximum=1.0,
                            inclusive=False, meaning="the share of the batch held out")
        check_seed(self.seed)

    def compute(self, case: Case) -> Scores:
        required_train_fn(self.name, self.train_fn)
        case.refuse_tokens(self.name, "it replaces removed features by the data set's mean, "
                           "which token ids do not have")
        if case.one_output:
            raise ArgumentError(
                "model",
                f"{self.name} measures the accuracy of retrained classifiers, but the model "
                f"output has shape {tuple(case.forward.output.shape)}, one value per sample (a "
                "regressor has no accuracy); use it on a classifier, or score a regressor with "
                "faithfulness.deletion or faithfulness.pixel_flipping",
            )
        x, labels = case.forward.inputs, case.labels(self.name)
        gen = generator(self.seed)
        split = torch.randperm(len(x), generator=gen).to(x.device)
        n_test = max(1, round(self.test_fraction * len(x)))
        if n_test >= len(x):
            raise ArgumentError(
                "test_fraction",
                f"test_fraction={self.test_fraction!r} of {len(x)} samples leaves none to train "
                "on; pass more samples or a smaller test_fraction",
            )
        test, train = split[:n_test], split[n_test:]
        wide_dtype = torch.promote_types(x.dtype, torch.float32)  # the means' dtype
        fill = x.mean(dim=[d for d in range(x.ndim) if d != 1] if x.ndim > 2 else 0,
                      keepdim=True, dtype=wide_dtype).to(x.dtype)
        by_attribution = ranks(flat_map(case.attribution))
        locations = by_attribution.shape[1]
        none = [f for f in self.fractions if round(f * locations) == 0]
        if none:
            raise ArgumentError(
                "fractions",
                f"fractions {none} of the {locations} locations remove none; pass fractions "
                f"≥ {1 / locations:.3g}",
            )
        at_random = ranks(torch.rand(by_attribution.shape, generator=gen).to(x.device))
        correct: dict[str, list[Tensor]] = {"attribution": [], "random": []}
        for fraction in self.fractions:
            for kind, order in (("attribution", by_attribution), ("random", at_random)):
                removed = remove_top(x, order, fraction, fill)
                model = train_model(self.name, self.train_fn, removed[train], labels[train])
                with torch.no_grad():  # the trained model's device and dtype may differ
                    out = model(to_model(removed[test], model))
                if not isinstance(out, Tensor) or out.ndim != 2:
                    raise ArgumentError(
                        "train_fn",
                        f"{self.name}: the model that train_fn returns must output class scores "
                        f"(N, classes); it gave {getattr(out, 'shape', type(out).__name__)}",
                    )
                predicted = out.argmax(1).to(labels.device)
                correct[kind].append((predicted == labels[test]).to(wide_dtype))
        ranked = torch.stack(correct["attribution"], 1)
        random = torch.stack(correct["random"], 1)
        return Scores(ranked.mean(1), ranked, torch.tensor(self.fractions), {
            "accuracy": ranked.mean(0).cpu(), "random_accuracy": random.mean(0).cpu(),
            "test_index": test.cpu(),
        })
