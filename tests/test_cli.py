"""The command line end to end on a tiny model and tiny images (mistakes: test_cli_errors.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from pellucid.cli import COMMANDS, main

FACTORY = textwrap.dedent("""
    import torch

    def build():
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(16, 3))

""")


@pytest.fixture
def setup(tmp_path: Path):
    from PIL import Image

    (tmp_path / "tinynet.py").write_text(FACTORY)
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(images / name)
    (images / "notes.txt").write_text("ignored: not an image")
    return tmp_path


def call_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_methods_lists_names_with_descriptions(capsys):
    code, out, _ = call_cli(capsys, "methods")
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("integrated_gradients "))
    assert "Sundararajan" in line
    code, out, _ = call_cli(capsys, "methods", "smooth*")
    assert code == 0 and {line.split()[0] for line in out.splitlines()} == {
        "smoothgrad",
        "smoothgrad_squared",
    }


def test_explain_a_folder_writes_one_heatmap_per_image(setup, capsys):
    from PIL import Image

    out = setup / "out"
    code, stdout, _ = call_cli(
        capsys,
        "explain",
        "--model",
        f"{setup / 'tinynet.py'}:build",
        "--input",
        str(setup / "images"),
        "--method",
        "integrated_gradients",
        "--setting",
        "steps=4",
        "--target",
        "1",
        "--out",
        str(out),
        "--overlay",
        "0.5",
        "--scale",
        "2",
    )
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "a.integrated_gradients.overlay.png",
        "a.integrated_gradients.png",
        "b.integrated_gradients.overlay.png",
        "b.integrated_gradients.png",
    ]
    assert Image.open(out / "a.integrated_gradients.png").size == (24, 20)  # (W, H) × 2
    assert "class 1" in stdout


def test_explain_loads_a_state_dict_into_the_factory_model(setup, capsys, monkeypatch):
    sys.path.insert(0, str(setup))
    try:
        import tinynet
    finally:
        sys.path.remove(str(setup))
    model = tinynet.build()
    with torch.no_grad():
        model[-1].bias.copy_(torch.tensor([0.0, 0.0, 100.0]))  # forces class 2
    torch.save(model.state_dict(), setup / "weights.pt")
    monkeypatch.chdir(setup)  # a dotted module name imports from the current folder
    code, stdout, _ = call_cli(
        capsys,
        "explain",
        "--model",
        "tinynet:build",
        "--weights",
        "weights.pt",
        "--input",
        "images/a.png",
        "--out",
        "out",
    )
    assert code == 0 and "class 2" in stdout
    assert (setup / "out" / "a.gradient.png").is_file()


def test_every_command_has_help_and_the_entry_point_runs():
    assert {c.name for c in COMMANDS} >= {"methods", "explain", "demo", "evaluate"}
    done = subprocess.run(
        [sys.executable, "-m", "pellucid.cli", "explain", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "IMPORTED AND ITS CODE RUNS" in done.stdout
    assert "weights_only=True" in done.stdout
