"""Faithfulness: does removing what the explanation calls relevant change the output?

- ``faithfulness.pixel_flipping`` and ``faithfulness.region_perturbation`` (Samek et al.
  2017, "Evaluating the visualization of what a deep neural network has learned"): remove
  patches in MoRF (most relevant first) or LeRF order; score = AOPC =
  1/(L+1) Σₖ₌₀ᴸ (f(x⁽⁰⁾) − f(x⁽ᵏ⁾)).
- ``faithfulness.deletion`` and ``faithfulness.insertion`` (Petsiuk et al. 2018, RISE):
  the area under the class-probability curve as pixels are deleted (to zero) in order of
  relevance, or inserted into a blurred image; deletion lower, insertion higher is better.
  A model with one output per sample (a regressor, a single logit) is scored on that raw
  output: the softmax of one value is always 1.
- ``faithfulness.correlation`` (Bhatt et al. 2020): Pearson correlation over random subsets
  S of the attribution sum Σ_{i∈S} aᵢ and the output drop f(x) − f(x with S replaced).
- ``faithfulness.infidelity`` (Yeh et al. 2019): E_I[(Iᵀa − (f(x) − f(x − I)))²].

On token ids (B, L) a region is a token and the fill a token (``fill="pad"``, ``"mask"``
or an id); padding is never removed (see :mod:`.curves`). Infidelity adds real-valued
noise and refuses token ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .._seeding import generator
from ..batching import check_batch_size
from ..checks import (
    check_bool,
    check_choice,
    check_count,
    check_finite,
    check_finite_number,
    check_seed,
)
from ..errors import ArgumentError
from ..perturb import BaselineSpec, check_baseline
from .base import Case, Metric, Scores, direction_by_settings, register_metric
from .curves import perturbation_curve
from .maps import Patch, group_sums, patch_groups
from .settings import check_patch
from .stats import pearson, trapezoid, wide


def _check_removal(metric: Metric) -> None:
    """The settings shared by the metrics that remove regions."""
    check_patch(metric.patch)
    check_baseline(metric.fill, "fill", tokens=True)
    check_finite_number(metric.blur_sigma, "blur_sigma", 0.0, inclusive=False,
                        meaning="the σ of the blur fill, in locations")
    check_bool(metric.probability, "probability", none=True)
    check_batch_size(metric.batch_size)
    check_seed(metric.seed)


@register_metric("faithfulness.pixel_flipping")
@dataclass(frozen=True, eq=False)
class PixelFlipping(Metric):
    """Pixel flipping with AOPC (Samek et al. 2017): 1/(L+1) Σₖ (f(x⁽⁰⁾) − f(x⁽ᵏ⁾)).

    Settings:
        order: ``"morf"`` (most relevant first; higher AOPC is better) or ``"lerf"``
            (least relevant first; lower is better).
        patch: the side of the square regions (locations; channels are removed together).
        steps: L, the number of removal steps; step k removes round(k·N/L) of the
            N = round(u·G) regions removed in all (G regions); at most N. ``None``:
            min(100, N), one region per step up to 100 regions.
        until: u, the fraction of the regions removed at step L (Samek et al. remove 100
            regions, a fraction of the image; with N = L one region goes per step).
        fill: what replaces removed regions: ``"uniform"`` noise (the paper), ``"blur"``,
            ``"mean"``, ``"zero"``, a number or a tensor; for token ids a token,
            ``"pad"``, ``"mask"`` or an id.
        probability: score the softmax probability instead of the output (``None``: auto,
            see :meth:`Case.probability`); ``True`` needs several outputs per sample.
    """

    order: str = "morf"
    patch: Patch = 1
    steps: int | None = None
    until: float = 1.0
    fill: BaselineSpec = "uniform"
    blur_sigma: float = 5.0
    probability: bool | None = False
    batch_size: int | None = None
    seed: int | None = 0

    def __post_init__(self) -> None:
        check_choice(self.order, "order", ("morf", "lerf"))
        check_count(self.steps, "steps", "removal steps", none=True)
        check_finite_number(self.until, "until", 0.0, maximum=1.0,
                            meaning="the fraction of the regions removed at the last step")
        if self.until == 0:
            raise ArgumentError("until", "until must be > 0 (a fraction of the regions in (0, 1])")
        _check_removal(self)

    @direction_by_settings
    def direction(self) -> str:
        """MoRF: a faithful ranking makes the score fall fast (higher AOPC); LeRF: slowly."""
        return "higher" if self.order == "morf" else "lower"

    def compute(self, case: Case) -> Scores:
        probability = case.probability(self.probability, self.name)
        curve = perturbation_curve(
            case, patch=self.patch, steps=self.steps, fill=self.fill, blur_sigma=self.blur_sigma,
            most_relevant_first=self.order == "morf", insert=False,
            probability=probability, batch_size=self.batch_size, seed=self.seed,
            until=self.until,
        )
        drops = wide(curve.values[:, :1] - curve.values)
        return Scores(drops.mean(1), curve.values, curve.fraction,
                      {"auc": trapezoid(curve.values, curve.fractions),
                       "probability": probability})


@register_metric("faithfulness.region_perturbation")
@dataclass(frozen=True, eq=False)
class RegionPerturbation(PixelFlipping):
    """Region perturbation with AOPC (Samek et al. 2017): pixel flipping over 4×4 patches."""

    patch: Patch = 4


@dataclass(frozen=True, eq=False)
class _AreaUnderCurve(Metric):
    """Settings: ``patch``, ``steps`` (as pixel flipping; ``None``: min(100, regions)),
    ``fill``, ``blur_sigma``; ``probability``: ``None`` (auto, the default) scores the
    class probability (softmax) of a classifier and the raw output of a one-output model
    or a target callable (:meth:`Case.probability`), ``True``/``False`` force it.
    """

    patch: Patch = 1
    steps: int | None = None
    fill: BaselineSpec = "zero"
    blur_sigma: float = 5.0
    probability: bool | None = None
    batch_size: int | None = None
    seed: int | None = 0
    insert = False

    def __post_init__(self) -> None:
        check_count(self.steps, "steps", "removal steps", none=True)
        _check_removal(self)

    def compute(self, case: Case) -> Scores:
        probability = case.probability(self.probability, self.name)
        curve = perturbation_curve(
            case, patch=self.patch, steps=self.steps, fill=self.fill, blur_sigma=self.blur_sigma,
            most_relevant_first=True, insert=self.insert, probability=probability,
            batch_size=self.batch_size, seed=self.seed,
        )
        return Scores(trapezoid(curve.values, curve.fractions), curve.values, curve.fraction,
                      {"probability": probability})


@register_metric("faithfulness.deletion")
@dataclass(frozen=True, eq=False)
class Deletion(_AreaUnderCurve):
    """Deletion AUC (Petsiuk et al. 2018): ∫ p(class | x with the top fraction t zeroed) dt."""

    direction = "lower"


@register_metric("faithfulness.insertion")
@dataclass(frozen=True, eq=False)
class Insertion(_AreaUnderCurve):
    """Insertion AUC (Petsiuk et al. 2018): ∫ p(class | blurred x with the top t restored) dt."""

    fill: BaselineSpec = "blur"
    insert = True


@register_metric("faithfulness.correlation")
@dataclass(frozen=True, eq=False)
class FaithfulnessCorrelation(Metric):
    """Faithfulness correlation (Bhatt et al. 2020): corr_S(Σ_{i∈S} aᵢ, f(x) − f(x_[x_S = x̄_S])).

    ``subsets`` (≥ 2) random subsets of ``subset_size`` regions (the same subsets for every
    sample; fewer than the G regions, or every subset would be the whole input) are
    replaced by the ``fill``; the score is the Pearson correlation over the subsets (NaN
    for a sample whose attribution sums or output drops do not vary over the subsets).
    Token padding (:attr:`Case.valid`) is never drawn: each sample takes the subset's
    draws among its valid tokens.
    """

    subsets: int = 100
    subset_size: int = 16
    patch: Patch = 1
    fill: BaselineSpec = "zero"
    blur_sigma: float = 5.0
    probability: bool | None = False
    batch_size: int | None = None
    seed: int | None = 0

    def __post_init__(self) -> None:
        check_count(self.subsets, "subsets", "random subsets; a correlation over one is "
                    "undefined", minimum=2)
        check_count(self.subset_size, "subset_size", "regions per subset")
        _check_removal(self)

    def compute(self, case: Case) -> Scores:
        x = case.forward.inputs
        groups = patch_groups(x, self.patch)
        valid = case.valid
        counted = groups.count if valid is None else int(valid.sum(1).min())
        if self.subset_size >= counted:
            raise ArgumentError(
                "subset_size",
                f"subset_size={self.subset_size} is not smaller than the {counted} regions "
                f"of the inputs (patch={self.patch!r}), so every subset is the same and the "
                f"correlation is undefined; pass subset_size < {counted}",
            )
        draws = torch.rand(self.subsets, groups.count, generator=generator(self.seed))
        draws = draws.to(x.device).unsqueeze(0)  # (1, subsets, G): shared by the samples
        if valid is not None:  # the same draws, padding never chosen: (B, subsets, G)
            draws = draws.masked_fill(~valid.unsqueeze(1), torch.inf)
        chosen = torch.zeros(draws.shape, dtype=torch.bool, device=x.device)
        chosen.scatter_(2, draws.argsort(2)[..., :self.subset_size], True)
        sums = group_sums(case.attribution, groups)
        attribution_sums = (sums @ chosen[0].T.to(sums.dtype) if valid is None else
                            (chosen.to(sums.dtype) @ sums.unsqueeze(2)).squeeze(2))
        probability = case.probability(self.probability, self.name)
        drops = self._output_drops(case, chosen, groups.labels.expand(x.shape[1:]).reshape(-1),
                                   probability)
        correlation = pearson(attribution_sums, drops).to(attribution_sums.dtype)
        return Scores(correlation, extras={"probability": probability})

    def _output_drops(
        self, case: Case, chosen: Tensor, labels: Tensor, probability: bool
    ) -> Tensor:
        """f(x) − f(x with subset S set to the fill), (B, subsets); ``chosen`` (1 or B,
        subsets, G) marks the regions of each subset."""
        x = case.forward.inputs
        fill = case.fill(self.fill, sigma=self.blur_sigma, seed=self.seed)
        check_finite(fill, "the fill", argument="fill", fix="pass a finite fill")
        fill = fill.flatten(1)
        full = case.scores(x, probability=probability)

        def filled_scores(sample: Tensor, subset: Tensor) -> Tensor:
            regions = chosen[sample if len(chosen) > 1 else 0, subset]
            rows = torch.where(regions[:, labels], fill[sample], x.flatten(1)[sample])
            return case.scores(rows.view(-1, *x.shape[1:]), sample, probability)

        return full.unsqueeze(1) - case.grid_values(self.subsets, filled_scores, self.batch_size)


@register_metric("faithfulness.infidelity")
@dataclass(frozen=True, eq=False)
class Infidelity(Metric):
    """Infidelity (Yeh et al. 2019): E_I[(Iᵀa − (f(x) − f(x − I)))²], I ~ N(0, σ²).

    With ``optimal_scale`` (as in the authors' code) the attribution is first multiplied by
    the β that minimises the expectation, β = E[Iᵀa·Δf] / E[(Iᵀa)²], so that the score does
    not depend on the attribution's scale. ``perturbations`` draws, shared by the samples
    (at least 2 with ``optimal_scale``: one draw is fitted exactly, a score of 0 whatever
    the attribution); ``noise`` is σ > 0.
    """

    direction = "lower"
    perturbations: int = 64
    noise: float = 0.1
    optimal_scale: bool = True
    batch_size: int | None = None
    seed: int | None = 0

    def __post_init__(self) -> None:
        draws = check_count(self.perturbations, "perturbations", "noise draws")
        check_finite_number(self.noise, "noise", 0.0, inclusive=False,
                            meaning="the standard deviation of the perturbations")
        check_bool(self.optimal_scale, "optimal_scale")
        if self.optimal_scale and draws < 2:
            raise ArgumentError(
                "perturbations",
                "perturbations must be at least 2 with optimal_scale=True: the scale fitted to "
                "one draw makes the infidelity 0 for any attribution",
            )
        check_batch_size(self.batch_size)
        check_seed(self.seed)

    def compute(self, case: Case) -> Scores:
        case.refuse_tokens(self.name, "it adds Gaussian noise to the inputs, which token ids "
                           "do not take; remove tokens with faithfulness.correlation instead")
        x = case.forward.inputs
        draws = self.noise * torch.randn(  # the same draws whatever the model's dtype
            (self.perturbations, *x.shape[1:]), generator=generator(self.seed),
            dtype=wide(x).dtype,
        ).to(x.device)
        full = case.scores(x)
        dot = wide(case.attribution.flatten(1)) @ draws.flatten(1).T  # (B, P)
        inputs = draws.to(x.dtype)
        drop = wide(full.unsqueeze(1) - case.grid_values(
            self.perturbations, lambda sample, k: case.scores(x[sample] - inputs[k], sample),
            self.batch_size,
        ))
        if self.optimal_scale:
            beta = (dot * drop).mean(1, keepdim=True) / dot.square().mean(1, keepdim=True)
            dot = dot * beta.nan_to_num(0.0)
        return Scores((dot - drop).square().mean(1))
