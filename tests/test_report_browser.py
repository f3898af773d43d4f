"""The demo report and a run's store report rendered by headless Chromium: laid-out pages.

Skipped where Debian's ``chromium`` is not installed (``apt-get install chromium``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.report import render, tiny_context

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)


def screenshot(index: Path, tmp_path: Path) -> np.ndarray:
    """The page ``index`` as headless Chromium draws it in a 1200×1600 window (RGB ints)."""
    from PIL import Image

    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1200,1600",
            index.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (1600, 1200)
    header = pixels[:60].reshape(-1, 3).mean(0)
    assert header.max() < 80  # the dark header band
    return pixels


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium(tmp_path):
    index = tmp_path / "index.html"
    index.write_text(render(tiny_context(tmp_path, ["gradient", "integrated_gradients"])))
    pixels = screenshot(index, tmp_path)
    body = pixels[300:].reshape(-1, 3)
    colours = {tuple(c) for c in body[::7] // 16}
    assert len(colours) > 50  # images and text, not a blank page
    reds = ((body[:, 0] > 200) & (body[:, 1] < 120) & (body[:, 2] < 120)).mean()
    assert reds > 0.001  # some heatmap relevance is drawn in red


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_store_report_renders_in_headless_chromium(tmp_path):
    import torch

    from pellucid.report.store_report import write_store_report
    from pellucid.runs import run

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 2)).eval()
    r = run(model, torch.rand(12, 3, 4, 4), ["gradient", "gradient_x_input"],
            metrics=["complexity.sparseness"], progress=False)
    pixels = screenshot(write_store_report(r, tmp_path / "report"), tmp_path)
    body = pixels[80:].reshape(-1, 3)
    assert len({tuple(c) for c in body[::7] // 16}) > 10  # tables and text, not blank
