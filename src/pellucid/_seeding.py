"""Seeded random draws, made on the CPU so that results match across devices."""

from __future__ import annotations

import torch

from .checks import check_seed


def generator(seed: int | None) -> torch.Generator:
    """A CPU generator: random draws are made on the CPU so results match across devices.

    ``seed`` None draws a fresh seed; anything but an int or None is an ``ArgumentTypeError``
    naming ``seed``.
    """
    check_seed(seed)
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    return gen
