"""Batch and size scaling of the per-call cost, and pellucid's fixed overhead per call.

    python -m benchmarks.scaling                          # ResNet-50, batch 1/8/32, 64/224 px
    python -m benchmarks.scaling --models resnet50,vgg16 --sizes 64 --batches 1,8
    python -m benchmarks.scaling --overhead-only --profile   # the fixed cost, with its profile

**Scaling.** For ``gradient``, ``lrp.epsilon``, ``lrp.epsilon_plus_flat``,
``integrated_gradients`` (8 steps) and ``smoothgrad`` (16 samples), the whole
``pellucid.explain`` call as a ratio to one forward+backward of the same model and batch
(``benchmarks._measure.forward_backward``), by wall time and by this process's CPU time
(which moves less with the load of a shared machine); reference and method calls are
interleaved, best of ``--repeats`` each (one each where a call would take over 20 s).
Expanded methods run the default rows per pass (64). Expected ratios: 1.0× for the
gradient, 1.0–1.5× for the rule engine, steps + 2 forwards for IG, samples + 1 forward for
SmoothGrad.

**Overhead.** ``pellucid.explain(model, x, target=0, method="gradient")`` minus a bare
forward+backward, on ResNet-50 at batch 1 and 32 px, and on its 151 modules at width 4
(the same walk, checks and copies, nearly no arithmetic): the first call of the process
(the one-off cost: the guard's first copies, first-time set-up), and later calls (target:
< 5 ms).
``--profile`` prints the top pellucid-side functions of later calls (cProfile).

Weights are random; other processes sharing the CPU inflate every number: compare ratios.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from collections.abc import Callable

import torch
from tests.helpers.architectures import resnet, resnet50_shaped, vgg16_shaped

import pellucid
from benchmarks._measure import forward_backward

MODELS = {"resnet50": resnet50_shaped, "vgg16": vgg16_shaped}
METHODS: dict[str, dict] = {
    "gradient": {},
    "lrp.epsilon": {},
    "lrp.epsilon_plus_flat": {},
    "integrated_gradients": {"steps": 8},
    "smoothgrad": {"samples": 16},
}
#: a method call expected to take longer than this (seconds) runs once
LONG = 20.0


def clock(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def interleaved(reference: Callable[[], object], fn: Callable[[], object],
                repeats: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """Best (wall, CPU) of ``reference`` and of ``fn``, called alternately ``repeats`` times."""
    refs, calls = [], []
    for _ in range(repeats):
        refs.append(clock(reference))
        calls.append(clock(fn))
    best = lambda runs: (min(r[0] for r in runs), min(r[1] for r in runs))  # noqa: E731
    return best(refs), best(calls)


def explain_call(model: torch.nn.Module, x: torch.Tensor, method: str,
                 settings: dict) -> Callable[[], object]:
    return lambda: pellucid.explain(model, x, target=0, method=method, **settings)


def overhead(size: int, repeats: int, profile: bool) -> None:
    """The fixed cost of a call: explain minus a bare forward+backward at batch 1, on one
    thread (the cost is Python work; one thread keeps other threads' waits out of the CPU
    time). On ResNet-50, and on the same 151 modules at 1/16 of the channels, whose forward
    and backward take well under a millisecond, so that the difference is not lost in the
    noise of a 40 ms reference."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    x = torch.randn(1, 3, size, size)
    print(f"\nfixed overhead per call (batch 1, 3×{size}×{size}, 1 thread, best of {repeats}):")
    for name, model in (("ResNet-50", resnet50_shaped()),
                        ("ResNet-50 at width 4", resnet("bottleneck", (3, 4, 6, 3), width=4))):
        model.eval()
        reference = forward_backward(model, x)
        call = explain_call(model, x, "gradient", {})
        reference()  # torch's own first-time costs are not pellucid's
        first, _ = clock(call)
        (ref_wall, ref_cpu), (wall, cpu) = interleaved(reference, call, repeats)
        print(f"  {name}: forward+backward {ref_wall * 1e3:.1f} ms (CPU {ref_cpu * 1e3:.1f} ms); "
              f"first call +{(first - ref_wall) * 1e3:.1f} ms (one-off); later calls "
              f"+{(wall - ref_wall) * 1e3:.2f} ms wall, +{(cpu - ref_cpu) * 1e3:.2f} ms CPU "
              "(target < 5 ms)")
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(20):
            call()
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
        stats.print_stats(r"pellucid/(?!.*(api|method)\.py:\d+\((explain|__call__)\))", 15)
        print(f"  top pellucid functions of 20 later calls on {name} (cumulative, cProfile):")
        print("\n".join("    " + line for line in out.getvalue().splitlines()[-17:]))
    torch.set_num_threads(threads)


def scaling(names: list[str], batches: list[int], sizes: list[int], methods: list[str],
            repeats: int) -> None:
    for name in names:
        model = MODELS[name]().eval()
        for size in sizes:
            print(f"\n{name} at {size}×{size} px: ratio to one forward+backward, wall (CPU), "
                  f"best of ≤{repeats}")
            print(f"{'method':<24}" + "".join(f"{f'batch {b}':>17}" for b in batches))
            rows: dict[str, list[str]] = {m: [] for m in methods}
            units = []
            for batch in batches:
                x = torch.randn(batch, 3, size, size)
                reference = forward_backward(model, x)
                reference()
                unit, _ = clock(reference)
                units.append(f"{unit * 1e3:.0f} ms")
                for method in methods:
                    settings = METHODS[method]
                    passes = settings.get("steps", settings.get("samples", 1))
                    n = 1 if unit * passes > LONG else repeats
                    call = explain_call(model, x, method, settings)
                    if passes == 1:
                        call()  # the first call derives the method's weights (rule engine)
                    (ref_wall, ref_cpu), (wall, cpu) = interleaved(reference, call, n)
                    rows[method].append(f"{wall / ref_wall:6.2f}× ({cpu / ref_cpu:5.2f}×)")
            print(f"{'forward+backward':<24}" + "".join(f"{u:>17}" for u in units))
            for method in methods:
                print(f"{method:<24}" + "".join(f"{c:>17}" for c in rows[method]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50", help="resnet50,vgg16")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--sizes", default="64,224")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--overhead-only", action="store_true")
    parser.add_argument("--overhead-size", type=int, default=32,
                        help="the input size of the overhead measurement (batch 1)")
    parser.add_argument("--profile", action="store_true",
                        help="print the profile of the per-call overhead")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    overhead(args.overhead_size, max(args.repeats, 30), args.profile)
    if not args.overhead_only:
        scaling(args.models.split(","), [int(b) for b in args.batches.split(",")],
                [int(s) for s in args.sizes.split(",")], args.methods.split(","), args.repeats)


if __name__ == "__main__":
    main()
