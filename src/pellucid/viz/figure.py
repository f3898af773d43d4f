"""Grids of pictures (rows: images, columns: methods) as matplotlib figures, headless.

The figure is built with ``matplotlib.figure.Figure`` directly, not pyplot, so no GUI
backend is touched and no global figure state is left behind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..checks import check_finite_number
from ..errors import ArgumentError, ArgumentTypeError


def grid(
    columns: Mapping[str, np.ndarray],
    row_titles: Sequence[str] | None = None,
    cell_inches: float = 1.6,
):
    """A figure with one column per entry of ``columns`` ({title: uint8 RGB (B, H, W, 3)}).

    Every column holds the same number B of pictures, one row per image, e.g.
    ``{"input": to_rgb(x), "gradient": heatmap(e1), "lrp": heatmap(e2)}``.
    Save it with :func:`~pellucid.viz.save_png`.
    """
    from matplotlib.figure import Figure

    if not isinstance(columns, Mapping):
        raise ArgumentTypeError(
            "columns",
            "columns must be a dict {title: uint8 RGB (B, H, W, 3)}, got "
            f"{type(columns).__name__}",
        )
    if not columns:
        raise ArgumentError("columns", "grid needs at least one entry in columns")
    for title, pictures in columns.items():
        array = np.asarray(pictures) if not isinstance(pictures, np.ndarray) else pictures
        if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3 or not len(array):
            raise ArgumentError(
                "columns",
                f"columns[{title!r}] must be a uint8 RGB array (B, H, W, 3) with B ≥ 1, as "
                f"heatmap() or to_rgb() return; got {array.dtype} {array.shape}",
            )
    counts = {title: len(pictures) for title, pictures in columns.items()}
    rows = next(iter(counts.values()))
    if any(n != rows for n in counts.values()):
        raise ArgumentError(
            "columns", f"every entry of columns needs the same number of pictures, got {counts}"
        )
    if row_titles is not None and (isinstance(row_titles, str) or len(row_titles) != rows):
        raise ArgumentError(
            "row_titles", f"row_titles must be a list of {rows} titles (one per row), got "
            f"{row_titles!r}",
        )
    check_finite_number(cell_inches, "cell_inches", 0.0, inclusive=False)
    figure = Figure(figsize=(cell_inches * len(columns), cell_inches * rows + 0.3))
    axes = figure.subplots(rows, len(columns), squeeze=False)
    for col, (title, pictures) in enumerate(columns.items()):
        axes[0, col].set_title(title, fontsize=9)
        for row in range(rows):
            axes[row, col].imshow(pictures[row], interpolation="nearest")
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
            if col == 0 and row_titles is not None:
                axes[row, col].set_ylabel(row_titles[row], fontsize=9)
    figure.tight_layout()
    return figure


__all__ = ["grid"]
