"""The files the command line reads and the folders it writes, checked before any work.

:func:`load_file` reads the archives that ``--data`` and ``--weights`` name (torch, or numpy
``.npy``/``.npz``) without running code from them; :func:`output_folder` makes sure ``--out``
can hold files before a model runs. Every mistake is a :class:`UsageError` naming the flag.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .command import UsageError

#: file suffixes read with numpy.load(allow_pickle=False) instead of torch.load
NUMPY_SUFFIXES = (".npy", ".npz")


def load_file(path: Path, flag: str) -> Any:
    """The contents of the torch or numpy archive at ``path``, read without running code.

    torch files are read with ``torch.load(weights_only=True)``; ``.npy`` and ``.npz`` files
    with ``numpy.load(allow_pickle=False)`` as a tensor and a dict of tensors.
    """
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise UsageError(f"{flag} {path} {what}; name a file")
    import torch

    numpy_file = path.suffix.lower() in NUMPY_SUFFIXES
    try:
        if not numpy_file:
            return torch.load(path, map_location="cpu", weights_only=True)
        import numpy as np

        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return torch.from_numpy(loaded)
        with loaded:
            return {key: torch.from_numpy(loaded[key]) for key in loaded.files}
    except Exception as error:  # any reader failure means the file is not a readable archive
        if numpy_file:
            raise UsageError(
                f"{flag} {path} cannot be read as a numpy archive without pickles "
                f"({_first_line(error)}); save numeric arrays with numpy.save or numpy.savez"
            ) from error
        raise UsageError(
            f"{flag} {path} cannot be read weights-only ({_first_line(error)}). pellucid "
            "reads torch.save files with torch.load(weights_only=True), which refuses "
            "pickled code and objects: save tensors, a dict of tensors or model.state_dict()"
        ) from error


def output_folder(path: Path, flag: str = "--out") -> Path:
    """``path`` as an existing, writable folder (created if missing), or a UsageError."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"{flag} {path} is a file, not a folder; name a folder") from None
    except OSError as error:
        raise UsageError(f"{flag} {path} cannot be created ({_first_line(error)})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path} is not writable; name a folder you can write to")
    return path


def _first_line(error: BaseException, limit: int = 160) -> str:
    """``"<ExceptionType>: <first line of its message>"``, without terminal colour codes and
    cut to ``limit`` characters."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    if not text:
        return type(error).__name__
    line = text.splitlines()[0]
    return f"{type(error).__name__}: {line if len(line) <= limit else line[:limit] + '…'}"


__all__ = ["NUMPY_SUFFIXES", "load_file", "output_folder"]
