"""Models for the Ray engine's tests: importable by Ray's worker processes (they unpickle
the model by its class's module), plain torch."""

from __future__ import annotations

import torch
from torch import nn


class TinyCNN(nn.Module):
    """Conv-ReLU-pool-linear on (B, 3, 8, 8) images, 3 classes."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class FragileCNN(TinyCNN):
    """TinyCNN that raises for any sample whose first value is 99."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x.flatten(1)[:, 0] == 99).any()):
            raise RuntimeError("marked sample")
        return super().forward(x)
