"""The result of explaining one batch."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.utils._pytree import tree_map_only

from .saving import Repr, load_fields, save_fields

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class Explanation:
    """An attribution for a batch, with what produced it.

    Attributes:
        attribution: relevance per input element, the same shape as the inputs.
        output: the model output (detached).
        target: the explained class per sample, LongTensor (B,); -1 for a target callable.
        method: the registered name of the method.
        settings: the method's settings.
        extras: method-specific diagnostics, e.g. ``completeness_gap`` (B,) or ``layer_map``.
        target_spec: the target callable when ``target=`` was one (``target`` is then -1),
            ``targets.output(key, then)`` when ``output=key`` selected the explained tensor
            of a tuple or dict output, else None (the classes are in ``target``). Pass
            ``target_spec`` if not None, else ``target``, to explain or evaluate the same
            score again (``evaluate(..., attributions=explanation)`` does).
        inputs: the inputs that were explained (the method's detached private copy), so
            that :meth:`plot` needs no arguments; None when the explanation was built
            without them.

    An explanation lives on one device: that of ``output``, the model's device. On
    construction ``attribution``, ``target``, ``inputs`` and every tensor in ``extras``
    (in nested dicts, lists and tuples too) are moved there, whatever the inputs' device.

    In a notebook an explanation shows itself (:meth:`_repr_png_`, the first
    :data:`~pellucid.viz.display.NOTEBOOK_SAMPLES` samples); :meth:`plot` draws it all.
    """

    attribution: Tensor
    output: Tensor
    target: Tensor
    method: str
    settings: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    target_spec: Callable[[Tensor], Tensor] | None = None
    inputs: Tensor | None = None

    def __post_init__(self) -> None:
        device = self.output.device if isinstance(self.output, Tensor) else None
        if device is not None:
            self.attribution, self.target, self.inputs, self.extras = on_device(
                (self.attribution, self.target, self.inputs, self.extras), device)

    def __repr__(self) -> str:
        shape = "×".join(str(s) for s in self.attribution.shape)
        extras = ", ".join(sorted(self.extras)) or "none"
        return f"Explanation(method={self.method!r}, attribution={shape}, extras: {extras})"

    def plot(
        self,
        inputs: Tensor | None = None,
        *,
        tokens: Sequence[Sequence[str]] | None = None,
        scale: str | float = "sample",
        cmap: str = "bwr",
        reduce: str = "sum",
        alpha: float = 0.8,
        clip_quantile: float = 1.0,
        max_samples: int | None = None,
    ) -> Figure:
        """A matplotlib figure of this explanation (needs the ``viz`` extra; no pyplot).

        Images: per sample the input, the heatmap with a colour bar (±s, s = max |R| per
        sample, or over the batch with ``scale="shared"``) and an overlay of opacity
        α(x) = ``alpha`` · |R(x)| / s. Sequences (B, L) or tokens (B, L, D), D summed:
        coloured ``tokens`` (one list of L strings per sample), else heat strips.
        ``inputs`` overrides the kept :attr:`inputs`. See :func:`pellucid.viz.plot`.

        Example:
            >>> import tempfile, torch, pellucid
            >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Flatten(),
            ...                             torch.nn.Linear(32, 2)).eval()
            >>> e = pellucid.explain(model, torch.rand(2, 3, 6, 6), 0, method="gradient")
            >>> e.plot(scale="shared").savefig(tempfile.mkdtemp() + "/explanation.png")
        """
        from .viz.display import plot  # display presents the result; viz never imports us

        return plot(
            self, inputs, tokens=tokens, scale=scale, cmap=cmap, reduce=reduce, alpha=alpha,
            clip_quantile=clip_quantile, max_samples=max_samples,
        )

    def _repr_png_(self) -> bytes | None:
        """PNG of :meth:`plot` for the first few samples (the figure says how many), for
        notebooks; None without matplotlib or for an attribution that is not drawn."""
        from .viz.display import notebook_png  # display presents the result

        return notebook_png(self)

    def save(self, path: str | os.PathLike) -> Path:
        """Save to one ``.safetensors`` file (tensors) with JSON (the rest); the path written.

        Values that cannot be stored (a target callable, a composite object) are saved as
        their ``repr`` and load back as that string; ``target_spec`` loads back as None
        (see docs/tasks/saving.md). Nothing is pickled.

        Example:
            >>> import tempfile, torch, pellucid
            >>> model = torch.nn.Linear(3, 2).eval()
            >>> e = pellucid.explain(model, torch.ones(1, 3), 0, method="gradient")
            >>> path = e.save(tempfile.mkdtemp() + "/e.safetensors")
            >>> torch.equal(pellucid.Explanation.load(path).attribution, e.attribution)
            True
        """
        return save_fields(path, self)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> Explanation:
        """An explanation saved by :meth:`save`, its tensors on ``device``; never unpickles.

        A target callable was saved as its repr: ``target_spec`` is None and ``target`` -1,
        so pass the callable again to evaluate the explanation.
        """
        fields = load_fields(path, cls, device)
        if isinstance(fields.get("target_spec"), Repr):
            fields["target_spec"] = None
        return cls(**fields)


def on_device(value: Any, device: str | torch.device) -> Any:
    """``value`` with every tensor in it (at any depth of dicts, lists and tuples) on
    ``device``; tensors already there are kept, not copied.

    Example:
        >>> import torch
        >>> moved = on_device({"gap": torch.zeros(2), "maps": [torch.ones(1)]}, "meta")
        >>> moved["gap"].device, moved["maps"][0].device
        (device(type='meta'), device(type='meta'))
    """
    return tree_map_only(Tensor, lambda t: t.to(device), value)
