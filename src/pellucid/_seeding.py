"""Seeded random draws, made on the CPU so that results match across devices.

Library code draws only from explicit generators (:func:`generator`), never from the global
ones, so that no public function changes the caller's random state (issue 15).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import torch

from .checks import SEED_LIMIT, check_seed


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


def offset_seed(seed: int, offset: int) -> int:
    """The seed of a derived draw (run ``offset`` of several): ``seed + offset`` wrapped into
    the seed range [0, 2³²), so that it stays a valid seed."""
    return (seed + offset) % SEED_LIMIT


@contextlib.contextmanager
def python_random_kept() -> Iterator[None]:
    """Python's global random state as it was after the block: for imports of libraries that
    draw from it when first imported (``rich``, which scikit-learn imports, calls
    ``random.getrandbits``).

    Example:
        >>> state = random.getstate()
        >>> with python_random_kept():
        ...     _ = random.random()
        >>> random.getstate() == state
        True
    """
    state = random.getstate()
    try:
        yield
    finally:
        random.setstate(state)
