"""Seeded random draws, made on the CPU so that results match across devices."""

from __future__ import annotations

import torch


def generator(seed: int | None) -> torch.Generator:
    """A CPU generator: random draws are made on the CPU so results match across devices."""
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed)
    return gen
