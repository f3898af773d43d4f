"""The demo models: their recipes, shipped float16 weights, and training when a file is missing.

Weights live in ``pellucid/models/weights/<name>.pt`` (float16 state dicts, loaded with
``torch.load(weights_only=True)``) with ``manifest.json`` recording the recipe and the test
accuracies; ``scripts/train_demo_models.py`` reproduces both. When the package directory is
not writable, newly trained weights go to ``$PELLUCID_CACHE`` (default ``~/.cache/pellucid``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from .._seeding import offset_seed
from ..checks import check_choice, check_count, check_finite_number, check_seed
from ..data import ImageSet, TokenSet, clever_hans, shapes, text_evidence
from ..errors import ArgumentError
from .architectures import ARCHITECTURES
from .text import TEXT_ARCHITECTURES
from .training import accuracy, train

WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class DemoModel:
    """Recipe of a demo model: architecture and widths, data (``"shapes"`` or
    ``"clever_hans"``), training settings and the fixed test subset (``n_test`` images drawn
    with the data's test seed)."""

    name: str
    architecture: str
    widths: tuple[int, ...]
    data: str
    size: int = 64
    n_train: int = 3000
    n_test: int = 500
    epochs: int = 6
    lr: float = 3e-3
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice(self.architecture, "architecture", list(ARCHITECTURES))
        check_choice(self.data, "data", ("shapes", "clever_hans"))
        if isinstance(self.widths, (int, str)) or not self.widths:
            raise ArgumentError("widths", f"widths must be a non-empty tuple, got {self.widths!r}")
        for name in ("size", "n_train", "n_test", "epochs", "batch_size"):
            check_count(getattr(self, name), name)
        check_seed(self.seed, none=False)
        check_finite_number(self.lr, "lr", 0.0, inclusive=False, meaning="the learning rate")

    def build(self) -> nn.Module:
        if self.architecture == "small_cnn":
            return ARCHITECTURES["small_cnn"](3, 5, width=self.widths[0])
        return ARCHITECTURES[self.architecture](3, 5, widths=self.widths)

    def training_set(self) -> ImageSet:
        if self.data == "clever_hans":
            return clever_hans(self.n_train, n_test=0, size=self.size, seed=self.seed).train
        return shapes(self.n_train, size=self.size, seed=self.seed)

    def test_sets(self) -> dict[str, ImageSet]:
        """The fixed test subsets: ``{"test": ...}``, and for the Clever-Hans model also
        ``"test_watermarked"`` and ``"test_moved"``."""
        if self.data == "clever_hans":
            ch = clever_hans(0, n_test=self.n_test, size=self.size, seed=self.seed)
            return {"test": ch.test, "test_watermarked": ch.test_watermarked,
                    "test_moved": ch.test_moved}
        return {"test": shapes(self.n_test, size=self.size, seed=offset_seed(self.seed, 1))}

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Accuracy of ``model`` on each fixed test subset."""
        return {key: accuracy(model, data.images, data.labels)
                for key, data in self.test_sets().items()}


@dataclass(frozen=True)
class TextDemoModel:
    """Recipe of a text demo model: architecture (``"text_transformer"`` or ``"text_lstm"``)
    and ``widths`` (its ``dim``, ``hidden``), trained on ``text_evidence(n_train, length,
    mask_rate=mask_rate, seed=seed)`` and tested on ``n_test`` sequences drawn with the test
    seed ``seed + 1`` (and no ``[MASK]``)."""

    name: str
    architecture: str
    widths: tuple[int, int]
    data: str = "text_evidence"
    length: int = 32
    n_train: int = 4000
    n_test: int = 1000
    mask_rate: float = 0.1
    epochs: int = 8
    lr: float = 3e-3
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice(self.architecture, "architecture", list(TEXT_ARCHITECTURES))
        check_choice(self.data, "data", ("text_evidence",))
        if isinstance(self.widths, (int, str)) or len(self.widths) != 2:
            raise ArgumentError(
                "widths", f"widths must be (dim, hidden) of the text model, got {self.widths!r}"
            )
        for name in ("length", "n_train", "n_test", "epochs", "batch_size"):
            check_count(getattr(self, name), name)
        check_seed(self.seed, none=False)
        check_finite_number(self.lr, "lr", 0.0, inclusive=False, meaning="the learning rate")
        check_finite_number(self.mask_rate, "mask_rate", 0.0, maximum=1.0,
                            meaning="a probability")

    def build(self) -> nn.Module:
        dim, hidden = self.widths
        if self.architecture == "text_lstm":
            return TEXT_ARCHITECTURES["text_lstm"](dim=dim, hidden=hidden)
        return TEXT_ARCHITECTURES["text_transformer"](dim=dim, hidden=hidden,
                                                      max_length=self.length)

    def training_set(self) -> TokenSet:
        return text_evidence(self.n_train, length=self.length, mask_rate=self.mask_rate,
                             seed=self.seed)

    def test_sets(self) -> dict[str, TokenSet]:
        """The fixed test subset ``{"test": ...}``."""
        return {"test": text_evidence(self.n_test, length=self.length,
                                      seed=offset_seed(self.seed, 1))}

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Accuracy of ``model`` on the fixed test subset, reading the attention masks."""
        return {key: accuracy(model, data.input_ids, data.labels,
                              attention_mask=data.attention_mask)
                for key, data in self.test_sets().items()}


#: the image demo models (``load_pretrained`` also knows the :data:`TEXT_MODELS`)
DEMO_MODELS = {
    spec.name: spec for spec in (
        DemoModel("shapes_vgg", "vgg_style", (16, 32, 64, 64), "shapes"),
        DemoModel("clever_hans_vgg", "vgg_style", (16, 32, 64, 64), "clever_hans"),
    )
}
#: the text demo models, trained on :func:`~pellucid.data.text_evidence`
TEXT_MODELS = {
    spec.name: spec for spec in (
        TextDemoModel("text_transformer", "text_transformer", (32, 64)),
        TextDemoModel("text_lstm", "text_lstm", (32, 64)),
    )
}


def _spec(name: str) -> DemoModel | TextDemoModel:
    known = {**DEMO_MODELS, **TEXT_MODELS}
    check_choice(name, "name", list(known), "the demo models")
    return known[name]


def _cache_dir() -> Path:
    return Path(os.environ.get("PELLUCID_CACHE", Path.home() / ".cache" / "pellucid"))


def _weights_path(name: str, directory: Path | None) -> Path:
    """Where the weights are (package, then cache) or, if nowhere, where to write them."""
    if directory is not None:
        return Path(directory) / f"{name}.pt"
    for folder in (WEIGHTS_DIR, _cache_dir()):
        if (folder / f"{name}.pt").exists():
            return folder / f"{name}.pt"
    folder = WEIGHTS_DIR if os.access(WEIGHTS_DIR, os.W_OK) else _cache_dir()
    return folder / f"{name}.pt"


def demo_test_sets(name: str) -> dict[str, ImageSet | TokenSet]:
    """The fixed test subsets of demo model ``name`` (see :meth:`DemoModel.test_sets`)."""
    return _spec(name).test_sets()


def evaluate_demo_model(model: nn.Module, name: str) -> dict[str, float]:
    """Accuracy of ``model`` on each fixed test subset of demo model ``name``."""
    return _spec(name).evaluate(model)


def manifest(directory: Path | None = None) -> dict:
    """The recorded recipes and accuracies (``manifest.json`` next to the weights)."""
    path = Path(directory or WEIGHTS_DIR) / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}


def train_demo_model(name: str, directory: Path | None = None, progress: bool = True
                     ) -> nn.Module:
    """Train demo model ``name`` from its recipe, save float16 weights and record the recipe
    and its test accuracies (measured with the saved float16 weights) in ``manifest.json``."""
    spec = _spec(name)
    path = _weights_path(name, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):  # the caller's random state is kept
        torch.random.default_generator.manual_seed(spec.seed)
        model = spec.build()
    losses = train(model, spec.training_set(), epochs=spec.epochs, lr=spec.lr,
                   batch_size=spec.batch_size, seed=spec.seed, progress=progress)
    torch.save({k: v.half() if v.is_floating_point() else v
                for k, v in model.state_dict().items()}, path)
    model = _load(spec, path)
    record = manifest(path.parent)
    measured = evaluate_demo_model(model, name)
    record[name] = {**asdict(spec), "file": path.name, "dtype": "float16",
                    "final_training_loss": round(losses[-1], 4),
                    "accuracy": {k: round(v, 4) for k, v in measured.items()}}
    (path.parent / "manifest.json").write_text(json.dumps(record, indent=2) + "\n")
    return model


def _load(spec: DemoModel | TextDemoModel, path: Path) -> nn.Module:
    model = spec.build()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v
                           for k, v in state.items()})
    return model.eval()


def load_pretrained(name: str, directory: Path | None = None, progress: bool = True
                    ) -> nn.Module:
    """Demo model ``name`` (see ``DEMO_MODELS`` and ``TEXT_MODELS``) in eval mode, float32,
    on the CPU.

    Loads the shipped weights with ``torch.load(weights_only=True)``; if the file is missing,
    trains the model from its recipe (with a progress bar) and saves it first.
    """
    spec = _spec(name)
    path = _weights_path(name, directory)
    if not path.exists():
        return train_demo_model(name, directory, progress)
    return _load(spec, path)
