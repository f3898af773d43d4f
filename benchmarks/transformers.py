"""Benchmark: transformer explanations as ratios to one forward+backward pass of the model.

BERT-base-sized (``BertForSequenceClassification(BertConfig())``, fed token ids of sequence
128 with an attention mask, every other sequence padded to half its length: explained at the
word embeddings, as users run it) and ViT-B/16-sized (``ViTForImageClassification(ViTConfig())``,
224 px pixels) models, random weights, ``--attention`` sdpa (the transformers default) and/or
eager, batch 8, 2 threads. For each method (``lrp.attnlrp``, ``lrp.cp_lrp``,
``integrated_gradients`` with 32 steps run in chunks of the batch's size, ``gradient_x_input``,
``generic_attention``) it prints the whole ``pellucid.explain`` call's best seconds over
``--repeats`` calls, its ratio to one forward + input-gradient backward pass of the same batch
(for BERT, the gradient at the word embeddings' output; measured in the same run, interleaved
with the methods, the best of them), the first call's ratio (it includes one-off work: the
model's structure, derived weights), the ratio of the best CPU times of the process (which
moves less with the load of a shared machine) and the first call's peak resident memory above
its start (``benchmarks._measure``). The issue's target for the LRP composites is ≤ 1.5×.
``lxt.efficient`` (the AttnLRP reference) patches transformers 4 classes only, so its ratio is
printed where it can run and a one-line note otherwise.

Run: ``python -m benchmarks.transformers [--models bert,vit] [--attention sdpa,eager]
[--batch 8] [--threads 2]``;
a quick look on a small machine: ``--batch 2 --seq 64 --layers 4``.
Other processes sharing the CPU inflate every number; compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

import pellucid
import transformers
from benchmarks._measure import forward_backward, timed_cpu

METHODS = ("lrp.attnlrp", "lrp.cp_lrp", "integrated_gradients", "gradient_x_input",
           "generic_attention")


def bert(args: argparse.Namespace, attention: str) -> tuple[nn.Module, torch.Tensor, dict]:
    config = transformers.BertConfig(attn_implementation=attention)
    if args.layers is not None:
        config.num_hidden_layers = args.layers
    model = transformers.BertForSequenceClassification(config).eval()
    ids = torch.randint(config.vocab_size, (args.batch, args.seq))
    mask = torch.ones_like(ids)
    mask[1::2, args.seq // 2:] = 0  # every other sequence padded to half its length
    return model, ids, {"attention_mask": mask}


def vit(args: argparse.Namespace, attention: str) -> tuple[nn.Module, torch.Tensor, dict]:
    config = transformers.ViTConfig(attn_implementation=attention)
    if args.layers is not None:
        config.num_hidden_layers = args.layers
    model = transformers.ViTForImageClassification(config).eval()
    return model, torch.randn(args.batch, 3, config.image_size, config.image_size), {}


def embedding_forward_backward(model: nn.Module, ids: torch.Tensor,
                               kwargs: dict) -> Callable[[], None]:
    """One forward pass on token ids and one backward pass to the word embeddings' output
    (where pellucid explains token ids), the unit of cost for BERT."""
    embeddings = model.get_input_embeddings()

    def run() -> None:
        captured = []

        def keep(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
            out = out.detach().requires_grad_(True)
            captured.append(out)
            return out

        handle = embeddings.register_forward_hook(keep)
        try:
            logits = model(ids, **kwargs).logits
        finally:
            handle.remove()
        (grad,) = torch.autograd.grad(logits[:, 0].sum(), captured[0])
        del grad

    return run


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


def bench_model(name: str, model: nn.Module, x: torch.Tensor, kwargs: dict,
                args: argparse.Namespace) -> None:
    unit_run = (embedding_forward_backward(model, x, kwargs) if kwargs
                else forward_backward(model, x))
    unit_run()  # warm-up of torch
    # warm-up of pellucid's first call
    pellucid.explain(model, x, 0, method="gradient", model_kwargs=kwargs)
    unit, unit_cpu, unit_mem = timed_cpu(unit_run, repeats=args.repeats)
    print(f"\n{name} ({model.config._attn_implementation} attention): input {tuple(x.shape)}, "
          f"{model.config.num_hidden_layers} layers, {args.threads} threads; "
          f"forward+backward {unit:.3f} s ({unit_mem:.0f} MiB) at the start")
    rows = []
    for method in args.methods.split(","):
        settings = {"steps": 32, "batch_size": len(x)} if method == "integrated_gradients" \
            else {}
        run = partial(pellucid.explain, model, x, 0, method=method, model_kwargs=kwargs,
                      **settings)
        first, first_cpu, peak = timed_cpu(run)  # includes one-off work (structure, weights)
        best, best_cpu, _ = timed_cpu(run, repeats=args.repeats - 1) if args.repeats > 1 \
            else (first, first_cpu, peak)
        rows.append((method, min(first, best), first, min(first_cpu, best_cpu), peak))
        again, again_cpu, _ = timed_cpu(unit_run)  # interleaved: the reference at its best
        unit, unit_cpu = min(unit, again), min(unit_cpu, again_cpu)
    print(f"reference forward+backward, best over the run: {unit:.3f} s ({unit_cpu:.3f} s CPU)")
    print(f"{'method':24s} {'seconds':>9s} {'ratio':>8s} {'1st call':>9s} {'CPU ratio':>10s} "
          f"{'peak MiB':>9s}")
    for method, best, first, cpu, peak in rows:
        print(f"{method:24s} {best:9.3f} {best / unit:7.2f}× {first / unit:8.2f}× "
              f"{cpu / unit_cpu:9.2f}× {peak:9.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="bert,vit", help="comma-separated: bert, vit")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--attention", default="sdpa",
                        help="comma-separated attention implementations: sdpa, eager")
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
        for attention in args.attention.split(","):
            torch.manual_seed(0)
            model, x, kwargs = MODELS[name](args, attention)
            bench_model(name, model, x, kwargs, args)
    note = lxt_note()
    if note:
        print(f"\n{note}")


if __name__ == "__main__":
    main()
