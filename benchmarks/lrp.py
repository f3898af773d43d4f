"""Benchmark: rule-based methods vs one forward+backward pass of the same model.

VGG-16- and ResNet-50-shaped models (random weights), batch 8 × 3 × 224 × 224, 2 threads.
For each method it reports, as ratios to one forward pass plus an input-gradient backward pass:

- ``engine``: one rule-engine call (``Method.attribute``: a recorded forward and the walk),
  by wall time and by this process's CPU time (less sensitive to other processes);
- ``explain``: the whole ``pellucid.explain`` call, which adds the model guard, the private
  copy of the inputs and the target's resolution (the method records its first forward pass
  and the walk reuses it);
- ``build``: the one-off cost of the weights derived for the method (folded BatchNorms,
  rule-modified weights, kept in the engine's weight cache, which is cleared before it), the
  first call's time minus a later call's.

Run: ``python -m benchmarks.lrp [--methods lrp.epsilon,lrp.epsilon_plus] [--repeats 2]``.
Other processes sharing the CPU inflate every number; compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import time

import torch
from tests.helpers.architectures import resnet50_shaped, vgg16_shaped

import pellucid
import pellucid.lrp
from pellucid.guard import preserved
from pellucid.targets import Target
from pellucid.task import Task

DEFAULT_METHODS = ("lrp.epsilon", "lrp.epsilon_plus", "lrp.epsilon_gamma_box",
                   "lrp.epsilon_alpha2_beta1", "guided_backprop", "deeplift")


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def forward_backward(model: torch.nn.Module, x: torch.Tensor) -> None:
    xg = x.detach().requires_grad_(True)
    torch.autograd.grad(model(xg)[:, 0].sum(), xg)


def bench_model(name: str, model: torch.nn.Module, x: torch.Tensor, methods: list[str],
                repeats: int) -> None:
    """Reference and method calls interleaved, best of ``repeats`` each (the CPU is shared)."""
    print(f"\n{name} (batch {len(x)}): ratios to forward+backward, best of {repeats}")
    print(f"{'method':<28} {'engine':>7} {'(cpu)':>7} {'explain':>8} {'build s':>8} {'ref s':>6}")
    task = Task(model, Target(classes=torch.zeros(len(x), dtype=torch.long)), rows=len(x))
    for method_name in methods:
        method = pellucid.get_method(method_name)

        def engine(method=method) -> None:
            with preserved(model):
                method.attribute(task, x)

        pellucid.lrp.clear_weight_cache()
        first, _ = timed(engine)
        refs, calls = [], []
        for _ in range(repeats):
            refs.append(timed(lambda: forward_backward(model, x)))
            calls.append(timed(engine))
        whole, _ = timed(lambda m=method: pellucid.explain(model, x, target=0, method=m))
        ref_wall, ref_cpu = min(r[0] for r in refs), min(r[1] for r in refs)
        wall, cpu = min(c[0] for c in calls), min(c[1] for c in calls)
        print(f"{method_name:<28} {wall / ref_wall:>6.2f}x {cpu / ref_cpu:>6.2f}x "
              f"{whole / ref_wall:>7.2f}x {max(first - wall, 0.0):>8.2f} {ref_wall:>6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default="vgg16,resnet50")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 224, 224)
    builders = {"vgg16": vgg16_shaped, "resnet50": resnet50_shaped}
    for name in args.models.split(","):
        model = builders[name]().eval()
        with torch.no_grad():
            model(x[:1])  # warm up allocator and kernels
        bench_model(name, model, x, args.methods.split(","), args.repeats)


if __name__ == "__main__":
    main()
