"""``--device`` on the commands that run a model (explain, evaluate, run).

No GPU runs this suite. The resolution of ``--device`` is tested on what this machine has
(cpu, auto, a device it lacks, names torch does not know, meta). That the model really is
moved is tested by making the resolver answer the meta device and stopping the command at
the library call with a spy that records where the model's parameters are: a command that
did not move the model shows ``cpu``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

import pellucid
import pellucid.runs
from pellucid.cli import main, model_loading
from pellucid.cli.command import UsageError
from pellucid.cli.model_loading import load_model, model_device

LINEAR = textwrap.dedent("""
    import torch

    def build():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 3))

    def broken():
        raise RuntimeError("the factory ran")
""")


@pytest.fixture
def world(tmp_path: Path, monkeypatch) -> Path:
    """A linear model, 4 labelled samples in a file and 2 image files; the cwd."""
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    (tmp_path / "lin.py").write_text(LINEAR)
    g = torch.Generator().manual_seed(0)
    x, labels = torch.rand(4, 3, 4, 4, generator=g), torch.tensor([0, 1, 2, 0])
    torch.save({"inputs": x, "labels": labels}, tmp_path / "data.pt")
    (tmp_path / "images").mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray((255 * x[0].permute(1, 2, 0).numpy()).astype("uint8")).save(
            tmp_path / "images" / name)
    return tmp_path


def call_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


COMMANDS = {
    "explain": ["explain", "--model", "lin.py:build", "--input", "images", "--size", "4", "4",
                "--out", "out"],
    "evaluate": ["evaluate", "--model", "lin.py:build", "--data", "data.pt", "-n", "4",
                 "--methods", "gradient", "--metrics", "complexity.sparseness"],
    "run": ["run", "--model", "lin.py:build", "--data", "data.pt", "--methods", "gradient",
            "--no-progress"],
}


def test_cpu_and_auto_resolve_on_this_machine(monkeypatch):
    assert model_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert model_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert model_device("auto") == torch.device("cuda")


@pytest.mark.parametrize(("name", "says"), [
    ("gpu", "is not a torch device"),
    ("meta", "holds no values"),
    ("cuda:99", "is not available on this machine"),
])
def test_a_device_that_is_unknown_or_missing_is_a_usage_error_naming_the_flag(name, says):
    with pytest.raises(UsageError, match=says) as error:
        model_device(name)
    assert str(error.value).startswith(f"--device {name!r}" if name != "meta" else "--device")
    assert "--device cpu" in str(error.value) or "use cpu" in str(error.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_refused_before_the_models_code_runs(world, capsys):
    for argv in COMMANDS.values():
        command = list(argv)
        command[command.index("lin.py:build")] = "lin.py:broken"
        code, _, err = call_cli(capsys, *command, "--device", "cuda")
        assert code == 2 and "factory ran" not in err
        assert err.startswith(f"pellucid {argv[0]}: error: --device 'cuda' is not available")
        assert len(err.splitlines()) == 1


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_moves_the_model_to_the_device(command, world, capsys, monkeypatch):
    class Reached(Exception):
        pass

    seen = []

    def spy(model, *args, **kwargs):
        seen.append({p.device for p in model.parameters()})
        raise Reached

    monkeypatch.setattr(model_loading, "model_device", lambda name: torch.device("meta"))
    monkeypatch.setattr(pellucid, "explain", spy)
    monkeypatch.setattr(pellucid.runs, "benchmark", spy)
    monkeypatch.setattr(pellucid.runs, "run", spy)
    with pytest.raises(Reached):
        main([*COMMANDS[command], "--device", "anything"])
    assert seen == [{torch.device("meta")}]


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_run_on_the_device_gives_the_closed_form(device, world, capsys):
    """f(x) = W·flatten(x) + b: the gradient for target t is W_t, on any device."""
    from pellucid.runs import Run

    code, _, err = call_cli(capsys, *COMMANDS["run"], "--store", "st", "--dtype", "float32",
                            "--device", device)
    assert code == 0, err
    data = torch.load(world / "data.pt")
    model = load_model("lin.py:build", None)
    w = model[1].weight.detach()[data["labels"]].reshape(data["inputs"].shape)
    torch.testing.assert_close(Run.open(world / "st").attribution("gradient"), w)


def test_explain_on_the_device_writes_its_heatmaps(world, capsys):
    code, out, err = call_cli(capsys, *COMMANDS["explain"], "--device", "auto")
    assert code == 0, err
    assert sorted(p.name for p in (world / "out").iterdir()) == [
        "a.gradient.png", "b.gradient.png"]
    assert out.count("class ") == 2
