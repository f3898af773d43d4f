"""The report's Class prototypes section: one activation-maximisation image per class.

:func:`demo_prototypes` optimises one image per class of the shapes model in one batch,
in the Fourier parameterisation with jitter, a little total variation and the unit value
range, under a low-rank Gaussian expert fitted to real images (Montavon et al. 2018).
:func:`prototypes_section` renders them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..features import (
    Fourier,
    GaussianPrior,
    Jitter,
    TotalVariation,
    ValueRange,
    class_prototypes,
)
from ..viz import to_rgb
from .context import DemoContext
from .html import Section, figure


def demo_prototypes(
    model: nn.Module,
    n_classes: int,
    real_images: Tensor,
    steps: int = 200,
    prior_weight: float = 1e-3,
    seed: int = 0,
) -> tuple[list[Tensor], Tensor]:
    """(one prototype per class, their class probabilities) for images like ``real_images``.

    ``real_images`` (N×C×H×W in [0, 1]) give the image shape and the Gaussian expert
    (rank min(16, N − 1)).
    """
    rank = max(1, min(16, len(real_images) - 1))
    prior = GaussianPrior.fit(real_images, rank=rank)
    # the log-probability, unlike the logit, also pushes the other classes down: with the
    # logit, some shapes_vgg prototypes get class probabilities near 0
    prototypes = class_prototypes(
        model,
        range(n_classes),
        tuple(real_images.shape[1:]),
        score="log_probability",
        prior=prior,
        prior_weight=prior_weight,
        regularisers=[Jitter(2), TotalVariation(1e-3), ValueRange(0.0, 1.0)],
        parameterisation=Fourier(scale=0.05),
        init=real_images.mean(0, keepdim=True).expand(n_classes, *real_images.shape[1:]),
        steps=steps,
        lr=0.05,
        seed=seed,
        progress=False,
    )
    with torch.no_grad():
        probabilities = torch.softmax(model(torch.stack(prototypes)), dim=1).diagonal()
    return prototypes, probabilities


def prototype_figures(
    prototypes: Sequence[Tensor], probabilities: Tensor, class_names: Sequence[str]
) -> str:
    """HTML figures: each prototype with its class name and the model's probability."""
    rgb = to_rgb(torch.stack(list(prototypes)).clamp(0, 1), value_range=(0.0, 1.0))
    return "".join(
        figure(rgb[k], name, note=f"p = {float(probabilities[k]):.2f}", large=True)
        for k, name in enumerate(class_names)
    )


def prototypes_section(ctx: DemoContext) -> Section | None:
    """Class prototypes of the main shapes model."""
    if "main" not in ctx.models:
        return None
    model = ctx.models["main"].model
    names = ctx.gallery.class_names
    steps = 64 if ctx.quick else 200
    prototypes, probabilities = demo_prototypes(model, len(names), ctx.references, steps=steps)
    figures = prototype_figures(prototypes, probabilities, names)
    body = f'<div class="card"><div class="tiles">{figures}</div></div>'
    return Section(
        "Class prototypes",
        "prototypes",
        body,
        lead="Activation maximisation (Montavon et al. 2018): for each class, an image "
        f"optimised ({steps} steps) to raise the class log-probability of "
        f"{ctx.models['main'].name}, "
        "parameterised in Fourier space with decorrelated colour, with jitter, total "
        "variation, values kept in [0, 1] and a low-rank Gaussian expert fitted to "
        f"{len(ctx.references)} real images. p is the model's probability of the class.",
    )


__all__ = ["demo_prototypes", "prototype_figures", "prototypes_section"]
