"""Reference architectures (images and text), training, and the demo models with their shipped
weights.

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
    TEXT_MODELS,
    DemoModel,
    TextDemoModel,
    demo_test_sets,
    evaluate_demo_model,
    load_pretrained,
    manifest,
    train_demo_model,
)
from .text import (
    TEXT_ARCHITECTURES,
    TextConfig,
    TextLSTM,
    TextTransformer,
    text_lstm,
    text_transformer,
)
from .training import accuracy, predict, train

__all__ = [
    "ARCHITECTURES",
    "DEMO_MODELS",
    "TEXT_ARCHITECTURES",
    "TEXT_MODELS",
    "BasicBlock",
    "DemoModel",
    "ResNetStyle",
    "TextConfig",
    "TextDemoModel",
    "TextLSTM",
    "TextTransformer",
    "accuracy",
    "demo_test_sets",
    "evaluate_demo_model",
    "load_pretrained",
    "manifest",
    "predict",
    "resnet_style",
    "small_cnn",
    "text_lstm",
    "text_transformer",
    "train",
    "train_demo_model",
    "vgg_style",
]
