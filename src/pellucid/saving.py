"""Results on disk: one ``.safetensors`` file, the tensors in its body, the rest as JSON.

:class:`~pellucid.Explanation`, :class:`~pellucid.metrics.MetricResult` and the benchmark
:class:`~pellucid.metrics.Table` are saved by this one mechanism (their ``save`` and
``load``). The file is a plain safetensors file: every tensor of the result (at any depth
of its fields) is a tensor of the file, saved contiguous on the CPU with its dtype, and
everything else is JSON in the file's metadata header under the key ``"pellucid"``::

    {"format": "pellucid", "format_version": 1, "kind": "Explanation",
     "pellucid_version": "0.1.0", "fields": {...}}

In ``fields`` a value is JSON where JSON can hold it exactly; otherwise it is an object
with one tag key: ``{"__tensor__": key}`` (a tensor of the file), ``{"__ndarray__": key}``
(a numpy array), ``{"__float__": "nan"}`` (NaN and ±inf, which JSON has not),
``{"__tuple__": [...]}``, ``{"__dict__": [[key, value], ...]}`` (a dict with keys that
are not all strings) and ``{"__repr__": "..."}`` (a value that cannot be stored).

The rule for values that cannot be stored (a target callable, a composite object, a
model, any other object; a tensor of a dtype or layout safetensors has not, with a
warning): their ``repr`` is stored and they load back as that string, a :class:`Repr`.
Loading reads the header as JSON and the tensors with safetensors: it never unpickles.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .errors import ArgumentError, ArgumentTypeError

__all__ = ["FORMAT_VERSION", "Repr", "load_fields", "save_fields"]

#: the version of the layout above; a file of another version is refused on loading
FORMAT_VERSION = 1
#: the metadata key of the JSON header
HEADER_KEY = "pellucid"
TAGS = ("__tensor__", "__ndarray__", "__float__", "__tuple__", "__dict__", "__repr__")
#: dtypes a safetensors file holds (complex128 and quantised dtypes are missing)
STORABLE = (
    torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32,
    torch.int16, torch.int8, torch.uint8, torch.bool, torch.complex64,
)
PathLike = str | os.PathLike


class Repr(str):
    """A value that could not be stored, loaded back as its ``repr`` (a ``str``)."""


def save_fields(path: PathLike, result: Any) -> Path:
    """Save the fields of the dataclass ``result`` to ``path``; the path written.

    Example:
        >>> import tempfile, torch
        >>> from pellucid.metrics import MetricResult
        >>> from pellucid.saving import load_fields, save_fields
        >>> result = MetricResult("complexity.sparseness", torch.tensor([0.5, 1.0]), "higher")
        >>> path = save_fields(tempfile.mkdtemp() + "/r.safetensors", result)
        >>> load_fields(path, MetricResult)["scores"]
        tensor([0.5000, 1.0000])
    """
    file = _path(path)
    if file.is_dir():
        raise ArgumentError(
            "path", f"path {str(file)!r} is a folder; give a file path such as "
            f"{str(file / 'result.safetensors')!r}",
        )
    if not file.parent.is_dir():
        raise ArgumentError(
            "path", f"path {str(file)!r} is in the folder {str(file.parent)!r}, which does not "
            "exist; create the folder first",
        )
    tensors: dict[str, Tensor] = {}
    fields = {f.name: _encode(getattr(result, f.name), tensors, {})
              for f in dataclasses.fields(result)}
    header = {
        "format": "pellucid", "format_version": FORMAT_VERSION, "kind": type(result).__name__,
        "pellucid_version": _version(), "fields": fields,
    }
    from safetensors.torch import save_file

    # written next to the target and renamed over it: an interrupted save leaves the old file
    # (or none), never a truncated one
    partial = file.with_name(f".{file.name}.{os.getpid()}.partial")
    try:
        save_file(tensors, str(partial), metadata={HEADER_KEY: json.dumps(header, allow_nan=False)})
        os.replace(partial, file)
    except OSError as error:
        raise ArgumentError(
            "path", f"path {str(file)!r} cannot be written ({error.strerror or error}); give a "
            "writable file path",
        ) from None
    finally:
        partial.unlink(missing_ok=True)
    return file


def load_fields(path: PathLike, cls: type, device: str | torch.device = "cpu") -> dict[str, Any]:
    """The fields of a ``cls`` saved by :func:`save_fields`, tensors on ``device``.

    A file that is missing, not a safetensors file (corrupt, truncated), not saved by
    pellucid, of another format version or of another kind of result is an
    :class:`~pellucid.errors.ArgumentError` naming ``path``.
    """
    target = _device(device)
    file = _path(path)
    if file.is_dir():
        raise ArgumentError(
            "path", f"path {str(file)!r} is a folder; give the file a result was saved to"
        )
    if not file.is_file():
        raise ArgumentError(
            "path", f"path {str(file)!r} does not exist; give the file a result was saved to"
        )
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            stored = handle.metadata() or {}
            keys = handle.keys()  # a safe_open handle is not iterable
            tensors = {key: handle.get_tensor(key).to(target) for key in keys}
    except (SafetensorError, OSError) as error:
        raise ArgumentError(
            "path", f"path {str(file)!r} is not a readable safetensors file ({error}); it may "
            "be truncated or corrupt: save the result again",
        ) from None
    header = _header(stored, file)
    name = cls.__name__
    if header.get("kind") != name:
        raise ArgumentError(
            "path", f"path {str(file)!r} holds a saved {header.get('kind')}, but {name}.load "
            f"reads a saved {name}; load it with {header.get('kind')}.load",
        )
    encoded = header.get("fields")
    if not isinstance(encoded, dict):
        raise ArgumentError(
            "path", f"path {str(file)!r} has no fields in its header; it is corrupt"
        )
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(encoded) - set(known))
    missing = [n for n, f in known.items() if n not in encoded
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if unknown or missing:
        problem = (f"fields {unknown} that {name} does not have" if unknown
                   else f"no {missing}, which {name} needs")
        raise ArgumentError(
            "path", f"path {str(file)!r} stores {problem}; it was written by pellucid "
            f"{header.get('pellucid_version')}: load it with that version",
        )
    try:
        return {key: _decode(value, tensors, file) for key, value in encoded.items()}
    except (TypeError, ValueError) as error:  # a tag with content of the wrong form
        raise ArgumentError(
            "path", f"path {str(file)!r} has a corrupt pellucid header ({error}); save it again"
        ) from None


def _path(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise ArgumentTypeError(
            "path", f"path must be a file path (str or pathlib.Path), got {type(path).__name__}"
        )
    return Path(path)


def _device(device: Any) -> torch.device:
    """``device`` as a torch device that exists here."""
    try:
        target = torch.device(device)
        torch.empty(0, device=target)
    except (RuntimeError, TypeError, AssertionError) as error:  # not a device, or absent
        raise ArgumentError(
            "device", f"device {device!r} cannot hold tensors here ({error}); pass e.g. "
            "'cpu' or an available GPU such as 'cuda:0'",
        ) from None
    return target


def _version() -> str:
    try:
        return metadata.version("pellucid")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def _header(stored: dict[str, str], file: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file's metadata, checked to be pellucid's format."""
    if HEADER_KEY not in stored:
        raise ArgumentError(
            "path", f"path {str(file)!r} is a safetensors file without pellucid's metadata "
            f"(the key {HEADER_KEY!r}); it was not saved by pellucid's save (a model's weights?)",
        )
    try:
        header = json.loads(stored[HEADER_KEY])
    except json.JSONDecodeError as error:
        raise ArgumentError(
            "path", f"path {str(file)!r} has a corrupt pellucid header ({error}); save it again"
        ) from None
    if not isinstance(header, dict) or header.get("format") != "pellucid":
        raise ArgumentError(
            "path", f"path {str(file)!r} has a {HEADER_KEY!r} header that is not pellucid's "
            "format; it was not saved by pellucid's save",
        )
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise ArgumentError(
            "path", f"path {str(file)!r} was written in pellucid's format version {version!r} "
            f"(by pellucid {header.get('pellucid_version')}), but this pellucid ({_version()}) "
            f"reads format version {FORMAT_VERSION}; load it with the version that wrote it",
        )
    return header


def _encode(value: Any, tensors: dict[str, Tensor], seen: dict[int, str]) -> Any:
    """``value`` as JSON, its tensors added to ``tensors`` (``seen``: id -> key, so that
    one tensor object is stored once and loads back as one object)."""
    if isinstance(value, Repr):
        return {"__repr__": str(value)}
    if value is None or isinstance(value, (bool, str)) or type(value) is int:
        return value
    if isinstance(value, np.generic) and not isinstance(value, np.object_):
        return _encode(value.item(), tensors, seen)
    if isinstance(value, float):
        value = float(value)
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, Tensor):
        return _tensor(value, "__tensor__", tensors, seen)
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufc":
        array = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("="))
        return _tensor(torch.from_numpy(array), "__ndarray__", tensors, seen, id(value))
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and not (len(value) == 1 and
                                                            next(iter(value)) in TAGS):
            return {k: _encode(v, tensors, seen) for k, v in value.items()}
        return {"__dict__": [[_encode(k, tensors, seen), _encode(v, tensors, seen)]
                             for k, v in value.items()]}
    if type(value) is list:
        return [_encode(v, tensors, seen) for v in value]
    if type(value) is tuple:
        return {"__tuple__": [_encode(v, tensors, seen) for v in value]}
    return {"__repr__": _repr(value)}


def _repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception:  # a broken __repr__ must not make the result unsavable
        return f"<{type(value).__qualname__} object>"


def _tensor(value: Tensor, tag: str, tensors: dict[str, Tensor], seen: dict[int, str],
            identity: int | None = None) -> Any:
    """A tensor as a tag naming its key in the file (a copy, contiguous on the CPU)."""
    identity = id(value) if identity is None else identity
    if identity in seen:
        return {tag: seen[identity]}
    if value.layout != torch.strided or value.dtype not in STORABLE or value.is_quantized:
        warnings.warn(
            f"a tensor of dtype {value.dtype} and layout {value.layout} cannot be stored in a "
            "safetensors file; its repr is saved instead (convert it, e.g. .to_dense() or "
            ".to(torch.complex64), before saving to keep its values)", stacklevel=4,
        )
        return {"__repr__": repr(value)}
    key = seen[identity] = str(len(tensors))
    # a fresh contiguous copy: safetensors refuses tensors that share memory (views)
    tensors[key] = value.detach().to("cpu").clone(memory_format=torch.contiguous_format)
    return {tag: key}


def _decode(value: Any, tensors: dict[str, Tensor], file: Path) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors, file) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1 or next(iter(value)) not in TAGS:
        return {k: _decode(v, tensors, file) for k, v in value.items()}
    tag, content = next(iter(value.items()))
    if tag in ("__tensor__", "__ndarray__"):
        if content not in tensors:
            raise ArgumentError(
                "path", f"path {str(file)!r} refers to a tensor {content!r} that it does not "
                "hold; it is corrupt: save the result again",
            )
        return tensors[content] if tag == "__tensor__" else tensors[content].cpu().numpy()
    if tag == "__float__":
        return float(content)
    if tag == "__tuple__":
        return tuple(_decode(v, tensors, file) for v in content)
    if tag == "__dict__":
        return {_decode(k, tensors, file): _decode(v, tensors, file) for k, v in content}
    return Repr(content)
