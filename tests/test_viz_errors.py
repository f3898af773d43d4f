"""viz never draws a missing value as a colour, and names the argument of every mistake."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pellucid
from pellucid.errors import ArgumentError, ArgumentTypeError, UnknownNameError
from pellucid.viz import (
    Colormap,
    get_colormap,
    grid,
    heatmap,
    normalise,
    overlay,
    png_bytes,
    read_image,
    reduce_channels,
    save_png,
    to_rgb,
    upscale,
)

NAN, INF = float("nan"), float("inf")
RED, WHITE, BLUE = [255, 0, 0], [255, 255, 255], [0, 0, 255]


def named(error_class, argument: str, fn, *args, match: str | None = None, **kwargs):
    with pytest.raises(error_class, match=match) as caught:
        fn(*args, **kwargs)
    assert caught.value.argument == argument
    assert argument in str(caught.value)


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_nan_and_inf_relevance_are_refused_not_drawn(bad: float) -> None:
    r = torch.tensor([[[1.0, bad], [0.0, -1.0]]])
    named(ArgumentError, "relevance", heatmap, r, match="NaN")
    named(ArgumentError, "relevance", heatmap, r.numpy())
    named(ArgumentError, "relevance", reduce_channels, r[None])
    named(ArgumentError, "maps", normalise, r)
    # the documented way to draw it anyway: NaN as no relevance (the centre colour)
    drawn = heatmap(torch.nan_to_num(r, nan=0.0, posinf=0.0, neginf=0.0))
    assert drawn[0, 0, 1].tolist() == WHITE


def test_normalise_closed_forms() -> None:
    zeros = normalise(torch.zeros(2, 3, 3))
    assert torch.equal(zeros, torch.zeros(2, 3, 3))  # 0/0 would be NaN
    constant = normalise(torch.full((1, 2, 2), -3.0))
    assert torch.equal(constant, torch.full((1, 2, 2), -1.0))
    assert normalise(torch.tensor([[[5.0]]])).item() == 1.0  # a single pixel
    assert normalise(torch.tensor([[[-2.0, 1.0]]]), signed=False).tolist() == [[[0.0, 1.0]]]
    # a sparse map whose 0.9-quantile is 0: scaled by its maximum, not drawn at full colour
    sparse = torch.zeros(1, 10, 10)
    sparse[0, 0, 0], sparse[0, 0, 1] = 1e-3, 5e-4
    scaled = normalise(sparse, clip_quantile=0.9)
    assert scaled[0, 0, :2].tolist() == [1.0, 0.5]
    # a quantile below the maximum saturates the top: |R| = 1..100, 0.5-quantile = 50.5
    ramp = torch.arange(1.0, 101.0).view(1, 10, 10)
    torch.testing.assert_close(normalise(ramp, clip_quantile=0.5), (ramp / 50.5).clamp(max=1))


@pytest.mark.parametrize("quantile", [0.0, -0.5, 1.5, NAN])
def test_clip_quantile_outside_0_1_is_named(quantile: float) -> None:
    named(ArgumentError, "clip_quantile", heatmap, torch.ones(1, 2, 2), clip_quantile=quantile)


def test_integer_tensors_numpy_arrays_and_explanations_draw_alike() -> None:
    r = torch.tensor([[[2, 0, -2]]])
    expected = [[RED, WHITE, BLUE]]
    assert heatmap(r).tolist() == [expected]
    assert heatmap(r.numpy()).tolist() == [expected]
    assert heatmap(r.double()).tolist() == [expected]
    assert heatmap(r[0]).tolist() == expected  # one (H, W) map
    model = torch.nn.Linear(4, 2).eval()
    e = pellucid.explain(model, torch.rand(3, 4), method="gradient_x_input")
    named(ArgumentError, "relevance", heatmap, e, match="unsqueeze")
    assert heatmap(e.attribution.unsqueeze(1)).shape == (3, 1, 4, 3)


@pytest.mark.parametrize("shape", [(4,), (1, 1, 1, 2, 2), (0, 2, 2), (1, 3, 0, 2)])
def test_wrong_shapes_are_named(shape: tuple[int, ...]) -> None:
    named(ArgumentError, "relevance", heatmap, torch.ones(shape))


def test_unknown_names_and_wrong_types_are_named() -> None:
    # reduce is checked even when the maps have no channels to reduce
    named(UnknownNameError, "reduce", heatmap, torch.ones(1, 2, 2), reduce="abssum",
          match="Did you mean 'abs_sum'")
    named(ArgumentTypeError, "reduce", heatmap, torch.ones(1, 2, 2), reduce=None)
    named(UnknownNameError, "cmap", heatmap, torch.ones(2, 2), "coldnhott", match="coldnhot")
    named(ArgumentTypeError, "cmap", heatmap, torch.ones(2, 2), 3)
    named(ArgumentTypeError, "signed", heatmap, torch.ones(2, 2), signed="yes")
    named(ArgumentTypeError, "relevance", heatmap, "relevance")
    named(ArgumentTypeError, "relevance", heatmap, torch.ones(1, 2, 2, dtype=torch.complex64))
    named(ArgumentError, "table", Colormap, "mine", np.zeros((5, 3)), True)
    named(ArgumentTypeError, "signed", get_colormap, "bwr", signed=1)


def test_images_overlay_and_upscale_name_their_arguments() -> None:
    x = torch.rand(2, 3, 4, 4)
    bad = x.clone()
    bad[1, 0, 0, 0] = NAN
    named(ArgumentError, "images", to_rgb, bad)
    named(ArgumentError, "images", to_rgb, x[0], match="unsqueeze")
    named(ArgumentError, "value_range", to_rgb, x, value_range=(1.0, 0.0))
    named(ArgumentError, "value_range", to_rgb, x, value_range=(0.0, NAN))
    named(ArgumentTypeError, "value_range", to_rgb, x, value_range=1.0)
    assert to_rgb(x * 255, value_range=(0, 255)).tolist() == to_rgb(x).tolist()
    heat = heatmap(torch.randn(2, 4, 4))
    for alpha in (-0.1, 1.1, NAN):
        named(ArgumentError, "alpha", overlay, x, heat, alpha)
    named(ArgumentError, "heat", overlay, x, torch.rand(2, 4, 4, 3))
    named(ArgumentError, "heat", overlay, x, heatmap(torch.randn(3, 4, 4)))
    named(ArgumentError, "image", overlay, torch.rand(2, 3, 5, 5), heat)
    named(ArgumentError, "factor", upscale, heat, 0)
    named(ArgumentTypeError, "factor", upscale, heat, 2.0)
    named(ArgumentError, "rgb", upscale, heat.astype(np.float64), 2)
    assert upscale(heat, 2)[0, ::2, ::2].tolist() == heat[0].tolist()


def test_grid_and_files_name_their_arguments(tmp_path) -> None:
    pictures = heatmap(torch.randn(2, 4, 4))
    named(ArgumentError, "columns", grid, {})
    named(ArgumentTypeError, "columns", grid, [pictures])
    named(ArgumentError, "columns", grid, {"a": pictures, "b": pictures[:1]})
    named(ArgumentError, "columns", grid, {"a": pictures.astype(np.float64)})
    named(ArgumentError, "columns", grid, {"a": pictures[0]})
    named(ArgumentError, "row_titles", grid, {"a": pictures}, row_titles=["one"])
    named(ArgumentError, "cell_inches", grid, {"a": pictures}, cell_inches=0)
    named(ArgumentError, "picture", png_bytes, pictures)
    named(ArgumentError, "dpi", png_bytes, pictures[0], dpi=0)
    named(ArgumentError, "path", save_png, pictures[0], tmp_path)
    (tmp_path / "file").write_text("x")
    named(ArgumentError, "path", save_png, pictures[0], tmp_path / "file" / "x.png")
    path = save_png(pictures[0], tmp_path / "new" / "x.png")
    named(ArgumentError, "channels", read_image, path, channels=4)
    named(ArgumentError, "size", read_image, path, size=(0, 4))
    named(ArgumentError, "size", read_image, path, size=4)
    named(ArgumentError, "path", read_image, tmp_path / "missing.png")
    assert read_image(path, size=(2, 3)).shape == (3, 2, 3)
