"""pellucid.models: architectures, training, accuracy, the shipped demo weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pellucid.data import ImageSet
from pellucid.errors import ArgumentError, ArgumentTypeError, UnknownNameError
from pellucid.models import (
    DEMO_MODELS,
    BasicBlock,
    accuracy,
    demo_test_sets,
    load_pretrained,
    manifest,
    pretrained,
    resnet_style,
    small_cnn,
    train,
    vgg_style,
)
from pellucid.models.pretrained import WEIGHTS_DIR, DemoModel


@pytest.mark.parametrize("factory", [small_cnn, vgg_style, resnet_style])
@pytest.mark.parametrize(("channels", "size"), [(3, 64), (1, 8), (1, 28)])
def test_architectures_take_any_size_and_channels(factory, channels: int, size: int) -> None:
    model = factory(in_channels=channels, classes=7).eval()
    assert model(torch.rand(2, channels, size, size)).shape == (2, 7)


def test_vgg_has_batchnorm_and_resnet_adds_the_identity() -> None:
    assert any(isinstance(m, nn.BatchNorm2d) for m in vgg_style().modules())
    block = BasicBlock(4, 4).eval()
    x = torch.randn(2, 4, 6, 6)
    branch = block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x)))))
    assert torch.allclose(block(x), torch.relu(branch + x), atol=1e-6)


def test_accuracy_of_a_model_with_a_known_answer() -> None:
    """A linear model that returns the first input feature as the score of class 1 (and 0 for
    class 0) predicts class 1 exactly where that feature is positive."""
    model = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    x = torch.tensor([[1.0, 5, 5], [-1.0, 5, 5], [2.0, 0, 0], [-3.0, 1, 1]])
    assert accuracy(model, x, torch.tensor([1, 0, 0, 0])) == 0.75
    assert model.training  # mode restored


def test_train_learns_a_separable_problem_deterministically() -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(96, 1, 8, 8, generator=gen) * 0.5
    labels = torch.arange(96) % 2
    images[labels == 1, :, :4] += 0.5  # class 1: bright top half
    data = ImageSet(images, labels, None, ("dark", "bright top"))
    state = torch.get_rng_state()
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        model = small_cnn(1, 2, width=4)
        losses = train(model, data, epochs=6, lr=1e-2, batch_size=16, seed=0, progress=False)
        runs.append((losses, model))
    assert runs[0][0] == runs[1][0]
    assert losses[-1] < losses[0]
    assert accuracy(model, images, labels) > 0.9
    assert not model.training
    torch.set_rng_state(state)


@pytest.mark.parametrize("name", sorted(DEMO_MODELS))
def test_shipped_weights_reach_their_recorded_accuracy(name: str) -> None:
    record = manifest()[name]
    assert record["architecture"] == DEMO_MODELS[name].architecture
    weights = torch.load(WEIGHTS_DIR / f"{name}.pt", weights_only=True)
    assert all(v.dtype in (torch.float16, torch.int64) for v in weights.values())
    model = load_pretrained(name, progress=False)
    for key, data in demo_test_sets(name).items():
        got = accuracy(model, data.images, data.labels)
        assert got == pytest.approx(record["accuracy"][key], abs=0.01), key
    assert record["accuracy"]["test"] > 0.6


def test_shortcut_model_uses_the_watermark() -> None:
    recorded = manifest()["clever_hans_vgg"]["accuracy"]
    assert recorded["test_moved"] < recorded["test_watermarked"] - 0.2
    model = load_pretrained("clever_hans_vgg", progress=False)
    moved = demo_test_sets("clever_hans_vgg")["test_moved"]
    # images of other classes that carry the watermark are mostly called the shortcut class
    predicted = model(moved.images[moved.has_watermark]).argmax(1)
    assert (predicted == 0).float().mean() > 0.5


def test_unknown_demo_model_is_named() -> None:
    with pytest.raises(ValueError, match="clever_hans_vgg"):
        load_pretrained("clever_hans")


def test_a_missing_weights_file_is_trained_saved_and_then_loaded(tmp_path, monkeypatch) -> None:
    tiny = DemoModel("tiny", "small_cnn", (4,), "shapes", size=16, n_train=48, n_test=16,
                     epochs=1, batch_size=16)
    monkeypatch.setitem(pretrained.DEMO_MODELS, "tiny", tiny)
    first = load_pretrained("tiny", directory=tmp_path, progress=False)
    assert (tmp_path / "tiny.pt").exists()
    record = manifest(tmp_path)["tiny"]
    assert set(record["accuracy"]) == {"test"} and record["n_train"] == 48
    again = load_pretrained("tiny", directory=tmp_path, progress=False)
    x = torch.rand(3, 3, 16, 16)
    assert torch.equal(first(x), again(x))


def test_predict_moves_the_images_to_the_models_dtype() -> None:
    """A float64 model given float32 images (and the reverse) predicts as on matching ones."""
    model = nn.Linear(3, 2).eval()
    x = torch.randn(7, 3)
    labels = model(x).argmax(1)
    assert accuracy(model, x.double(), labels, batch_size=3) == 1.0
    assert accuracy(model.double(), x, labels) == 1.0


def separable(n: int = 16) -> ImageSet:
    images = torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    return ImageSet(images, torch.arange(n) % 2, None, ("a", "b"))


@pytest.mark.parametrize(
    ("settings", "error", "argument"),
    [
        ({"epochs": 0}, ArgumentError, "epochs"),
        ({"epochs": 1.5}, ArgumentTypeError, "epochs"),
        ({"lr": 0.0}, ArgumentError, "lr"),
        ({"lr": float("nan")}, ArgumentError, "lr"),
        ({"batch_size": 0}, ArgumentError, "batch_size"),
        ({"seed": "0"}, ArgumentTypeError, "seed"),
        ({"dataset": separable(0)}, ArgumentError, "dataset"),
        ({"dataset": [(torch.zeros(1, 4, 4), 0)]}, ArgumentTypeError, "dataset"),
        ({"dataset": ImageSet(torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 5]), None,
                              ("a", "b"))}, ArgumentError, "dataset"),
        ({"model": "cnn"}, ArgumentTypeError, "model"),
    ],
)
def test_train_settings_are_named(settings, error, argument) -> None:
    args = {"model": small_cnn(1, 2, width=2), "dataset": separable(), "epochs": 1,
            "progress": False, **settings}
    with pytest.raises(error) as caught:
        train(**args)
    assert caught.value.argument == argument and argument in str(caught.value)


def test_a_diverging_loss_is_named_and_accuracy_checks_labels() -> None:
    model = small_cnn(1, 2, width=2)
    with pytest.raises(ArgumentError, match="lr") as caught:
        train(model, separable(), epochs=2, lr=1e30, batch_size=4, progress=False)
    assert caught.value.argument == "lr"
    with pytest.raises(ArgumentError, match="labels"):
        accuracy(model, torch.rand(3, 1, 4, 4), torch.tensor([0, 1]))
    with pytest.raises(ArgumentError, match="labels"):
        accuracy(model, torch.rand(2, 1, 4, 4), torch.tensor([0.0, 1.0]))


def test_architecture_and_recipe_settings_are_named() -> None:
    for build, argument in [
        (lambda: small_cnn(0, 5), "in_channels"),
        (lambda: vgg_style(classes=0), "classes"),
        (lambda: vgg_style(widths=()), "widths"),
        (lambda: resnet_style(widths=(16, -1)), "widths"),
        (lambda: small_cnn(width=2.5), "width"),
        (lambda: DemoModel("x", "vgg", (16,), "shapes"), "architecture"),
        (lambda: DemoModel("x", "vgg_style", (16,), "digits"), "data"),
        (lambda: DemoModel("x", "vgg_style", (16,), "shapes", epochs=0), "epochs"),
    ]:
        with pytest.raises((ArgumentError, ArgumentTypeError)) as caught:
            build()
        assert caught.value.argument == argument and argument in str(caught.value)
    with pytest.raises(UnknownNameError, match="Did you mean 'shapes_vgg'"):
        load_pretrained("shapes_vg")
