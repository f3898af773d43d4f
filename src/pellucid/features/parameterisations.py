"""How the optimised images are represented: pixels, or a scaled Fourier spectrum.

A :class:`Parameterisation` maps free parameters to images (``to_image``) and back
(``from_image``), so that starting images and projections onto constraints work in any
parameterisation. The optimiser moves the parameters, the model sees the images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..checks import check_bool, check_finite_number
from ..errors import ArgumentError, ArgumentTypeError, UnknownNameError
from ..registry import suggest

#: Square root of the colour covariance of ImageNet (from its SVD), as used by Lucid
#: (Olah et al. 2017, "Feature Visualization"). Rows are R, G, B; columns are decorrelated
#: components. Divided by its largest column norm so that components have unit scale.
IMAGENET_COLOUR_SQRT = torch.tensor(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=torch.float64
)


class Parameterisation:
    """Free parameters ↔ images (batch first)."""

    def init(self, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        """Random starting parameters for images of ``shape`` (drawn on the CPU)."""
        raise NotImplementedError

    def to_image(self, params: Tensor, shape: tuple[int, ...]) -> Tensor:
        """The images of ``shape`` that ``params`` represent."""
        raise NotImplementedError

    def from_image(self, image: Tensor) -> Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class Pixels(Parameterisation):
    """The image itself; starts from Gaussian noise of standard deviation ``scale``."""

    scale: float = 0.01

    def __post_init__(self) -> None:
        check_finite_number(self.scale, "scale", 0.0, meaning="standard deviation of the start")

    def init(self, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        return self.scale * torch.randn(shape, generator=generator)

    def to_image(self, params: Tensor, shape: tuple[int, ...]) -> Tensor:
        return params

    def from_image(self, image: Tensor) -> Tensor:
        return image.clone()


@dataclass(frozen=True)
class Fourier(Parameterisation):
    """A spectrum scaled by 1/f^decay, with decorrelated colour (Olah et al. 2017).

    image = M · irfft2(s ⊙ P), with P the (complex) parameters, s(f) = 1/max(f, 1/max(H, W))^decay
    normalised to unit root mean square, the orthonormal inverse real FFT, and M the fixed
    colour matrix :data:`IMAGENET_COLOUR_SQRT` applied per pixel when the images have 3
    channels and ``decorrelate`` is set (the identity otherwise). Equal steps in the
    parameters then change low frequencies more than high ones, and colours along ImageNet's
    principal colour axes, which avoids the high-frequency noise that pixel optimisation finds.
    Images are N×C×H×W; initial parameters are Gaussian with standard deviation ``scale``,
    which gives images of about that standard deviation.
    """

    decay: float = 1.0
    decorrelate: bool = True
    scale: float = 0.01

    def __post_init__(self) -> None:
        check_finite_number(self.decay, "decay", 0.0, meaning="exponent of the 1/f scaling")
        check_bool(self.decorrelate, "decorrelate")
        check_finite_number(self.scale, "scale", 0.0, meaning="standard deviation of the start")

    def init(self, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        n, c, h, w = _image_shape(shape)
        return self.scale * torch.randn((n, c, h, w // 2 + 1, 2), generator=generator)

    def to_image(self, params: Tensor, shape: tuple[int, ...]) -> Tensor:
        h, w = _image_shape(shape)[2:]
        spectrum = torch.view_as_complex(params.contiguous()) * self._scaling(h, w, params)
        image = torch.fft.irfft2(spectrum, s=(h, w), norm="ortho")
        return self._mix(image, inverse=False)

    def from_image(self, image: Tensor) -> Tensor:
        h, w = _image_shape(tuple(image.shape))[2:]
        spectrum = torch.fft.rfft2(self._mix(image, inverse=True), norm="ortho")
        return torch.view_as_real(spectrum / self._scaling(h, w, image))

    def _scaling(self, h: int, w: int, like: Tensor) -> Tensor:
        dtype = like.real.dtype if like.is_complex() else like.dtype
        fy = torch.fft.fftfreq(h, dtype=torch.float64).view(-1, 1)
        fx = torch.fft.rfftfreq(w, dtype=torch.float64).view(1, -1)
        freq = (fy**2 + fx**2).sqrt().clamp_min(1.0 / max(h, w))
        scaling = freq ** (-self.decay)
        scaling = scaling / scaling.pow(2).mean().sqrt()
        return scaling.to(dtype=dtype, device=like.device)

    def _mix(self, image: Tensor, inverse: bool) -> Tensor:
        if not self.decorrelate or image.shape[1] != 3:
            return image
        m = IMAGENET_COLOUR_SQRT / IMAGENET_COLOUR_SQRT.norm(dim=0).max()
        m = torch.linalg.inv(m) if inverse else m
        return torch.einsum("ij,bjhw->bihw", m.to(image.dtype).to(image.device), image)


def _image_shape(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    if len(shape) != 4:
        raise ArgumentError(
            "parameterisation",
            f"the Fourier parameterisation needs images N×C×H×W, got shape {shape}; "
            "use parameterisation='pixels' for other inputs",
        )
    return shape  # type: ignore[return-value]


ParameterisationSpec = str | Parameterisation


def make_parameterisation(spec: ParameterisationSpec) -> Parameterisation:
    """``"pixels"``, ``"fourier"`` or a :class:`Parameterisation` object."""
    if isinstance(spec, Parameterisation):
        return spec
    known = {"pixels": Pixels, "fourier": Fourier}
    if not isinstance(spec, str):
        raise ArgumentTypeError(
            "parameterisation",
            f"parameterisation must be one of {sorted(known)} or a Parameterisation object "
            f"such as Fourier(decay=1.5), got {spec!r}",
        )
    if spec not in known:
        raise UnknownNameError(
            "parameterisation",
            f"unknown parameterisation {spec!r}.{suggest(spec, sorted(known))} Use one of "
            f"{sorted(known)} or a Parameterisation object such as Fourier(decay=1.5)",
        )
    return known[spec]()


__all__ = [
    "IMAGENET_COLOUR_SQRT",
    "Fourier",
    "Parameterisation",
    "Pixels",
    "make_parameterisation",
]
