"""Similarity of two batches of attribution maps, per sample, for the randomisation tests.

Maps are compared per location (summed over channels). Adebayo et al. 2018 use the Spearman
rank correlation of the absolute and of the signed maps (ties share their average rank, as
scipy's ``spearmanr``; NaN where a map is constant and the correlation is undefined), SSIM
(Wang et al. 2004) and the Pearson correlation of HOG features (Dalal & Triggs 2005); all are
batched in torch, on maps in float32 at least; correlations are float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ArgumentError
from .maps import average_ranks, location_map
from .stats import pearson

SIMILARITIES = ("spearman_abs", "spearman", "ssim", "hog")


def similarity(kind: str, a: Tensor, b: Tensor) -> Tensor:
    """Similarity per sample of attributions ``a`` and ``b`` (B, ...) by ``kind``."""
    if kind not in SIMILARITIES:
        raise ArgumentError(
            "similarity", f"unknown similarity {kind!r}; use one of {', '.join(SIMILARITIES)}"
        )
    ma, mb = location_map(a), location_map(b)
    if kind in ("spearman_abs", "spearman"):
        if kind == "spearman_abs":
            ma, mb = ma.abs(), mb.abs()
        spearman = pearson(average_ranks(ma.flatten(1)), average_ranks(mb.flatten(1)))
        return spearman.to(ma.dtype)  # the maps' dtype, float32 at least
    if ma.ndim != 3:
        raise ArgumentError(
            "similarity",
            f"similarity={kind!r} compares 2-D maps (images B×C×H×W), but the inputs have "
            f"{a.ndim} dims; use 'spearman_abs' or 'spearman'",
        )
    return ssim(_unit(ma), _unit(mb)) if kind == "ssim" else hog_similarity(ma, mb)


def _unit(maps: Tensor) -> Tensor:
    """Min-max scale each map to [0, 1] (constant maps become 0)."""
    flat = maps.flatten(1)
    low, high = flat.amin(1), flat.amax(1)
    span = (high - low).clamp(min=torch.finfo(maps.dtype).tiny)
    return (maps - low.view(-1, 1, 1)) / span.view(-1, 1, 1)


def ssim(a: Tensor, b: Tensor, window: int = 7, data_range: float = 1.0) -> Tensor:
    """Mean SSIM of maps (B, H, W) with a uniform window, as scikit-image's defaults."""
    size = min(window, a.shape[-1], a.shape[-2])
    size -= 1 - size % 2
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    stack = torch.stack([a, b, a * a, b * b, a * b], 1)
    mu_a, mu_b, aa, bb, ab = F.avg_pool2d(stack, size, stride=1).unbind(1)
    n = size * size
    scale = n / (n - 1) if n > 1 else 1.0
    var_a, var_b = scale * (aa - mu_a**2), scale * (bb - mu_b**2)
    cov = scale * (ab - mu_a * mu_b)
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return index.flatten(1).mean(1)


def hog(maps: Tensor, cell: int = 8, bins: int = 9, block: int = 2) -> Tensor:
    """HOG features (Dalal & Triggs 2005) of maps (B, H, W): unsigned orientations in
    ``bins`` bins, magnitudes averaged per ``cell``×``cell`` cell, L2-Hys normalised over
    ``block``×``block`` cells; cells shrink to fit small maps. Returns (B, features).
    """
    cell = max(1, min(cell, maps.shape[-1] // block, maps.shape[-2] // block))
    gy = torch.zeros_like(maps)
    gx = torch.zeros_like(maps)
    gy[:, 1:-1] = maps[:, 2:] - maps[:, :-2]
    gx[:, :, 1:-1] = maps[:, :, 2:] - maps[:, :, :-2]
    magnitude = torch.hypot(gx, gy)
    angle = torch.rad2deg(torch.atan2(gy, gx)) % 180.0
    index = (angle / (180.0 / bins)).long().clamp(max=bins - 1)
    histogram = F.one_hot(index, bins).movedim(-1, 1).to(maps) * magnitude.unsqueeze(1)
    cells = F.avg_pool2d(histogram, cell)  # (B, bins, h, w)
    blocks = F.unfold(cells, block).transpose(1, 2)  # (B, n_blocks, bins·block²)
    eps = 1e-5
    blocks = blocks / torch.sqrt(blocks.square().sum(-1, keepdim=True) + eps**2)
    blocks = blocks.clamp(max=0.2)
    blocks = blocks / torch.sqrt(blocks.square().sum(-1, keepdim=True) + eps**2)
    return blocks.flatten(1)


def hog_similarity(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation of the HOG features of two batches of maps (B, H, W)."""
    return pearson(hog(a), hog(b)).to(a.dtype)

