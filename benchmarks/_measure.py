"""Timing and peak-memory helpers shared by the benchmark scripts."""

from __future__ import annotations

import ctypes
import gc
import os
import threading
import time
from collections.abc import Callable

import torch

PAGE = os.sysconf("SC_PAGE_SIZE")


try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc: the resident baseline may include freed, unreturned memory
    _LIBC = None


def release_freed_memory() -> None:
    """Collect garbage and hand freed heap memory back to the OS (glibc ``malloc_trim``), so
    that the resident size at the start of a measurement is not inflated by earlier calls."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakMemory:
    """Peak resident memory above the level at entry, sampled every 2 ms (freed memory is
    handed back to the OS first: :func:`release_freed_memory`)."""

    def __enter__(self) -> PeakMemory:
        release_freed_memory()
        self.start = rss_bytes()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def extra_mib(self) -> float:
        return (self.peak - self.start) / 2**20


def measured(fn: Callable[[], object]) -> tuple[float, float, float, object]:
    """(wall seconds, CPU seconds of this process, peak extra MiB, result) of one call."""
    with PeakMemory() as mem:
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn()
        wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return wall, cpu, mem.extra_mib, result


def timed(fn: Callable[[], object], repeats: int = 1) -> tuple[float, float]:
    """(best seconds over ``repeats``, peak extra MiB of the first run)."""
    best = float("inf")
    peak = 0.0
    for i in range(repeats):
        with PeakMemory() as mem:
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        if i == 0:
            peak = mem.extra_mib
    return best, peak


def timed_cpu(fn: Callable[[], object], repeats: int = 1) -> tuple[float, float, float]:
    """(best seconds, best CPU seconds of this process over ``repeats``, peak extra MiB of the
    first run). CPU time counts only the time the process ran, so it moves less than the
    wall time with the load of a shared machine."""
    best, best_cpu, peak = float("inf"), float("inf"), 0.0
    for i in range(repeats):
        with PeakMemory() as mem:
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            best = min(best, time.perf_counter() - start)
            best_cpu = min(best_cpu, time.process_time() - start_cpu)
        if i == 0:
            peak = mem.extra_mib
    return best, best_cpu, peak


def forward_backward(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """One forward and one backward pass to the input, the unit of cost."""

    def run() -> None:
        xg = x.clone().requires_grad_(True)
        out = model(xg)
        out = out.logits if hasattr(out, "logits") else out
        (grad,) = torch.autograd.grad(out[:, 0].sum(), xg)
        del grad

    return run


def forward_only(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        with torch.no_grad():
            model(x)

    return run
