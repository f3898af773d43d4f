"""Cost of every attribution method relative to one forward+backward pass.

    python benchmarks/methods.py                 # VGG-16 and ResNet-50 shapes, batch 8, 224²
    python benchmarks/methods.py --size 64 --batch 4 --models resnet50   # a quick look

Each method runs on a batch after a warm-up (best of 3 for single-pass methods); the table gives
seconds, the ratio to one forward+backward of the same batch measured in the same run,
the expected ratio from the number of passes the method needs, and the peak extra
resident memory. Targets: gradient family ≤ 1.1×, IG with S steps ≤ 1.05·S×,
perturbation methods at the cost of their forward passes.
"""

from __future__ import annotations

import argparse
from functools import partial

import torch

import pellucid
from _measure import forward_backward, forward_only, timed
from architectures import resnet50_shaped, vgg16_shaped

MODELS = {"vgg16": vgg16_shaped, "resnet50": resnet50_shaped}


def method_settings(x: torch.Tensor, steps: int, samples: int) -> dict[str, dict]:
    """The settings benchmarked per method; expanded batches run in chunks of the batch's size,
    so every pass has the rows of the unit pass it is compared with."""
    chunk = len(x)
    return {
        "gradient": {},
        "sensitivity": {},
        "saliency": {},
        "gradient_x_input": {},
        "integrated_gradients": {"steps": steps, "batch_size": chunk},
        "expected_gradients": {"references": torch.rand(16, *x.shape[1:]), "samples": steps,
                               "batch_size": chunk},
        "smoothgrad": {"samples": samples, "batch_size": chunk},
        "smoothgrad_squared": {"samples": samples, "batch_size": chunk},
        "vargrad": {"samples": samples, "batch_size": chunk},
        "gradcam": {},
        "gradcam_plus_plus": {},
        "fullgrad": {},
        "occlusion": {"window": (x.shape[-1] // 7,) * 2, "batch_size": chunk},
        "rise": {"samples": samples * 4, "batch_size": chunk},
        "lime": {"samples": samples * 8, "patch": (x.shape[-1] // 7,) * 2, "batch_size": chunk},
        "kernel_shap": {"samples": samples * 8, "patch": (x.shape[-1] // 7,) * 2,
                        "batch_size": chunk},
    }


def expected_passes(method: str, settings: dict, fwd_ratio: float) -> float:
    """Forward+backward equivalents a method needs (a forward alone costs ``fwd_ratio``)."""
    if method in ("integrated_gradients", "expected_gradients"):
        return settings.get("steps", settings.get("samples")) + 2 * fwd_ratio
    if method in ("smoothgrad", "smoothgrad_squared", "vargrad"):
        return settings["samples"] + fwd_ratio
    if method == "occlusion":
        return 49 * fwd_ratio + fwd_ratio
    if method in ("rise", "lime", "kernel_shap"):
        return settings["samples"] * fwd_ratio + 2 * fwd_ratio
    return 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--methods", nargs="*", default=None, help="default: every registered one")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for name in args.models:
        model = MODELS[name]().eval()
        x = torch.rand(args.batch, 3, args.size, args.size)
        forward_backward(model, x)()  # warm-up of torch
        pellucid.explain(model, x, 0, method="gradient")  # warm-up of pellucid's first call
        unit, unit_mem = timed(forward_backward(model, x), repeats=3)
        fwd, _ = timed(forward_only(model, x), repeats=3)
        print(f"\n{name}: batch {args.batch}×3×{args.size}², {args.threads} threads; "
              f"forward+backward {unit:.3f} s ({unit_mem:.0f} MiB), forward {fwd:.3f} s")
        print(f"{'method':24s} {'seconds':>9s} {'ratio':>8s} {'expected':>9s} {'peak MiB':>9s}")
        table = method_settings(x, args.steps, args.samples)
        for method in args.methods or pellucid.list_methods():
            if method not in table:
                continue
            settings = {k: v for k, v in table[method].items()
                        if k in pellucid.get_method(method).settings()}
            run = partial(pellucid.explain, model, x, 0, method=method, **settings)
            expected = expected_passes(method, settings, fwd / unit)
            seconds, peak = timed(run, repeats=3 if expected <= 2 else 1)
            print(f"{method:24s} {seconds:9.3f} {seconds / unit:7.2f}× {expected:8.2f}× "
                  f"{peak:9.0f}")


if __name__ == "__main__":
    main()
