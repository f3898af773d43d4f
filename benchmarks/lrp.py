"""Benchmark: rule-based methods vs one forward+backward pass of the same model, with anchors.

VGG-16- and ResNet-50-shaped models (random weights), batch 8 × 3 × 224 × 224, 2 threads.
For each method it reports, as ratios to one forward pass plus an input-gradient backward pass
(the reference, the plain gradient), reference and method calls interleaved, best of
``--repeats``:

- ``cpu×`` / ``wall×``: one call of ``Method.attribute`` (for the rule engine: a recorded
  forward and the walk) by this process's CPU time (less sensitive to other processes) and by
  wall time;
- ``+MiB`` / ``mem×``: the peak resident memory above the start of the call (freed memory is
  handed back to the OS before each measured call, ``malloc_trim``), and its ratio to the
  reference's peak; the weight cache built by the first call is part of the start level;
- ``target``: issue 14's target for the time ratio (memory: ≤1.3× for every method);
- ``build s``: the one-off cost of the weights derived for the method (folded BatchNorms,
  rule-modified weights, kept in the engine's weight cache, cleared before the first call),
  the first call's wall time minus the best later call's;
- ``explain×`` (with ``--explain``): the whole ``pellucid.explain`` call, which adds the model
  guard, the private copy of the inputs and the target's resolution.

Anchors, measured in the same loop when they import (empty cells otherwise): Captum
(``GuidedBackprop``, ``Deconvolution``, ``DeepLift`` on a copy of the model with one
non-in-place ReLU module per use, ``LRP`` where it runs) and Zennit 1.0.0 (``EpsilonPlusFlat``
and ``EpsilonGammaBox(low, high)`` with ``zennit.attribution.Gradient``; imported through
``../shared/tools/tv_shim.py``). After each model's table, one line per anchor gives
max |pellucid − anchor| / max |pellucid| on the same batch (Zennit with the output relevance
f(x)_t, as pellucid starts; pellucid's z⁺ with ``bias="split"``, Zennit's convention).

Run: ``python -m benchmarks.lrp [--methods gradient,lrp.epsilon] [--repeats 2] [--batch 8]
[--models vgg16,resnet50] [--no-anchors] [--explain]``. Other processes sharing the CPU
inflate every number; compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import types
from collections.abc import Callable
from pathlib import Path

import torch
from tests.helpers.architectures import BasicBlock, Bottleneck, resnet50_shaped, vgg16_shaped
from torch import Tensor, nn

import pellucid
import pellucid.lrp
from benchmarks._measure import measured
from pellucid.guard import preserved
from pellucid.targets import Target
from pellucid.task import Task

DEFAULT_METHODS = ("gradient", "lrp.epsilon", "lrp.zero", "lrp.epsilon_plus_flat",
                   "lrp.epsilon_gamma_box", "lrp.epsilon_alpha2_beta1", "guided_backprop",
                   "deconvnet", "deeplift", "excitation_backprop")
#: issue 14's targets, time as a ratio to one forward+backward
TARGETS = {"lrp.epsilon": 1.05, "lrp.zero": 1.05, "guided_backprop": 1.05, "deconvnet": 1.05,
           "lrp.epsilon_plus_flat": 1.5, "lrp.epsilon_gamma_box": 1.5,
           "lrp.epsilon_alpha2_beta1": 2.0, "deeplift": 1.5, "excitation_backprop": 1.5}
MEMORY_TARGET = 1.3
TARGET_CLASS = 0
SHIM_DIR = Path(__file__).resolve().parents[2] / "shared" / "tools"

Attribute = Callable[[], Tensor]


def forward_backward(model: nn.Module, x: Tensor) -> Tensor:
    xg = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(xg)[:, TARGET_CLASS].sum(), xg)
    return grad


def bounds(x: Tensor) -> tuple[float, float]:
    """The z^B bounds shared by pellucid and Zennit: the batch's minimum and maximum."""
    return float(x.min()), float(x.max())


def build_method(name: str, x: Tensor, **settings: object) -> pellucid.Method:
    if name == "lrp.epsilon_gamma_box":
        low, high = bounds(x)
        settings = {"low": low, "high": high, **settings}
    return pellucid.get_method(name, **settings)


# ---------------------------------------------------------------------------------------------
# anchors
# ---------------------------------------------------------------------------------------------


def _bottleneck_forward(self: Bottleneck, x: Tensor) -> Tensor:
    """Bottleneck.forward with one ReLU module per use and no in-place sum (for Captum)."""
    out = self.relu1(self.bn1(self.conv1(x)))
    out = self.relu2(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    identity = x if self.downsample is None else self.downsample(x)
    return self.relu3(out + identity)


def unique_relus(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with a distinct, non-in-place ReLU module per use (Captum hooks
    modules, so a ReLU called three times per bottleneck would mix its three calls)."""
    twin = copy.deepcopy(model)
    for module in twin.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
        if isinstance(module, Bottleneck):
            module.relu1, module.relu2, module.relu3 = nn.ReLU(), nn.ReLU(), nn.ReLU()
            del module.relu
            module.forward = types.MethodType(_bottleneck_forward, module)
    return twin


def import_zennit() -> types.ModuleType | None:
    """zennit, imported through the torchvision shim (None where either is missing)."""
    if not (SHIM_DIR / "tv_shim.py").exists():
        return None
    sys.path.insert(0, str(SHIM_DIR))
    try:
        import tv_shim

        import transformers  # noqa: F401  (probes torchvision's spec at import: before the shim)

        tv_shim.install(bottleneck=Bottleneck, basicblock=BasicBlock)
        try:
            import zennit
            import zennit.attribution
            import zennit.canonizers
            import zennit.composites
            import zennit.torchvision
        finally:
            tv_shim.uninstall()
    except Exception as exc:
        print(f"zennit anchors left out: {type(exc).__name__}: {exc}")
        return None
    finally:
        sys.path.remove(str(SHIM_DIR))
    return zennit


def zennit_anchors(model: nn.Module, x: Tensor) -> dict[str, tuple[str, Attribute]]:
    zennit = import_zennit()
    if zennit is None:
        return {}
    has_bottleneck = any(isinstance(m, Bottleneck) for m in model.modules())

    def canonizers() -> list[object]:
        if has_bottleneck:
            return [zennit.torchvision.ResNetCanonizer()]
        return [zennit.canonizers.SequentialMergeBatchNorm()]

    def start(out: Tensor) -> Tensor:  # the target's logit, as pellucid's relevance starts
        mask = torch.zeros_like(out)
        mask[:, TARGET_CLASS] = 1
        return out * mask

    def run(make_composite: Callable[[], object]) -> Attribute:
        def attribute() -> Tensor:
            with zennit.attribution.Gradient(model, make_composite()) as attributor:
                return attributor(x, start)[1]

        return attribute

    low, high = bounds(x)
    return {
        "lrp.epsilon_plus_flat": ("zennit EpsilonPlusFlat", run(
            lambda: zennit.composites.EpsilonPlusFlat(canonizers=canonizers()))),
        "lrp.epsilon_gamma_box": ("zennit EpsilonGammaBox", run(
            lambda: zennit.composites.EpsilonGammaBox(
                low=torch.full_like(x, low), high=torch.full_like(x, high),
                canonizers=canonizers()))),
    }


def captum_anchors(model: nn.Module, x: Tensor) -> dict[str, tuple[str, Attribute]]:
    try:
        from captum.attr import LRP, Deconvolution, DeepLift, GuidedBackprop
    except ImportError:
        return {}
    twin = unique_relus(model)
    anchors = {
        "guided_backprop": ("captum GuidedBackprop",
                            lambda: GuidedBackprop(twin).attribute(x, target=TARGET_CLASS)),
        "deconvnet": ("captum Deconvolution",
                      lambda: Deconvolution(twin).attribute(x, target=TARGET_CLASS)),
        "deeplift": ("captum DeepLift", lambda: DeepLift(twin).attribute(
            x, baselines=torch.zeros_like(x), target=TARGET_CLASS)),
    }
    try:  # Captum's LRP has no rule for a residual sum; it runs only on plain chains
        if not any(isinstance(m, (Bottleneck, BasicBlock)) for m in model.modules()):
            LRP(twin).attribute(x[:1], target=TARGET_CLASS)
            anchors["lrp.epsilon"] = (
                "captum LRP", lambda: LRP(twin).attribute(x, target=TARGET_CLASS))
    except Exception as exc:
        print(f"captum LRP left out: {type(exc).__name__}: {exc}")
    return anchors


# ---------------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------------


def relative_difference(ours: Tensor, theirs: Tensor) -> float:
    ours, theirs = ours.detach(), theirs.detach()
    return float((ours - theirs).abs().max() / ours.abs().max())


def bench_model(name: str, model: nn.Module, x: Tensor, methods: list[str], repeats: int,
                anchors: dict[str, tuple[str, Attribute]], explain: bool) -> None:
    """Reference, method and anchor calls interleaved, best of ``repeats`` each."""
    print(f"\n### {name}, batch {len(x)} × {tuple(x.shape[1:])}: ratios to one "
          f"forward+backward, best of {repeats}\n")
    header = ["method", "cpu×", "wall×", "+MiB", "mem×", "target", "build s", "anchor",
              "anchor cpu×", "anchor wall×", "anchor +MiB"] + (["explain×"] if explain else [])
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    task = Task(model, Target(classes=torch.full((len(x),), TARGET_CLASS)), rows=len(x))
    agreements: list[str] = []
    ref_walls, ref_cpus, ref_peaks = [], [], []
    for method_name in methods:
        method = build_method(method_name, x)

        def engine(method: pellucid.Method = method) -> Tensor:
            with preserved(model):
                return method.attribute(task, x)[0]

        pellucid.lrp.clear_weight_cache()
        first_wall, _, _, ours = measured(engine)
        label, anchor = anchors.get(method_name, ("", None))
        if anchor is not None:
            theirs = anchor()  # warm-up, and the agreement check
            reference = ours
            if method_name == "lrp.epsilon_plus_flat":  # Zennit's bias convention for z⁺
                reference = build_method(method_name, x, bias="split").attribute(task, x)[0]
            agreements.append(f"- {method_name} vs {label}: max |difference| / max |attribution|"
                              f" = {relative_difference(reference, theirs):.2e}")
        del ours
        refs, calls, anchor_calls = [], [], []
        for _ in range(repeats):
            refs.append(measured(lambda: forward_backward(model, x))[:3])
            calls.append(measured(engine)[:3])
            if anchor is not None:
                anchor_calls.append(measured(anchor)[:3])
        ref_wall, ref_cpu = min(r[0] for r in refs), min(r[1] for r in refs)
        ref_walls.append(ref_wall)
        ref_cpus.append(ref_cpu)
        ref_peak = min(r[2] for r in refs)
        ref_peaks.append(ref_peak)
        wall, cpu, peak = (min(c[i] for c in calls) for i in range(3))
        cells = [method_name, f"{cpu / ref_cpu:.2f}", f"{wall / ref_wall:.2f}", f"{peak:.0f}",
                 f"{peak / ref_peak:.2f}", f"≤{TARGETS[method_name]}" if method_name in TARGETS
                 else "–", f"{max(first_wall - wall, 0.0):.2f}"]
        if anchor_calls:
            a_wall, a_cpu, a_peak = (min(c[i] for c in anchor_calls) for i in range(3))
            cells += [label, f"{a_cpu / ref_cpu:.2f}", f"{a_wall / ref_wall:.2f}",
                      f"{a_peak:.0f}"]
        else:
            cells += ["", "", "", ""]
        if explain:
            whole = measured(lambda m=method: pellucid.explain(
                model, x, target=TARGET_CLASS, method=m))[0]
            cells.append(f"{whole / ref_wall:.2f}")
        print("| " + " | ".join(cells) + " |", flush=True)
    print(f"\nreference (forward+backward): best {min(ref_walls):.2f} s wall, "
          f"{min(ref_cpus):.2f} s CPU, +{min(ref_peaks):.0f} MiB (the mem× unit)")
    if agreements:
        print("\nagreement with the anchors on this batch:")
        print("\n".join(agreements))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default="vgg16,resnet50")
    parser.add_argument("--no-anchors", dest="anchors", action="store_false")
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size)
    print(f"pellucid {pellucid.__file__}, torch {torch.__version__}, "
          f"{args.threads} threads; load average {os.getloadavg()[0]:.2f} at the start")
    builders = {"vgg16": vgg16_shaped, "resnet50": resnet50_shaped}
    for name in args.models.split(","):
        model = builders[name]().eval()
        with torch.no_grad():
            model(x[:1])  # warm up allocator and kernels
        anchors = {**captum_anchors(model, x), **zennit_anchors(model, x)} if args.anchors \
            else {}
        bench_model(name, model, x, args.methods.split(","), args.repeats, anchors,
                    args.explain)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
