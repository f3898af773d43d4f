"""Benchmark: Integrated Gradients that stops when it is exact (``steps="auto"``) against
Captum's default (50 Gauss–Legendre steps), on VGG-16- and ResNet-50-shaped models.

For each model (random weights, ``--batch`` images of 3×224×224, ``--threads`` threads) it
prints, per method: the wall time, the gradients per sample, the share of samples whose
completeness gap |Σ IG − (f(x) − f(0))| is within 1% of |f(x) − f(0)|, and the largest
relative gap. pellucid's ``steps="auto"`` refines nested trapezoid grids per sample until
the gap is within ``tolerance`` (docs/methods/integrated.md); Captum integrates every
sample with the same 50 steps.

Run: ``python -m benchmarks.ig_auto [--batch 4] [--threads 2] [--models vgg16,resnet50]``.
"""

from __future__ import annotations

import argparse
import time

import torch
from tests.helpers.architectures import resnet50_shaped, vgg16_shaped

import pellucid

MODELS = {"vgg16": vgg16_shaped, "resnet50": resnet50_shaped}


def relative_gaps(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor,
                  attribution: torch.Tensor) -> torch.Tensor:
    """|Σ A − (f(x) − f(0))| / |f(x) − f(0)| per sample."""
    with torch.no_grad():
        rows = torch.arange(len(x))
        change = model(x)[rows, target] - model(torch.zeros_like(x))[rows, target]
    return (attribution.flatten(1).sum(1) - change).abs() / change.abs()


def measure(name: str, batch: int) -> list[str]:
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    x = torch.rand(batch, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        target = model(x).argmax(1)
    rows = []
    start = time.perf_counter()
    e = pellucid.explain(model, x, target, method="integrated_gradients", steps="auto",
                         tolerance=0.01, batch_size=batch)
    seconds = time.perf_counter() - start
    gaps = relative_gaps(model, x, target, e.attribution)
    rows.append(_row(name, "pellucid steps='auto' (tolerance 0.01)", seconds,
                     float(e.extras["evaluations"].double().mean()), gaps))
    try:
        from captum.attr import IntegratedGradients
    except ImportError:
        return [*rows, f"| {name} | captum | not installed | | | |"]
    captum = IntegratedGradients(model)
    start = time.perf_counter()
    attribution = captum.attribute(x, target=target, n_steps=50, method="gausslegendre",
                                   internal_batch_size=batch)
    seconds = time.perf_counter() - start
    rows.append(_row(name, "captum, 50 Gauss–Legendre steps", seconds, 50.0,
                     relative_gaps(model, x, target, attribution.detach())))
    return rows


def _row(model: str, method: str, seconds: float, gradients: float, gaps: torch.Tensor) -> str:
    within = float((gaps <= 0.01).double().mean())
    return (f"| {model} | {method} | {seconds:.1f} | {gradients:.1f} | {within:.0%} | "
            f"{float(gaps.max()):.2e} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default="vgg16,resnet50")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| model | method | seconds | gradients per sample | within 1% | largest gap |")
    print("|---|---|---:|---:|---:|---:|")
    for name in args.models.split(","):
        for row in measure(name, args.batch):
            print(row, flush=True)


if __name__ == "__main__":
    main()
