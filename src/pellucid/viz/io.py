"""PNG in and out (Pillow), and matplotlib figures to PNG; all headless."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..checks import check_count, check_finite_number
from ..errors import ArgumentError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def png_bytes(picture: Any, dpi: int = 100) -> bytes:
    """PNG bytes of a uint8 RGB array (H, W, 3) or a matplotlib figure."""
    check_finite_number(dpi, "dpi", 0.0, inclusive=False, meaning="dots per inch")
    buffer = io.BytesIO()
    if hasattr(picture, "savefig"):
        picture.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    else:
        from PIL import Image

        array = np.asarray(picture)
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3 or not array.size:
            raise ArgumentError(
                "picture",
                f"picture must be one uint8 RGB picture (H, W, 3), got {array.dtype} "
                f"{array.shape}; index a batch first, e.g. heatmap(...)[0]",
            )
        Image.fromarray(array).save(buffer, format="png")
    return buffer.getvalue()


def save_png(picture: Any, path: str | Path, dpi: int = 100) -> Path:
    """Write a uint8 RGB array (H, W, 3) or a matplotlib figure to ``path`` as PNG.

    Missing parent folders are created; a ``path`` that is a folder, or whose parent is a
    file, raises :class:`~pellucid.errors.ArgumentError` before anything is drawn.
    """
    path = Path(path)
    if path.is_dir():
        raise ArgumentError("path", f"path {str(path)!r} is a folder; give a file name like x.png")
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise ArgumentError(
            "path", f"cannot write path {str(path)!r}: {str(blocking)!r} is a file, not a folder"
        )
    data = png_bytes(picture, dpi)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def read_image(path: str | Path, size: tuple[int, int] | None = None, channels: int = 3) -> Tensor:
    """An image file as a float tensor (C, H, W) in [0, 1], resized to ``size`` = (H, W).

    Raises :class:`~pellucid.errors.ArgumentError` (a ``ValueError``) naming ``path`` for a
    missing file or one Pillow cannot read, and naming ``size`` or ``channels`` for bad
    settings.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ArgumentError("channels", f"channels must be 1 or 3, got {channels!r}")
    if size is not None:
        if isinstance(size, (str, bytes)) or not hasattr(size, "__len__") or len(size) != 2:
            raise ArgumentError("size", f"size must be a pair (H, W) or None, got {size!r}")
        size = (check_count(size[0], "size", "height"),
                check_count(size[1], "size", "width"))
    if not path.is_file():
        raise ArgumentError("path", f"no image file at path {str(path)!r}")
    try:
        with Image.open(path) as opened:
            picture = opened.convert("L" if channels == 1 else "RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise ArgumentError("path", f"cannot read {path} (path) as an image ({error})") from None
    if size is not None:
        picture = picture.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    array = np.asarray(picture, dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array.copy())
    return tensor[None] if channels == 1 else tensor.permute(2, 0, 1)


__all__ = ["IMAGE_SUFFIXES", "png_bytes", "read_image", "save_png"]
