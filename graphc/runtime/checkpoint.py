"""Checkpoint files: named arrays in the safetensors layout, written atomically, read with checks.

Layout (https://huggingface.co/docs/safetensors, so ``safetensors.numpy.load_file`` reads it)::

    8 bytes       N, the header length (unsigned little-endian 64-bit)
    N bytes       UTF-8 JSON header, space-padded to a multiple of 8 bytes:
                  {"<name>": {"dtype": "F32", "shape": [3, 2], "data_offsets": [begin, end]}, ...,
                   "__metadata__": {"format": "graphc-checkpoint", "version": "1",
                                    "sha256": "<hex digest of the data section>"}}
    data section  each array's bytes, C order, little-endian, at [begin, end) of this section,
                  in header order, back to back, covering the section exactly

dtypes: F32, F64, I32, I64, BOOL (graphc's five). The sha256 of the data section is graphc's
addition (in the metadata the format reserves for such strings): a flipped byte anywhere in
the file is detected. Nothing in a file is executed (no pickle).

A write goes to a temporary file in the same directory, is flushed to disk and renamed over
the target (``os.replace``, atomic on POSIX), so a save that is interrupted at any point
leaves the previous file as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from collections.abc import Mapping

import numpy as np

from ..errors import CheckpointError

FORMAT = "graphc-checkpoint"
VERSION = "1"
MAX_HEADER = 100 * 1024 * 1024  # the safetensors reference reader's bound
_CODES = {"float32": "F32", "float64": "F64", "int32": "I32", "int64": "I64", "bool": "BOOL"}
_DTYPES = {code: np.dtype(name) for name, code in _CODES.items()}


def encode(arrays: Mapping[str, np.ndarray]) -> bytes:
    """The file bytes holding `arrays` (name -> array), in the given order."""
    header: dict[str, object] = {}
    chunks: list[bytes] = []
    offset = 0
    for name, value in arrays.items():
        arr = np.asarray(value)
        code = _CODES.get(arr.dtype.name)
        if code is None:
            raise CheckpointError(f"cannot save {name!r}: dtype {arr.dtype} is not one of {', '.join(_CODES)}")
        data = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": code, "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    body = b"".join(chunks)
    header["__metadata__"] = {"format": FORMAT, "version": VERSION, "sha256": hashlib.sha256(body).hexdigest()}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + body


def decode(blob: bytes, source: str = "<bytes>") -> dict[str, np.ndarray]:
    """The arrays of a checkpoint's bytes (name -> array, in file order); CheckpointError if malformed."""

    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"{source} is not a valid graphc checkpoint: {why}")

    if len(blob) < 8:
        raise bad(f"file has {len(blob)} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > MAX_HEADER or 8 + n > len(blob):
        raise bad(f"header length {n} exceeds the file's {len(blob) - 8} remaining bytes (truncated?)")
    try:
        header = json.loads(blob[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise bad(f"header is not JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(header, dict):
        raise bad("header is not a JSON object")
    meta = header.pop("__metadata__", None)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise bad(f"metadata does not say format {FORMAT!r}")
    if meta.get("version") != VERSION:
        raise bad(f"unsupported version {meta.get('version')!r} (this graphc reads {VERSION!r})")
    body = memoryview(blob)[8 + n:]
    if not isinstance(meta.get("sha256"), str) or hashlib.sha256(body).hexdigest() != meta["sha256"]:
        raise bad(f"data section ({len(body)} bytes) does not match its sha256 (corrupted or truncated)")
    arrays: dict[str, np.ndarray] = {}
    end = 0
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"entry {name!r} is not {{dtype, shape, data_offsets}}")
        dtype = _DTYPES.get(entry["dtype"]) if isinstance(entry["dtype"], str) else None
        shape, offsets = entry["shape"], entry["data_offsets"]
        if dtype is None:
            raise bad(f"entry {name!r} has unsupported dtype {entry['dtype']!r}")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise bad(f"entry {name!r} has a bad shape {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets)
                or offsets[0] != end or offsets[1] < offsets[0]):
            raise bad(f"entry {name!r} has data_offsets {offsets!r}; expected [{end}, ...] (entries back to back)")
        size = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if offsets[1] - offsets[0] != size or offsets[1] > len(body):
            raise bad(f"entry {name!r} ({entry['dtype']}{shape}) needs {size} bytes, "
                      f"has data_offsets {offsets} in a {len(body)}-byte data section")
        raw = body[offsets[0]:offsets[1]]
        arrays[name] = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)
        end = offsets[1]
    if end != len(body):
        raise bad(f"data section has {len(body)} bytes, its entries cover {end}")
    return arrays


def write(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Write `arrays` to `path` atomically (a temporary file renamed over it)."""
    path = os.fspath(path)
    blob = encode(arrays)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not openable (e.g. on some filesystems); the rename is done regardless
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of the checkpoint at `path`; CheckpointError if it is missing or malformed."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path!r}: {exc.strerror or exc}") from None
    return decode(blob, repr(path))
