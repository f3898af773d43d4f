"""Heatmaps, colour maps, reductions, overlays and PNG output against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import pellucid
from pellucid.errors import ArgumentError
from pellucid.viz import (
    COLORMAPS,
    grid,
    heatmap,
    overlay,
    png_bytes,
    read_image,
    reduce_channels,
    save_png,
    to_rgb,
)

RED, WHITE, BLUE, BLACK = [255, 0, 0], [255, 255, 255], [0, 0, 255], [0, 0, 0]


def test_bwr_positive_red_negative_blue_zero_white():
    rgb = heatmap(torch.tensor([[1.0, 0.0, -1.0]]), "bwr")
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 3, 3)
    assert rgb[0].tolist() == [RED, WHITE, BLUE]


def test_normalisation_is_symmetric_per_image():
    # max|R| = 2: +2 -> +1 (red end), -1 -> -0.5 (halfway between blue and white), 0 -> centre
    rgb = heatmap(torch.tensor([[[2.0, -1.0, 0.0]]]), "bwr")[0, 0]
    assert rgb[0].tolist() == RED
    assert rgb[1].tolist() == [128, 128, 255]
    assert rgb[2].tolist() == WHITE
    # each image is scaled by its own maximum
    batch = torch.stack([torch.tensor([[1.0, 0.0]]), torch.tensor([[100.0, 0.0]])])
    out = heatmap(batch, "bwr")
    assert out[0, 0, 0].tolist() == out[1, 0, 0].tolist() == RED


@pytest.mark.parametrize(
    ("cmap", "low", "centre", "high"),
    [
        ("coldnhot", [0, 255, 255], BLACK, [255, 255, 0]),
        ("seismic", [0, 0, 77], WHITE, [128, 0, 0]),
        ("gray", BLACK, [128, 128, 128], WHITE),
    ],
)
def test_signed_colour_maps_ends_and_centre(cmap, low, centre, high):
    rgb = heatmap(torch.tensor([[-1.0, 0.0, 1.0]]), cmap)[0]
    assert np.abs(rgb.astype(int) - np.array([low, centre, high])).max() <= 1


def test_all_zero_map_is_the_centre_colour():
    rgb = heatmap(torch.zeros(2, 3, 4, 5), "coldnhot")
    assert rgb.shape == (2, 4, 5, 3) and (rgb == 0).all()


def test_positive_maps_clip_negative_values_to_the_bottom():
    rgb = heatmap(torch.tensor([[-5.0, 0.0, 1.0]]), "hot")[0]
    assert rgb.tolist() == [BLACK, BLACK, WHITE]
    assert not COLORMAPS["inferno"].signed and COLORMAPS["bwr"].signed
    # a signed map forced to positive: 0 at the bottom (blue), max at the top (red)
    assert heatmap(torch.tensor([[0.0, 1.0]]), "bwr", signed=False)[0].tolist() == [BLUE, RED]


def test_clip_quantile_saturates_the_top_values():
    r = torch.tensor([[1.0, 1.0, 1.0, 10.0]])
    assert heatmap(r, "bwr")[0, 0].tolist() != RED
    assert heatmap(r, "bwr", clip_quantile=0.5)[0, 0].tolist() == RED


def test_channel_reductions_by_hand():
    r = torch.tensor([[[[1.0, -2.0]], [[3.0, 2.0]]]])  # (1, 2 channels, 1, 2)
    assert reduce_channels(r, "sum").tolist() == [[[4.0, 0.0]]]
    assert reduce_channels(r, "abs_sum").tolist() == [[[4.0, 4.0]]]
    assert reduce_channels(r, "max_abs").tolist() == [[[3.0, 2.0]]]
    l2 = reduce_channels(r, "l2")[0, 0]
    assert l2.tolist() == pytest.approx([math.sqrt(10), math.sqrt(8)])
    # sum keeps the sign: the first pixel red, the second (0) white
    assert heatmap(r, "bwr", "sum")[0, 0].tolist() == [RED, WHITE]


def test_heatmap_accepts_an_explanation_and_keeps_its_size():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 2, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(2 * 6 * 7, 3)
    )
    e = pellucid.explain(model.eval(), torch.rand(2, 3, 6, 7), method="gradient_x_input")
    assert heatmap(e).shape == (2, 6, 7, 3)


def test_bad_inputs_get_clear_errors():
    with pytest.raises(KeyError, match="Did you mean 'abs_sum'"):
        reduce_channels(torch.ones(1, 2, 3, 3), "abssum")
    with pytest.raises(KeyError, match="coldnhot"):
        heatmap(torch.ones(3, 3), "coldnhott")
    with pytest.raises(ValueError, match="unsqueeze"):
        heatmap(torch.ones(4))


def test_to_rgb_and_overlay():
    gray = torch.tensor([[[[0.0, 1.0]]]])  # (1, 1, 1, 2)
    assert to_rgb(gray)[0, 0].tolist() == [BLACK, WHITE]
    # outside [0, 1]: min-max scaled per image
    assert to_rgb(gray * 10 - 5)[0, 0].tolist() == [BLACK, WHITE]
    heat = heatmap(torch.tensor([[[1.0, -1.0]]]), "bwr")  # red, blue
    assert overlay(gray, heat, 0.0).tolist() == to_rgb(gray).tolist()
    assert overlay(gray, heat, 1.0).tolist() == heat.tolist()
    # black + red at alpha 0.5 = (128, 0, 0); white + blue = (128, 128, 255)
    assert overlay(gray, heat, 0.5)[0, 0].tolist() == [[128, 0, 0], [128, 128, 255]]
    with pytest.raises(ValueError, match="differ in size"):
        overlay(torch.zeros(1, 3, 4, 4), heat)


def test_grid_and_png_round_trip(tmp_path):
    from PIL import Image

    x = torch.rand(2, 3, 8, 8)
    heat = heatmap(torch.randn(2, 3, 8, 8))
    figure = grid({"input": to_rgb(x), "gradient": heat}, row_titles=["a", "b"])
    assert len(figure.axes) == 4 and figure.axes[1].get_title() == "gradient"
    path = save_png(figure, tmp_path / "grid.png")
    assert Image.open(path).format == "PNG"
    path = save_png(heat[0], tmp_path / "heat.png")
    assert np.asarray(Image.open(path)).tolist() == heat[0].tolist()
    back = read_image(path)
    assert back.shape == (3, 8, 8) and torch.allclose(
        back * 255, torch.as_tensor(heat[0]).permute(2, 0, 1).float(), atol=1e-3
    )
    assert read_image(path, size=(4, 6), channels=1).shape == (1, 4, 6)
    with pytest.raises(ValueError, match="index a batch"):
        png_bytes(heat)
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read"):
        read_image(tmp_path / "junk.png")
    with pytest.raises(ArgumentError, match="no image file at path") as missing:
        read_image(tmp_path / "missing.png")
    assert missing.value.argument == "path"
