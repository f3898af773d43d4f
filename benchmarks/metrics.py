"""Cost of pixel flipping against the forward passes it needs, measured in the same run.

    python -m benchmarks.metrics                       # 64 images 3×32×32, 100 steps, small CNN
    python -m benchmarks.metrics --size 32 --model small --repeats 3

Pixel flipping with L steps on B images evaluates the model on B·(L+1) perturbed images,
``batch_size`` rows per forward pass. The reference is the same number of no-grad forward
passes of ``batch_size`` rows on ready-made inputs; the target is a ratio ≤ 1.2 (the
ordering, the perturbed batches and the bookkeeping cost at most 20% on top).
"""

from __future__ import annotations

import argparse
import math

import torch
from torch import nn

import pellucid
from benchmarks._measure import timed
from pellucid.metrics import evaluate
from pellucid.perturb import BASELINES


def small_cnn(classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(64, classes),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model", choices=["small", "vgg16"], default="small")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.manual_seed(0)
    if args.model == "vgg16":
        from tests.helpers.architectures import vgg16_shaped

        model = vgg16_shaped().eval().to(args.device)
    else:
        model = small_cnn().eval().to(args.device)
    x = torch.rand(args.images, 3, args.size, args.size, device=args.device)
    explanation = pellucid.explain(model, x, method="gradient_x_input")
    rows = args.images * (args.steps + 1)
    passes = math.ceil(rows / args.batch_size)
    chunk = torch.rand(args.batch_size, *x.shape[1:], device=args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def forwards() -> None:
        with torch.no_grad():
            for _ in range(passes):
                model(chunk)
        sync()

    def flipping(fill: str) -> None:
        evaluate(model, x, None, explanation, ["faithfulness.pixel_flipping"],
                 steps=args.steps, batch_size=args.batch_size, fill=fill)
        sync()

    forwards()  # warm-up
    print(f"{args.model} on {args.images}×3×{args.size}×{args.size}, {args.steps} steps, "
          f"{rows} rows in {passes} passes of {args.batch_size}, device {args.device}, "
          f"{torch.get_num_threads()} threads; best of {args.repeats}, interleaved")
    measured = {"forward passes alone": forwards}
    measured.update({f"pixel flipping, fill={f}": (lambda f=f: flipping(f)) for f in BASELINES})
    best = {name: float("inf") for name in measured}
    for _ in range(args.repeats):  # interleaved, so that a busy machine slows every kind alike
        for name, fn in measured.items():
            best[name] = min(best[name], timed(fn)[0])
    reference = best["forward passes alone"]
    for name, seconds in best.items():
        print(f"  {name:30s}{seconds:8.3f} s  ratio {seconds / reference:5.2f}×")

if __name__ == "__main__":
    main()
