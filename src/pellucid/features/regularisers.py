"""What keeps activation maximisation on natural-looking inputs.

Three kinds, all passed in ``regularisers=[...]``:

- :class:`Penalty`: subtracted from the objective, weight × penalty(image) per image:
  :class:`L2`, :class:`TotalVariation`, :class:`Blur`, :class:`ExpertPrior` (−log p(x)).
- :class:`Transform`: a random affine map applied to the images before the model sees them
  (transformation robustness, Olah et al. 2017): :class:`Jitter`, :class:`RandomScale`,
  :class:`RandomRotate`. All transforms of one step are composed into one matrix per image
  and applied by one batched ``affine_grid``/``grid_sample``.
- :class:`Constraint`: a projection applied to the images after every step
  (projected gradient ascent): :class:`L2Ball`, :class:`ValueRange`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..checks import (
    check_bool,
    check_count,
    check_finite_number,
    check_inputs,
    check_per_sample,
)
from ..errors import ArgumentError, ArgumentTypeError
from ..perturb import gaussian_blur
from ..spatial import spatial_dims

LogDensity = Callable[[Tensor], Tensor]


class Regulariser:
    """Base of penalties, transforms and constraints."""


class Penalty(Regulariser):
    """A cost per image; maximisation subtracts ``weight`` × cost from the objective."""

    weight: float

    def __post_init__(self) -> None:
        check_finite_number(self.weight, "weight", 0.0, meaning="the penalty's weight")

    def cost(self, image: Tensor) -> Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class L2(Penalty):
    """‖x‖² per image: with objective w·x the optimum is x* = w / (2·weight)."""

    weight: float = 1e-2

    def cost(self, image: Tensor) -> Tensor:
        return image.pow(2).flatten(1).sum(1)


@dataclass(frozen=True)
class TotalVariation(Penalty):
    """Σ_d Σ |x[i+1] − x[i]|^power along every spatial dimension d (Mahendran & Vedaldi 2015)."""

    weight: float = 1e-2
    power: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_finite_number(self.power, "power", 0.0, inclusive=False)

    def cost(self, image: Tensor) -> Tensor:
        dims = _require_spatial(image, "total variation")
        diffs = [image.diff(dim=d).abs().pow(self.power).flatten(1).sum(1) for d in dims]
        return torch.stack(diffs).sum(0)


@dataclass(frozen=True)
class Blur(Penalty):
    """‖x − G_σ * x‖²: the energy a Gaussian blur of width ``sigma`` would remove.

    The penalty form of blurring every few steps (Yosinski et al. 2015): it favours images
    without detail finer than ``sigma`` pixels, in any parameterisation.
    """

    weight: float = 1e-2
    sigma: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_finite_number(self.sigma, "sigma", 0.0, inclusive=False, meaning="in pixels")

    def cost(self, image: Tensor) -> Tensor:
        _require_spatial(image, "the blur penalty")
        return (image - gaussian_blur(image, self.sigma)).pow(2).flatten(1).sum(1)


@dataclass(frozen=True, eq=False)
class ExpertPrior(Penalty):
    """−log p(x) for an expert density p (Montavon et al. 2018, activation maximisation).

    Maximising log p(ω_c | x) + weight · log p(x) keeps the prototype a likely input.
    ``log_density`` maps images (B, ...) to log-densities (B,): a :class:`GaussianPrior`
    fitted to data, or any callable (a flow, a score model's log-likelihood).
    """

    log_density: LogDensity
    weight: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not callable(self.log_density):
            raise ArgumentTypeError(
                "log_density",
                "log_density must be a callable from images (B, ...) to log-densities (B,), "
                f"e.g. GaussianPrior.fit(data); got {type(self.log_density).__name__}",
            )

    def cost(self, image: Tensor) -> Tensor:
        logp = self.log_density(image)
        return -check_per_sample(
            logp, image.shape[0], "the expert's log_density", argument="log_density"
        )


@dataclass(frozen=True, eq=False)
class GaussianPrior:
    """A Gaussian log-density log N(x; μ, Σ) over flattened inputs, fitted by :meth:`fit`.

    Σ = U diag(λ) Uᵀ + r·(I − U Uᵀ): ``components`` U (D×k, orthonormal) with ``variances``
    λ, and ``residual`` variance r off their span (a scalar; or one per dimension when k = 0,
    the diagonal model). Full covariance is k = D; low rank is probabilistic PCA (Tipping &
    Bishop 1999) with r the mean of the discarded eigenvalues. Nothing D×D is needed to
    evaluate it:
    log p = −½ (Σ_i (uᵢᵀx̃)²/λᵢ + ‖x̃ − UUᵀx̃‖²/r + log|Σ| + D log 2π), x̃ = x − μ.
    """

    mean: Tensor
    components: Tensor
    variances: Tensor
    residual: Tensor

    @classmethod
    def fit(
        cls, data: Tensor, rank: int | None = None, diagonal: bool = False, eps: float = 1e-4
    ) -> GaussianPrior:
        """Fit to ``data`` (N, ...): full covariance, ``rank`` components, or ``diagonal``.

        ``eps`` is added to every variance so that the density stays finite in directions
        the data do not vary in (constant pixels, more dimensions than samples).
        """
        check_inputs(data, "data")
        eps = check_finite_number(eps, "eps", 0.0, meaning="variance floor")
        check_bool(diagonal, "diagonal")
        rank = check_count(rank, "rank", "components of the low-rank model", none=True)
        if diagonal and rank is not None:
            raise ArgumentError(
                "rank", "give rank (low-rank model) or diagonal=True (diagonal model), not both"
            )
        x = data.detach().flatten(1).double()
        n, d = x.shape
        if n < 2:
            raise ArgumentError(
                "data", f"fitting a Gaussian needs at least 2 samples in data, got {n}"
            )
        mean = x.mean(0)
        centred = x - mean
        if diagonal:
            var = centred.pow(2).sum(0) / (n - 1) + eps
            return cls._make(mean, x.new_zeros(d, 0), x.new_zeros(0), var, data)
        if rank is None:
            cov = centred.T @ centred / (n - 1)
            variances, components = torch.linalg.eigh(cov)
            variances = variances.clamp_min(0) + eps
            return cls._make(mean, components, variances, x.new_tensor(eps), data)
        if not 0 < rank < d:
            raise ArgumentError(
                "rank",
                f"rank must be between 1 and {d - 1} (the dimension minus 1; None for full "
                f"covariance), got {rank}",
            )
        _, sv, vh = torch.linalg.svd(centred, full_matrices=False)
        eig = sv.pow(2) / (n - 1)
        kept = min(rank, eig.numel())
        total = centred.pow(2).sum() / (n - 1)
        rest = ((total - eig[:kept].sum()) / (d - kept)).clamp_min(0)
        return cls._make(mean, vh[:kept].T, eig[:kept] + eps, rest + eps, data)

    @classmethod
    def _make(cls, mean: Tensor, u: Tensor, lam: Tensor, r: Tensor, like: Tensor) -> GaussianPrior:
        residual_used = lam.numel() < mean.numel()
        if not bool((lam > 0).all()) or (residual_used and not bool((r > 0).all())):
            raise ArgumentError(
                "eps",
                "the data do not vary in some directions, so the Gaussian has zero variance "
                "there and an infinite density; pass eps > 0 (e.g. the default 1e-4)",
            )
        as_data = {
            "dtype": like.dtype if like.is_floating_point() else torch.float32,
            "device": like.device,
        }
        return cls(
            mean.reshape(like.shape[1:]).to(**as_data),
            u.to(**as_data),
            lam.to(**as_data),
            r.to(**as_data),
        )

    def __call__(self, x: Tensor) -> Tensor:
        """log p(x) per row of ``x`` (B, ...) with the fitted shape after the batch."""
        if not isinstance(x, Tensor) or tuple(x.shape[1:]) != tuple(self.mean.shape):
            got = tuple(x.shape[1:]) if isinstance(x, Tensor) else type(x).__name__
            raise ArgumentError(
                "x",
                f"the Gaussian was fitted to inputs of shape {tuple(self.mean.shape)} per "
                f"sample, got x of {got}; fit it to data shaped like the images",
            )
        centred = (x - self.mean.to(x)).flatten(1)
        u, lam, r = (t.to(x) for t in (self.components, self.variances, self.residual))
        proj = centred @ u
        quad, logdet = (proj.pow(2) / lam).sum(1), lam.log().sum()
        d, k = centred.shape[1], lam.numel()
        if k < d:  # the residual variance off the span of U (none for the full model)
            rest = centred - proj @ u.T
            quad = quad + (rest.pow(2) / r).sum(1)
            logdet = logdet + (r.log().sum() if r.ndim else (d - k) * r.log())
        return -0.5 * (quad + logdet + d * math.log(2 * math.pi))


class Transform(Regulariser):
    """A random affine map of the image plane, as 2×3 matrices (one per image).

    Matrices act on normalised coordinates (−1..1, x then y, as in ``affine_grid``): the
    transformed image at point p shows the original at A·p + t.
    """

    def matrices(self, n: int, height: int, width: int, generator: torch.Generator) -> Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class Jitter(Transform):
    """A random shift of up to ``pixels`` pixels in each direction (uniform)."""

    pixels: float = 2.0

    def __post_init__(self) -> None:
        check_finite_number(self.pixels, "pixels", 0.0, meaning="largest shift")

    def matrices(self, n: int, height: int, width: int, generator: torch.Generator) -> Tensor:
        shift = (torch.rand(n, 2, generator=generator, dtype=torch.float64) * 2 - 1) * self.pixels
        theta = _identity(n)
        theta[:, 0, 2] = 2 * shift[:, 0] / width
        theta[:, 1, 2] = 2 * shift[:, 1] / height
        return theta


@dataclass(frozen=True)
class RandomScale(Transform):
    """A random zoom by a factor drawn uniformly from ``scales`` = (low, high)."""

    scales: tuple[float, float] = (0.9, 1.1)

    def __post_init__(self) -> None:
        if isinstance(self.scales, (str, bytes)) or not isinstance(self.scales, Sequence) or len(
            self.scales
        ) != 2:
            raise ArgumentTypeError(
                "scales", f"scales must be a pair (low, high), e.g. (0.9, 1.1), got {self.scales!r}"
            )
        low = check_finite_number(self.scales[0], "scales", 0.0, inclusive=False,
                                  meaning="the smallest zoom factor")
        high = check_finite_number(self.scales[1], "scales", 0.0, inclusive=False,
                                   meaning="the largest zoom factor")
        if low > high:
            raise ArgumentError(
                "scales", f"scales=(low, high) needs low <= high, got {self.scales}"
            )

    def matrices(self, n: int, height: int, width: int, generator: torch.Generator) -> Tensor:
        low, high = self.scales
        factor = low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)
        theta = _identity(n)
        theta[:, 0, 0] = theta[:, 1, 1] = 1 / factor
        return theta


@dataclass(frozen=True)
class RandomRotate(Transform):
    """A random rotation by an angle drawn uniformly from ±``degrees`` (about the centre).

    The rotation is by the angle in pixel space (square pixels) for any aspect ratio.
    """

    degrees: float = 10.0

    def __post_init__(self) -> None:
        check_finite_number(self.degrees, "degrees", 0.0, meaning="largest rotation angle")

    def matrices(self, n: int, height: int, width: int, generator: torch.Generator) -> Tensor:
        angle = (torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) * self.degrees
        return rotation(angle, height, width)


def rotation(degrees: Tensor, height: int, width: int) -> Tensor:
    """2×3 matrices (normalised coordinates) that rotate images by ``degrees`` in pixel space.

    Positive angles turn the picture counter-clockwise as displayed (row 0 at the top).
    """
    rad = torch.as_tensor(degrees, dtype=torch.float64).reshape(-1) * math.pi / 180
    cos, sin = rad.cos(), rad.sin()
    aspect = width / height  # normalised x = 2·col/W, y = 2·row/H
    theta = _identity(rad.numel())
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin / aspect
    theta[:, 1, 0], theta[:, 1, 1] = sin * aspect, cos
    return theta


def transform_images(
    images: Tensor, transforms: Sequence[Transform], generator: torch.Generator
) -> Tensor:
    """Apply every transform, composed into one affine map per image, in one ``grid_sample``."""
    if not transforms:
        return images
    if images.ndim != 4:
        raise ArgumentError(
            "regularisers",
            f"jitter, scaling and rotation need images N×C×H×W, got shape {tuple(images.shape)}; "
            "leave transforms out of regularisers for other inputs",
        )
    n, _, h, w = images.shape
    last_row = torch.tensor([[[0.0, 0.0, 1.0]]], dtype=torch.float64).expand(n, 1, 3)
    total = torch.eye(3, dtype=torch.float64).expand(n, 3, 3)
    for transform in transforms:
        total = total @ torch.cat([transform.matrices(n, h, w, generator), last_row], dim=1)
    theta = total[:, :2].to(dtype=images.dtype, device=images.device)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, padding_mode="reflection", align_corners=False)


def _identity(n: int) -> Tensor:
    return torch.eye(2, 3, dtype=torch.float64).repeat(n, 1, 1)


class Constraint(Regulariser):
    """A projection applied to the images after every optimisation step."""

    def project(self, image: Tensor) -> Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class L2Ball(Constraint):
    """‖x‖ ≤ radius per image: x ↦ x · min(1, radius/‖x‖)."""

    radius: float = 1.0

    def __post_init__(self) -> None:
        check_finite_number(self.radius, "radius", 0.0, inclusive=False)

    def project(self, image: Tensor) -> Tensor:
        norm = image.flatten(1).norm(dim=1).clamp_min(1e-12)
        factor = (self.radius / norm).clamp(max=1.0)
        return image * factor.view(-1, *([1] * (image.ndim - 1)))


@dataclass(frozen=True)
class ValueRange(Constraint):
    """low ≤ x ≤ high for every value (e.g. (0, 1) for images in unit range)."""

    low: float = 0.0
    high: float = 1.0

    def __post_init__(self) -> None:
        low = check_finite_number(self.low, "low")
        high = check_finite_number(self.high, "high")
        if low >= high:
            raise ArgumentError("low", f"ValueRange needs low < high, got low={low}, high={high}")

    def project(self, image: Tensor) -> Tensor:
        return image.clamp(self.low, self.high)


def _require_spatial(image: Tensor, what: str) -> tuple[int, ...]:
    dims = spatial_dims(image)
    if not dims:
        raise ArgumentError(
            "regularisers",
            f"{what} needs inputs with spatial dimensions (N×C×L, N×C×H×W, ...); got shape "
            f"{tuple(image.shape)}; leave it out of regularisers for other inputs",
        )
    return dims


__all__ = [
    "L2",
    "Blur",
    "Constraint",
    "ExpertPrior",
    "GaussianPrior",
    "Jitter",
    "L2Ball",
    "Penalty",
    "RandomRotate",
    "RandomScale",
    "Regulariser",
    "TotalVariation",
    "Transform",
    "ValueRange",
    "rotation",
    "transform_images",
]
