"""PNG in and out (Pillow), and matplotlib figures to PNG; all headless."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def png_bytes(picture: Any, dpi: int = 100) -> bytes:
    """PNG bytes of a uint8 RGB array (H, W, 3) or a matplotlib figure."""
    buffer = io.BytesIO()
    if hasattr(picture, "savefig"):
        picture.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    else:
        from PIL import Image

        array = np.asarray(picture)
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
            raise ValueError(
                f"expected one uint8 RGB picture (H, W, 3), got {array.dtype} {array.shape}; "
                "index a batch first, e.g. heatmap(...)[0]"
            )
        Image.fromarray(array).save(buffer, format="png")
    return buffer.getvalue()


def save_png(picture: Any, path: str | Path, dpi: int = 100) -> Path:
    """Write a uint8 RGB array (H, W, 3) or a matplotlib figure to ``path`` as PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(picture, dpi))
    return path


def read_image(path: str | Path, size: tuple[int, int] | None = None, channels: int = 3) -> Tensor:
    """An image file as a float tensor (C, H, W) in [0, 1], resized to ``size`` = (H, W).

    Raises FileNotFoundError for a missing file and ValueError for one Pillow cannot read.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no image file at {path}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    try:
        with Image.open(path) as opened:
            picture = opened.convert("L" if channels == 1 else "RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"cannot read {path} as an image ({error})") from None
    if size is not None:
        picture = picture.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    array = np.asarray(picture, dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array.copy())
    return tensor[None] if channels == 1 else tensor.permute(2, 0, 1)


__all__ = ["IMAGE_SUFFIXES", "png_bytes", "read_image", "save_png"]
