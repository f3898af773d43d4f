"""The demo's data and models: the shipped demo models and their fixed test sets."""

from __future__ import annotations

from pathlib import Path

from .context import DemoContext, ReportModel

#: the role of a demo model in the report, by the data it was trained on
ROLES = {"shapes": "main", "clever_hans": "shortcut"}
#: the roles of the text models (see :mod:`~pellucid.report.text`), by name
TEXT_ROLES = {"text_transformer": "text", "text_lstm": "text_recurrent"}
#: seed of the reference images for expected_gradients (not a test seed of the models)
REFERENCE_SEED = 10_007
#: (gallery images, Clever-Hans images, reference images), by ``quick``
COUNTS = {True: (3, 4, 16), False: (6, 12, 64)}


def load_world(out: Path, quick: bool, methods: list[str]) -> DemoContext:
    """The context of the demo: the models with their test accuracies, the gallery (the
    first test images of the shapes model), watermarked test images of other classes, and
    the text models with their fixed test sequences."""
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
    moved = demo_test_sets(names["shortcut"])["test_moved"]
    hans = moved.subset(moved.has_watermark.nonzero().flatten()[:n_hans])
    shortcut_class = int(moved.labels[~moved.has_watermark][0])
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
    )
