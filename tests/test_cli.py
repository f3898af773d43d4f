"""The command line end to end on a tiny model and tiny images, and its error messages."""

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

    def not_a_model():
        return 42
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


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--input", "missing.png"], "missing.png does not exist"),
        (["--input", "images/junk.png"], "cannot read"),
        (
            ["--input", "images", "--method", "integrated_gradient"],
            "Did you mean 'integrated_gradients'",
        ),
        (
            ["--input", "images", "--setting", "stepz=3", "--method", "integrated_gradients"],
            "no setting 'stepz'",
        ),
        (["--input", "images", "--target", "7"], "gradient failed"),
        (["--input", "images", "--cmap", "bwrr"], "'bwr'"),
    ],
)
def test_explain_errors_are_one_line_with_exit_status_2(setup, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(setup)
    (setup / "images" / "junk.png").write_bytes(b"no png here")
    if "junk" not in argv[1]:
        (setup / "images" / "junk.png").unlink()
    code, _, err = call_cli(capsys, "explain", "--model", "tinynet.py:build", *argv)
    assert code == 2
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("tinynet.py:missing", "has no 'missing'"),
        ("tinynet.py:not_a_model", "not a torch.nn.Module"),
        ("no_such_module_xyz:build", "cannot import"),
        ("weights.pt", "holds weights but no architecture"),
        ("pickled.pt", "weights-only"),
    ],
)
def test_model_errors(setup, capsys, monkeypatch, model, message):
    monkeypatch.chdir(setup)
    torch.save({"w": torch.ones(2)}, setup / "weights.pt")
    torch.save(torch.nn.Linear(2, 2), setup / "pickled.pt")  # a pickled module: refused
    code, _, err = call_cli(capsys, "explain", "--model", model, "--input", "images")
    assert code == 2 and message in err


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
