"""Every applicable method on the planted-evidence text data, scored against the key words.

    python -m benchmarks.text                        # 128 sequences, both shipped text models
    python -m benchmarks.text --n 32 --evaluations 16 --models text_lstm --threads 2

Each registered method whose ``requires`` the model meets (the attention methods only on
the transformer) explains the true class of ``n`` test sequences of
:func:`pellucid.data.text_evidence` (seed :data:`SEED`, neither the training seed 0 nor the
shipped test seed 1) with ``Method.cheap(ids, evaluations=...)`` and the ``[MASK]`` token as
every reference: ``baseline="mask"`` of DeepLIFT, ``fill="mask"`` of occlusion, RISE, LIME
and KernelSHAP. Occlusion removes one token at a time (``window=1``); Integrated Gradients
runs from the ``[MASK]`` and from the ``[PAD]`` embedding; Expected Gradients draws its
baselines from ``n`` other sequences (as many as are explained: the reference embeddings are
taken with the batch's ``model_kwargs``). Every explanation is scored with :data:`METRICS`
by :func:`pellucid.evaluate`: the localisation metrics against the evidence masks (the key
words), deletion and insertion with ``fill="mask"`` (the models were trained with 10 %
``[MASK]`` tokens, so ``[MASK]`` reads as a neutral word; ``[PAD]`` inside a sequence is a
token they never saw). The random attribution is the baseline every method has to beat.
Prints one markdown table per model (method × metric mean, and the seconds of the
explanation) and the wall time; one torch thread by default.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import torch
from torch import nn

import pellucid
from pellucid.data import TokenSet, text_evidence
from pellucid.method import Method
from pellucid.metrics import METRICS as REGISTERED_METRICS
from pellucid.metrics import RandomAttribution
from pellucid.models import load_pretrained

#: the seed of the scored sequences (the text models trained on seed 0, were tested on 1)
SEED = 12
#: the seed of the reference sequences of Expected Gradients
REFERENCE_SEED = 13
#: the metrics of the table, in column order
METRICS = (
    "localisation.relevance_mass",
    "localisation.relevance_rank",
    "localisation.pointing_game",
    "faithfulness.deletion",
    "faithfulness.insertion",
)
#: what each shipped text model offers to the methods' ``requires``
MODEL_FEATURES = {"text_transformer": {"attention", "spatial"}, "text_lstm": {"spatial"}}
#: the settings that name a reference token (all set to the neutral ``[MASK]``)
REFERENCE_SETTINGS = ("baseline", "fill")


def methods_for(model_name: str, ids: torch.Tensor, evaluations: int,
                references: torch.Tensor) -> list[tuple[str, Method]]:
    """(row label, method) for every registered method the model can run, with the budget
    of :meth:`~pellucid.method.Method.cheap` and the text settings of the module docstring."""
    rows: list[tuple[str, Method]] = [("random", RandomAttribution(seed=0))]
    for name in pellucid.list_methods():
        method = pellucid.get_method(name)
        if not method.requires <= MODEL_FEATURES[model_name]:
            continue
        method = method.cheap(ids, evaluations=evaluations, references=references)
        settings = method.settings()
        method = dataclasses.replace(
            method, **{k: "mask" for k in REFERENCE_SETTINGS if k in settings})
        if name == "occlusion":
            rows.append(("occlusion (window=1)",
                         dataclasses.replace(method, window=1, stride=1)))
        elif name == "integrated_gradients":
            rows.extend((f'integrated_gradients (baseline="{b}")',
                         dataclasses.replace(method, baseline=b)) for b in ("mask", "pad"))
        else:
            rows.append((name, method))
    return rows


def score_model(model: nn.Module, data: TokenSet, rows: list[tuple[str, Method]],
                steps: int) -> list[tuple[str, float, dict[str, float]]]:
    """(label, seconds of the explanation, {metric: mean}) per method on ``data``."""
    kwargs = {"attention_mask": data.attention_mask}
    scored = []
    for label, method in rows:
        start = time.perf_counter()
        explanation = method(model, data.input_ids, data.labels, model_kwargs=kwargs)
        seconds = time.perf_counter() - start
        results = pellucid.evaluate(model, data.input_ids, data.labels, explanation,
                                    list(METRICS), data.masks, model_kwargs=kwargs,
                                    fill="mask", steps=steps)
        scored.append((label, seconds, {m: results[m].mean for m in METRICS}))
        print(f"{label}: {seconds:.2f} s to explain, {time.perf_counter() - start:.2f} s in all",
              file=sys.stderr, flush=True)
    return scored


def markdown(scored: list[tuple[str, float, dict[str, float]]]) -> str:
    """The table: one row per method, one column per metric (with ↑ or ↓), then seconds."""
    arrows = {"higher": "↑", "lower": "↓"}
    names = [f"{m.split('.')[1]} {arrows[REGISTERED_METRICS.get(m).direction]}" for m in METRICS]
    lines = ["| method | " + " | ".join(names) + " | seconds |",
             "|---|" + "---:|" * (len(METRICS) + 1)]
    lines += [f"| {label} | " + " | ".join(f"{v[m]:.3f}" for m in METRICS)
              + f" | {seconds:.2f} |" for label, seconds, v in scored]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128, help="test sequences")
    parser.add_argument("--evaluations", type=int, default=32,
                        help="model evaluations per sample for Method.cheap")
    parser.add_argument("--steps", type=int, default=16, help="deletion/insertion steps")
    parser.add_argument("--models", nargs="+", default=list(MODEL_FEATURES),
                        choices=list(MODEL_FEATURES))
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (tiny models: more threads only add overhead)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = text_evidence(args.n, seed=SEED)
    references = text_evidence(args.n, seed=REFERENCE_SEED).input_ids
    start = time.perf_counter()
    for name in args.models:
        model = load_pretrained(name).eval()
        rows = methods_for(name, data.input_ids, args.evaluations, references)
        print(f"\n### {name}: {args.n} sequences of text_evidence(seed={SEED}), "
              f"evaluations={args.evaluations}, deletion/insertion fill=\"mask\", "
              f"{args.steps} steps\n")
        print(markdown(score_model(model, data, rows, args.steps)), flush=True)
    print(f"\nwall time {time.perf_counter() - start:.1f} s, "
          f"{torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
