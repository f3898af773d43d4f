"""The cost of the dataset runner (pellucid.runs) on the shapes data and the shipped VGG.

    python -m benchmarks.runs                          # 2,048 images, 2 torch threads
    python -m benchmarks.runs --n 256 --threads 2 --repeats 2   # a quicker look
    python -m benchmarks.runs --device cuda --threads 16

``n`` images of :func:`pellucid.data.shapes` (seed :data:`SEED`) and the shipped
``shapes_vgg``; the methods of :data:`METHODS` explain the true class and the metrics of
:data:`METRICS` score each explanation (relevance mass against the object masks; deletion
with ``--steps`` removal steps), in batches of ``--batch-size``. Measured, each once, in
this order:

(a) ``bare``: the loop a user writes without the runner, ``method(model, x, y)`` then
    ``pellucid.evaluate(...)`` per batch and method, nothing kept; ``runner``:
    ``pellucid.runs.run`` into a float16 zarr store (its overhead over ``bare``: targets,
    outputs, the store's writes, the progress bookkeeping; the issue's target is ≤ 10 %).
(b) ``per metric``: the old ``benchmark`` loop (removed), each method explained again for
    every metric, against ``runner`` (one explanation per method and batch).
(c) ``resume, complete``: ``run`` again on the complete store (every batch skipped);
    ``resume, half``: a store holding the first half (a run on the first half of the data),
    completed by ``run`` on all of it, against ``runner``.
(d) the store's size on disk per image.

The runner also records each method's seconds per batch (explanation and metrics): its own
time, the wall time less their sum, is the overhead free of the machine's load changing
between two runs.

``bare`` and ``runner`` run ``--repeats`` times, interleaved, and the fastest counts (the
others once). Prints a markdown table: wall and CPU seconds (this process's, all threads;
both move with other jobs on the machine), and their ratio to ``runner``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

import pellucid
from pellucid.data import shapes
from pellucid.metrics import evaluate, get_metric
from pellucid.models import load_pretrained
from pellucid.runs import Run, run

#: the seed of the images (the demo models trained on other seeds)
SEED = 21
#: (method name, settings)
METHODS = (("gradient", {}), ("integrated_gradients", {"steps": 16}), ("lrp.epsilon_plus", {}))
#: the metrics, in column order
METRICS = ("faithfulness.deletion", "localisation.relevance_mass", "complexity.sparseness")


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2048, help="images")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch")
    parser.add_argument("--steps", type=int, default=16, help="deletion steps")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of bare and runner, interleaved; the fastest counts")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_pretrained("shapes_vgg").to(args.device)
    data = shapes(args.n, size=64, seed=SEED)
    x, y, masks = (t.to(args.device) for t in (data.images, data.labels, data.masks))
    methods = [pellucid.get_method(name, **settings) for name, settings in METHODS]
    metrics = [get_metric(name, **({"steps": args.steps} if name.endswith("deletion") else {}))
               for name in METRICS]
    bs = args.batch_size
    cuts = [slice(s, min(s + bs, args.n)) for s in range(0, args.n, bs)]

    def bare() -> None:
        for rows in cuts:
            for method in methods:
                explanation = method(model, x[rows], y[rows])
                evaluate(model, x[rows], y[rows], explanation, metrics, masks[rows])

    def per_metric() -> None:
        for rows in cuts:
            for method in methods:
                for metric in metrics:
                    explanation = method(model, x[rows], y[rows])
                    evaluate(model, x[rows], y[rows], explanation, [metric], masks[rows])

    root = Path(tempfile.mkdtemp())

    def runner(path: Path, n: int = args.n) -> None:
        run(model, (x[:n], y[:n], masks[:n]), methods, metrics=metrics, target="labels",
            store=path, batch_size=bs, progress=False, dtype="float16")

    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def measure(label: str, fn) -> None:
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        took, took_cpu = time.perf_counter() - start, time.process_time() - start_cpu
        seconds[label] = min(took, seconds.get(label, took))
        cpu[label] = min(took_cpu, cpu.get(label, took_cpu))
        print(f"{label}: {took:.1f} s, {took_cpu:.1f} s CPU", file=sys.stderr)

    for _ in range(args.repeats):
        measure("bare loop (method + evaluate per batch)", bare)
        shutil.rmtree(root / "full", ignore_errors=True)
        measure("runner (float16 zarr store)", lambda: runner(root / "full"))
    measure("per metric (old benchmark: method per metric)", per_metric)
    measure("resume, complete store", lambda: runner(root / "full"))
    half = len(cuts) // 2 * bs
    runner(root / "half", half)
    measure(f"resume, first {half} stored", lambda: runner(root / "half"))
    size = folder_bytes(root / "full")
    stored = Run.open(root / "full")
    inside = sum(float(stored.store.array(f"methods/{key}/seconds")[:].sum())
                 for key in stored.store.attrs["methods"].values())
    shutil.rmtree(root)

    reference = seconds["runner (float16 zarr store)"]
    reference_cpu = cpu["runner (float16 zarr store)"]
    print(f"\n{args.n} shapes images 64×64, shapes_vgg, batch {bs}, {args.device}, "
          f"{args.threads} threads, deletion steps {args.steps}, best of {args.repeats}; "
          f"{len(methods)} methods × {len(metrics)} metrics\n")
    print("| measurement | wall s | × runner | CPU s | × runner |")
    print("|---|---:|---:|---:|---:|")
    for label, value in seconds.items():
        print(f"| {label} | {value:.1f} | {value / reference:.3f} | {cpu[label]:.1f} | "
              f"{cpu[label] / reference_cpu:.3f} |")
    print(f"| store size | {size / 2**20:.1f} MiB | | {size / args.n / 1024:.1f} KiB per "
          "image | |")
    overhead = reference_cpu / cpu["bare loop (method + evaluate per batch)"] - 1
    print(f"\nrunner overhead over the bare loop (CPU time): {100 * overhead:+.1f} % "
          f"(cpu count {os.cpu_count()}, load average {os.getloadavg()[0]:.1f})")
    print(f"runner time outside the methods and metrics (its own seconds): "
          f"{reference - inside:.2f} s of {reference:.1f} s "
          f"({100 * (reference - inside) / reference:.1f} %)")
    print("command: python -m benchmarks.runs " + " ".join(sys.argv[1:] if argv is None
                                                           else argv))


if __name__ == "__main__":
    main()
