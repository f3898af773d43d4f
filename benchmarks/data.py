"""Time the data generators: 10 000 shapes images of 64×64 (target: under 30 s here).

    python -m benchmarks.data [N]
"""

from __future__ import annotations

import sys
import time

from pellucid.data import clever_hans, shapes


def timed(label: str, fn) -> None:
    start = time.perf_counter()
    fn()
    print(f"{label}: {time.perf_counter() - start:.1f} s")


def main(n: int = 10_000) -> None:
    shapes(10, seed=0)  # build the shape templates once
    timed(f"shapes({n}, texture)", lambda: shapes(n, seed=0))
    timed(f"shapes({n}, noise)", lambda: shapes(n, seed=0, background="noise"))
    timed(f"clever_hans({n}, n_test={n // 4})", lambda: clever_hans(n, seed=0))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
