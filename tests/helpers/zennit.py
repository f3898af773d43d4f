"""Import Zennit 1.0.0 (the reference implementation of the LRP rules) without torchvision.

Zennit imports torchvision at import time, for three names only: ``torchvision.ops``'s
``FrozenBatchNorm2d`` (in ``zennit.types``) and ``torchvision.models.resnet``'s ``Bottleneck``
and ``BasicBlock`` (in ``zennit.torchvision``, its ResNet canonizer). torchvision cannot be
imported next to the CPU torch here, so :func:`import_zennit` puts placeholder modules with
those names into ``sys.modules`` while ``import zennit`` runs and removes them afterwards
(Zennit keeps its own references; the placeholders are never instantiated, so the rules are
unaffected). ``transformers`` is imported first where installed: it probes torchvision's
module spec on import, which a placeholder without one would break.

Zennit is a test dependency (``make install`` runs
``pip install --no-deps --ignore-requires-python zennit==1.0.0``); a failed import fails.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import types
from collections.abc import Iterator
from typing import Any

from torch import nn

_NAMES = ("torchvision", "torchvision.ops", "torchvision.models", "torchvision.models.resnet")


@contextlib.contextmanager
def _placeholder_torchvision() -> Iterator[None]:
    """``sys.modules`` holds placeholder torchvision modules inside the block, and not after."""
    placeholders = {name: types.ModuleType(name) for name in _NAMES}
    placeholders["torchvision.ops"].FrozenBatchNorm2d = type("FrozenBatchNorm2d", (nn.Module,), {})
    resnet = placeholders["torchvision.models.resnet"]
    resnet.Bottleneck = type("Bottleneck", (nn.Module,), {})
    resnet.BasicBlock = type("BasicBlock", (nn.Module,), {})
    placeholders["torchvision"].ops = placeholders["torchvision.ops"]
    placeholders["torchvision"].models = placeholders["torchvision.models"]
    placeholders["torchvision.models"].resnet = resnet
    sys.modules.update(placeholders)
    try:
        yield
    finally:
        for name in _NAMES:
            if sys.modules.get(name) is placeholders[name]:
                del sys.modules[name]


def import_zennit() -> Any:
    """The ``zennit`` package (with ``zennit.rules``, ``zennit.core`` and ``zennit.layer``)."""
    if "zennit" in sys.modules:
        return sys.modules["zennit"]
    if importlib.util.find_spec("transformers") is not None:
        import transformers  # noqa: F401  (probes torchvision's spec: before the placeholders)
    with _placeholder_torchvision():
        import zennit
        import zennit.core
        import zennit.layer
        import zennit.rules
    return zennit


def import_lxt() -> Any:
    """``lxt.explicit.functional`` (AttnLRP's reference rules per op: softmax, matmul, mul2,
    layer_norm, rms_norm_identity, ...), imported next to the placeholder torchvision."""
    if "lxt.explicit.functional" in sys.modules:
        return sys.modules["lxt.explicit.functional"]
    if importlib.util.find_spec("transformers") is not None:
        import transformers  # noqa: F401  (probes torchvision's spec: before the placeholders)
    with _placeholder_torchvision():
        import lxt.explicit.functional
    return lxt.explicit.functional
