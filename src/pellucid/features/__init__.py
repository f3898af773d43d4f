"""Feature visualisation: what a network looks for, by activation maximisation.

- objectives (composable by ``+`` and ``*``): :class:`ClassLogit`, :class:`ClassProbability`,
  :class:`Neuron`, :class:`Channel`, :class:`Direction`, :class:`Diversity`; custom ones
  subclass :class:`Objective` (or :class:`LayerObjective`) and score a
  :class:`pellucid.task.Forward`;
- parameterisations: :class:`Pixels`, :class:`Fourier` (1/f scaling, decorrelated colour);
- regularisers: penalties (:class:`L2`, :class:`TotalVariation`, :class:`Blur`,
  :class:`ExpertPrior` with :class:`GaussianPrior`), transforms (:class:`Jitter`,
  :class:`RandomScale`, :class:`RandomRotate`) and constraints (:class:`L2Ball`,
  :class:`ValueRange`);
- :func:`maximise`, :func:`class_prototypes`, :func:`semantic_dictionary`.
"""

from .._deprecation import deprecated_names
from . import objectives
from .dictionary import SemanticDictionary, semantic_dictionary
from .maximise import maximise, observe
from .objectives import (
    Channel,
    ClassLogit,
    ClassProbability,
    Direction,
    Diversity,
    LayerObjective,
    Neuron,
    Objective,
)
from .parameterisations import IMAGENET_COLOUR_SQRT, Fourier, Parameterisation, Pixels
from .prototypes import class_prototypes
from .regularisers import (
    L2,
    Blur,
    Constraint,
    ExpertPrior,
    GaussianPrior,
    Jitter,
    L2Ball,
    Penalty,
    RandomRotate,
    RandomScale,
    Regulariser,
    TotalVariation,
    Transform,
    ValueRange,
)

__getattr__ = deprecated_names(
    __name__,
    {"Seen": ("pellucid.task.Forward(inputs, output, layers={name: [layer output]})",
              lambda: objectives._seen)},
)


__all__ = [
    "IMAGENET_COLOUR_SQRT",
    "L2",
    "Blur",
    "Channel",
    "ClassLogit",
    "ClassProbability",
    "Constraint",
    "Direction",
    "Diversity",
    "ExpertPrior",
    "Fourier",
    "GaussianPrior",
    "Jitter",
    "L2Ball",
    "LayerObjective",
    "Neuron",
    "Objective",
    "Parameterisation",
    "Penalty",
    "Pixels",
    "RandomRotate",
    "RandomScale",
    "Regulariser",
    "SemanticDictionary",
    "TotalVariation",
    "Transform",
    "ValueRange",
    "class_prototypes",
    "maximise",
    "observe",
    "semantic_dictionary",
]
