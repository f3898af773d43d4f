"""Benchmark: transformer explanations as ratios to one forward+backward pass of the model.

BERT-base-sized (``BertForSequenceClassification(BertConfig())``, fed ``inputs_embeds`` of
sequence 128) and ViT-B/16-sized (``ViTForImageClassification(ViTConfig())``, 224 px) models,
random weights, eager attention, batch 8, 2 threads. For each method (``lrp.attnlrp``,
``lrp.cp_lrp``, ``integrated_gradients`` with 32 steps run in chunks of the batch's size,
``gradient_x_input``, ``generic_attention``) it prints the whole ``pellucid.explain`` call's
best seconds over ``--repeats`` calls, its ratio to one forward + input-gradient backward pass
of the same batch (measured in the same run, interleaved with the methods, the best of them),
the first call's ratio (it includes one-off work: the model's structure, derived weights) and
the first call's peak resident memory above its start (``benchmarks._measure``).
The issue's target for the LRP composites is ≤ 1.5×. ``lxt.efficient`` (the AttnLRP
reference) patches transformers 4 classes only, so its ratio is printed where it can run and
a one-line note otherwise.

Run: ``python -m benchmarks.transformers [--models bert,vit] [--batch 8] [--threads 2]``;
a quick look on a small machine: ``--batch 2 --seq 64 --layers 4``.
Other processes sharing the CPU inflate every number; compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
from torch import nn

import pellucid
import transformers
from benchmarks._measure import forward_backward, timed

METHODS = ("lrp.attnlrp", "lrp.cp_lrp", "integrated_gradients", "gradient_x_input",
           "generic_attention")


class BertOnEmbeddings(nn.Module):
    """A BERT classifier fed its input embeddings (B, L, 768) (token ids are issue 12, item 4)."""

    def __init__(self, layers: int | None) -> None:
        super().__init__()
        config = transformers.BertConfig(attn_implementation="eager")
        if layers is not None:
            config.num_hidden_layers = layers
        self.bert = transformers.BertForSequenceClassification(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bert(inputs_embeds=x).logits


def bert(args: argparse.Namespace) -> tuple[nn.Module, torch.Tensor]:
    model = BertOnEmbeddings(args.layers).eval()
    return model, torch.randn(args.batch, args.seq, model.bert.config.hidden_size)


def vit(args: argparse.Namespace) -> tuple[nn.Module, torch.Tensor]:
    config = transformers.ViTConfig(attn_implementation="eager")
    if args.layers is not None:
        config.num_hidden_layers = args.layers
    model = transformers.ViTForImageClassification(config).eval()
    return model, torch.randn(args.batch, 3, config.image_size, config.image_size)


MODELS = {"bert": bert, "vit": vit}


def lxt_note() -> str:
    """Why ``lxt.efficient`` cannot be timed here, or an empty string where it can."""
    if int(transformers.__version__.split(".")[0]) >= 5:
        return (f"lxt: not run; lxt.efficient patches transformers<5 model classes and "
                f"transformers {transformers.__version__} is installed")
    try:
        import lxt.efficient  # noqa: F401
    except ImportError:
        return "lxt: not run; the lxt package is not installed"
    return ""


def bench_model(name: str, model: nn.Module, x: torch.Tensor, args: argparse.Namespace) -> None:
    unit_run = forward_backward(model, x)
    unit_run()  # warm-up of torch
    pellucid.explain(model, x, 0, method="gradient")  # warm-up of pellucid's first call
    unit, unit_mem = timed(unit_run, repeats=args.repeats)
    layers = model.config.num_hidden_layers if hasattr(model, "config") \
        else model.bert.config.num_hidden_layers
    print(f"\n{name}: input {tuple(x.shape)}, {layers} layers, {args.threads} threads; "
          f"forward+backward {unit:.3f} s ({unit_mem:.0f} MiB) at the start")
    rows = []
    for method in args.methods.split(","):
        settings = {"steps": 32, "batch_size": len(x)} if method == "integrated_gradients" \
            else {}
        run = partial(pellucid.explain, model, x, 0, method=method, **settings)
        first, peak = timed(run)  # includes one-off work (structure, derived weights)
        best = min(first, timed(run, repeats=args.repeats - 1)[0]) if args.repeats > 1 \
            else first
        rows.append((method, best, first, peak))
        unit = min(unit, timed(unit_run)[0])  # interleaved: the reference at its best
    print(f"reference forward+backward, best over the run: {unit:.3f} s")
    print(f"{'method':24s} {'seconds':>9s} {'ratio':>8s} {'1st call':>9s} {'peak MiB':>9s}")
    for method, best, first, peak in rows:
        print(f"{method:24s} {best:9.3f} {best / unit:7.2f}× {first / unit:8.2f}× {peak:9.0f}")

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="bert,vit", help="comma-separated: bert, vit")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128, help="BERT's sequence length")
    parser.add_argument("--layers", type=int, default=None,
                        help="encoder layers (default: the configs' 12)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.models.split(","):
        if name not in MODELS:
            parser.error(f"--models: unknown model {name!r}; choose from {', '.join(MODELS)}")
        torch.manual_seed(0)
        model, x = MODELS[name](args)
        bench_model(name, model, x, args)
    note = lxt_note()
    if note:
        print(f"\n{note}")


if __name__ == "__main__":
    main()
