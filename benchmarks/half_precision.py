"""Benchmark: how close each rule-engine method (and the plain gradient, for scale) comes to
its float32 result on float16 and bfloat16 models with BatchNorm.

The rule engine computes its walk in float32 for half-precision models (the ε-rule's
quotients overflow float16), so what remains is the error of the model's forward pass in
half precision: ReLUs that flip near 0 and rounded logits. Relative L2 error against the
float32 attribution, median over seeds, on a VGG-shaped CNN with random BatchNorm statistics
(32 × 32 inputs, batch 4).

Run: ``python -m benchmarks.half_precision [--seeds 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import warnings

import torch
from tests.helpers.models import VGGish, randomise_batchnorm

import pellucid

METHODS = ["gradient", *[m for m in pellucid.list_methods() if m.startswith("lrp")],
           "deep_taylor", "deconvnet", "deeplift", "excitation_backprop", "guided_backprop"]


def relative_errors(method: str, seed: int) -> list[float]:
    """(float16, bfloat16) relative errors against float32 for one seed."""
    torch.manual_seed(seed)  # the model's weights (a script: the global state is its own)
    model = randomise_batchnorm(VGGish(), seed=seed).eval()
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    reference = pellucid.explain(model, x, 0, method=method).attribution.double()
    errors = []
    for dtype in (torch.float16, torch.bfloat16):
        half = pellucid.explain(model.to(dtype), x.to(dtype), 0, method=method).attribution
        errors.append(((half.double() - reference).norm() / reference.norm()).item())
        model.float()
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print("| method | float16 | bfloat16 |\n|---|---|---|")
    for method in METHODS:
        runs = [relative_errors(method, seed) for seed in range(args.seeds)]
        fp16, bf16 = (statistics.median(r[i] for r in runs) for i in (0, 1))
        print(f"| `{method}` | {fp16:.1e} | {bf16:.1e} |")


if __name__ == "__main__":
    main()
