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
    assert {c.name for c in COMMANDS} >= {"methods", "explain", "demo", "evaluate", "run"}
    done = subprocess.run(
        [sys.executable, "-m", "pellucid.cli", "explain", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "IMPORTED AND ITS CODE RUNS" in done.stdout
    assert "weights_only=True" in done.stdout


# --------------------------------------------------------------------------- run

LINEAR = textwrap.dedent("""
    import torch

    def build():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 3))

    class Marked(torch.nn.Module):
        \"\"\"The linear model, raising for a sample whose first value is 9.\"\"\"
        def __init__(self):
            super().__init__()
            self.inner = build()

        def forward(self, x):
            if bool((x.flatten(1)[:, 0] == 9).any()):
                raise RuntimeError("marked")
            return self.inner(x)

    def marked():
        return Marked().eval()
""")


@pytest.fixture
def linear_world(tmp_path: Path, monkeypatch) -> Path:
    """A linear model and 10 labelled samples (sample 7 marked) in a file; the cwd."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lin.py").write_text(LINEAR)
    g = torch.Generator().manual_seed(0)
    x, labels = torch.rand(10, 3, 4, 4, generator=g), torch.randint(0, 3, (10,), generator=g)
    x[7, 0, 0, 0] = 9.0
    torch.save({"inputs": x, "labels": labels}, tmp_path / "data.pt")
    return tmp_path


def test_run_writes_a_store_of_the_closed_form_and_resumes(linear_world, capsys, monkeypatch):
    from pellucid.cli import load_model
    from pellucid.runs import Run, runner

    data = torch.load(linear_world / "data.pt")
    argv = ["run", "--model", "lin.py:build", "--data", "data.pt", "--methods", "gradient",
            "gradient_x_input", "--metrics", "complexity.sparseness", "--store", "st",
            "--batch-size", "4", "--dtype", "float32"]
    code, out, err = call_cli(capsys, *argv)
    assert code == 0 and "complexity.sparseness" in out and "10 samples × 2 methods" in out
    assert "gradient_x_input" in err and "10/10" in err  # a bar per method, with its total
    stored = Run.open(linear_world / "st")
    model = load_model("lin.py:build", None)  # f(x) = W·flatten(x) + b: ∂f_t/∂x = W_t
    w = model[1].weight.detach()[data["labels"]].reshape(data["inputs"].shape)
    torch.testing.assert_close(stored.attribution("gradient"), w)
    torch.testing.assert_close(stored.attribution("gradient_x_input"), data["inputs"] * w)
    assert torch.equal(stored.targets, data["labels"])
    explained = []
    monkeypatch.setattr(runner, "explain_batch",
                        lambda *a, **k: explained.append(1) or pytest.fail("recomputed"))
    code, _, _ = call_cli(capsys, *argv, "--no-progress")
    assert code == 0 and explained == []  # complete: resumed without any work
    code, _, err = call_cli(capsys, *argv[:-1], "float16")
    assert code == 2 and "--no-resume" in err and "resume=False" not in err
    assert err.startswith("pellucid run: error: --store") and len(err.splitlines()) == 1


def test_run_without_a_store_prints_the_table_and_lists_failures(linear_world, capsys):
    code, out, err = call_cli(capsys, "run", "--model", "lin.py:marked", "--data", "data.pt",
                              "--methods", "random", "saliency", "--metrics",
                              "complexity.sparseness", "--batch-size", "4", "--no-progress")
    assert code == 0 and "random" in out and "saliency" in out and "in memory" in out
    assert "2 (sample, method) pairs failed, e.g. sample 7" in err and "marked" in err
    code, _, err = call_cli(capsys, "run", "--model", "lin.py:marked", "--data", "data.pt",
                            "--methods", "saliency", "--on-error", "raise", "--no-progress")
    assert code == 2 and "model failed" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(("argv", "named"), [
    (["--engine", "spark"], "--engine"),
    (["--dtype", "float64"], "--dtype"),
    (["--on-error", "ignore"], "--on-error"),
    (["--batch-size", "0"], "--batch-size"),
    (["--methods", "gradiant"], "--methods"),
    (["--metrics", "complexity.sparsenes"], "--metrics"),
    (["--store", "data.pt"], "--store"),
])
def test_run_mistakes_are_one_line_naming_the_flag(linear_world, capsys, argv, named):
    code, out, err = call_cli(capsys, "run", "--model", "lin.py:build", "--data", "data.pt",
                              "--no-progress", *argv)
    assert code == 2 and named in err and len(err.splitlines()) == 1 and out == ""



def test_report_writes_a_page_for_a_stored_run(linear_world, capsys):
    argv = ["run", "--model", "lin.py:build", "--data", "data.pt", "--methods", "gradient",
            "--metrics", "complexity.sparseness", "--store", "st", "--no-progress"]
    assert call_cli(capsys, *argv)[0] == 0
    code, out, err = call_cli(capsys, "report", "st", "--out", "page", "--samples", "2")
    page = linear_world / "page" / "index.html"
    assert code == 0 and "page/index.html" in out and page.exists()
    html = page.read_text()
    assert "gradient" in html and "complexity.sparseness" in html
    code, _, err = call_cli(capsys, "report", "missing", "--out", "page2")
    assert code == 2 and err.startswith("pellucid report: error:") and len(err.splitlines()) == 1
