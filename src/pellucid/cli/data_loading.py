"""The inputs that ``--input`` and ``--data`` name: image files and data sets."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .command import UsageError
from .files import load_file


def image_paths(source: Path) -> list[Path]:
    """The image file ``source``, or the image files inside the folder ``source``, sorted."""
    from pellucid.viz import IMAGE_SUFFIXES

    if source.is_file():
        return [source]
    if source.is_dir():
        found = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise UsageError(
                f"--input {source} is a folder without image files ({', '.join(IMAGE_SUFFIXES)})"
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
        raise UsageError(f"--input: {error}") from None
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) > 1:
        raise UsageError(
            f"the images have different sizes {sorted(shapes)}; pass --size H W to resize them"
        )
    return torch.stack(images)


#: the keys of a data file's dict: the inputs, and optionally their labels and masks
DATA_KEYS = ("inputs", "labels", "masks")


#: the samples of generated shapes data when ``-n`` is not given
SHAPES = 256


def load_data(spec: str, n: int | None, size: int, seed: int) -> tuple:
    """(inputs, labels, masks) of the first ``n`` samples that ``--data`` names (None: all
    of a file or of digits, :data:`SHAPES` generated shapes), None for a part the data
    lacks: a generated data set or a file.

    A file holds a tensor of inputs, a tuple (inputs, labels[, masks]), or a dict with
    :data:`DATA_KEYS`; it is read by :func:`~.files.load_file` and checked here, so that a
    mistake names ``--data`` and the file instead of failing inside a metric.
    """
    if spec == "shapes":
        from pellucid.data import shapes

        data = shapes(SHAPES if n is None else n, size=size, seed=seed)
        return data.images, data.labels, data.masks
    if spec == "digits":
        from pellucid.data import digits

        data = digits()
        return data.images[:n], data.labels[:n], None
    path = Path(spec)
    if not path.exists():
        raise UsageError(f"--data {spec!r} is neither 'shapes', 'digits' nor a file")
    inputs, labels, masks = checked_data(load_file(path, "--data"), f"--data {path}")
    return inputs[:n], None if labels is None else labels[:n], None if masks is None else masks[:n]


def checked_data(loaded: Any, source: str) -> tuple:
    """(inputs, labels, masks) from what a data file held (None for a part it lacks), or a
    UsageError naming ``source``."""
    import torch

    if isinstance(loaded, dict):
        keys = sorted(map(str, loaded))
        if "inputs" not in loaded or not set(keys) <= set(DATA_KEYS):
            raise UsageError(
                f"{source} holds a dict with the keys {keys}; it needs 'inputs' and may hold "
                "'labels' and 'masks', nothing else"
            )
        named = {k: loaded[k] for k in DATA_KEYS if loaded.get(k) is not None}
    elif isinstance(loaded, (tuple, list)) and 1 <= len(loaded) <= len(DATA_KEYS):
        named = dict(zip(DATA_KEYS, loaded))
    else:
        named = {"inputs": loaded}
    for key, value in named.items():
        if not isinstance(value, torch.Tensor):
            raise UsageError(
                f"{source}: {key} is a {type(value).__name__}, not a tensor; save a tensor, "
                "a tuple (inputs, labels[, masks]) or a dict with 'inputs', 'labels', 'masks'"
            )
    inputs = named["inputs"]
    if inputs.ndim < 2 or len(inputs) == 0:
        raise UsageError(
            f"{source}: inputs have shape {tuple(inputs.shape)}; they need at least one "
            "sample and the batch dimension first, (N, ...)"
        )
    if not inputs.is_floating_point():
        raise UsageError(
            f"{source}: inputs have dtype {inputs.dtype}; save floating-point inputs "
            "(e.g. images.float() / 255)"
        )
    if not bool(inputs.isfinite().all()):
        raise UsageError(f"{source}: inputs hold NaN or Inf values; clean them before saving")
    labels = named.get("labels")
    if labels is not None and (
        labels.shape != (len(inputs),) or labels.is_floating_point() or labels.is_complex()
        or labels.dtype == torch.bool
    ):
        raise UsageError(
            f"{source}: labels have shape {tuple(labels.shape)} and dtype {labels.dtype}; "
            f"they need one integer class index per sample, shape ({len(inputs)},)"
        )
    masks = named.get("masks")
    if masks is not None and (masks.ndim < 2 or len(masks) != len(inputs)):
        raise UsageError(
            f"{source}: masks have shape {tuple(masks.shape)}; they need one mask per "
            f"sample, ({len(inputs)}, ...)"
        )
    return inputs, labels, masks


__all__ = ["DATA_KEYS", "SHAPES", "checked_data", "image_paths", "load_data", "read_images"]
