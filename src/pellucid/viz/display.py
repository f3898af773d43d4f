"""Explanations that show themselves: one figure per explanation, or one grid of methods.

:func:`plot` draws what an attribution is: for images (B, C, H, W) a grid with one row per
sample (input, heatmap with a colour bar in relevance units, overlay whose opacity follows
|R|); for sequences (B, L) or token embeddings (B, L, D) (D reduced, summed by default)
coloured text when ``tokens`` are given, else one heat strip per sample. :func:`compare`
draws several methods side by side, by default on one shared colour scale. Both return a
``matplotlib.figure.Figure`` built without pyplot (headless; save it with
:func:`~pellucid.viz.save_png`). ``Explanation.plot()`` and the notebook display
(``Explanation._repr_png_``) call these.

The colours are those of :func:`~pellucid.viz.heatmap`: v = R / s with s the max |R| per
sample (``scale="sample"``) or over the batch (``scale="shared"``, so that colours compare
across samples and methods); the colour bar shows ±s in the attribution's units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..checks import check_choice, check_count, check_finite_number
from ..errors import ArgumentError, ArgumentTypeError
from .colormaps import Colormap, get_colormap
from .heatmap import (
    REDUCTIONS,
    as_tensor,
    check_scale,
    colorize,
    normalise,
    reduce_channels,
    relevance_scale,
)
from .images import opacity, overlay, to_rgb

#: samples the notebook display shows (``Explanation._repr_png_``); ``plot()`` shows all
NOTEBOOK_SAMPLES = 4
#: characters per line of coloured text before it wraps
LINE_CHARS = 64


def plot(
    explanation: Any,
    inputs: Any = None,
    *,
    tokens: Sequence[Sequence[str]] | None = None,
    scale: Any = "sample",
    cmap: str | Colormap = "bwr",
    reduce: str = "sum",
    alpha: float = 0.8,
    clip_quantile: float = 1.0,
    max_samples: int | None = None,
):
    """A figure of an :class:`~pellucid.Explanation` (or of a relevance tensor).

    Images (B, C, H, W): one row per sample with the input, the heatmap with a colour bar
    (±s in relevance units) and an overlay whose opacity is α(x) = ``alpha`` · |R(x)| / s
    (:func:`~pellucid.viz.opacity`: regions without relevance show the image unchanged).
    The input comes from ``inputs`` or else the explanation's own ``inputs``; without
    either, only the heatmaps are drawn; inputs with other than 1 or 3 channels are
    shown as their channel mean in gray. Sequences (B, L) and token embeddings (B, L, D)
    (D reduced by ``reduce``): coloured text if ``tokens`` (one list of L strings per
    sample) are given, else one heat strip per sample.

    Args:
        scale: ``"sample"`` (each sample by its own max |R|), ``"shared"`` (one scale for
            the batch) or a positive number (the |R| drawn at full colour).
        cmap, reduce, clip_quantile: as for :func:`~pellucid.viz.heatmap`.
        alpha: the overlay's opacity at the strongest relevance, in [0, 1].
        max_samples: draw only the first samples (the shared scale still covers all).

    Example:
        >>> import torch
        >>> from pellucid.viz import plot
        >>> figure = plot(torch.randn(2, 3, 8, 8), torch.rand(2, 3, 8, 8))
        >>> len(figure.axes)  # 2 rows × (input, heatmap, colour bar, overlay)
        8
    """
    r = as_tensor(explanation)
    if inputs is None:
        inputs = getattr(explanation, "inputs", None)
    count = check_count(max_samples, "max_samples", "samples drawn", none=True)
    check_finite_number(alpha, "alpha", 0.0, maximum=1.0, meaning="the overlay's opacity at "
                        "the strongest relevance")
    colours = get_colormap(cmap)
    check_scale(scale)
    shown = min(len(r), count or len(r))
    labels = _row_titles(explanation, shown)
    title = getattr(explanation, "method", None)
    if shown < len(r):
        title = f"{title + ': ' if title else ''}first {shown} of {len(r)} samples"
    if r.ndim == 4:
        if tokens is not None:
            raise ArgumentError(
                "tokens", "tokens are for sequence attributions (B, L) or (B, L, D); these "
                f"are images {tuple(r.shape)}, drop tokens="
            )
        return _plot_images(r, inputs, colours, reduce, clip_quantile, scale, alpha, shown,
                            labels, title)
    if r.ndim in (2, 3):
        maps = _sequence_maps(r, reduce)
        return _plot_sequences(maps, tokens, colours, clip_quantile, scale, shown, labels, title)
    raise ArgumentError(
        "explanation",
        f"cannot draw an explanation of shape {tuple(r.shape)}: plot draws images "
        "(B, C, H, W), sequences (B, L) and token embeddings (B, L, D); draw a slice, "
        "e.g. r[:, :, d] of a volume",
    )


def compare(
    explanations: Mapping[str, Any],
    inputs: Any = None,
    *,
    scale: Any = "shared",
    cmap: str | Colormap = "bwr",
    reduce: str = "sum",
    clip_quantile: float = 1.0,
    max_samples: int | None = None,
):
    """A grid of methods for one batch of images: rows are samples, columns the input and
    one heatmap per entry of ``explanations`` ({title: Explanation or relevance}).

    With ``scale="shared"`` (the default) every heatmap of every method is divided by one
    s, the max |R| over all of them (or its ``clip_quantile`` quantile), and one colour bar
    shows ±s: colours compare across samples and methods, which is only meaningful for
    methods whose attributions have the same units (e.g. those that sum to the score).
    ``scale="sample"`` scales each heatmap by its own max |R| (the colour bar then reads
    R / s). The input comes from ``inputs`` or the first explanation that kept its own.

    Example:
        >>> import torch
        >>> from pellucid.viz import compare
        >>> x = torch.rand(2, 3, 8, 8)
        >>> figure = compare({"a": torch.randn(2, 3, 8, 8), "b": torch.randn(2, 3, 8, 8)}, x)
        >>> len(figure.axes)  # 2 rows × (input, a, b) and one colour bar
        7
    """
    from .figure import grid

    if not isinstance(explanations, Mapping) or not explanations:
        raise ArgumentTypeError(
            "explanations", "explanations must be a non-empty dict {title: Explanation or "
            f"relevance (B, C, H, W)}}, got {explanations!r:.80}",
        )
    check_scale(scale)
    count = check_count(max_samples, "max_samples", "samples drawn", none=True)
    colours = get_colormap(cmap)
    maps = {name: reduce_channels(_image_relevance(e, f"explanations[{name!r}]"), reduce)
            for name, e in explanations.items()}
    sizes = {name: tuple(m.shape) for name, m in maps.items()}
    if len(set(sizes.values())) > 1:
        raise ArgumentError(
            "explanations", "every entry of explanations needs the same shape (B, H, W) after "
            f"the channel reduction, got {sizes}; explain the same batch with each method",
        )
    if inputs is None:
        inputs = next((e.inputs for e in explanations.values()
                       if getattr(e, "inputs", None) is not None), None)
    if scale == "shared":
        scale = float(relevance_scale(torch.cat(list(maps.values())), colours.signed,
                                      clip_quantile, scale="shared")[0])
    b = len(next(iter(maps.values())))
    shown = min(b, count or b)
    columns = {} if inputs is None else {"input": _input_pictures(inputs, maps, shown)}
    for name, m in maps.items():
        v = normalise(m, colours.signed, clip_quantile, scale=scale)
        columns[name] = colorize(v[:shown], colours)
    figure = grid(columns, row_titles=[f"#{i}" for i in range(shown)])
    width, height = figure.get_size_inches()
    figure.set_size_inches(width + 0.9, height)  # room for the colour bar and its labels
    figure.set_layout_engine("constrained")
    if isinstance(scale, str):
        _colorbar(figure, figure.axes, colours, 1.0, "R / max|R| per map")
    else:
        _colorbar(figure, figure.axes, colours, scale, "relevance (one scale for all)")
    return figure


def notebook_png(explanation: Any) -> bytes | None:
    """PNG bytes of :func:`plot` for the first :data:`NOTEBOOK_SAMPLES` samples, or None
    where matplotlib is missing or the attribution is not drawn (IPython then shows the
    text repr)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None
    if getattr(explanation, "attribution", None) is None or explanation.attribution.ndim not in (
        2, 3, 4
    ):
        return None
    from .io import png_bytes

    return png_bytes(plot(explanation, max_samples=NOTEBOOK_SAMPLES), dpi=72)


def _image_relevance(explanation: Any, argument: str) -> Tensor:
    r = as_tensor(explanation, argument)
    if r.ndim != 4:
        raise ArgumentError(
            argument, f"{argument} has shape {tuple(r.shape)}; compare draws images "
            "(B, C, H, W); draw sequences one explanation at a time with plot()",
        )
    return r


def _row_titles(explanation: Any, shown: int) -> list[str]:
    target = getattr(explanation, "target", None)
    if not isinstance(target, Tensor) or target.ndim != 1 or len(target) < shown:
        return [f"#{i}" for i in range(shown)]
    return [f"#{i} · target {t}" if t >= 0 else f"#{i}" for i, t in
            enumerate(target[:shown].tolist())]


def _input_pictures(inputs: Any, maps: Mapping[str, Tensor] | Tensor, shown: int) -> np.ndarray:
    """uint8 RGB (shown, H, W, 3) of the inputs, checked against the maps (B, H, W)."""
    first = maps if isinstance(maps, Tensor) else next(iter(maps.values()))
    x = as_tensor(inputs, "inputs")
    if x.ndim != 4 or x.shape[0] != first.shape[0] or x.shape[-2:] != first.shape[-2:]:
        raise ArgumentError(
            "inputs", f"inputs have shape {tuple(x.shape)}; the attribution needs images "
            f"({first.shape[0]}, C, {first.shape[1]}, {first.shape[2]}): pass the inputs "
            "that were explained",
        )
    x = x[:shown]
    return to_rgb(x if x.shape[1] in (1, 3) else x.double().mean(1, keepdim=True))


def _plot_images(r, inputs, colours, reduce, clip_quantile, scale, alpha, shown, labels, title):
    from matplotlib.figure import Figure

    maps = reduce_channels(r, reduce)
    s = relevance_scale(maps, colours.signed, clip_quantile, scale=scale)[:shown]
    heat = colorize(normalise(maps, colours.signed, clip_quantile, scale=scale)[:shown], colours)
    columns = {"heatmap": heat}
    if inputs is not None:
        picture = _input_pictures(inputs, maps, shown)
        weight = opacity(maps, alpha, signed=colours.signed, clip_quantile=clip_quantile,
                         scale=scale)[:shown]
        columns = {"input": picture, "heatmap": heat, "overlay": overlay(picture, heat, weight)}
    figure = Figure(figsize=(2.3 * len(columns) + 0.6, 2.0 * shown + 0.5), layout="constrained")
    axes = figure.subplots(shown, len(columns), squeeze=False)
    for col, (name, pictures) in enumerate(columns.items()):
        axes[0, col].set_title(name, fontsize=9)
        for row in range(shown):
            ax = axes[row, col]
            ax.imshow(pictures[row], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(labels[row], fontsize=9)
            if name == "heatmap":
                _colorbar(figure, ax, colours, float(s[row]), "")
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def _sequence_maps(r: Tensor, reduce: str) -> Tensor:
    """(B, 1, L) maps from sequences (B, L) or token embeddings (B, L, D), D reduced."""
    check_choice(reduce, "reduce", list(REDUCTIONS), "the reduction of the last dimension")
    maps = REDUCTIONS[reduce](r.double().movedim(2, 1)) if r.ndim == 3 else r.double()
    return maps[:, None, :]


def _plot_sequences(maps, tokens, colours, clip_quantile, scale, shown, labels, title):
    from matplotlib.figure import Figure

    s = relevance_scale(maps, colours.signed, clip_quantile, scale=scale)[:shown]
    heat = colorize(normalise(maps, colours.signed, clip_quantile, scale=scale)[:shown], colours)
    shared = not isinstance(scale, str) or scale == "shared"
    bar_top, bar_label = (float(s[0]), "relevance") if shared else (1.0, "R / max|R| per sample")
    if not shared:
        labels = [f"{label} (max|R| {float(top):.3g})" for label, top in zip(labels, s,
                                                                            strict=True)]
    if tokens is None:
        figure = Figure(figsize=(8.0, 0.45 * shown + 1.2), layout="constrained")
        ax = figure.subplots()
        ax.imshow(heat[:, 0], aspect="auto", interpolation="nearest")
        ax.set_yticks(range(shown), labels, fontsize=8)
        ax.set_xlabel("position", fontsize=9)
        _colorbar(figure, ax, colours, bar_top, bar_label)
    else:
        words = _check_tokens(tokens, len(maps), maps.shape[-1])[:shown]
        layouts = [_wrap(row) for row in words]
        lines = [max(line for line, _ in layout) + 1 for layout in layouts]
        figure = Figure(figsize=(LINE_CHARS * 0.6 * 10 / 72 + 1.6, 0.25 * sum(lines) +
                                 0.35 * shown + 0.5), layout="constrained")
        axes = figure.subplots(shown, 1, squeeze=False, height_ratios=[n + 1 for n in lines])
        for row, (ax, layout) in enumerate(zip(axes[:, 0], layouts, strict=True)):
            ax.set_xlim(0, LINE_CHARS)
            ax.set_ylim(lines[row], 0)
            ax.axis("off")
            ax.set_title(labels[row], fontsize=9, loc="left")
            rgb = heat[row, 0] / 255.0
            dark = rgb @ np.array([0.299, 0.587, 0.114]) < 0.5
            for j, (line, column) in enumerate(layout):
                ax.text(column, line + 0.5, words[row][j], family="monospace", fontsize=10,
                        va="center", ha="left", color="white" if dark[j] else "black",
                        bbox={"facecolor": rgb[j], "edgecolor": "none", "pad": 1.0})
        _colorbar(figure, list(axes[:, 0]), colours, bar_top, bar_label)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def _check_tokens(tokens: Any, rows: int, length: int) -> list[list[str]]:
    fix = f"tokens must be one list of {length} strings per sample ({rows} lists)"
    if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Sequence) or len(
        tokens
    ) != rows:
        raise ArgumentError("tokens", f"{fix}, got {tokens!r:.80}")
    for i, row in enumerate(tokens):
        if isinstance(row, (str, bytes)) or not isinstance(row, Sequence) or len(row) != length:
            raise ArgumentError("tokens", f"{fix}; tokens[{i}] is {row!r:.80}")
        if not all(isinstance(word, str) for word in row):
            raise ArgumentTypeError("tokens", f"{fix}; tokens[{i}] holds a non-string")
    return [list(row) for row in tokens]


def _wrap(words: list[str]) -> list[tuple[int, int]]:
    """(line, column) of each word, wrapped at :data:`LINE_CHARS` characters."""
    places, line, column = [], 0, 0
    for word in words:
        width = len(word) + 1
        if column and column + width > LINE_CHARS:
            line, column = line + 1, 0
        places.append((line, column))
        column += width
    return places


def _colorbar(figure, axes, colours: Colormap, top: float, label: str) -> None:
    """A colour bar for values −top … top (signed map) or 0 … top (positive map)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize

    low = -top if colours.signed else 0.0
    mappable = ScalarMappable(Normalize(low, top), ListedColormap(colours.table / 255.0))
    bar = figure.colorbar(mappable, ax=axes, fraction=0.05, pad=0.02)
    bar.ax.tick_params(labelsize=7)
    if label:
        bar.set_label(label, fontsize=8)


__all__ = ["NOTEBOOK_SAMPLES", "compare", "notebook_png", "plot"]
