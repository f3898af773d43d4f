"""The random attribution: the reference row of every benchmark (not a registered method).

A method that does not beat a ranking by standard normal noise explains nothing that the
metric can see. ``benchmark`` builds it for the method name ``"random"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .._seeding import generator
from ..checks import check_seed
from ..method import Method
from ..task import Task


@dataclass(frozen=True, eq=False)
class RandomAttribution(Method):
    """Standard normal noise as attribution: the ranking a method has to beat."""

    name = "random"
    seed: int | None = 0

    def __post_init__(self) -> None:
        check_seed(self.seed)

    def attribute(self, task: Task, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()  # token ids
        noise = torch.randn(x.shape, generator=generator(self.seed), dtype=dtype)
        return noise.to(x.device), {}
