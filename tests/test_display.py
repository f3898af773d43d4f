"""Results that show themselves: Explanation.plot, the notebook display, a shared colour
scale, and an overlay whose opacity follows |R|, against hand-computed values."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn

import pellucid
from pellucid.errors import ArgumentError, ArgumentTypeError, UnknownNameError
from pellucid.viz import (
    COLORMAPS,
    compare,
    heatmap,
    normalise,
    opacity,
    overlay,
    plot,
    relevance_scale,
    to_rgb,
)
from pellucid.viz.heatmap import colorize
from tests.helpers.methods import methods_without
from tests.helpers.models import reference_models

matplotlib.use("Agg")
BWR = COLORMAPS["bwr"]


def colourbars(figure) -> list[float]:
    """low, high, low, high, … of every colour bar of a figure, top to bottom."""
    bars = [ax for ax in figure.axes if ax.get_label() == "<colorbar>"]
    return [float(v) for ax in bars for v in sorted(ax.get_ylim())]


def pictures(figure) -> list[np.ndarray]:
    """The arrays drawn with imshow, in the order of the figure's axes (row by row)."""
    return [np.asarray(ax.images[0].get_array()) for ax in figure.axes if ax.images and
            ax.get_label() != "<colorbar>"]


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 3)).eval()


# ---- the shared colour scale -------------------------------------------------------------


def test_shared_scale_divides_by_the_batch_max():
    maps = torch.tensor([[[1.0, -2.0], [0.5, 0.0]], [[4.0, 0.0], [-3.0, 1.0]]])
    shared = normalise(maps, scale="shared")
    assert torch.allclose(shared, maps / maps.abs().max())  # max |R| over the batch = 4
    assert relevance_scale(maps, scale="shared").tolist() == [4.0, 4.0]
    # per sample (the default): each map by its own max |R|
    own = maps / maps.abs().flatten(1).amax(1).view(-1, 1, 1)
    assert torch.allclose(normalise(maps), own)
    assert relevance_scale(maps).tolist() == [2.0, 4.0]
    # a number: one scale given from outside (across methods)
    assert torch.allclose(normalise(maps, scale=8.0), maps / 8.0)
    # the heatmap colours are those of R / max|R| of the batch
    expected = colorize(maps / 4.0, BWR)
    assert np.array_equal(heatmap(maps, scale="shared"), expected)


def test_shared_scale_with_a_quantile_and_positive_maps():
    maps = torch.arange(1.0, 9.0).view(2, 2, 2) * torch.tensor([1.0, -1.0]).view(1, 1, 2)
    s = np.quantile(np.abs(maps.numpy()), 0.5)  # over all 8 values of the batch
    assert torch.allclose(relevance_scale(maps, clip_quantile=0.5, scale="shared"),
                          torch.full((2,), s, dtype=torch.float64))
    positive = relevance_scale(maps, signed=False, scale="shared")
    assert positive.tolist() == [7.0, 7.0]  # max of max(R, 0): the negatives do not count


# ---- the overlay whose opacity follows |R| ----------------------------------------------


def test_opacity_is_alpha_max_times_relative_relevance():
    r = torch.tensor([[[[4.0, -2.0], [0.0, 1.0]]]])
    assert np.allclose(opacity(r, 0.6), 0.6 * np.abs(r[:, 0].numpy()) / 4.0)
    # a positive map (CAM) follows max(R, 0)
    assert np.allclose(opacity(r, 1.0, signed=False), np.clip(r[:, 0].numpy(), 0, None) / 4.0)
    # shared: one max |R| for the batch
    batch = torch.stack([r[0], r[0] / 4])
    assert np.allclose(opacity(batch, 1.0, scale="shared")[1], np.abs(r[0, 0].numpy()) / 16)


def test_relevance_opacity_overlay_leaves_irrelevant_pixels_unchanged():
    r = torch.tensor([[[[2.0, 0.0], [-1.0, 0.0]]]])
    image = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    image[..., :] = [100, 150, 50]
    heat = heatmap(r)
    blended = overlay(image, heat, alpha=opacity(r, 0.5))
    # α = 0.5·|R|/2: 0.5 at R = 2, 0.25 at R = -1, 0 where R = 0
    weight = np.array([[0.5, 0.0], [0.25, 0.0]])[None, ..., None]
    expected = np.round((1 - weight) * image + weight * heat.astype(float)).astype(np.uint8)
    assert np.array_equal(blended, expected)
    assert blended[0, 0, 1].tolist() == blended[0, 1, 1].tolist() == [100, 150, 50]
    # a constant alpha still washes the zero pixels with white
    assert overlay(image, heat, alpha=0.5)[0, 0, 1].tolist() != [100, 150, 50]


def test_per_pixel_alpha_errors_name_alpha():
    heat = heatmap(torch.ones(1, 2, 2))
    image = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    with pytest.raises(ArgumentError, match="alpha"):
        overlay(image, heat, alpha=np.full((1, 2, 2), 1.5))
    with pytest.raises(ArgumentError, match="alpha"):
        overlay(image, heat, alpha=np.full((1, 3, 3), 0.5))
    with pytest.raises(ArgumentError, match="alpha_max"):
        opacity(torch.ones(1, 2, 2), alpha_max=2.0)


# ---- Explanation.plot -------------------------------------------------------------------


@pytest.fixture(scope="module")
def explained():
    model = small_cnn()
    x = torch.rand(3, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    return pellucid.explain(model, x, target=1, method="gradient_x_input"), x


def test_explanation_keeps_its_inputs_and_plots_without_arguments(explained):
    e, x = explained
    assert torch.equal(e.inputs, x)
    figure = e.plot()
    drawn = pictures(figure)  # rows: input, heatmap, overlay
    maps = e.attribution.double().sum(1)
    heat = colorize(maps / maps.abs().flatten(1).amax(1).view(-1, 1, 1), BWR)
    weight = opacity(e, 0.8)
    for i in range(3):
        assert np.array_equal(drawn[3 * i], to_rgb(x)[i])
        assert np.array_equal(drawn[3 * i + 1], heat[i])
        assert np.array_equal(drawn[3 * i + 2], overlay(to_rgb(x), heat, weight)[i])
    # one colour bar per heatmap, in relevance units: ±max |R| of each sample
    tops = maps.abs().flatten(1).amax(1).tolist()
    assert colourbars(figure) == pytest.approx([v for t in tops for v in (-t, t)], rel=1e-6)


def test_plot_shared_scale_has_one_range(explained):
    e, _ = explained
    figure = e.plot(scale="shared")
    top = e.attribution.double().sum(1).abs().max().item()
    assert colourbars(figure) == pytest.approx([-top, top] * 3, rel=1e-6)
    maps = e.attribution.double().sum(1)
    assert np.array_equal(pictures(figure)[1], colorize(maps / top, BWR)[0])


def test_plot_inputs_override_and_are_untouched(explained):
    e, _ = explained
    other = torch.rand(3, 3, 6, 6)
    kept = other.clone()
    figure = e.plot(other, max_samples=2)
    assert torch.equal(other, kept)
    drawn = pictures(figure)
    assert len(drawn) == 6 and np.array_equal(drawn[0], to_rgb(other)[0])
    assert "first 2 of 3 samples" in figure._suptitle.get_text()
    with pytest.raises(ArgumentError, match="inputs"):
        e.plot(torch.rand(3, 3, 5, 5))


def test_plot_without_inputs_draws_heatmaps_only():
    figure = plot(torch.randn(2, 1, 4, 4))
    assert len(pictures(figure)) == 2 and len(colourbars(figure)) == 4
    # inputs with other than 1 or 3 channels: their channel mean in gray
    x = torch.rand(1, 4, 4, 4)
    drawn = pictures(plot(torch.randn(1, 4, 4, 4), x))
    assert np.array_equal(drawn[0], to_rgb(x.double().mean(1, keepdim=True))[0])


def test_tokens_are_coloured_by_their_summed_relevance():
    r = torch.zeros(2, 3, 4)
    r[0, 0] = torch.tensor([1.0, 1.0, 0.0, 0.0])  # sum 2: the strongest, red
    r[0, 2, 0] = -1.0  # sum -1: half-way to blue
    r[1, 1, 3] = 0.5
    tokens = [["the", "cat", "sat"], ["a", "dog", "ran"]]
    figure = plot(r, tokens=tokens)
    texts = [t for ax in figure.axes for t in ax.texts]
    assert [t.get_text() for t in texts] == tokens[0] + tokens[1]
    maps = r.sum(2).double()
    expected = colorize(maps[:, None] / maps.abs().amax(1).view(-1, 1, 1), BWR)[:, 0]
    faces = np.array([t.get_bbox_patch().get_facecolor()[:3] for t in texts]) * 255
    assert np.allclose(faces, expected.reshape(-1, 3), atol=0.5)
    assert faces[0].round().tolist() == [255, 0, 0]
    with pytest.raises(ArgumentError, match="tokens"):
        plot(r, tokens=[["the", "cat"], ["a", "dog", "ran"]])
    with pytest.raises(ArgumentTypeError, match="tokens"):
        plot(r, tokens=[["the", "cat", 3], ["a", "dog", "ran"]])


def test_sequences_without_tokens_are_heat_strips():
    r = torch.tensor([[1.0, -1.0, 0.0], [0.0, 3.0, 0.0]])
    figure = plot(r, scale="shared")
    strip = pictures(figure)[0]
    assert np.array_equal(strip, colorize(r.double() / 3.0, BWR))
    assert colourbars(figure) == [-3.0, 3.0]


def test_long_token_lists_wrap():
    r = torch.randn(1, 40)
    tokens = [[f"w{i:04d}" for i in range(40)]]
    texts = plot(r, tokens=tokens).axes[0].texts
    lines = {t.get_position()[1] for t in texts}
    assert len(lines) == 4  # 40 words of 5 characters and a space, 64 characters a line


# ---- comparing methods on one scale -----------------------------------------------------


def test_compare_shares_one_scale_across_methods():
    x = torch.rand(2, 3, 4, 4)
    a = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    b = 3 * torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    figure = compare({"a": a, "b": b}, x)
    top = max(a.double().sum(1).abs().max().item(), b.double().sum(1).abs().max().item())
    assert colourbars(figure) == pytest.approx([-top, top], rel=1e-6)
    drawn = pictures(figure)  # rows: input, a, b
    assert np.array_equal(drawn[1], colorize(a.double().sum(1) / top, BWR)[0])
    assert np.array_equal(drawn[5], colorize(b.double().sum(1) / top, BWR)[1])
    per_map = compare({"a": a, "b": b}, scale="sample")
    assert colourbars(per_map) == [-1.0, 1.0]
    with pytest.raises(ArgumentError, match="explanations"):
        compare({"a": a, "b": torch.randn(2, 3, 5, 5)})
    with pytest.raises(ArgumentTypeError, match="explanations"):
        compare([a, b])


# ---- the notebook display ---------------------------------------------------------------


def test_notebook_png_shows_the_first_samples(explained, monkeypatch):
    e, _ = explained
    png = e._repr_png_()
    assert png.startswith(b"\x89PNG")
    big = pellucid.Explanation(torch.randn(10, 6), torch.zeros(10, 2), torch.zeros(10).long(),
                               "gradient")
    shown = []
    import pellucid.viz.display as display

    real = display.plot
    monkeypatch.setattr(display, "plot", lambda *a, **k: shown.append(k) or real(*a, **k))
    assert big._repr_png_().startswith(b"\x89PNG")
    assert shown[0]["max_samples"] == display.NOTEBOOK_SAMPLES
    volume = pellucid.Explanation(torch.randn(1, 1, 2, 2, 2), torch.zeros(1, 2),
                                  torch.zeros(1).long(), "gradient")
    assert volume._repr_png_() is None


def test_import_pellucid_does_not_import_matplotlib():
    code = ("import sys, torch, pellucid\n"
            "e = pellucid.explain(torch.nn.Linear(3, 2), torch.ones(1, 3), 0, method='gradient')\n"
            "repr(e)\n"
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- every method keeps the inputs it explained -----------------------------------------


@pytest.mark.parametrize("method", methods_without("attention"))
def test_every_method_keeps_the_inputs_it_explained(method):
    model, x = reference_models()["vgg"]
    references = torch.randn(4, *x.shape[1:], generator=torch.Generator().manual_seed(2))
    chosen = pellucid.get_method(method).cheap(x, evaluations=2, references=references)
    e = chosen(model, x, target=1)
    assert torch.equal(e.inputs, x) and e.inputs.device == x.device
    assert not e.inputs.requires_grad and e.inputs.data_ptr() != x.data_ptr()


def test_kept_inputs_are_the_private_copy_not_a_further_one(monkeypatch):
    import pellucid.method as method

    copies = []
    real = method.private_copy
    monkeypatch.setattr(method, "private_copy", lambda i, m: copies.append(real(i, m)) or
                        copies[-1])
    e = pellucid.explain(small_cnn(), torch.rand(1, 3, 6, 6), 0, method="gradient")
    assert len(copies) == 1 and e.inputs.data_ptr() == copies[0].data_ptr()


# ---- errors and examples ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "argument"),
    [
        ({"scale": "global"}, UnknownNameError, "scale"),
        ({"scale": -1.0}, ArgumentError, "scale"),
        ({"scale": True}, ArgumentTypeError, "scale"),
        ({"max_samples": 0}, ArgumentError, "max_samples"),
        ({"alpha": 1.5}, ArgumentError, "alpha"),
        ({"reduce": "mean"}, UnknownNameError, "reduce"),
        ({"tokens": [["a"]]}, ArgumentError, "tokens"),
    ],
)
def test_plot_errors_name_the_argument(explained, kwargs, error, argument):
    e, _ = explained
    with pytest.raises(error, match=argument) as raised:
        e.plot(**kwargs)
    assert raised.value.argument == argument


def test_plot_refuses_volumes():
    with pytest.raises(ArgumentError, match="explanation"):
        plot(torch.randn(1, 1, 2, 2, 2))


@pytest.mark.parametrize(
    "module", ["pellucid.viz", "pellucid.viz.heatmap", "pellucid.viz.images",
               "pellucid.viz.display", "pellucid.explanation"],
)
def test_docstring_examples_run(module, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
