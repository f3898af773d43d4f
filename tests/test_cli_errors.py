"""Every user mistake on the command line: one line on stderr, exit status 2, no traceback.

Each case runs ``main([...])`` in-process on a tiny model, tiny images and data files made
here (corrupt, truncated, of the wrong type), and checks that the one line names the flag
or file to change. Then how ``evaluate`` routes ``--setting`` to methods and metrics, the
``--traceback`` switch, and that a bug in pellucid itself keeps its traceback.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import pellucid
from pellucid.cli import main

MODELS = textwrap.dedent("""
    import torch

    def build():
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(16, 3))

    class Raising(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(3, 3)

        def forward(self, x):
            raise RuntimeError("boom in forward")

    def raising():
        return Raising()

    def not_a_model():
        return 42

    def broken():
        raise OSError("cannot reach the weights server")

    NOT_CALLABLE = 3
""")


@pytest.fixture
def world(tmp_path: Path, monkeypatch) -> Path:
    """A folder with models, images and good and bad data and weight files; the cwd."""
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets.py").write_text(MODELS)
    (tmp_path / "bad_import.py").write_text("raise ImportError('missing dependency xyz')\n")
    (tmp_path / "syntax_error.py").write_text("def f(:\n")
    (tmp_path / "images").mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "images" / name)
    x = torch.rand(4, 3, 8, 8)
    torch.save({"inputs": x, "labels": torch.tensor([0, 1, 2, 0])}, tmp_path / "good.pt")
    torch.save(x, tmp_path / "tensor.pt")
    (tmp_path / "text.pt").write_text("these are not tensors\n")
    (tmp_path / "empty_file.pt").write_bytes(b"")
    whole = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(whole[: len(whole) // 2])
    torch.save("a string", tmp_path / "string.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    torch.save(torch.empty(0, 3, 8, 8), tmp_path / "empty_tensor.pt")
    torch.save({"images": x}, tmp_path / "no_inputs.pt")
    torch.save({"inputs": x, "label": torch.zeros(4, dtype=torch.long)}, tmp_path / "typo.pt")
    torch.save({"inputs": x, "labels": torch.zeros(3, dtype=torch.long)}, tmp_path / "short.pt")
    torch.save((x * 255).to(torch.uint8), tmp_path / "uint8.pt")
    torch.save(torch.full((2, 3, 8, 8), float("nan")), tmp_path / "nan.pt")
    torch.save((x, torch.zeros(4)), tmp_path / "float_labels.pt")
    torch.save({"inputs": x, "masks": torch.ones(2, 8, 8)}, tmp_path / "short_masks.pt")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "pickled.pt")  # a pickled module: refused
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 not a zip")
    torch.save({"w": torch.ones(2)}, tmp_path / "wrong_weights.pt")
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "empty").mkdir()
    return tmp_path


EXPLAIN = ["explain", "--model", "nets.py:build", "--input", "images"]
EVALUATE = ["evaluate", "--model", "nets.py:build", "--data", "good.pt", "-n", "4",
            "--metrics", "complexity.sparseness"]


def data(name: str) -> list[str]:
    return [*EVALUATE[:4], name, *EVALUATE[5:]]


#: (argv, a word the one line must contain: the flag, file or setting to change)
MISTAKES = [
    # the command line itself
    ([], "COMMAND"),
    ([*EXPLAIN, "--bogus"], "--bogus"),
    (["explain", "--input", "images"], "--model"),
    ([*EXPLAIN, "--channels", "2"], "--channels"),
    # counts and sizes
    ([*EXPLAIN, "--batch-size", "-1"], "--batch-size"),
    ([*EXPLAIN, "--batch-size", "two"], "--batch-size"),
    ([*EXPLAIN, "--size", "0", "8"], "--size"),
    ([*EXPLAIN, "--scale", "0"], "--scale"),
    ([*EXPLAIN, "--overlay", "2"], "--overlay"),
    ([*EXPLAIN, "--overlay", "nan"], "--overlay"),
    ([*EVALUATE[:-2], "-n", "0"], "-n"),
    ([*EVALUATE, "--size", "-3"], "--size"),
    # names
    (["methods", "nothing*"], "nothing*"),
    ([*EXPLAIN, "--method", "integrated_gradient"], "Did you mean 'integrated_gradients'"),
    ([*EXPLAIN, "--cmap", "bwrr"], "--cmap"),
    ([*EXPLAIN, "--reduce", "median"], "--reduce"),
    ([*EVALUATE, "--methods", "gradientt"], "--methods"),
    ([*EVALUATE, "--methods", "gradient", "gradient"], "--methods"),
    ([*EVALUATE[:-1], "faithfulness.pixel_flip"], "--metrics"),
    ([*EVALUATE[:-1], "faithfulness.roar"], "--metrics faithfulness.roar"),
    (["demo", "--methods", "nothing*"], "--methods"),
    # settings: malformed, unknown, ambiguous, rejected by the method or metric
    ([*EXPLAIN, "--setting", "steps"], "--setting"),
    ([*EXPLAIN, "--setting", "3x=1"], "--setting"),
    ([*EXPLAIN, "--setting", "integrated_gradients:steps=3"], "--setting"),
    ([*EXPLAIN, "--method", "integrated_gradients", "--setting", "steps=2",
      "--setting", "steps=3"], "--setting steps"),
    ([*EXPLAIN, "--method", "integrated_gradients", "--setting", "stepz=3"], "stepz"),
    ([*EXPLAIN, "--method", "integrated_gradients", "--setting", "steps=0"], "steps"),
    ([*EXPLAIN, "--method", "integrated_gradients", "--setting", "steps='many'"], "steps"),
    ([*EVALUATE, "--setting", "stepz=3"], "stepz"),
    ([*EVALUATE, "--methods", "integrated_gradients", "--metrics",
      "faithfulness.pixel_flipping", "--setting", "steps=3"], "--setting steps"),
    ([*EVALUATE, "--setting", "gradient:steps=3"], "gradient:steps"),
    ([*EVALUATE, "--setting", "smoothgrad:samples=3"], "smoothgrad"),
    ([*EVALUATE, "--methods", "integrated_gradients", "--setting",
      "integrated_gradients:steps=-1"], "steps"),
    ([*EVALUATE[:-1], "faithfulness.pixel_flipping", "--setting", "steps=0"], "steps"),
    # data files
    (data("nothing.pt"), "--data 'nothing.pt'"),
    (data("images"), "--data images"),
    (data("text.pt"), "--data text.pt"),
    (data("empty_file.pt"), "--data empty_file.pt"),
    (data("truncated.pt"), "--data truncated.pt"),
    (data("string.pt"), "--data string.pt"),
    (data("list.pt"), "--data list.pt"),
    (data("empty_tensor.pt"), "--data empty_tensor.pt"),
    (data("no_inputs.pt"), "--data no_inputs.pt"),
    (data("typo.pt"), "'label'"),
    (data("short.pt"), "labels"),
    (data("uint8.pt"), "--data uint8.pt"),
    (data("nan.pt"), "--data nan.pt"),
    (data("float_labels.pt"), "labels"),
    (data("short_masks.pt"), "masks"),
    (data("objects.npy"), "--data objects.npy"),
    (data("corrupt.npz"), "--data corrupt.npz"),
    # image inputs
    (["explain", "--model", "nets.py:build", "--input", "missing.png"], "missing.png"),
    (["explain", "--model", "nets.py:build", "--input", "nets.py"], "--input"),
    (["explain", "--model", "nets.py:build", "--input", "empty"], "--input"),
    # model files and model code
    (["explain", "--model", "nets.py:missing", "--input", "images"], "--model"),
    (["explain", "--model", "nets.py:NOT_CALLABLE", "--input", "images"], "--model"),
    (["explain", "--model", "nets.py:not_a_model", "--input", "images"], "--model"),
    (["explain", "--model", "nets.py:", "--input", "images"], "--model"),
    (["explain", "--model", "no_such.py:build", "--input", "images"], "no_such.py"),
    (["explain", "--model", "no_such_module_xyz:build", "--input", "images"], "--model"),
    (["explain", "--model", "bad_import:build", "--input", "images"], "bad_import"),
    (["explain", "--model", "syntax_error.py:f", "--input", "images"], "syntax_error.py"),
    (["explain", "--model", "nets.py:broken", "--input", "images"], "model failed: OSError"),
    (["explain", "--model", "nets.py:raising", "--input", "images"],
     "model failed: RuntimeError: boom in forward"),
    (["evaluate", "--model", "nets.py:raising", "--data", "good.pt", "-n", "2"],
     "model failed: RuntimeError"),
    (["explain", "--model", "no_such_demo", "--input", "images"], "--model 'no_such_demo'"),
    (["explain", "--model", "pickled.pt", "--input", "images"], "--model pickled.pt"),
    (["explain", "--model", "wrong_weights.pt", "--input", "images"], "--model wrong_weights.pt"),
    ([*EXPLAIN, "--weights", "nothing.pt"], "--weights nothing.pt"),
    ([*EXPLAIN, "--weights", "text.pt"], "--weights text.pt"),
    ([*EXPLAIN, "--weights", "tensor.pt"], "--weights tensor.pt"),
    ([*EXPLAIN, "--weights", "wrong_weights.pt"], "--weights wrong_weights.pt"),
    # the library rejects an argument: its PellucidError, one line
    ([*EXPLAIN, "--target", "7"], "target 7"),
    # output folders, checked before any work
    ([*EXPLAIN, "--out", "a_file"], "--out a_file"),
    ([*EXPLAIN, "--out", "a_file/sub"], "--out a_file/sub"),
    ([*EVALUATE, "--out", "a_file"], "--out a_file"),
    (["demo", "--out", "a_file"], "--out a_file"),
]


@pytest.mark.parametrize(("argv", "names"), MISTAKES, ids=[" ".join(a)[:70] for a, _ in MISTAKES])
def test_a_mistake_is_one_line_and_exit_status_2(world, capsys, argv, names):
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("pellucid"), lines[0]
    assert names in lines[0], lines[0]


def test_output_is_checked_before_the_model_runs(world, capsys, monkeypatch):
    """A bad --out ends the command before the model is loaded or run."""
    import pellucid.cli.explain as explain

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr(explain, "load_model", never)
    assert main([*EXPLAIN, "--out", "a_file"]) == 2
    assert "--out a_file is a file" in capsys.readouterr().err


def test_traceback_shows_the_models_exception(world):
    with pytest.raises(RuntimeError, match="boom in forward"):
        main(["explain", "--model", "nets.py:raising", "--input", "images", "--traceback"])


def test_a_bug_in_pellucid_keeps_its_traceback(world, monkeypatch):
    """Only the model's own exceptions become 'model failed'; pellucid's bugs are not hidden."""

    def buggy(*args, **kwargs):
        raise ZeroDivisionError("a bug in pellucid")

    monkeypatch.setattr(pellucid, "explain", buggy)
    with pytest.raises(ZeroDivisionError):
        main(EXPLAIN)


def test_help_and_version_return_status_0(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("pellucid ")
    assert main(["evaluate", "--help"]) == 0
    assert "NAME:KEY=VALUE" in capsys.readouterr().out


class Recorded(Exception):
    """Raised by the stand-in benchmark to hand back what evaluate passed it."""


@pytest.fixture
def recorded(monkeypatch):
    """Replace benchmark by a recorder: what evaluate would compute, without computing it."""
    import pellucid.runs

    def record(model, inputs, methods, metrics, **kwargs):
        raise Recorded(methods, metrics, inputs, kwargs)

    monkeypatch.setattr(pellucid.runs, "benchmark", record)


def evaluate_call(*argv: str):
    with pytest.raises(Recorded) as caught:
        main(["evaluate", "--model", "nets.py:build", "--data", "good.pt", *argv])
    return caught.value.args


def test_evaluate_gives_settings_to_the_methods_and_metrics_that_have_them(world, recorded):
    methods, metrics, _, _ = evaluate_call(
        "--methods", "random", "integrated_gradients", "smoothgrad",
        "--metrics", "faithfulness.pixel_flipping", "complexity.sparseness",
        "--setting", "integrated_gradients:steps=5",
        "--setting", "faithfulness.pixel_flipping:steps=7",
        "--setting", "samples=3",  # only smoothgrad has samples
        "--setting", "baseline='blur'",  # of the chosen, only integrated_gradients has it
    )
    assert methods[0] == "random"
    assert (methods[1].steps, methods[1].baseline) == (5, "blur")
    assert (methods[2].samples, methods[2].name) == (3, "smoothgrad")
    assert metrics[0].steps == 7
    assert [m.name for m in metrics] == ["faithfulness.pixel_flipping", "complexity.sparseness"]


def test_evaluate_passes_the_files_labels_masks_and_first_n_samples(world, recorded):
    saved = torch.load(world / "good.pt")
    _, _, inputs, kwargs = evaluate_call("-n", "3")
    assert torch.equal(inputs, saved["inputs"][:3])
    assert torch.equal(kwargs["target"], saved["labels"][:3])
    assert kwargs["masks"] is None and kwargs["n"] == 3
    assert kwargs["batch_size"] == 64  # streamed through the runner in batches
    assert evaluate_call("--batch-size", "2")[3]["batch_size"] == 2
    masks = torch.rand(4, 8, 8) > 0.5
    torch.save({"inputs": saved["inputs"], "masks": masks}, world / "masked.pt")
    _, _, inputs, kwargs = evaluate_call("--data", "masked.pt", "-n", "2")
    assert kwargs["target"] is None and torch.equal(kwargs["masks"], masks[:2])


def test_evaluate_reads_numpy_archives(world, recorded):
    x = np.random.default_rng(1).random((5, 3, 8, 8)).astype(np.float32)
    labels = np.array([2, 1, 0, 1, 2])
    np.savez(world / "data.npz", inputs=x, labels=labels)
    _, _, inputs, kwargs = evaluate_call("--data", "data.npz")
    assert torch.equal(inputs, torch.from_numpy(x)) and kwargs["target"].tolist() == [2, 1, 0, 1, 2]
    np.save(world / "inputs.npy", x)
    _, _, inputs, kwargs = evaluate_call("--data", "inputs.npy", "-n", "2")
    assert torch.equal(inputs, torch.from_numpy(x[:2])) and kwargs["target"] is None


def test_evaluate_end_to_end_writes_the_table(world, capsys):
    code = main([*EVALUATE, "--methods", "random", "integrated_gradients",
                 "--setting", "steps=2", "--out", "results"])
    out = capsys.readouterr().out
    assert code == 0
    assert "integrated_gradients" in out and "complexity.sparseness" in out
    assert (world / "results" / "benchmark.csv").is_file()


def test_python_dash_m_pellucid_runs_the_command():
    done = subprocess.run(
        [sys.executable, "-m", "pellucid", "methods", "integrated_*"],
        capture_output=True, text=True, check=True,
    )
    assert done.stdout.split()[0] == "integrated_gradients"
    failed = subprocess.run(
        [sys.executable, "-m", "pellucid", "methods", "nothing*"], capture_output=True, text=True
    )
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines() == [
        "pellucid methods: error: no method matches 'nothing*'; try 'pellucid methods'"
    ]
