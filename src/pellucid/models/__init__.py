"""Reference architectures, training, and the demo models with their shipped weights.

>>> import torch
>>> from pellucid.models import vgg_style
>>> vgg_style(classes=5)(torch.rand(2, 3, 64, 64)).shape
torch.Size([2, 5])
"""

from .architectures import (
    ARCHITECTURES,
    BasicBlock,
    ResNetStyle,
    resnet_style,
    small_cnn,
    vgg_style,
)
from .pretrained import (
    DEMO_MODELS,
    DemoModel,
    demo_test_sets,
    evaluate_demo_model,
    load_pretrained,
    manifest,
    train_demo_model,
)
from .training import accuracy, predict, train

__all__ = [
    "ARCHITECTURES",
    "DEMO_MODELS",
    "BasicBlock",
    "DemoModel",
    "ResNetStyle",
    "accuracy",
    "demo_test_sets",
    "evaluate_demo_model",
    "load_pretrained",
    "manifest",
    "predict",
    "resnet_style",
    "small_cnn",
    "train",
    "train_demo_model",
    "vgg_style",
]
