"""scikit-learn's handwritten digits as an :class:`~pellucid.data.imageset.ImageSet`."""

from __future__ import annotations

import torch

from .imageset import ImageSet


def digits() -> ImageSet:
    """The 1 797 8×8 digits of scikit-learn (UCI optical digits) as N×1×8×8 float32 in
    [0, 1] (grey levels 0-16 divided by 16), labels 0-9; no masks. Needs scikit-learn."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("digits() needs scikit-learn: pip install 'pellucid[data]'") from err
    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.as_tensor(bunch.target, dtype=torch.long)
    return ImageSet(images, labels, None, tuple(str(d) for d in range(10)))
