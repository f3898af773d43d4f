"""Bad settings of pellucid.concepts: a pellucid error naming the argument, before any work
where possible; layers may be given as module objects."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier
from torch import nn

from pellucid.concepts import (
    CAVSet,
    directional_derivatives,
    layer_activations,
    tcav,
    tcav_scores,
    train_cav,
    train_cavs,
)
from pellucid.errors import ArgumentError, ArgumentTypeError, ModelError, UnknownNameError

D = 6


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(embed=nn.Linear(D, D), act=nn.Tanh(), head=nn.Linear(D, 2))
    ).eval()


def sets(seed: int = 0) -> tuple[torch.Tensor, list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    concept = torch.randn(12, D, generator=g) + 2
    return concept, [torch.randn(12, D, generator=g) for _ in range(3)]


def named(error_class, argument: str, fn, *args, match: str | None = None, **kwargs):
    with pytest.raises(error_class, match=match) as caught:
        fn(*args, **kwargs)
    assert caught.value.argument == argument
    assert argument in str(caught.value)
    return caught.value


def test_a_layer_given_as_a_module_is_the_layer_of_that_name() -> None:
    net, (concept, randoms) = model(), sets()
    expected = net.embed(concept).detach()
    torch.testing.assert_close(layer_activations(net, net.embed, concept), expected)
    by_module = train_cavs(net, net.embed, {"c": concept}, randoms)
    by_name = train_cavs(net, "embed", {"c": concept}, randoms)
    assert by_module.layer == "embed"
    torch.testing.assert_close(by_module.concepts["c"][1].vector, by_name.concepts["c"][1].vector)
    torch.testing.assert_close(
        directional_derivatives(net, net.embed, concept, 0, torch.ones(D)),
        directional_derivatives(net, "embed", concept, 0, torch.ones(D)),
    )
    named(ArgumentError, "layer", layer_activations, net, nn.Linear(D, D), concept)


def test_train_cavs_settings_are_named_before_any_forward_pass() -> None:
    net, (concept, randoms) = model(), sets()
    # a single tensor of random examples used to be read as one set per row
    named(ArgumentTypeError, "random_sets", train_cavs, net, "embed", {"c": concept},
          torch.stack(randoms))
    named(ArgumentError, "random_sets", train_cavs, net, "embed", {"c": concept}, randoms[:1])
    named(ArgumentError, "random_sets", train_cavs, net, "embed", {"c": concept},
          [randoms[0], randoms[1][:1]], match=r"random_sets\[1\] holds 1 example")
    named(ArgumentError, "concepts", train_cavs, net, "embed", {"c": concept[:1]}, randoms)
    named(ArgumentTypeError, "concepts", train_cavs, net, "embed", {"c": concept.long()}, randoms)
    named(ArgumentError, "concepts", train_cavs, net, "embed", {}, randoms)
    named(ArgumentTypeError, "concepts", train_cavs, net, "embed", concept, randoms)
    nan = concept.clone()
    nan[0, 0] = float("nan")
    named(ArgumentError, "concepts", train_cavs, net, "embed", {"c": nan}, randoms)
    named(UnknownNameError, "classifier", train_cavs, net, "embed", {"c": concept}, randoms,
          classifier="logistc", match="Did you mean 'logistic'")
    named(ArgumentTypeError, "classifier", train_cavs, net, "embed", {"c": concept}, randoms,
          classifier=LogisticRegression)  # the class, not an instance
    named(ArgumentError, "classifier", train_cavs, net, "embed", {"c": concept}, randoms,
          classifier=DecisionTreeClassifier(), match="coef_")
    named(ArgumentTypeError, "seed", train_cavs, net, "embed", {"c": concept}, randoms,
          seed="0")
    named(ArgumentError, "seed", train_cavs, net, "embed", {"c": concept}, randoms, seed=-1)
    named(ArgumentTypeError, "split_concepts", train_cavs, net, "embed", {"c": concept}, randoms,
          split_concepts="yes")
    named(UnknownNameError, "layer", train_cavs, net, "embd", {"c": concept}, randoms,
          match="Did you mean 'embed'")


def test_train_cav_names_its_arguments() -> None:
    concept, randoms = sets()
    named(ArgumentError, "concept_acts", train_cav, concept[:1], randoms[0])
    named(ArgumentError, "random_acts", train_cav, concept, randoms[0][:, :3])
    same = torch.ones(4, D)
    named(ArgumentError, "concept_acts", train_cav, same, same.clone(), match="no direction")


def test_nan_activations_are_the_models_fault() -> None:
    net = model()
    with torch.no_grad():
        net.embed.bias[0] = float("nan")
    named(ModelError, "model", layer_activations, net, "embed", torch.randn(3, D))


def test_tcav_settings_and_cavs_are_checked() -> None:
    net, (concept, randoms) = model(), sets()
    cavs = train_cavs(net, "embed", {"c": concept}, randoms)
    x = torch.randn(10, D)
    named(ArgumentTypeError, "cavs", tcav, net, x, 0, {"c": cavs})
    for alpha in (0.0, 1.0, float("nan")):
        named(ArgumentError, "alpha", tcav, net, x, 0, cavs, alpha=alpha)
    named(ArgumentError, "alternative", tcav, net, x, 0, cavs, alternative="greater-than")
    named(ArgumentTypeError, "bonferroni", tcav, net, x, 0, cavs, bonferroni="no")
    named(ArgumentTypeError, "magnitude", tcav, net, x, 0, cavs, magnitude=1)
    other = nn.Sequential(OrderedDict(embedding=nn.Linear(D, D), head=nn.Linear(D, 2)))
    named(ArgumentError, "cavs", tcav, other.eval(), x, 0, cavs, match="Did you mean 'embedding'")
    report = tcav(net, x, 0, cavs)
    with pytest.raises(KeyError, match="Did you mean 'c'"):  # also an UnknownNameError
        report["cc"]


def test_cavsets_are_checked_where_built() -> None:
    net, (concept, randoms) = model(), sets()
    cavs = train_cavs(net, "embed", {"c": concept}, randoms)
    named(ArgumentError, "random", CAVSet, "embed", cavs.concepts, cavs.random[:1])
    uneven = {"c": cavs.concepts["c"][:2]}
    named(ArgumentError, "concepts", CAVSet, "embed", uneven, cavs.random)
    named(ArgumentError, "concepts", CAVSet, "embed", {}, cavs.random)


def test_vectors_and_derivatives_are_checked() -> None:
    net, x = model(), torch.randn(5, D)
    named(ArgumentError, "vectors", directional_derivatives, net, "embed", x, 0,
          torch.full((D,), float("nan")))
    named(ArgumentError, "vectors", directional_derivatives, net, "embed", x, 0, torch.ones(D + 1))
    named(ArgumentError, "vectors", directional_derivatives, net, "embed", x, 0,
          torch.ones(2, 2, D))
    named(ArgumentTypeError, "vectors", directional_derivatives, net, "embed", x, 0, "cav")
    named(ArgumentError, "derivatives", tcav_scores, torch.ones(4))
    named(ArgumentTypeError, "inputs", directional_derivatives, net, "embed", x.numpy(), 0,
          torch.ones(D))
