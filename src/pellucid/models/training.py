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
from ..data.text import TokenDataset, TokenSet
from ..errors import ArgumentError, ArgumentTypeError
from ..guard import eval_mode
from ..placement import to_model


def train(model: nn.Module, dataset: ImageSet | TokenSet | Dataset, epochs: int = 5,
          lr: float = 3e-3, batch_size: int = 64, seed: int = 0, progress: bool = True
          ) -> list[float]:
    """Train ``model`` in place with Adam and cross-entropy; return the mean loss per epoch.

    ``dataset`` is an :class:`~pellucid.data.ImageSet`, a :class:`~pellucid.data.TokenSet`
    (the model is called as ``model(input_ids, attention_mask=...)``) or a torch ``Dataset``
    whose items start with (input, label). Inputs, labels and masks of every batch are moved
    to the model's device, floating inputs to its floating dtype
    (:func:`pellucid.placement.to_model`); the losses are Python floats.
    Shuffling and dropout are seeded by ``seed`` without touching the global random state.
    The model is left in eval mode. Labels outside the model's classes, and a loss that
    stops being finite (lower ``lr``), raise errors naming the setting.
    """
    check_model(model)
    if isinstance(dataset, ImageSet | TokenSet):
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
        torch.random.default_generator.manual_seed(seed)  # the CPU's only: CUDA untouched
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
                text = isinstance(dataset, TokenDataset)
                x = to_model(batch[0], model)  # a fresh batch from the loader
                y = batch[1].to(x.device)
                out = model(x, attention_mask=batch[2].to(x.device)) if text else model(x)
                _check_labels(y, out)
                loss = F.cross_entropy(out, y)
                value = loss.item()  # the step's one synchronisation
                if not math.isfinite(value):
                    raise ArgumentError(
                        "lr", f"the training loss became {value} in epoch {epoch + 1}; "
                        f"lower lr (now {lr}) or check the data for NaN",
                    )
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
                total, count = total + value * len(y), count + len(y)
                bar.update()
                bar.set_postfix(loss=f"{total / count:.3f}")
            losses.append(total / max(count, 1))
        bar.close()
    model.eval()
    return losses


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, batch_size: int = 256,
            attention_mask: Tensor | None = None) -> Tensor:
    """Predicted classes (argmax of the model's output) in eval mode: a LongTensor (N,) on
    the CPU, whatever the model's device.

    ``images`` are floating inputs, or integer token ids (N, L) that the model reads as
    ``model(ids, attention_mask=...)`` with the rows of ``attention_mask`` (N, L) when given.
    Chunks of ``batch_size`` rows (and their masks) are copied to the model's device,
    floating inputs in its floating dtype (:func:`pellucid.placement.to_model`); every
    module's train/eval mode is restored afterwards.

    Example:
        >>> import torch
        >>> from pellucid.models import predict
        >>> model = torch.nn.Linear(2, 2, bias=False).double()
        >>> _ = model.weight.data.copy_(torch.eye(2))
        >>> predict(model, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        tensor([0, 1])
    """
    check_model(model)
    tokens = isinstance(images, Tensor) and not (
        images.is_floating_point() or images.is_complex() or images.dtype == torch.bool)
    if not tokens:
        check_inputs(images, "images")
    elif images.ndim != 2 or not len(images):
        raise ArgumentError(
            "images", f"images given as token ids must be shaped (sequences, length) with "
            f"at least one sequence, got shape {tuple(images.shape)}"
        )
    if attention_mask is not None and (not tokens or not isinstance(attention_mask, Tensor)
                                       or attention_mask.shape != images.shape):
        got = tuple(attention_mask.shape) if isinstance(attention_mask, Tensor) else type(
            attention_mask).__name__
        raise ArgumentError(
            "attention_mask", f"attention_mask goes with token ids and must be shaped like "
            f"them {tuple(images.shape)}, got {got}; pass None for image inputs"
        )
    batch_size = check_count(batch_size, "batch_size", "images per forward pass")
    predicted = []
    with eval_mode(model):
        for i in range(0, len(images), batch_size):
            x = to_model(images[i:i + batch_size].detach(), model, copy=True)
            out = model(x) if attention_mask is None else model(
                x, attention_mask=attention_mask[i:i + batch_size].to(x.device))
            predicted.append(out.argmax(1).cpu())
    return torch.cat(predicted)


def accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 256,
             attention_mask: Tensor | None = None) -> float:
    """Fraction of ``images`` (or token ids, with ``attention_mask``: see :func:`predict`)
    whose predicted class equals ``labels``, a Python float; inputs on any device and in
    any dtype go to the model's (see :func:`predict`).

    Example:
        >>> import torch
        >>> from pellucid.models import accuracy
        >>> model = torch.nn.Linear(2, 2, bias=False).double()
        >>> _ = model.weight.data.copy_(torch.eye(2))
        >>> accuracy(model, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))
        0.5
    """
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.is_floating_point() or labels.is_complex():
        raise ArgumentError(
            "labels", f"labels must be integer class indices, one per image, got dtype "
            f"{labels.dtype} and shape {tuple(labels.shape)}",
        )
    if isinstance(images, Tensor) and len(images) != len(labels):
        raise ArgumentError("labels", f"{len(images)} images but {len(labels)} labels")
    predicted = predict(model, images, batch_size, attention_mask)
    return float((predicted == labels.cpu()).float().mean())


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
