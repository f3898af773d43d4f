"""The inputs that ``--input`` and ``--data`` name: image files and data sets."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .command import UsageError


def image_paths(source: Path) -> list[Path]:
    """The image file ``source``, or the image files inside the folder ``source``, sorted."""
    from pellucid.viz import IMAGE_SUFFIXES

    if source.is_file():
        return [source]
    if source.is_dir():
        found = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise UsageError(
                f"the folder {source} holds no image files ({', '.join(IMAGE_SUFFIXES)})"
            )
        return found
    raise UsageError(f"--input {source} does not exist")


def read_images(paths: Sequence[Path], size: Any, channels: int):
    """The images at ``paths`` as one batch (N, channels, H, W) in [0, 1], resized to ``size``."""
    import torch

    from pellucid.viz import read_image

    try:
        images = [read_image(p, size, channels) for p in paths]
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(str(error)) from None
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) > 1:
        raise UsageError(
            f"the images have different sizes {sorted(shapes)}; pass --size H W to resize them"
        )
    return torch.stack(images)


def load_data(spec: str, n: int, size: int, seed: int) -> tuple:
    """(inputs, labels[, masks]) for the ``--data`` argument."""
    if spec == "shapes":
        from pellucid.data import shapes

        data = shapes(n, size=size, seed=seed)
        return data.images, data.labels, data.masks
    if spec == "digits":
        from pellucid.data import digits

        data = digits()
        return data.images[:n], data.labels[:n]
    path = Path(spec)
    if not path.is_file():
        raise UsageError(f"--data {spec!r} is neither 'shapes', 'digits' nor a file")
    import torch

    loaded = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(loaded, torch.Tensor):
        return (loaded,)
    if isinstance(loaded, dict) and "inputs" in loaded:
        return tuple(loaded[k] for k in ("inputs", "labels", "masks") if loaded.get(k) is not None)
    raise UsageError(f"{path} holds neither a tensor nor a dict with 'inputs'")


__all__ = ["image_paths", "load_data", "read_images"]
