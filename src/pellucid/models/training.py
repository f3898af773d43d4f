"""Training with a progress bar, and accuracy."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..checks import check_count, check_finite_number, check_inputs, check_model, check_seed
from ..data.imageset import ImageSet
from ..errors import ArgumentError, ArgumentTypeError
from ..guard import eval_mode
from ..method import private_copy


def train(model: nn.Module, dataset: ImageSet | Dataset, epochs: int = 5, lr: float = 3e-3,
          batch_size: int = 64, seed: int = 0, progress: bool = True) -> list[float]:
    """Train ``model`` in place with Adam and cross-entropy; return the mean loss per epoch.

    ``dataset`` is an :class:`~pellucid.data.ImageSet` or a torch ``Dataset`` whose items start
    with (input, label). Batches are moved to the model's device and floating dtype.
    Shuffling and dropout are seeded by ``seed`` without touching the global random state.
    The model is left in eval mode. Labels outside the model's classes, and a loss that
    stops being finite (lower ``lr``), raise errors naming the setting.
    """
    check_model(model)
    if isinstance(dataset, ImageSet):
        dataset = dataset.dataset()
    if not isinstance(dataset, Dataset) or not hasattr(dataset, "__len__"):
        raise ArgumentTypeError(
            "dataset", f"dataset must be an ImageSet or a sized torch Dataset, got "
            f"{type(dataset).__name__}",
        )
    if len(dataset) == 0:
        raise ArgumentError("dataset", "dataset is empty; give at least one (input, label)")
    epochs = check_count(epochs, "epochs", "passes over the data")
    check_finite_number(lr, "lr", 0.0, inclusive=False, meaning="the learning rate")
    batch_size = check_count(batch_size, "batch_size", "examples per step")
    seed = check_seed(seed, none=False)
    losses = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(seed))
        optimiser = torch.optim.Adam(model.parameters(), lr=lr)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimiser, max_lr=lr, total_steps=max(1, epochs * len(loader)))
        model.train()
        bar = tqdm(total=epochs * len(loader), disable=not progress, desc="training",
                   unit="batch")
        for epoch in range(epochs):
            total, count = 0.0, 0
            for batch in loader:
                x = private_copy(batch[0], model)
                y = batch[1].to(x.device)
                out = model(x)
                _check_labels(y, out)
                loss = F.cross_entropy(out, y)
                if not math.isfinite(loss.item()):
                    raise ArgumentError(
                        "lr", f"the training loss became {loss.item()} in epoch {epoch + 1}; "
                        f"lower lr (now {lr}) or check the data for NaN",
                    )
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
                total, count = total + loss.item() * len(y), count + len(y)
                bar.update()
                bar.set_postfix(loss=f"{total / count:.3f}")
            losses.append(total / max(count, 1))
        bar.close()
    model.eval()
    return losses


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, batch_size: int = 256) -> Tensor:
    """Predicted classes (argmax of the model's output, on the CPU) in eval mode.

    The images go to the model's device and floating dtype in chunks of ``batch_size``;
    every module's train/eval mode is restored afterwards.
    """
    check_model(model)
    check_inputs(images, "images")
    batch_size = check_count(batch_size, "batch_size", "images per forward pass")
    with eval_mode(model):
        return torch.cat([
            model(private_copy(images[i:i + batch_size], model)).argmax(1).cpu()
            for i in range(0, len(images), batch_size)
        ])


def accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 256) -> float:
    """Fraction of ``images`` whose predicted class equals ``labels``."""
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.is_floating_point() or labels.is_complex():
        raise ArgumentError(
            "labels", f"labels must be integer class indices, one per image, got dtype "
            f"{labels.dtype} and shape {tuple(labels.shape)}",
        )
    if isinstance(images, Tensor) and len(images) != len(labels):
        raise ArgumentError("labels", f"{len(images)} images but {len(labels)} labels")
    return float((predict(model, images, batch_size) == labels.cpu()).float().mean())


def _check_labels(y: Tensor, out: Tensor) -> None:
    if y.is_floating_point() or y.ndim != 1:
        raise ArgumentError(
            "dataset", f"the dataset's labels must be integer class indices, got dtype "
            f"{y.dtype} and shape {tuple(y.shape)} per batch",
        )
    classes = out.shape[1] if out.ndim == 2 else 0
    if bool((y < 0).any()) or bool((y >= classes).any()):
        raise ArgumentError(
            "dataset", f"the dataset has labels in {int(y.min())}..{int(y.max())} but the "
            f"model outputs {classes} class scores (shape {tuple(out.shape)} per batch)",
        )
