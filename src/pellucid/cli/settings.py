"""``--setting KEY=VALUE`` arguments, and the methods and metrics they configure.

``pellucid explain`` gives every setting to its one method. ``pellucid evaluate`` and
``pellucid run`` give
``KEY=VALUE`` to each chosen method and metric that has the setting ``KEY`` (an error when
both a method and a metric have it, or none does) and ``NAME:KEY=VALUE`` to the method or
metric ``NAME`` only. Methods and metrics are built here, before any model runs, so that an
unknown name or a setting they reject ends the command at once.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .command import UsageError, positive_int
from .model_loading import add_device_argument

#: the benchmark's reference row, not a registered method (``--seed`` seeds it)
RANDOM = "random"


def parse_settings(pairs: Sequence[str], scoped: bool = False) -> dict[str, Any]:
    """``KEY=VALUE`` strings to a dict; values are Python literals, else strings.

    With ``scoped``, a key may be ``NAME:KEY`` (a setting of the method or metric NAME).
    """
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        scope, colon, name = key.rpartition(":")
        if not sep or not name.isidentifier() or (colon and not (scoped and scope)):
            example = "steps=16 or integrated_gradients:steps=16" if scoped else "steps=16"
            raise UsageError(f"--setting {pair!r} is not KEY=VALUE (e.g. --setting {example})")
        if key in settings:
            raise UsageError(f"--setting {key} is given twice; give it once")
        try:
            settings[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            settings[key] = value
    return settings


def check_names(names: Sequence[str], known: Sequence[str], flag: str, listing: str) -> None:
    """Each of ``names`` is one of ``known``, given once; else a UsageError naming ``flag``
    with the closest names and ``listing``, where to find them all."""
    from pellucid.registry import suggest

    for name in names:
        if name not in known:
            raise UsageError(
                f"{flag}: unknown name {name!r}.{suggest(name, list(known))} "
                f"See {listing} for all names."
            )
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UsageError(f"{flag} names {', '.join(map(repr, twice))} twice; name each once")


def build_method(name: str, settings: dict[str, Any]):
    """The registered method ``name`` with ``settings``, or a UsageError naming the flag."""
    import pellucid

    check_names([name], pellucid.list_methods(), "--method", "'pellucid methods'")
    return _build(pellucid.get_method, name, settings)


def build_metric(name: str, settings: dict[str, Any]):
    """The registered metric ``name`` with ``settings``, or a UsageError naming the setting."""
    from pellucid.metrics import get_metric

    return _build(get_metric, name, settings)


def _build(build, name: str, settings: dict[str, Any]):
    """``build(name, **settings)``; a setting it rejects (its ``__post_init__`` checks or an
    unknown key) becomes a UsageError that names ``--setting``."""
    from pellucid.errors import PellucidError

    try:
        return build(name, **settings)
    except (PellucidError, ValueError, TypeError) as error:  # raised by the settings' checks
        raise UsageError(f"--setting for {name}: {error}") from error


def setting_names(cls: type) -> set[str]:
    """The settings (dataclass fields) of a method or metric class."""
    return {field.name for field in dataclasses.fields(cls)}


def route_settings(
    settings: dict[str, Any], methods: dict[str, set[str]], metrics: dict[str, set[str]]
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Split ``settings`` into per-method and per-metric settings.

    ``methods`` and ``metrics`` map each chosen name to its setting names. ``NAME:KEY`` goes
    to ``NAME``; a plain ``KEY`` to every chosen method that has it, or else to every chosen
    metric that has it. A key that no chosen method or metric has, or that both a method and
    a metric have, is a UsageError (a typo or an ambiguity never passes silently).
    """
    from pellucid.registry import suggest

    chosen = {**methods, **metrics}
    routed: dict[str, dict[str, Any]] = {name: {} for name in chosen}
    for key, value in settings.items():
        scope, _, name = key.rpartition(":")
        if scope:
            if scope not in chosen:
                raise UsageError(
                    f"--setting {key}: {scope!r} is not among --methods or --metrics "
                    f"({', '.join(chosen)}).{suggest(scope, list(chosen))}"
                )
            if name not in chosen[scope]:
                valid = sorted(chosen[scope])
                raise UsageError(
                    f"--setting {key}: {scope} has no setting {name!r}.{suggest(name, valid)} "
                    f"Its settings are: {', '.join(valid) or 'none'}"
                )
            routed[scope][name] = value
            continue
        in_methods = [m for m, names in methods.items() if key in names]
        in_metrics = [m for m, names in metrics.items() if key in names]
        if in_methods and in_metrics:
            raise UsageError(
                f"--setting {key} is a setting of the method {in_methods[0]} and of the metric "
                f"{in_metrics[0]}; write --setting {in_methods[0]}:{key}=... or "
                f"--setting {in_metrics[0]}:{key}=... to say which"
            )
        if not in_methods and not in_metrics:
            every = sorted(set().union(*chosen.values()))
            raise UsageError(
                f"--setting {key}: no chosen method or metric has the setting {key!r}."
                f"{suggest(key, every)} Their settings are: {', '.join(every) or 'none'}"
            )
        for owner in in_methods or in_metrics:
            routed[owner][key] = value
    return (
        {name: routed[name] for name in methods},
        {name: routed[name] for name in metrics},
    )


def add_scoring_arguments(parser: argparse.ArgumentParser, n_default: int | None,
                          metrics_default: Sequence[str]) -> None:
    """The arguments that ``evaluate`` and ``run`` share: the model, the data, the methods
    and metrics with their ``--setting``s, ``-n``, ``--size``, ``--seed``, ``--batch-size``,
    ``--device``."""
    parser.add_argument("--model", required=True, help="MODULE:FACTORY, demo name or checkpoint")
    parser.add_argument("--weights", type=Path, default=None, help="a state dict to load")
    parser.add_argument("--data", default="shapes", help="shapes, digits, FILE.pt or FILE.npz")
    parser.add_argument("--methods", nargs="+", default=[RANDOM, "gradient"],
                        help="method names, or 'random' for the random attribution")
    parser.add_argument("--metrics", nargs="*", default=list(metrics_default),
                        help="metric names (see pellucid.list_metrics())")
    parser.add_argument("-n", type=positive_int, default=n_default,
                        help=f"samples to evaluate (default {n_default or 'all'})")
    parser.add_argument("--size", type=positive_int, default=None,
                        help="image size of generated data (default: the model's input_size)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds the generated data and the random attribution")
    parser.add_argument("--setting", action="append", default=[], metavar="[NAME:]KEY=VALUE",
                        help="a method or metric setting, e.g. --setting steps=50 (repeatable)")
    parser.add_argument("--batch-size", type=positive_int, default=64,
                        help="samples per batch (default 64)")
    add_device_argument(parser)


def chosen(args: argparse.Namespace) -> tuple[list, list]:
    """The method objects (``"random"`` stays a name) and metric objects that ``--methods``,
    ``--metrics`` and ``--setting`` name: every name and setting is checked before a model
    runs."""
    import pellucid
    from pellucid.method import METHODS
    from pellucid.metrics.base import METRICS

    check_names(args.methods, [RANDOM, *pellucid.list_methods()], "--methods",
                "'pellucid methods'")
    check_names(args.metrics, pellucid.list_metrics(), "--metrics", "pellucid.list_metrics()")
    method_fields = {m: set() if m == RANDOM else setting_names(METHODS.get(m))
                     for m in args.methods}
    metric_fields = {k: setting_names(METRICS.get(k)) for k in args.metrics}
    method_settings, metric_settings = route_settings(
        parse_settings(args.setting, scoped=True), method_fields, metric_fields
    )
    metrics = [build_metric(k, metric_settings[k]) for k in args.metrics]
    for metric in metrics:
        if getattr(metric, "train_fn", False) is None:
            raise UsageError(
                f"--metrics {metric.name} retrains models and needs a training function; "
                "run it from the Python API (pellucid.evaluate(..., train_fn=...))"
            )
    methods = [m if m == RANDOM else build_method(m, method_settings[m]) for m in args.methods]
    return methods, metrics


__all__ = [
    "RANDOM",
    "add_scoring_arguments",
    "build_method",
    "build_metric",
    "check_names",
    "chosen",
    "parse_settings",
    "route_settings",
    "setting_names",
]
