"""Training with a progress bar, and accuracy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..data.imageset import ImageSet
from ..guard import eval_mode


def train(model: nn.Module, dataset: ImageSet | Dataset, epochs: int = 5, lr: float = 3e-3,
          batch_size: int = 64, seed: int = 0, progress: bool = True) -> list[float]:
    """Train ``model`` in place with Adam and cross-entropy; return the mean loss per epoch.

    ``dataset`` is an :class:`~pellucid.data.ImageSet` or a torch ``Dataset`` whose items start
    with (input, label). Shuffling and dropout are seeded by ``seed`` without touching the
    global random state. The model is left in eval mode.
    """
    if isinstance(dataset, ImageSet):
        dataset = dataset.dataset()
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
        for _ in range(epochs):
            total, count = 0.0, 0
            for batch in loader:
                x, y = batch[0], batch[1]
                loss = F.cross_entropy(model(x), y)
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
    """Predicted classes (argmax of the model's output) in eval mode; every module's
    train/eval mode is restored afterwards."""
    with eval_mode(model):
        return torch.cat([model(images[i:i + batch_size]).argmax(1)
                          for i in range(0, len(images), batch_size)])


def accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 256) -> float:
    """Fraction of ``images`` whose predicted class equals ``labels``."""
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    return float((predict(model, images, batch_size) == labels).float().mean())
