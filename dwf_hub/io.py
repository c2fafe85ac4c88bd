"""Atomic file writes and safetensors reading with errors that name the file."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from torch import Tensor

from .errors import WeightFormatError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def check_finite_rows(weights: Tensor, what: str, error: type[Exception] = WeightFormatError) -> Tensor:
    """``weights [N, D]`` (networks as rows), refused when any row holds NaN or Inf: ``what`` names them."""
    import torch

    # in column blocks of ~16M values: isfinite builds float temporaries the size of its input (0.9 GB per
    # BERT-Base network at once)
    if weights.numel() == 0:
        return weights
    rows = weights.reshape(len(weights), -1)
    step = max(1, (1 << 24) // max(1, len(rows)))
    finite = torch.ones(len(rows), dtype=torch.bool)
    for s in range(0, rows.shape[1], step):
        finite &= torch.isfinite(rows[:, s : s + step]).all(1)
    bad = (~finite).nonzero().flatten()
    if len(bad):
        raise error(
            f"{what}: {len(bad)} of {len(weights)} network(s) contain NaN or Inf values (first: row {int(bad[0])})"
        )
    return weights


def read_json(path: str | os.PathLike, error: type[Exception] = WeightFormatError, what: str = "JSON") -> Any:
    """Parse ``path`` strictly: UTF-8, no duplicated keys, no NaN/Infinity, bounded nesting. Any fault is one
    ``error`` naming the file (never a ``UnicodeDecodeError`` or ``RecursionError`` traceback)."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise ValueError(f"duplicated key {key!r}")
            out[key] = value
        return out

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
        return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except RecursionError as e:
        raise error(f"{path}: invalid {what} (nested too deeply)") from e
    except (OSError, UnicodeDecodeError, ValueError) as e:  # JSONDecodeError is a ValueError
        raise error(f"{path}: invalid {what} ({e})") from e


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_tensors(
    path: str | os.PathLike, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None
) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def save_rows(path: str | os.PathLike, key: str, shape: tuple[int, int], rows: Iterator[Tensor]) -> None:
    """A safetensors file holding one float32 ``[R, C]`` tensor written row by row (``rows`` yields ``[C]``
    tensors): a tensor larger than memory, or a strided view of one, is saved without a contiguous copy."""
    header = json.dumps(
        {key: {"dtype": "F32", "shape": list(shape), "data_offsets": [0, 4 * shape[0] * shape[1]]}}
    )
    header += " " * (-len(header) % 8)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header.encode())
        count = 0
        for row in rows:
            if row.shape != (shape[1],):
                raise WeightFormatError(
                    f"{path}: row {count} of {key!r} has shape {tuple(row.shape)}, expected ({shape[1]},)"
                )
            f.write(row.detach().float().cpu().contiguous().numpy().tobytes())
            count += 1
        if count != shape[0]:
            raise WeightFormatError(f"{path}: {count} rows of {key!r} written, expected {shape[0]}")


def map_tensor(path: str | os.PathLike, key: str, shape: tuple[int, ...]) -> Tensor:
    """The float32 tensor ``key`` of a safetensors file, memory-mapped copy-on-write (nothing read until used;
    writes stay private), after checking its header names that key with this shape."""
    import struct

    import numpy as np
    import torch

    path = Path(path)
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            entry = json.loads(f.read(n)).get(key)
        size = path.stat().st_size
    except (OSError, struct.error, ValueError, AttributeError) as e:
        raise WeightFormatError(f"{path}: not a readable safetensors file ({e})") from e
    count = int(np.prod(shape))
    if (
        not isinstance(entry, dict)
        or entry.get("dtype") != "F32"
        or tuple(entry.get("shape", ())) != tuple(shape)
    ):
        raise WeightFormatError(f"{path}: expected {key!r} as float32 of shape {tuple(shape)}, got {entry}")
    begin, end = entry["data_offsets"]
    if end - begin != 4 * count or 8 + n + end > size:
        raise WeightFormatError(f"{path}: {key!r} is truncated or its offsets are inconsistent")
    return torch.from_numpy(np.memmap(path, np.float32, "c", 8 + n + begin, tuple(shape)))


class Header(NamedTuple):
    shapes: dict[str, tuple[int, ...]]
    metadata: dict[str, str]
    dtypes: dict[str, str]
    """``key -> safetensors dtype name`` (``F32``, ``BF16``, ...)."""


def read_header(path: str | os.PathLike) -> Header:
    """Shapes, metadata and dtypes from a safetensors header, checking the file is complete."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightFormatError(f"{path}: checkpoint file is missing")
    try:
        with safe_open(str(path), framework="pt") as f:
            slices = {k: f.get_slice(k) for k in f.keys()}  # noqa: SIM118
            shapes = {k: tuple(s.get_shape()) for k, s in slices.items()}
            dtypes = {k: s.get_dtype() for k, s in slices.items()}
            metadata = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for bad headers and truncation
        raise WeightFormatError(f"{path}: not a valid safetensors file ({e})") from e
    return Header(shapes, metadata, dtypes)


def load_tensors(path: str | os.PathLike) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise WeightFormatError(f"{path}: checkpoint file is missing")
    try:
        return load_file(str(path))
    except Exception as e:
        raise WeightFormatError(f"{path}: not a valid safetensors file ({e})") from e


DTYPE_NAMES = {
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F64": "float64",
}  # safetensors -> torch


def _pread_into(fd: int, view: memoryview, offset: int) -> bool:
    """Fill ``view`` with the bytes of ``fd`` from ``offset``; False when the file ends first."""
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if got == 0:
            return False
        done += got
    return True


class FlatReader:
    """Ranges of a checkpoint's flat weight vector, read with ``os.pread`` straight from the safetensors
    file: nothing is mapped or cached, so reading a zoo column block by block keeps memory flat.

    ``layout``: ``(key, shape, offset)`` entries in flat order (``ArchSpec.layout``). ``rows``: the file is a
    packed shard holding every tensor stacked ``[rows, *shape]`` (``read(..., row=i)`` reads network ``i``).
    """

    def __init__(self, path: str | os.PathLike, layout, rows: int | None = None) -> None:
        import struct

        import torch

        self.path = Path(path)
        try:
            with open(self.path, "rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(n))
        except (OSError, struct.error, ValueError) as e:
            raise WeightFormatError(f"{self.path}: not a readable safetensors file ({e})") from e
        self._start = 8 + n
        self._offsets = [p.offset for p in layout]
        self._entries = []
        for p in layout:
            entry = header.get(p.key)
            if entry is None:
                raise WeightFormatError(f"{self.path}: key {p.key!r} is missing")
            shape = p.shape if rows is None else (rows, *p.shape)
            if tuple(entry["shape"]) != shape:
                raise WeightFormatError(
                    f"{self.path}: key {p.key!r} has shape {tuple(entry['shape'])}, expected {shape}"
                )
            if entry["dtype"] not in DTYPE_NAMES:
                raise WeightFormatError(
                    f"{self.path}: key {p.key!r} has dtype {entry['dtype']}, expected a float"
                )
            dtype = getattr(torch, DTYPE_NAMES[entry["dtype"]])
            self._entries.append((p, dtype, dtype.itemsize, entry["data_offsets"][0]))
        self._end = layout[-1].offset + layout[-1].numel

    def read(self, start: int, stop: int, row: int = 0) -> Tensor:
        """Flat weights ``[stop - start]`` (of network ``row`` in a packed shard) as float32."""
        import bisect

        import torch

        out = torch.empty(stop - start)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            i = bisect.bisect_right(self._offsets, start) - 1
            pos = start
            while pos < stop:
                p, dtype, size, begin = self._entries[i]
                lo, hi = pos - p.offset, min(stop, p.offset + p.numel) - p.offset
                dest = out[pos - start : pos - start + hi - lo]
                # straight into the output (float32; other dtypes through one temporary of the range):
                # reading bytes and copying them held two more copies of the largest tensor (0.54 GB at BERT-Base)
                buffer = dest if dtype == torch.float32 else torch.empty(hi - lo, dtype=dtype)
                offset = self._start + begin + (row * p.numel + lo) * size
                if not _pread_into(fd, memoryview(buffer.view(torch.uint8).numpy()), offset):
                    raise WeightFormatError(f"{self.path}: truncated at key {p.key!r}")
                if buffer is not dest:
                    dest.copy_(buffer)
                pos, i = p.offset + hi, i + 1
        finally:
            os.close(fd)
        return out
