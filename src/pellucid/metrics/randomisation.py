"""Randomisation sanity checks: an explanation should depend on what the model learned.

- ``randomisation.model_parameter`` (Adebayo et al. 2018, "Sanity checks for saliency
  maps"): re-initialise the layers of a deep copy of the model from the top down, either
  cascading (layers stay randomised) or independently (one layer at a time), explain each
  randomised model, and compare with the original explanation by Spearman rank correlation
  (absolute or signed), SSIM or HOG similarity. Curve point 0 explains the unrandomised
  copy (similarity 1 for a deterministic method); the score is the mean similarity over
  the randomised layers (lower is better: the explanation noticed).
- ``randomisation.random_logit`` (Sixt et al. 2020): similarity of the explanation of the
  target and of a random other class (lower is better).
- ``randomisation.data`` (Adebayo et al. 2018, data randomisation test): similarity of the
  explanation and that of a model trained by ``train_fn`` on randomly permuted labels.

The user's model is never changed: every randomisation works on ``copy.deepcopy(model)``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .._seeding import generator
from .base import Case, Metric, Scores, TrainFn, register_metric, required_train_fn
from .similarity import similarity


def parameter_layers(model: nn.Module) -> list[str]:
    """Names of the modules that own parameters, from the output layer down."""
    names = [n for n, m in model.named_modules() if any(True for _ in m.parameters(False))]
    return names[::-1]


def randomise(module: nn.Module, seed: int) -> None:
    """Re-initialise ``module``'s own parameters (its ``reset_parameters`` when it has one),
    with a seeded draw that leaves the global random state as it was.
    """
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
            return
        for p in module.parameters(False):
            p.normal_(0.0, float(p.std()) if p.numel() > 1 else 1.0)


@register_metric("randomisation.model_parameter")
@dataclass(frozen=True, eq=False)
class ModelParameterRandomisation(Metric):
    """Model parameter randomisation test (Adebayo et al. 2018), cascading or independent.

    Settings:
        order: ``"cascading"`` (top layer first, layers accumulate) or ``"independent"``.
        similarity: ``"spearman_abs"``, ``"spearman"``, ``"ssim"`` or ``"hog"``.
        layers: module names to randomise, top first; ``None`` takes every module that owns
            parameters, from the output down.
    """

    direction = "lower"
    order: str = "cascading"
    similarity: str = "spearman_abs"
    layers: tuple[str, ...] | None = None
    batch_size: int | None = None
    seed: int = 0

    def compute(self, case: Case) -> Scores:
        if self.order not in ("cascading", "independent"):
            raise ValueError(f"order must be 'cascading' or 'independent', got {self.order!r}")
        twin = copy.deepcopy(case.task.model)
        names = list(self.layers) if self.layers is not None else parameter_layers(twin)
        modules = dict(twin.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise ValueError(f"unknown layer(s) {missing}; the model has {list(modules)}")
        trained = copy.deepcopy(twin.state_dict())
        curve = [self._similar(case, twin)]
        for step, name in enumerate(names):
            if self.order == "independent":
                twin.load_state_dict(trained)
            randomise(modules[name], self.seed + step)
            curve.append(self._similar(case, twin))
        curves = torch.stack(curve, 1)
        score = curves[:, 1:].mean(1) if names else curves[:, 0]
        return Scores(score, curves, torch.arange(len(names) + 1.0), {"layers": ["none", *names]})

    def _similar(self, case: Case, model: nn.Module) -> Tensor:
        """Similarity of the attribution under test and the explanation of ``model``."""
        explained = case.explain(case.forward.inputs, model=model, batch_size=self.batch_size,
                                 metric=self.name)
        return similarity(self.similarity, case.attribution, explained)


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

    def compute(self, case: Case) -> Scores:
        labels = case.labels(self.name)
        classes = case.forward.output.shape[1]
        if classes < 2:
            raise ValueError("the random logit test needs a model with at least two classes")
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
    """

    direction = "lower"
    train_fn: TrainFn | None = None
    data: tuple[Tensor, Tensor] | None = None
    similarity: str = "spearman_abs"
    batch_size: int | None = None
    seed: int | None = 0

    def compute(self, case: Case) -> Scores:
        train_fn = required_train_fn(self.name, self.train_fn)
        x = case.forward.inputs
        inputs, labels = self.data if self.data is not None else (x, case.labels(self.name))
        permuted = labels[torch.randperm(len(labels), generator=generator(self.seed))]
        trained = train_fn(inputs.clone(), permuted.clone())
        explained = case.explain(x, model=trained.eval(), batch_size=self.batch_size,
                                 metric=self.name)
        return Scores(similarity(self.similarity, case.attribution, explained))
