"""pellucid.data: determinism, masks that match the drawn pixels, balance, Clever Hans."""

from __future__ import annotations

import math

import pytest
import torch

from pellucid.data import ImageSet, add_watermark, clever_hans, digits, shapes, watermark
from pellucid.data.geometry import POLYGONS, polygon_area, rasterise
from pellucid.errors import ArgumentError, ArgumentTypeError, UnknownNameError


@pytest.fixture(scope="module")
def noisy() -> ImageSet:
    return shapes(60, size=48, seed=3, background="noise")


@pytest.mark.parametrize("background", ["texture", "noise"])
def test_same_seed_same_data_other_seed_other_data(background: str) -> None:
    a, b = shapes(12, size=32, seed=5, background=background), shapes(12, size=32, seed=5,
                                                                       background=background)
    c = shapes(12, size=32, seed=6, background=background)
    for name in ("images", "labels", "masks", "distractor_masks"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.images, c.images)
    assert not torch.equal(a.masks, c.masks)


def test_structure_and_balance() -> None:
    data = shapes(53, size=32, classes=("circle", "star", "cross"), seed=1)
    assert data.images.shape == (53, 3, 32, 32) and data.images.dtype == torch.float32
    assert data.labels.dtype == torch.long and data.masks.dtype == torch.bool
    assert data.images.min() >= 0 and data.images.max() <= 1
    assert data.class_names == ("circle", "star", "cross")
    counts = data.labels.bincount(minlength=3)
    assert counts.max() - counts.min() <= 1
    assert shapes(10, classes=4, size=16).class_names == ("circle", "square", "triangle", "cross")


def test_mask_is_exactly_the_pixels_of_the_object_colour(noisy: ImageSet) -> None:
    """The object is flat: its colour (read from the image under the mask) occurs exactly on
    the mask, nowhere else (background noise and distractors have other colours)."""
    for image, mask in zip(noisy.images, noisy.masks):
        assert mask.sum() > 20
        colour = image[:, mask][:, 0]
        assert torch.equal(image[:, mask], colour.view(3, 1).expand(3, int(mask.sum())))
        same = (image == colour.view(3, 1, 1)).all(0)
        assert torch.equal(same, mask)


def test_outside_object_and_distractors_is_background_noise(noisy: ImageSet) -> None:
    """Noise background: base colour + N(0, 0.08²) per pixel, so outside the object and the
    distractors the per-image standard deviation is about 0.08 (a bit less where clipped)."""
    outside = ~(noisy.masks | noisy.distractor_masks)
    stds = torch.stack([img[:, keep].std(1) for img, keep in zip(noisy.images, outside)])
    assert stds.mean().item() == pytest.approx(0.08, abs=0.01)
    assert not (noisy.masks & noisy.distractor_masks).any()
    assert noisy.distractor_masks.flatten(1).any(1).float().mean() > 0.3


def test_distractors_stay_clear_of_the_object() -> None:
    data = shapes(80, size=64, seed=2, distractors=3, background="noise")
    # distractors keep their circumscribed discs (almost) clear of the object's, so with three
    # of them the object still shows a sizeable area; without them nothing is marked
    area = data.masks.flatten(1).sum(1).float()
    assert (area > 40).all()
    no_distractors = shapes(80, size=64, seed=2, distractors=0, background="noise")
    assert not no_distractors.distractor_masks.any()


@pytest.mark.parametrize("kind", ["square", "triangle", "star", "cross"])
def test_rasterised_area_matches_the_polygon_area(kind: str) -> None:
    radius = torch.tensor([30.0, 30.0])
    centres = torch.tensor([[40.0, 40.0], [41.3, 38.7]])
    masks = rasterise(kind, centres, radius, torch.tensor([0.0, 0.7]), 80)
    expected = polygon_area(POLYGONS[kind]) * 30.0**2
    assert masks.flatten(1).sum(1).float().tolist() == pytest.approx([expected] * 2, rel=0.03)


def test_rasterised_circle_and_orientation() -> None:
    mask = rasterise("circle", torch.tensor([[20.0, 20.0]]), torch.tensor([15.0]),
                     torch.tensor([0.0]), 40)[0]
    assert mask.sum().item() == pytest.approx(math.pi * 15**2, rel=0.02)
    # an unrotated triangle points up: apex at row 20 - 15, base at row 20 + 15 / 2;
    # a quarter turn (counter-clockwise) points it left: apex at column 5
    tri = rasterise("triangle", torch.tensor([[20.0, 20.0]] * 2), torch.tensor([15.0] * 2),
                    torch.tensor([0.0, math.pi / 2]), 40)
    rows = tri[0].any(1).nonzero().flatten()
    assert 5 <= rows.min().item() <= 6 and 26 <= rows.max().item() <= 27
    cols = tri[1].any(0).nonzero().flatten()
    assert 5 <= cols.min().item() <= 6 and 26 <= cols.max().item() <= 27


def test_clever_hans_places_the_watermark_as_documented() -> None:
    ch = clever_hans(40, n_test=20, size=64, shortcut_class=2, seed=0)
    is_shortcut = ch.train.labels == 2
    assert torch.equal(ch.train.has_watermark, is_shortcut)
    assert not ch.test.has_watermark.any()
    assert torch.equal(ch.test_watermarked.has_watermark, ch.test.labels == 2)
    assert torch.equal(ch.test_moved.has_watermark, ch.test.labels != 2)
    # the three test sets are the same images, differing only inside the watermark's mask
    changed = (ch.test_moved.images != ch.test.images).any(1)
    assert not (changed & ~ch.test_moved.watermark_masks).any()
    assert changed.flatten(1).any(1).equal(ch.test_moved.has_watermark)
    _, stamp, _ = watermark(64)
    assert (ch.test_moved.watermark_masks.flatten(1).sum(1)[ch.test_moved.has_watermark]
            == stamp.sum()).all()
    assert not (ch.test_moved.masks & ch.test_moved.watermark_masks).any()
    none = clever_hans(40, n_test=4, watermark_prob_train=0.0, seed=0)
    assert not none.train.has_watermark.any()


def test_add_watermark_leaves_its_input_alone() -> None:
    data = shapes(4, size=32, seed=0)
    before = data.images.clone()
    out = add_watermark(data, torch.tensor([True, False, True, False]))
    assert torch.equal(data.images, before) and data.watermark_masks is None
    assert out.has_watermark.tolist() == [True, False, True, False]


def test_digits_and_dataset() -> None:
    pytest.importorskip("sklearn")
    d = digits()
    assert d.images.shape == (1797, 1, 8, 8) and d.masks is None
    assert d.images.min() == 0 and d.images.max() == 1 and set(d.labels.tolist()) == set(range(10))
    data = shapes(6, size=16, seed=0)
    x, y = data.dataset()[2]
    assert torch.equal(x, data.images[2]) and y == data.labels[2]
    assert len(data.dataset(with_masks=True)[0]) == 3 and len(data.dataset()) == 6
    with pytest.raises(ValueError, match="no masks"):
        d.dataset(with_masks=True)
    sub = data.subset(slice(1, 3))
    assert len(sub) == 2 and torch.equal(sub.masks, data.masks[1:3])


def test_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match=r"unknown shape 'circel'.*circle"):
        shapes(4, classes=("circel", "square"))
    with pytest.raises(ValueError, match="unknown background"):
        shapes(4, background="plaid")
    with pytest.raises(ValueError, match="shortcut_class"):
        clever_hans(4, shortcut_class=9)


@pytest.mark.parametrize(
    ("settings", "error", "argument"),
    [
        ({"n": -1}, ArgumentError, "n"),
        ({"n": 2.5}, ArgumentTypeError, "n"),
        ({"n": True}, ArgumentTypeError, "n"),
        ({"size": -1}, ArgumentError, "size"),
        ({"size": 4}, ArgumentError, "size"),
        ({"seed": "1"}, ArgumentTypeError, "seed"),
        ({"seed": 1.0}, ArgumentTypeError, "seed"),
        ({"seed": None}, ArgumentTypeError, "seed"),
        ({"distractors": -1}, ArgumentError, "distractors"),
        ({"background": "texure"}, UnknownNameError, "background"),
        ({"classes": 1}, ArgumentError, "classes"),
        ({"classes": "circle"}, ArgumentTypeError, "classes"),
        ({"classes": ("circle", "circle")}, ArgumentError, "classes"),
        ({"distractor_kinds": ("circle",)}, ArgumentError, "distractor_kinds"),
        ({"distractor_kinds": ("rin",)}, UnknownNameError, "distractor_kinds"),
        ({"object_radius": (0.3, 0.6)}, ArgumentError, "object_radius"),
        ({"object_radius": (0.3, 0.2)}, ArgumentError, "object_radius"),
        ({"distractor_radius": (0.0, 0.1)}, ArgumentError, "distractor_radius"),
        ({"distractor_radius": 0.1}, ArgumentError, "distractor_radius"),
    ],
)
def test_generator_settings_are_named(settings, error, argument) -> None:
    args = {"n": 4, **settings}
    with pytest.raises(error) as caught:
        shapes(**args)
    assert caught.value.argument == argument and argument in str(caught.value)


def test_zero_images_is_an_empty_set_and_clever_hans_checks_its_settings() -> None:
    empty = shapes(0, size=16)
    assert empty.images.shape == (0, 3, 16, 16) and len(empty) == 0
    for settings, argument in [
        ({"watermark_prob_train": float("nan")}, "watermark_prob_train"),
        ({"watermark_prob_train": 1.5}, "watermark_prob_train"),
        ({"n_test": -1}, "n_test"),
        ({"shortcut_class": -1}, "shortcut_class"),
        ({"size": 8}, "size"),
    ]:
        with pytest.raises(ArgumentError) as caught:
            clever_hans(4, **settings)
        assert caught.value.argument == argument and argument in str(caught.value)
    data = shapes(3, size=16)
    with pytest.raises(ArgumentError, match="where"):
        add_watermark(data, torch.ones(2, dtype=torch.bool))
    with pytest.raises(ArgumentError, match="where"):
        add_watermark(data, torch.ones(3))
    with pytest.raises(ArgumentError, match="labels"):
        ImageSet(data.images, data.labels[:2], None, data.class_names)
