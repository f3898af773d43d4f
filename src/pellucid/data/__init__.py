"""Generated image data with per-pixel ground truth, token data with per-token ground truth,
and scikit-learn's digits.

>>> from pellucid.data import shapes
>>> data = shapes(8, size=32, seed=0)
>>> data.images.shape, data.masks.shape, data.class_names[:2]
(torch.Size([8, 3, 32, 32]), torch.Size([8, 32, 32]), ('circle', 'square'))
"""

from .clever_hans import CleverHans, add_watermark, clever_hans, watermark
from .digits import digits
from .geometry import KINDS
from .imageset import ArrayDataset, ImageSet
from .shapes import DEFAULT_CLASSES, shapes
from .text import TEXT_CLASSES, VOCAB, TokenDataset, TokenSet, key_class, text_evidence

__all__ = [
    "DEFAULT_CLASSES",
    "KINDS",
    "TEXT_CLASSES",
    "VOCAB",
    "ArrayDataset",
    "CleverHans",
    "ImageSet",
    "TokenDataset",
    "TokenSet",
    "add_watermark",
    "clever_hans",
    "digits",
    "key_class",
    "shapes",
    "text_evidence",
    "watermark",
]
