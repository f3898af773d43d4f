"""Colour maps as 257-entry lookup tables, built without matplotlib.

Signed maps (for relevance with both signs) put 0 at the centre of the table (entry 128 of an
odd-sized table, so 0 is exactly the centre colour), following the
LRP convention: red is positive, blue is negative.

===========  ======  ==========================================================
name         kind    −1 … 0 … +1 (signed) or 0 … 1 (positive)
===========  ======  ==========================================================
bwr          signed  blue, white, red
seismic      signed  dark blue, blue, white, red, dark red (matplotlib's seismic)
coldnhot     signed  cyan, blue, black, red, yellow (zennit's cold-and-hot)
gray         signed  black, mid-gray, white
hot          pos.    black, red, yellow, white
inferno      pos.    black, purple, orange, pale yellow (5-point inferno)
jet          pos.    dark blue, cyan, yellow, dark red
gray_r       pos.    white to black (relevance as ink)
===========  ======  ==========================================================

Positive maps are meant for CAMs and other non-negative maps; any other matplotlib colour map
name works too (looked up lazily, treated as signed unless ``signed=False``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..checks import check_bool
from ..errors import ArgumentError, ArgumentTypeError, UnknownNameError
from ..registry import suggest

#: entries per table; odd, so that a signed map has an exact centre
SIZE = 257


@dataclass(frozen=True)
class Colormap:
    """A colour map: a (257, 3) uint8 table and whether 0 sits at its centre (signed)."""

    name: str
    table: np.ndarray
    signed: bool

    def __post_init__(self) -> None:
        table = self.table
        if not isinstance(table, np.ndarray) or table.dtype != np.uint8 or table.ndim != 2 or (
            table.shape[1] != 3 or len(table) < 2
        ):
            got = f"{table.dtype} {table.shape}" if isinstance(table, np.ndarray) else type(table)
            raise ArgumentError(
                "table", f"table must be a uint8 NumPy array (N, 3) with N ≥ 2 colours, got {got}"
            )
        check_bool(self.signed, "signed")


def _table(anchors: list[tuple[float, tuple[float, float, float]]]) -> np.ndarray:
    """A (SIZE, 3) uint8 table linearly interpolated between (position, rgb) anchors."""
    positions = np.array([p for p, _ in anchors])
    colours = np.array([c for _, c in anchors])
    grid = np.linspace(0.0, 1.0, SIZE)
    channels = [np.interp(grid, positions, colours[:, k]) for k in range(3)]
    return np.round(np.stack(channels, axis=1) * 255).astype(np.uint8)


_ANCHORS: dict[str, tuple[bool, list[tuple[float, tuple[float, float, float]]]]] = {
    "bwr": (True, [(0.0, (0, 0, 1)), (0.5, (1, 1, 1)), (1.0, (1, 0, 0))]),
    "seismic": (
        True,
        [
            (0.0, (0, 0, 0.3)),
            (0.25, (0, 0, 1)),
            (0.5, (1, 1, 1)),
            (0.75, (1, 0, 0)),
            (1.0, (0.5, 0, 0)),
        ],
    ),
    "coldnhot": (
        True,
        [
            (0.0, (0, 1, 1)),
            (0.25, (0, 0, 1)),
            (0.5, (0, 0, 0)),
            (0.75, (1, 0, 0)),
            (1.0, (1, 1, 0)),
        ],
    ),
    "gray": (True, [(0.0, (0, 0, 0)), (1.0, (1, 1, 1))]),
    "hot": (False, [(0.0, (0, 0, 0)), (0.375, (1, 0, 0)), (0.75, (1, 1, 0)), (1.0, (1, 1, 1))]),
    "inferno": (
        False,
        [
            (0.0, (0.0, 0.0, 0.015)),
            (0.25, (0.341, 0.062, 0.429)),
            (0.5, (0.735, 0.216, 0.330)),
            (0.75, (0.978, 0.557, 0.035)),
            (1.0, (0.988, 0.998, 0.645)),
        ],
    ),
    "jet": (
        False,
        [
            (0.0, (0, 0, 0.5)),
            (0.125, (0, 0, 1)),
            (0.375, (0, 1, 1)),
            (0.625, (1, 1, 0)),
            (0.875, (1, 0, 0)),
            (1.0, (0.5, 0, 0)),
        ],
    ),
    "gray_r": (False, [(0.0, (1, 1, 1)), (1.0, (0, 0, 0))]),
}

COLORMAPS: dict[str, Colormap] = {
    name: Colormap(name, _table(anchors), signed) for name, (signed, anchors) in _ANCHORS.items()
}


def get_colormap(cmap: str | Colormap, signed: bool | None = None) -> Colormap:
    """The colour map called ``cmap`` (pellucid's own first, then matplotlib's).

    An unknown name raises :class:`~pellucid.errors.UnknownNameError` (a ``KeyError``) with
    close names.
    """
    check_bool(signed, "signed", none=True)
    if isinstance(cmap, Colormap):
        found = cmap
    elif not isinstance(cmap, str):
        raise ArgumentTypeError(
            "cmap",
            f"cmap must be a colour map name (e.g. 'bwr', 'coldnhot') or a Colormap, got {cmap!r}",
        )
    elif cmap in COLORMAPS:
        found = COLORMAPS[cmap]
    else:
        found = _from_matplotlib(cmap)
    if signed is not None and signed != found.signed:
        found = Colormap(found.name, found.table, signed)
    return found


def _from_matplotlib(name: str) -> Colormap:
    try:
        import matplotlib
    except ImportError:
        raise UnknownNameError(
            "cmap",
            f"unknown colour map cmap={name!r}.{suggest(name, list(COLORMAPS))} pellucid's own "
            f"maps are {', '.join(COLORMAPS)}; install matplotlib for the others",
        ) from None
    try:
        mpl = matplotlib.colormaps[name]
    except KeyError:
        known = list(dict.fromkeys([*COLORMAPS, *matplotlib.colormaps]))
        raise UnknownNameError(
            "cmap",
            f"unknown colour map cmap={name!r}.{suggest(name, known)} pellucid's own maps are "
            f"{', '.join(COLORMAPS)}; any matplotlib colour map name works too",
        ) from None
    rgba = mpl(np.linspace(0.0, 1.0, SIZE))
    return Colormap(name, np.round(rgba[:, :3] * 255).astype(np.uint8), signed=True)


__all__ = ["COLORMAPS", "Colormap", "get_colormap"]
