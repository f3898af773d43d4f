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
from .base import Case, Metric, Scores, TrainFn, register_metric, required_train_fn
from .maps import flat_map, ranks


def remove_top(x: Tensor, order: Tensor, fraction: float, fill: Tensor) -> Tensor:
    """``x`` with the locations of rank < fraction·N (per sample) replaced by ``fill``."""
    locations = order.shape[1]
    removed = order < round(fraction * locations)
    shape = (len(x), 1, *x.shape[2:]) if x.ndim > 2 else x.shape
    return torch.where(removed.view(shape), fill, x)


@register_metric("faithfulness.roar")
@dataclass(frozen=True, eq=False)
class Roar(Metric):
    """ROAR (Hooker et al. 2019): accuracy after removing the top-t% and retraining."""

    direction = "lower"
    train_fn: TrainFn | None = None
    fractions: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
    test_fraction: float = 0.3
    seed: int | None = 0

    def compute(self, case: Case) -> Scores:
        train_fn = required_train_fn(self.name, self.train_fn)
        x, labels = case.forward.inputs, case.labels(self.name)
        gen = generator(self.seed)
        split = torch.randperm(len(x), generator=gen).to(x.device)
        n_test = max(1, round(self.test_fraction * len(x)))
        test, train = split[:n_test], split[n_test:]
        fill = x.mean(dim=[d for d in range(x.ndim) if d != 1], keepdim=True) if x.ndim > 2 \
            else x.mean(0, keepdim=True)
        by_attribution = ranks(flat_map(case.attribution))
        at_random = ranks(torch.rand(by_attribution.shape, generator=gen).to(x.device))
        correct: dict[str, list[Tensor]] = {"attribution": [], "random": []}
        for fraction in self.fractions:
            for kind, order in (("attribution", by_attribution), ("random", at_random)):
                removed = remove_top(x, order, fraction, fill)
                model = train_fn(removed[train].clone(), labels[train].clone()).eval()
                with torch.no_grad():
                    predicted = model(removed[test]).argmax(1)
                correct[kind].append((predicted == labels[test]).to(x.dtype))
        ranked = torch.stack(correct["attribution"], 1)
        random = torch.stack(correct["random"], 1)
        return Scores(ranked.mean(1), ranked, torch.tensor(self.fractions), {
            "accuracy": ranked.mean(0).cpu(), "random_accuracy": random.mean(0).cpu(),
            "test_index": test.cpu(),
        })
