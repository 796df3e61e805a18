"""On-disk cache of compiled object code, so a second process skips LLVM.

An entry is the object file (``target_machine.emit_object``) of one module, stored under
a key that hashes everything that determines the machine code (`cache_key`). Loading it
back into a JIT takes milliseconds against tens of milliseconds per kernel to compile.

Location: ``$GRAPHC_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/graphc``, else
``~/.cache/graphc``. ``GRAPHC_CACHE=0`` (or ``false``/``off``/``no``) turns the cache off.
The environment is read on every call. The directory is created private to the user
(mode 0700): its files become executable code in the process.

Each file is a header (magic, format version, key, payload length, SHA-256 of the
payload) followed by the payload. `load` verifies all of it and returns None for a
missing, truncated, corrupted or mismatched entry, so the caller recompiles; `store`
writes a temporary file and renames it over the entry (atomic on POSIX), and never
raises: a read-only or full disk only means no caching.

Size: a hit refreshes its entry's modification time, and one store in `TRIM_EVERY`, at
random (so that many short processes trim too), runs `trim`: it deletes the least recently
used entries while the cache holds more than ``GRAPHC_CACHE_MAX_MB`` megabytes (default
1024), and temporary files that writers left behind more than an hour ago (docs/backend.md).
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import struct
import tempfile
import time
from pathlib import Path

__all__ = ["FORMAT_VERSION", "TRIM_EVERY", "cache_dir", "cache_key", "digest_of", "enabled", "entry_path", "load",
           "max_bytes", "source_digest", "store", "trim"]

FORMAT_VERSION = 1
_MAGIC = b"GRAPHCO\x00"
_HEADER = struct.Struct("<8sI64sQ32s")  # magic, format version, key (hex), payload length, sha256
_OFF = {"0", "false", "off", "no"}
TRIM_EVERY = 64
_STALE_TMP_SECONDS = 3600


def enabled() -> bool:
    """False when ``GRAPHC_CACHE`` turns the disk cache off."""
    return os.environ.get("GRAPHC_CACHE", "1").strip().lower() not in _OFF


def cache_dir() -> Path | None:
    """The cache directory (not created here), or None when the cache is off."""
    if not enabled():
        return None
    if os.environ.get("GRAPHC_CACHE_DIR"):
        return Path(os.environ["GRAPHC_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "graphc"


@functools.cache
def source_digest() -> str:
    """SHA-256 of graphc's Python source: what keys derived from it (program and template entries,
    the tiled kernel's name) change with whenever the compiler changes (`digest_of`)."""
    return digest_of(Path(__file__).resolve().parents[2])


def digest_of(root: Path) -> str:
    """SHA-256 of the paths and contents of the ``.py`` files below `root`. Reading and hashing them
    takes 4-5 ms (more under load), so the digest is kept in the cache under a key made of the
    files' paths, sizes and modification times (the rule by which Python reuses their bytecode):
    a process whose files are unchanged reads one entry instead."""
    files = _python_files(root)
    stamp = hashlib.sha256(f"graphc-source-digest-v1\0{root}\0{files!r}".encode()).hexdigest()
    known = load(stamp)
    if known is not None and len(known) == 64 and all(c in b"0123456789abcdef" for c in known):
        return known.decode()
    digest = hashlib.sha256()
    for rel, _, _ in files:
        digest.update(rel.encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    store(stamp, digest.hexdigest().encode())
    return digest.hexdigest()


def _python_files(root: Path) -> list[tuple[str, int, int]]:
    """(path relative to `root`, modification time in ns, size) of each ``.py`` file below it, in
    path order (``__pycache__`` folders skipped)."""
    found = []

    def walk(folder: str, rel: str) -> None:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name != "__pycache__":
                        walk(entry.path, rel + entry.name + os.sep)
                elif entry.name.endswith(".py"):
                    st = entry.stat()
                    found.append((rel + entry.name, st.st_mtime_ns, st.st_size))

    walk(str(root), "")
    return sorted(found, key=lambda f: f[0].split(os.sep))


@functools.cache
def _toolchain() -> str:
    """llvmlite and LLVM versions, host CPU name and features: what the JIT compiles for."""
    import llvmlite
    from llvmlite import binding as llvm

    cpu = llvm.get_host_cpu_name()
    features = llvm.get_host_cpu_features().flatten()
    version = ".".join(map(str, llvm.llvm_version_info))
    return f"llvmlite={llvmlite.__version__}\nllvm={version}\ncpu={cpu}\nfeatures={features}"


def cache_key(ir_text: str, target: str) -> str:
    """Hex SHA-256 of the IR text, the caller's target description and the toolchain.

    `target` is whatever else shapes the code, as the caller builds it (for example the
    triple, optimization level and code model); llvmlite/LLVM versions, host CPU name and
    features and `FORMAT_VERSION` are added here.
    """
    digest = hashlib.sha256()
    for part in (f"graphc-object-cache-v{FORMAT_VERSION}", _toolchain(), target, ir_text):
        data = part.encode()
        digest.update(struct.pack("<Q", len(data)))
        digest.update(data)
    return digest.hexdigest()


def entry_path(key: str) -> Path | None:
    """Where the entry for `key` lives, or None when the cache is off."""
    _check_key(key)
    root = cache_dir()
    return None if root is None else root / key[:2] / f"{key}.o"


def load(key: str) -> bytes | None:
    """The payload stored under `key`, or None if missing, damaged or not this key's."""
    path = entry_path(key)
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError:
        return None
    if len(blob) < _HEADER.size:
        return None
    magic, version, stored_key, length, checksum = _HEADER.unpack_from(blob)
    payload = blob[_HEADER.size:]
    if (magic != _MAGIC or version != FORMAT_VERSION or stored_key != key.encode()
            or length != len(payload) or hashlib.sha256(payload).digest() != checksum):
        return None
    try:
        os.utime(path)  # most recently used: trimmed last
    except OSError:
        pass
    return payload


def store(key: str, data: bytes) -> bool:
    """Save `data` under `key` atomically; returns whether it was written (never raises)."""
    path = entry_path(key)
    if path is None:
        return False
    header = _HEADER.pack(_MAGIC, FORMAT_VERSION, key.encode(), len(data), hashlib.sha256(data).digest())
    tmp = None
    try:
        path.parent.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.parent.mkdir(mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}-", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(header)
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        return False
    if random.random() * TRIM_EVERY < 1:
        trim()
    return True


def max_bytes() -> int:
    """The size the cache is trimmed to: ``GRAPHC_CACHE_MAX_MB`` megabytes (default 1024)."""
    try:
        return max(0, int(float(os.environ.get("GRAPHC_CACHE_MAX_MB", "1024")) * 2**20))
    except ValueError:
        return 2**30


def trim(limit: int | None = None) -> int:
    """Delete least recently used entries until at most `limit` bytes remain (default
    `max_bytes`), and stale temporary files; returns the bytes freed. Never raises."""
    root = cache_dir()
    if root is None:
        return 0
    limit = max_bytes() if limit is None else limit
    entries, freed, now = [], 0, time.time()
    try:
        for sub in os.scandir(root):
            if not (sub.is_dir(follow_symlinks=False) and len(sub.name) == 2):
                continue
            for f in os.scandir(sub.path):
                st = f.stat(follow_symlinks=False)
                if f.name.endswith(".tmp"):
                    if now - st.st_mtime > _STALE_TMP_SECONDS:
                        freed += _unlink(f.path, st.st_size)
                elif f.name.endswith(".o"):
                    entries.append((st.st_mtime, st.st_size, f.path))
    except OSError:
        return freed
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= limit:
            break
        removed = _unlink(path, size)
        freed += removed
        total -= removed
    return freed


def _unlink(path: str, size: int) -> int:
    try:
        os.unlink(path)
        return size
    except OSError:
        return 0


def _check_key(key: str) -> None:
    if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
        raise ValueError(f"not a cache key (64 lowercase hex digits): {key!r}")
