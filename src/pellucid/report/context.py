"""What the demo report's sections draw from: the models, the images and each method's result.

A :class:`DemoContext` holds the demo models (:class:`ReportModel`), the gallery, the
Clever-Hans images, the reference images, the text test sequences and the shortcut class's
images for SpRAy;
:meth:`DemoContext.explain` explains a batch with every method once, timed, and keeps the
:class:`MethodResult` list. Each method gets the demo's budget from its own
:meth:`~pellucid.method.Method.cheap` hook (:func:`demo_method`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor, nn

from ..api import get_method
from ..data.imageset import ImageSet
from ..data.text import TokenSet
from ..method import Method

#: each method's budget in model evaluations per sample (``Method.cheap(evaluations=...)``)
EVALUATIONS = 16


@dataclass(frozen=True)
class ReportModel:
    """A demo model with what the header shows about it."""

    name: str
    model: nn.Module
    description: str
    accuracy: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class MethodResult:
    """One method on one batch: the attribution (None if it failed), seconds, error."""

    method: str
    attribution: Tensor | None
    seconds: float
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.attribution is not None


@dataclass
class DemoContext:
    """What the section builders draw from; :meth:`explain` caches results per image set."""

    out: Path
    quick: bool
    methods: list[str]
    models: dict[str, ReportModel]
    gallery: ImageSet
    references: Tensor
    clever_hans: ImageSet | None = None
    shortcut_class: int | None = None
    #: test sequences for the text models (roles "text" and "text_recurrent" in ``models``)
    text: TokenSet | None = None
    #: test images of the shortcut class, half with the watermark, for the SpRAy section
    spray: ImageSet | None = None
    _results: dict[tuple[str, str], list[MethodResult]] = field(default_factory=dict, repr=False)

    def explain(
        self, model_key: str, data_key: str, images: Tensor, target: int | Tensor | None = None
    ) -> list[MethodResult]:
        """Every method on ``images`` for ``models[model_key]``, cached under ``data_key``."""
        key = (model_key, data_key)
        if key not in self._results:
            model = self.models[model_key]
            self._results[key] = explain_all(
                model.model,
                images,
                target,
                self.methods,
                self.references,
                f"{model.name}: {data_key}",
            )
        return self._results[key]


def demo_method(name: str, images: Tensor, references: Tensor) -> Method:
    """The method ``name`` with the demo's budget for ``images``: its ``cheap`` hook with
    :data:`EVALUATIONS` evaluations per sample and ``references`` (training images)."""
    return get_method(name).cheap(images, evaluations=EVALUATIONS, references=references)


def explain_all(
    model: nn.Module,
    images: Tensor,
    target: int | Tensor | None,
    methods: Sequence[str],
    references: Tensor,
    label: str,
) -> list[MethodResult]:
    """Each method on the batch, timed; a method that raises is recorded with its error."""
    from tqdm.auto import tqdm

    results = []
    for name in tqdm(methods, desc=label, unit="method", leave=False):
        start = time.perf_counter()
        try:
            attribution = demo_method(name, images, references)(model, images, target).attribution
            results.append(MethodResult(name, attribution, time.perf_counter() - start))
        except Exception as error:  # any failure is shown in the report
            message = f"{type(error).__name__}: {error}"
            results.append(MethodResult(name, None, time.perf_counter() - start, message))
    return results


__all__ = [
    "EVALUATIONS",
    "DemoContext",
    "MethodResult",
    "ReportModel",
    "demo_method",
    "explain_all",
]
