"""Analyses across many explanations: spectral relevance analysis (SpRAy).

Imports core only; scikit-learn (extra ``analysis``) is imported inside the functions.
"""

from __future__ import annotations

from .spray import Spray, spray

__all__ = ["Spray", "spray"]
