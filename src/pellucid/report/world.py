"""The demo's data and models: the shipped demo models and their fixed test sets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from ..data.imageset import ImageSet
from .context import DemoContext, ReportModel

#: the role of a demo model in the report, by the data it was trained on
ROLES = {"shapes": "main", "clever_hans": "shortcut"}
#: the roles of the text models (see :mod:`~pellucid.report.text`), by name
TEXT_ROLES = {"text_transformer": "text", "text_lstm": "text_recurrent"}
#: seed of the reference images for expected_gradients (not a test seed of the models)
REFERENCE_SEED = 10_007
#: (gallery images, Clever-Hans images, reference images), by ``quick``
COUNTS = {True: (3, 4, 16), False: (6, 12, 64)}
#: shortcut-class test images for SpRAy (at most; the fixed test set holds about 100), by
#: ``quick``
SPRAY_COUNTS = {True: 60, False: 100}


def load_world(out: Path, quick: bool, methods: list[str]) -> DemoContext:
    """The context of the demo: the models with their test accuracies, the gallery (the
    first test images of the shapes model), watermarked test images of other classes, and
    the text models with their fixed test sequences, and the shortcut class's test images
    for SpRAy (:func:`spray_images`)."""
    from ..data import shapes
    from ..models import DEMO_MODELS, demo_test_sets, evaluate_demo_model, load_pretrained

    n_gallery, n_hans, n_refs = COUNTS[quick]
    names = {}
    for spec in DEMO_MODELS.values():  # the first model trained on each data set
        if spec.data in ROLES:
            names.setdefault(ROLES[spec.data], spec.name)
    models = {}
    for role, name in names.items():
        model = load_pretrained(name).eval()
        models[role] = ReportModel(name, model, role, evaluate_demo_model(model, name))
    for name, role in TEXT_ROLES.items():
        model = load_pretrained(name).eval()
        models[role] = ReportModel(name, model, role, evaluate_demo_model(model, name))
    gallery = demo_test_sets(names["main"])["test"].subset(slice(0, n_gallery))
    hans_sets = demo_test_sets(names["shortcut"])
    moved = hans_sets["test_moved"]
    hans = moved.subset(moved.has_watermark.nonzero().flatten()[:n_hans])
    shortcut_class = int(moved.labels[~moved.has_watermark][0])
    spray = spray_images(hans_sets["test"], hans_sets["test_watermarked"], shortcut_class,
                         SPRAY_COUNTS[quick])
    return DemoContext(
        out=out,
        quick=quick,
        methods=methods,
        models=models,
        gallery=gallery,
        references=shapes(n_refs, size=gallery.images.shape[-1], seed=REFERENCE_SEED).images,
        clever_hans=hans,
        shortcut_class=shortcut_class,
        text=demo_test_sets("text_transformer")["test"],
        spray=spray,
    )


def spray_images(clean: ImageSet, watermarked: ImageSet, cls: int, count: int) -> ImageSet:
    """The first ``count`` images of class ``cls``, every other one (the 1st, 3rd, …) from
    ``watermarked`` and the rest from ``clean`` (the same images without the stamp);
    ``watermark_masks`` is empty for the clean ones.

    Example:
        >>> from pellucid.data import clever_hans
        >>> data = clever_hans(0, n_test=40, size=32, seed=0)
        >>> mixed = spray_images(data.test, data.test_watermarked, data.shortcut_class, 4)
        >>> mixed.has_watermark.tolist(), bool((mixed.labels == data.shortcut_class).all())
        ([True, False, True, False], True)
    """
    index = (clean.labels == cls).nonzero().flatten()[:count]
    marked = torch.arange(len(index)) % 2 == 0
    stamps = watermarked.watermark_masks[index] & marked.view(-1, 1, 1)
    images = torch.where(marked.view(-1, 1, 1, 1), watermarked.images[index], clean.images[index])
    return replace(clean.subset(index), images=images, watermark_masks=stamps)
