"""Cost of every attribution method relative to one forward+backward pass.

    python -m benchmarks.methods                 # VGG-16 and ResNet-50 shapes, batch 8, 224²
    python -m benchmarks.methods --size 64 --batch 4 --models resnet50   # a quick look

Every method runs with the budget of ``method.cheap(x, evaluations=...)`` (integration
steps and noise samples = evaluations, 25 RISE masks and 8 coalitions per evaluation,
occlusion windows an eighth of each side at half stride), on a batch after a warm-up (best
of 3 for single-pass methods). Expanded batches run in chunks of the batch's size, so every
pass has the rows of the unit pass it is compared with. The table gives seconds, the ratio
to one forward+backward of the same batch measured in the same run, by wall time and by
this process's CPU time (which moves less with the load of a shared machine), the expected
ratio from the number of passes the method needs, and the peak extra resident memory. Targets:
gradient family ≤ 1.1×, IG with S steps ≤ 1.05·S×, perturbation methods at the cost of
their forward passes.
"""

from __future__ import annotations

import argparse
import math
from functools import partial

import torch
from tests.helpers.architectures import resnet50_shaped, vgg16_shaped

import pellucid
from benchmarks._measure import forward_backward, forward_only, timed, timed_cpu
from pellucid import attribution
from pellucid.attribution.perturbation import window_starts
from pellucid.method import Method

MODELS = {"vgg16": vgg16_shaped, "resnet50": resnet50_shaped}
#: the methods of pellucid.attribution (the rule-engine methods have benchmarks/lrp.py)
METHODS = sorted(getattr(attribution, name).name for name in attribution.__all__)


def occlusion_windows(method: Method, x: torch.Tensor) -> int:
    """The number of windows of an occlusion with explicit ``window`` and ``stride`` tuples."""
    window, stride = method.window, method.stride
    return math.prod(len(window_starts(n, w, s))
                     for n, w, s in zip(x.shape[-len(window):], window, stride))


def expected_passes(method: Method, x: torch.Tensor, fwd_ratio: float) -> float:
    """Forward+backward equivalents a method needs (a forward alone costs ``fwd_ratio``)."""
    if method.name == "integrated_gradients":
        return method.steps + 2 * fwd_ratio
    if method.name == "expected_gradients":
        return method.samples + 2 * fwd_ratio
    if method.name in ("smoothgrad", "smoothgrad_squared", "vargrad"):
        return method.samples + fwd_ratio
    if method.name == "occlusion":
        return occlusion_windows(method, x) * fwd_ratio + fwd_ratio
    if method.name in ("rise", "lime", "kernel_shap"):
        return method.samples * fwd_ratio + 2 * fwd_ratio
    return 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--evaluations", type=int, default=16,
                        help="the budget given to method.cheap (model evaluations per sample)")
    parser.add_argument("--methods", nargs="*", default=None,
                        help="default: those of pellucid.attribution")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for name in args.models:
        model = MODELS[name]().eval()
        x = torch.rand(args.batch, 3, args.size, args.size)
        forward_backward(model, x)()  # warm-up of torch
        pellucid.explain(model, x, 0, method="gradient")  # warm-up of pellucid's first call
        unit, unit_cpu, unit_mem = timed_cpu(forward_backward(model, x), repeats=3)
        fwd, _ = timed(forward_only(model, x), repeats=3)
        print(f"\n{name}: batch {args.batch}×3×{args.size}², {args.threads} threads; "
              f"forward+backward {unit:.3f} s ({unit_mem:.0f} MiB), forward {fwd:.3f} s")
        print(f"{'method':24s} {'seconds':>9s} {'ratio':>8s} {'(cpu)':>8s} {'expected':>9s} "
              f"{'peak MiB':>9s}")
        references = torch.rand(16, *x.shape[1:])
        for method in args.methods or METHODS:
            chosen = pellucid.get_method(method).cheap(
                x, evaluations=args.evaluations, references=references, batch_size=len(x)
            )
            run = partial(pellucid.explain, model, x, 0, method=chosen)
            expected = expected_passes(chosen, x, fwd / unit)
            seconds, cpu, peak = timed_cpu(run, repeats=3 if expected <= 2 else 1)
            print(f"{method:24s} {seconds:9.3f} {seconds / unit:7.2f}× {cpu / unit_cpu:7.2f}× "
                  f"{expected:8.2f}× {peak:9.0f}")


if __name__ == "__main__":
    main()
