"""Metrics on inputs of token ids (B, L), against a bag-of-embeddings linear model whose
logit is f(ids) = Σₜ w[idₜ] (masked positions left out), so that replacing token t by the
fill token changes the logit by exactly w[idₜ] − w[fill]."""

from __future__ import annotations

import dataclasses
import types

import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from pellucid import Explanation, benchmark
from pellucid.errors import ArgumentError, PellucidError
from pellucid.method import Method
from pellucid.metrics import evaluate
from pellucid.perturb import token_fill

V, PAD, MASK = 12, 0, 1


class Bag(nn.Module):
    """logit_c = Σₜ w[idₜ, c] · attention_maskₜ; a config with pad and mask tokens."""

    def __init__(self, classes: int = 1, use_mask: bool = True) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, classes)
        torch.manual_seed(0)
        with torch.no_grad():
            self.emb.weight.copy_(torch.randn(V, classes).double())
        self.emb.double()
        self.use_mask = use_mask
        self.config = types.SimpleNamespace(pad_token_id=PAD, mask_token_id=MASK)

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        values = self.emb(ids)
        if attention_mask is not None and self.use_mask:
            values = values * attention_mask.unsqueeze(-1)
        return values.sum(1)


def weight(model: Bag, ids: torch.Tensor, c: int = 0) -> torch.Tensor:
    return model.emb.weight.detach()[ids, c]


def drops(model: Bag, ids: torch.Tensor, fill: int) -> torch.Tensor:
    """w[idₜ] − w[fill] per token: the exact change of the logit when token t is removed."""
    return weight(model, ids) - weight(model, torch.tensor(fill))


IDS = torch.tensor([[5, 9, 7, 4, 3], [11, 6, 8, 2, 10], [3, 3, 9, 5, 7]])


def by_hand(model, ids, attribution, fill, insert=False):
    """The removal (or insertion) curve f(x̃ₖ), k = 0..L, one token per step, MoRF."""
    d = drops(model, ids, fill)
    order = attribution.argsort(dim=1, descending=True, stable=True)
    taken = d.gather(1, order).cumsum(1)
    full = weight(model, ids).sum(1, keepdim=True)
    if insert:
        start = full - d.sum(1, keepdim=True)
        return torch.cat([start, start + taken], 1)
    return torch.cat([full, full - taken], 1)


@pytest.mark.parametrize("fill", [PAD, "pad", "mask", 4])
def test_deletion_insertion_aopc_match_the_closed_form(fill):
    model = Bag().eval()
    fill_id = {"pad": PAD, "mask": MASK}.get(fill, fill)
    torch.manual_seed(1)
    attribution = torch.randn(IDS.shape)
    r = evaluate(model, IDS, None, attribution, ["faithfulness.pixel_flipping",
                 "faithfulness.deletion", "faithfulness.insertion"], fill=fill)
    removal = by_hand(model, IDS, attribution, fill_id)
    inserted = by_hand(model, IDS, attribution, fill_id, insert=True)
    fraction = torch.arange(6.0) / 5
    flipping = r["faithfulness.pixel_flipping"]
    torch.testing.assert_close(flipping.curves.double(), removal)
    torch.testing.assert_close(flipping.x_axis, fraction.double())
    torch.testing.assert_close(flipping.scores.double(), (removal[:, :1] - removal).mean(1))
    deletion, insertion = r["faithfulness.deletion"], r["faithfulness.insertion"]
    torch.testing.assert_close(deletion.curves.double(), removal)
    torch.testing.assert_close(insertion.curves.double(), inserted)
    torch.testing.assert_close(deletion.scores.double(),
                               torch.trapezoid(removal, fraction.double()))
    torch.testing.assert_close(insertion.scores.double(),
                               torch.trapezoid(inserted, fraction.double()))


def test_exact_drops_rank_best_and_the_model_and_ids_are_untouched():
    model = Bag().eval()
    ids = IDS.clone()
    exact = drops(model, IDS, PAD)
    best = evaluate(model, ids, None, exact, "faithfulness.pixel_flipping", fill="pad")
    worst = evaluate(model, ids, None, -exact, "faithfulness.pixel_flipping", fill="pad")
    assert (best["faithfulness.pixel_flipping"].scores
            > worst["faithfulness.pixel_flipping"].scores).all()
    assert torch.equal(ids, IDS)
    assert not model.training and all(p.requires_grad for p in model.parameters())


def test_padding_is_never_removed_nor_counted():
    model = Bag(use_mask=False).eval()  # the model sees the padding: any change would show
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    attribution = torch.randn(IDS.shape).masked_fill(mask == 0, 100.0)  # padding "relevant"
    r = evaluate(model, IDS, None, attribution, ["faithfulness.deletion",
                 "faithfulness.insertion"], fill=MASK, steps=3,
                 model_kwargs={"attention_mask": mask})
    d = drops(model, IDS, MASK).masked_fill(mask == 0, 0.0)
    order = attribution.masked_fill(mask == 0, -torch.inf).argsort(1, descending=True)
    cumulative = torch.cat([torch.zeros(3, 1), d.gather(1, order).cumsum(1)], 1)
    valid = mask.sum(1, keepdim=True)
    counts = torch.round(torch.arange(4.0) * valid / 3).long()  # tokens taken at step k
    full = weight(model, IDS).sum(1, keepdim=True)
    deletion = r["faithfulness.deletion"]
    torch.testing.assert_close(deletion.curves.double(), full - cumulative.gather(1, counts))
    start = full - d.sum(1, keepdim=True)
    torch.testing.assert_close(r["faithfulness.insertion"].curves.double(),
                               start + cumulative.gather(1, counts))
    fractions = counts / valid
    torch.testing.assert_close(deletion.x_axis.double(), fractions.double().mean(0))
    torch.testing.assert_close(deletion.scores.double(),
                               torch.trapezoid(deletion.curves.double(), fractions.double()))


def test_faithfulness_correlation_of_exact_drops_is_one_and_skips_padding():
    model = Bag(use_mask=False).eval()
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    exact = drops(model, IDS, PAD).masked_fill(mask == 0, 0.0)  # a chosen pad would break it
    r = evaluate(model, IDS, None, exact, "faithfulness.correlation", fill="pad",
                 subsets=20, subset_size=2, model_kwargs={"attention_mask": mask})
    torch.testing.assert_close(r["faithfulness.correlation"].scores.double(),
                               torch.ones(3, dtype=torch.double))
    with pytest.raises(ArgumentError, match="subset_size") as error:
        evaluate(model, IDS, None, exact, "faithfulness.correlation", fill="pad",
                 subset_size=4, model_kwargs={"attention_mask": mask})
    assert error.value.argument == "subset_size"


@pytest.mark.parametrize("fill", ["zero", "mean", "blur", "uniform", 0.5])
def test_float_fills_on_token_ids_name_fill(fill):
    model = Bag().eval()
    with pytest.raises(ArgumentError, match="fill") as error:
        evaluate(model, IDS, None, torch.randn(IDS.shape), "faithfulness.deletion", fill=fill)
    assert error.value.argument == "fill" and "'pad'" in str(error.value)


def test_a_token_role_without_config_and_on_floats_name_fill():
    model = nn.Sequential(nn.Embedding(V, 1), nn.Flatten()).eval()
    with pytest.raises(ArgumentError, match=r"config\.pad_token_id") as error:
        evaluate(model, IDS, None, torch.randn(IDS.shape), "faithfulness.deletion", fill="pad")
    assert error.value.argument == "fill"
    linear = nn.Linear(5, 1).eval()
    with pytest.raises(ArgumentError, match="names a token") as error:
        evaluate(linear, torch.randn(3, 5), None, torch.randn(3, 5), "faithfulness.deletion",
                 fill="pad")
    assert error.value.argument == "fill"


def test_token_fill():
    model = Bag()
    ids = torch.tensor([[5, 7]])
    assert token_fill("mask", ids, model).tolist() == [[MASK, MASK]]
    assert token_fill(torch.tensor([2, 3]), ids, model).tolist() == [[2, 3]]
    with pytest.raises(ArgumentError, match="baseline"):
        token_fill("zero", ids, model, "baseline")


def test_completeness_with_a_token_baseline():
    model = Bag().eval()
    exact = drops(model, IDS, MASK)  # Σₜ (w[idₜ] − w[mask]) = f(x) − f(mask…mask)
    r = evaluate(model, IDS, None, exact, "axiomatic.completeness", baseline="mask")
    torch.testing.assert_close(r["axiomatic.completeness"].scores.double(),
                               torch.zeros(3, dtype=torch.double))
    with pytest.raises(ArgumentError) as error:
        evaluate(model, IDS, None, exact, "axiomatic.completeness")  # baseline "zero"
    assert error.value.argument == "baseline"


def test_localisation_on_token_masks_by_hand():
    model = Bag().eval()
    attribution = torch.tensor([[0.1, 3.0, -1.0, 0.5, 0.2],
                                [2.0, 0.0, 1.0, 0.3, 9.0],
                                [0.0, 0.0, 1.0, 2.0, 4.0]])
    masks = torch.tensor([[0, 1, 0, 0, 0], [1, 0, 1, 0, 0], [0, 0, 1, 1, 1]])
    pad = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])  # 9.0 is padding
    r = evaluate(model, IDS, None, attribution, ["localisation.pointing_game",
                 "localisation.relevance_mass", "localisation.relevance_rank"], masks,
                 model_kwargs={"attention_mask": pad})
    assert r["localisation.pointing_game"].scores.tolist() == [1.0, 1.0, 1.0]
    torch.testing.assert_close(r["localisation.relevance_mass"].scores.float(),
                               torch.tensor([3.0 / 3.8, 3.0 / 3.3, 1.0]))
    # sample 0: K = 1, top 1 = {1}; sample 1: K = 2, top 2 = {0, 2}; sample 2: all 3 in
    assert r["localisation.relevance_rank"].scores.tolist() == [1.0, 1.0, 1.0]
    missed = evaluate(model, IDS, None, attribution, "localisation.pointing_game", masks)
    assert missed["localisation.pointing_game"].scores.tolist() == [1.0, 0.0, 1.0]
    near = evaluate(model, IDS, None, attribution, "localisation.pointing_game",
                    torch.tensor([[1, 0, 0, 0, 0]] * 3), tolerance=1)
    assert near["localisation.pointing_game"].scores.tolist() == [1.0, 0.0, 0.0]


def test_sparseness_leaves_the_padding_out():
    model = Bag().eval()
    attribution = torch.tensor([[0.0, 0.0, 5.0, 0.0, 0.0]] * 3)
    pad = torch.tensor([[1, 1, 1, 0, 0]] * 3)
    r = evaluate(model, IDS, None, attribution, ["complexity.sparseness",
                 "complexity.entropy"], model_kwargs={"attention_mask": pad})
    # one-hot over n = 3 valid tokens: Gini (n − 1)/n
    torch.testing.assert_close(r["complexity.sparseness"].scores.float(), torch.full((3,), 2 / 3))
    torch.testing.assert_close(r["complexity.entropy"].scores.float(), torch.zeros(3))


@pytest.mark.parametrize("metric", ["faithfulness.infidelity", "robustness.max_sensitivity",
                                    "robustness.avg_sensitivity", "robustness.continuity",
                                    "faithfulness.roar"])
def test_metrics_that_cannot_apply_to_token_ids_say_so(metric):
    model = Bag().eval()
    with pytest.raises(ArgumentError, match=metric.replace(".", r"\.")) as error:
        evaluate(model, IDS, None, torch.randn(IDS.shape), metric, method="gradient",
                 **({"train_fn": lambda x, y: model} if metric.endswith("roar") else {}))
    assert error.value.argument == "metrics" and "token ids" in str(error.value)


@dataclasses.dataclass(frozen=True, eq=False)
class ByWeights(Method):
    """A stand-in for explain on token ids (until it lands): w[idₜ, target] per token."""

    name = "by_weights"

    def __call__(self, model, inputs, target=None, *, output=None, model_kwargs=None):
        classes = torch.as_tensor(0 if target is None else target).expand(len(inputs))
        values = model.emb.weight.detach()[inputs, classes.unsqueeze(1)]
        return Explanation(values, model(inputs).detach(), classes, self.name)


def test_randomisation_compares_token_maps_by_spearman():
    model = Bag(classes=3).eval()
    target = torch.tensor([0, 1, 2])
    own = model.emb.weight.detach()[IDS, target.unsqueeze(1)]
    r = evaluate(model, IDS, target, own, ["randomisation.random_logit",
                 "randomisation.model_parameter"], method=ByWeights(), similarity="spearman")
    other = r["randomisation.random_logit"].extras["random_class"]
    theirs = model.emb.weight.detach()[IDS, other.unsqueeze(1)]
    expected = [spearmanr(a, b).statistic for a, b in zip(own, theirs, strict=True)]
    torch.testing.assert_close(r["randomisation.random_logit"].scores.double(),
                               torch.tensor(expected, dtype=torch.double))
    curve = r["randomisation.model_parameter"].curves
    torch.testing.assert_close(curve[:, 0], torch.ones(3, dtype=curve.dtype))
    with pytest.raises(ArgumentError) as error:  # SSIM compares 2-D maps
        evaluate(model, IDS, target, own, "randomisation.random_logit", method=ByWeights())
    assert error.value.argument == "similarity"


def test_benchmark_on_token_ids():
    model = Bag().eval()
    table = benchmark(model, IDS, [ByWeights()], ["faithfulness.deletion",
                      "complexity.sparseness"], n=None, progress=False, fill=PAD)
    exact = weight(model, IDS)
    removal = by_hand(model, IDS, exact, PAD)
    fraction = torch.arange(6.0).double() / 5
    torch.testing.assert_close(table.scores[("by_weights", "faithfulness.deletion")].double(),
                               torch.trapezoid(removal, fraction))


def test_attribution_per_dimension_is_summed_per_token():
    model = Bag().eval()
    per_dimension = torch.randn(*IDS.shape, 4)
    r = evaluate(model, IDS, None, per_dimension, "faithfulness.deletion", fill=PAD)
    s = evaluate(model, IDS, None, per_dimension.sum(2), "faithfulness.deletion", fill=PAD)
    torch.testing.assert_close(r["faithfulness.deletion"].scores,
                               s["faithfulness.deletion"].scores)


@pytest.mark.parametrize("inputs, argument", [
    (IDS.unsqueeze(-1), "inputs"),  # integer inputs that are not (B, L)
    (-IDS, "inputs"),
    (IDS[:0], "inputs"),
])
def test_bad_token_inputs_name_inputs(inputs, argument):
    with pytest.raises(PellucidError) as error:
        evaluate(Bag().eval(), inputs, None, torch.zeros(inputs.shape), "complexity.sparseness")
    assert error.value.argument == argument


def test_attributions_of_another_shape_name_attributions():
    with pytest.raises(ArgumentError, match="one value per token") as error:
        evaluate(Bag().eval(), IDS, None, torch.zeros(3, 6), "complexity.sparseness")
    assert error.value.argument == "attributions"


def test_a_sample_of_only_padding_names_model_kwargs():
    mask = torch.ones(IDS.shape, dtype=torch.long)
    mask[1] = 0
    with pytest.raises(ArgumentError, match=r"samples \[1\]") as error:
        evaluate(Bag().eval(), IDS, None, torch.randn(IDS.shape), "faithfulness.deletion",
                 fill=PAD, model_kwargs={"attention_mask": mask})
    assert error.value.argument == "model_kwargs"


def test_lerf_never_takes_the_padding_first():
    model = Bag(use_mask=False).eval()
    mask = torch.tensor([[1, 1, 1, 1, 0]] * 3)
    attribution = torch.randn(IDS.shape).masked_fill(mask == 0, -100.0)  # least relevant
    r = evaluate(model, IDS, None, attribution, "faithfulness.pixel_flipping", order="lerf",
                 fill=MASK, model_kwargs={"attention_mask": mask})
    d = drops(model, IDS, MASK)[:, :4]
    order = attribution[:, :4].argsort(dim=1)
    full = weight(model, IDS).sum(1, keepdim=True)
    expected = torch.cat([full, full - d.gather(1, order).cumsum(1)], 1)
    torch.testing.assert_close(r["faithfulness.pixel_flipping"].curves.double(), expected)


def test_a_registered_method_explains_the_ids_end_to_end():
    # explain on token ids (issue 12): gradient × input at the embedding output of the bag,
    # summed over the embedding dims, is w[idₜ, c] per token
    model = Bag(classes=3).eval()
    target = torch.tensor([0, 1, 2])
    exact = model.emb.weight.detach()[IDS, target.unsqueeze(1)]
    metrics = ["faithfulness.deletion", "complexity.sparseness"]
    by_method = evaluate(model, IDS, target, "gradient_x_input", metrics, fill="pad")
    given = evaluate(model, IDS, target, exact, metrics, fill="pad")
    for name in metrics:
        torch.testing.assert_close(by_method[name].scores, given[name].scores)
