"""Reproduce the shipped demo weights and their manifest (src/pellucid/models/weights/).

    .venv/bin/python scripts/train_demo_models.py [NAME ...]
"""

from __future__ import annotations

import json
import sys
import time

from pellucid.models import DEMO_MODELS, TEXT_MODELS, manifest, train_demo_model


def main(names: list[str]) -> None:
    for name in names or [*DEMO_MODELS, *TEXT_MODELS]:
        start = time.perf_counter()
        train_demo_model(name)
        print(f"{name}: {time.perf_counter() - start:.0f} s, "
              f"{json.dumps(manifest()[name]['accuracy'])}")


if __name__ == "__main__":
    main(sys.argv[1:])
