"""Perturbation methods: the model on masked copies of the inputs, no gradients.

- ``occlusion`` (Zeiler & Fergus 2014): slide a window over the input, fill it, and give
  every element the mean output drop f(x) − f(x with window w filled) over the windows
  that cover it.
- ``rise`` (Petsiuk et al. 2018): N random smooth masks Mᵢ (a low-resolution Bernoulli(p)
  grid, upsampled with a random shift); saliency S = Σᵢ f(x ⊙ Mᵢ + fill ⊙ (1 − Mᵢ)) Mᵢ / (N·p).
- ``lime`` and ``kernel_shap`` (surrogate models over feature groups) live in
  :mod:`.surrogate` and are re-exported here.

All of them evaluate the model through :func:`.masking.masked_scores`, in chunks of
``batch_size`` rows, generating the masks of a chunk only when it is evaluated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from .._seeding import generator
from ..batching import check_batch_size
from ..checks import check_count, check_finite_number, check_seed
from ..errors import ArgumentError
from ..method import Method, register_method
from ..perturb import BaselineSpec, make_fill
from ..spatial import LINEAR_MODES, positive_sizes, sizes_per_dim, upsample
from ..task import Task
from .masking import MaskSource, masked_scores, score_at_input
from .surrogate import KernelShap, Lime
from .validation import check_fill_settings

__all__ = ["KernelShap", "Lime", "Occlusion", "Rise"]

Size = int | tuple[int, ...] | None
#: RISE's small budget (``Rise.cheap``): masks per evaluation, and at most this many cells
MASKS_PER_EVALUATION = 25
CHEAP_CELLS = 6


def trailing_dims(sample_shape: torch.Size) -> int:
    """How many trailing dims a window spans by default: all but channels (at least one)."""
    return max(1, len(sample_shape) - 1)


def eighth_window(sample_shape: torch.Size) -> tuple[int, ...]:
    """The default window: an eighth of each dim it spans (at least 1)."""
    spanned = sample_shape[len(sample_shape) - trailing_dims(sample_shape) :]
    return tuple(max(1, n // 8) for n in spanned)


def window_starts(size: int, window: int, stride: int) -> Tensor:
    """Start positions of the windows along one dim; the last window ends at the last element."""
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] + window < size:
        starts.append(size - window)
    return torch.tensor(starts)


def covers(size: int, starts: Tensor, window: int) -> Tensor:
    """(len(starts), size) float: 1 where the window starting at ``starts[k]`` covers a position."""
    positions = torch.arange(size, device=starts.device)
    first = starts.unsqueeze(1)
    return ((positions >= first) & (positions < first + window)).float()


def outer(factors: list[Tensor], lead: int) -> Tensor:
    """Π_d factors[d] over the trailing dims: (..., size_d) each -> (..., *[1] * lead, *sizes)."""
    out = None
    for d, factor in enumerate(factors):
        shape = [*factor.shape[:-1]] + [1] * (lead + len(factors))
        shape[factor.ndim - 1 + lead + d] = factor.shape[-1]
        out = factor.reshape(shape) if out is None else out * factor.reshape(shape)
    assert out is not None
    return out


@register_method("occlusion")
@dataclass(frozen=True, eq=False)
class Occlusion(Method):
    """Occlusion (Zeiler & Fergus 2014): mean output drop over the windows covering an element.

    Aᵢ = (1/|Wᵢ|) Σ_{w ∈ Wᵢ} [f(x) − f(x with window w filled)], Wᵢ the windows covering i
    (never empty). Settings: ``window`` (an int for every dim but the channels, or a tuple
    over the trailing dims; leading dims not in the tuple are covered whole; ``None``: an
    eighth of each of those dims), ``stride`` (default the window; the last window of a dim
    always reaches its end; a stride that leaves elements no window covers is an error),
    ``fill`` (zero, mean, blur, a number or a tensor), ``blur_sigma``, ``batch_size`` (rows
    per forward pass).
    """

    per_position: ClassVar[bool] = True
    window: Size = None
    stride: Size = None
    fill: BaselineSpec = "zero"
    blur_sigma: float = 5.0
    batch_size: int | None = None

    def __post_init__(self) -> None:
        for name in ("window", "stride"):
            if getattr(self, name) is not None:
                positive_sizes(getattr(self, name), 1, name)
        check_fill_settings(self.fill, self.blur_sigma)
        check_batch_size(self.batch_size)

    def budget(
        self, x: Tensor, evaluations: int, references: Tensor | None
    ) -> dict[str, Any]:
        """An eighth of each dim as the window and half of it as the stride: about 15
        positions along each dim (window 8 and stride 4 on 64×64 images), one per element
        along dims shorter than 16; the count follows the input's size, not ``evaluations``."""
        window = eighth_window(x.shape[1:])
        return {"window": window, "stride": tuple(max(1, w // 2) for w in window)}

    def attribute(self, task: Task, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        shape = x.shape[1:]
        window = self._window(shape)
        trailing = shape[len(shape) - len(window) :]
        lead = len(shape) - len(window)
        stride = sizes_per_dim(window if self.stride is None else self.stride, window, "stride",
                               "window dim")
        on_host = [window_starts(*dim) for dim in zip(trailing, window, stride)]
        grid = [len(s) for s in on_host]
        starts = torch.cat(on_host).to(x.device).split(grid)  # one copy to the device

        def window_masks(index: Tensor) -> Tensor:
            """Indicators (n, *lead, *trailing) of windows ``index``: 1 inside the window."""
            multi = torch.unravel_index(index, grid)
            factors = [covers(n, s[k], w) for n, s, k, w in zip(trailing, starts, multi, window)]
            return outer(factors, lead)

        # checked on the host starts: no read back from the device
        per_dim = [covers(n, s, w).sum(0) for n, s, w in zip(trailing, on_host, window)]
        for d, (covered, n, w, st) in enumerate(zip(per_dim, trailing, window, stride)):
            if not bool(covered.all()):
                raise ArgumentError(
                    "stride",
                    f"stride {st} is larger than the window {w} along dim {lead + d + 1} (size "
                    f"{n}), which leaves {int((covered == 0).sum())} positions that no window "
                    "covers and that would get 0; use a stride at most the window",
                )
        fill = make_fill(self.fill, x, self.blur_sigma)
        centre = score_at_input(task, x)
        _, total = masked_scores(task, x, fill, window_masks, math.prod(grid), self.batch_size,
                                 masks_keep=False, accumulate=True, centre=centre)
        assert total is not None
        attribution = -total / outer(per_dim, lead).to(x)
        return attribution.expand_as(x).contiguous(), {"windows": math.prod(grid)}

    def _window(self, shape: torch.Size) -> tuple[int, ...]:
        if self.window is None:
            return eighth_window(shape)
        window = positive_sizes(self.window, trailing_dims(shape), "window")
        if len(window) > len(shape) or any(
            w > n for w, n in zip(window, shape[len(shape) - len(window) :])
        ):
            raise ArgumentError(
                "window",
                f"window {window} does not fit in a sample of shape {tuple(shape)}; the window "
                "spans the trailing dims, each entry at most the size of its dim",
            )
        return window


@register_method("rise")
@dataclass(frozen=True, eq=False)
class Rise(Method):
    """RISE (Petsiuk et al. 2018): S = Σᵢ f(x ⊙ Mᵢ + fill ⊙ (1 − Mᵢ)) Mᵢ / (N·p).

    Each mask is a ``cells`` grid (per spatial dim) of Bernoulli(``p``) values, upsampled
    (linear, bilinear or trilinear) to (cells + 1) × cell size and cropped at a random
    shift; it is shared by the channels. Tabular inputs N×D get i.i.d. Bernoulli(p) masks
    per feature. The ``samples`` masks are seeded and shared by all samples of a batch.
    ``p`` is in (0, 1): with p = 1 every mask keeps everything and the map is constant.
    """

    per_position: ClassVar[bool] = True
    samples: int = 1000
    cells: int | tuple[int, ...] = 7
    p: float = 0.5
    fill: BaselineSpec = "zero"
    blur_sigma: float = 5.0
    seed: int = 0
    batch_size: int | None = None

    def __post_init__(self) -> None:
        check_count(self.samples, "samples", "the number of masks")
        positive_sizes(self.cells, 1, "cells")
        check_finite_number(self.p, "p", 0, maximum=1, inclusive=False,
                            meaning="the probability of keeping a cell; p = 1 keeps everything")
        check_fill_settings(self.fill, self.blur_sigma)
        check_seed(self.seed)
        check_batch_size(self.batch_size)

    def budget(
        self, x: Tensor, evaluations: int, references: Tensor | None
    ) -> dict[str, Any]:
        """``samples = 25 · evaluations`` masks (400 for 16) on a coarser grid of at most 6
        cells per spatial dim, whose estimate settles with fewer masks."""
        spatial = x.shape[2:]
        cells = tuple(min(CHEAP_CELLS, n) for n in spatial) if spatial else self.cells
        return {"samples": MASKS_PER_EVALUATION * evaluations, "cells": cells}

    def attribute(self, task: Task, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        fill = make_fill(self.fill, x, self.blur_sigma)
        masks = self.mask_source(x)
        _, total = masked_scores(task, x, fill, masks, self.samples, self.batch_size,
                                 accumulate=True)
        assert total is not None
        return (total / (self.samples * self.p)).expand_as(x).contiguous(), {}

    def mask_source(self, x: Tensor) -> MaskSource:
        """Mask indices (n,) -> masks (n, 1, *spatial), or (n, D) for tabular inputs like ``x``."""
        gen = generator(self.seed)
        spatial = x.shape[2:]
        if not spatial:  # tabular N×D: i.i.d. masks per feature
            keep = (torch.rand(self.samples, *x.shape[1:], generator=gen) < self.p).to(x)
            return lambda index: keep[index]
        if len(spatial) not in LINEAR_MODES:
            raise ArgumentError(
                "inputs",
                f"rise upsamples masks over 1 to 3 spatial dims; inputs of shape "
                f"{tuple(x.shape)} have {len(spatial)}",
            )
        cells = sizes_per_dim(self.cells, spatial, "cells")
        cell_size = [math.ceil(n / c) for n, c in zip(spatial, cells)]
        grid = (torch.rand(self.samples, 1, *cells, generator=gen) < self.p).to(x.dtype)
        shifts = [torch.randint(s, (self.samples,), generator=gen) for s in cell_size]
        grid, shifts = grid.to(x.device), torch.stack(shifts, 1).to(x.device)
        upsampled = [(c + 1) * s for c, s in zip(cells, cell_size)]

        def rise_masks(index: Tensor) -> Tensor:
            """Smooth masks (n, 1, *spatial): upsampled grids cropped at their shifts."""
            up = upsample(grid[index], upsampled)[:, 0]
            n, nd = len(index), len(spatial)
            crop = [torch.arange(n, device=x.device).reshape(n, *[1] * nd)]
            for d, size in enumerate(spatial):
                view = [n] + [1] * nd
                view[1 + d] = size
                offsets = shifts[index, d].unsqueeze(1) + torch.arange(size, device=x.device)
                crop.append(offsets.reshape(view))
            return up[tuple(crop)].unsqueeze(1)

        return rise_masks
