"""A tiny demo context for the report tests: two linear models on 32×32 generated images."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pellucid.data import clever_hans, shapes
from pellucid.report import DemoContext, ReportModel
from pellucid.report.demo import build_sections, header
from pellucid.report.html import page
from pellucid.report.sections import SECTIONS

SIZE = 32


def linear_model(weight_map: torch.Tensor, shortcut: int, classes: int = 5) -> nn.Module:
    """Scores Σ x·W: the shortcut class weighs the pixels of ``weight_map`` (H, W), others 0."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIZE * SIZE, classes))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.zero_()
        model[1].weight[shortcut] = weight_map.float().expand(3, -1, -1).flatten()
    return model.eval()


def tiny_context(tmp_path: Path, methods: list[str]) -> DemoContext:
    data = shapes(3, size=SIZE, seed=5)
    hans = clever_hans(8, n_test=10, size=SIZE, seed=6)
    moved = hans.test_moved
    moved = moved.subset(moved.has_watermark.nonzero().flatten()[:3])
    stamp = moved.watermark_masks[0]
    shortcut = linear_model(stamp, hans.shortcut_class)  # looks only at the watermark
    control = linear_model(torch.ones(SIZE, SIZE), hans.shortcut_class)  # everywhere alike
    models = {
        "main": ReportModel("uniform", control, "", {"test": 0.2}),
        "shortcut": ReportModel("watermark_only", shortcut, "", {"moved": 0.1}),
    }
    return DemoContext(
        tmp_path, True, methods, models, data, data.images, moved, hans.shortcut_class
    )


def render(ctx: DemoContext) -> str:
    return page("pellucid demo report", header(ctx), build_sections(ctx, SECTIONS))
