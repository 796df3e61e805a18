"""The on-disk object cache: keys, verified entries, atomic writes, and a JIT round trip."""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from llvmlite import binding as llvm
from testkit import run_threads

from graphc.backend.llvm import cache


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.delenv("GRAPHC_CACHE", raising=False)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "objects"))
    return tmp_path / "objects"


def _key(text: str = "define void @f() { ret void }") -> str:
    return cache.cache_key(text, "x86_64-unknown-linux-gnu O3")


def test_round_trip(cache_dir):
    key, data = _key(), os.urandom(5000)
    assert cache.load(key) is None
    assert cache.store(key, data)
    assert cache.load(key) == data
    assert cache.entry_path(key).parent.parent == cache_dir
    assert cache.store(key, b"")  # empty payloads are entries too
    assert cache.load(key) == b""


def test_key_covers_ir_target_and_toolchain(monkeypatch):
    base = _key("a")
    assert len(base) == 64 and base == _key("a")
    assert base != _key("b")
    assert base != cache.cache_key("a", "another target")
    assert cache.cache_key("ab", "c") != cache.cache_key("a", "bc")  # parts are length-prefixed
    monkeypatch.setattr(cache, "_toolchain", lambda: "llvmlite=0.0\nllvm=0\ncpu=other\nfeatures=")
    assert _key("a") != base


def test_default_locations(monkeypatch, tmp_path):
    monkeypatch.delenv("GRAPHC_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "graphc"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "graphc"


@pytest.mark.parametrize("value", ["0", "off", "FALSE", "no"])
def test_disabled(monkeypatch, cache_dir, value):
    key = _key()
    monkeypatch.setenv("GRAPHC_CACHE", value)
    assert cache.cache_dir() is None and not cache.enabled()
    assert not cache.store(key, b"data")
    assert cache.load(key) is None
    assert not cache_dir.exists()
    monkeypatch.setenv("GRAPHC_CACHE", "1")
    assert cache.store(key, b"data") and cache.load(key) == b"data"


def test_directory_is_private(cache_dir):
    cache.store(_key(), b"x")
    assert cache_dir.stat().st_mode & 0o777 == 0o700


def _corrupt_payload(blob: bytes) -> bytes:
    return blob[:-1] + bytes([blob[-1] ^ 1])


@pytest.mark.parametrize("damage", [
    lambda b: b[:-1],                   # truncated payload
    lambda b: b[:20],                   # truncated header
    lambda b: b"",                      # empty file
    _corrupt_payload,                   # flipped bit in the payload
    lambda b: b"X" + b[1:],             # wrong magic
    lambda b: b[:8] + b"\x63" + b[9:],  # other format version
    lambda b: b + b"\x00",              # trailing garbage
])
def test_damaged_entries_are_ignored(damage):
    key = _key()
    cache.store(key, os.urandom(1000))
    path = cache.entry_path(key)
    path.write_bytes(damage(path.read_bytes()))
    assert cache.load(key) is None


def test_entry_under_another_key_is_ignored():
    key_a, key_b = _key("a"), _key("b")
    cache.store(key_a, b"payload of a")
    path_b = cache.entry_path(key_b)
    path_b.parent.mkdir(parents=True, exist_ok=True)
    path_b.write_bytes(cache.entry_path(key_a).read_bytes())
    assert cache.load(key_b) is None


def test_rejects_malformed_keys():
    with pytest.raises(ValueError, match="cache key"):
        cache.load("../../etc/passwd")


def test_unwritable_location_is_skipped(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(blocker / "sub"))  # parent is a file: mkdir fails even as root
    assert not cache.store(_key(), b"data")
    assert cache.load(_key()) is None


def test_full_disk_is_skipped_and_leaves_no_temp_file(monkeypatch, cache_dir):
    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache.os, "replace", full)
    key = _key()
    assert not cache.store(key, b"data")
    assert cache.load(key) is None
    assert list(cache_dir.rglob("*")) == [cache.entry_path(key).parent]


def test_concurrent_writers_never_leave_a_torn_entry(cache_dir):
    """Three processes rewrite one key with distinct large payloads while this one reads."""
    key = _key("shared")
    size, rounds = 300_000, 40
    # The writers load cache.py alone (it needs only the standard library): no graphc import.
    writer = textwrap.dedent(f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("cache", {cache.__file__!r})
        cache = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(cache)
        tag = int(sys.argv[1])
        for i in range({rounds}):
            assert cache.store({key!r}, bytes([tag, i]) * ({size} // 2))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", writer, str(tag)]) for tag in range(3)]
    existed, missing_after = False, 0
    while any(p.poll() is None for p in procs):
        data = cache.load(key)
        if data is not None:
            assert data == data[:2] * (size // 2)
            existed = True
        elif existed:
            missing_after += 1  # a reader must always see a whole old or new entry
    assert all(p.wait() == 0 for p in procs)
    assert missing_after == 0
    final = cache.load(key)
    assert final is not None and final == final[:2] * (size // 2)
    assert list(cache.entry_path(key).parent.glob("*.tmp")) == []


def test_concurrent_threads(cache_dir):
    key = _key("threads")
    errors = []

    def work(tag: int) -> None:
        for i in range(30):
            cache.store(key, bytes([tag, i]) * 5000)
            data = cache.load(key)
            if data is None or data != data[:2] * 5000:
                errors.append(tag)

    run_threads(work, range(4))
    assert errors == []


_IR = """
define i64 @triple_plus(i64 %x) {
  %y = mul i64 %x, 3
  %z = add i64 %y, 1
  ret i64 %z
}
"""


def _target_machine():
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                        features=llvm.get_host_cpu_features().flatten(), opt=2, jit=True)


def _object_code() -> tuple[str, bytes]:
    tm = _target_machine()
    mod = llvm.parse_assembly(_IR)
    mod.triple, mod.data_layout = tm.triple, str(tm.target_data)
    return cache.cache_key(_IR, tm.triple), tm.emit_object(mod)


_FN = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)


def test_object_code_round_trip_into_mcjit():
    key, obj = _object_code()
    assert cache.store(key, obj)
    loaded = cache.load(key)
    assert loaded == obj
    tm = _target_machine()
    empty = llvm.parse_assembly("")
    empty.triple, empty.data_layout = tm.triple, str(tm.target_data)
    engine = llvm.create_mcjit_compiler(empty, tm)
    engine.add_object_file(llvm.ObjectFileRef.from_data(loaded))
    engine.finalize_object()
    fn = _FN(engine.get_function_address("triple_plus"))
    assert [fn(v) for v in (0, 5, -7)] == [1, 16, -20]


def test_object_code_round_trip_into_lljit():
    key, obj = _object_code()
    cache.store(key, obj)
    lljit = llvm.create_lljit_compiler(_target_machine())
    tracker = (llvm.JITLibraryBuilder().add_object_img(cache.load(key)).export_symbol("triple_plus")
               .link(lljit, "graphc_cache_test"))
    fn = _FN(tracker["triple_plus"])
    assert fn(14) == 43


def _entry_with_age(key: str, size: int, age: float) -> None:
    cache.store(key, b"x" * size)
    stamp = time.time() - age
    os.utime(cache.entry_path(key), (stamp, stamp))


def test_trim_deletes_least_recently_used_first():
    keys = [_key(f"entry {i}") for i in range(6)]
    for i, key in enumerate(keys):  # keys[0] is the oldest
        _entry_with_age(key, 10_000, age=600 - 100 * i)
    assert cache.load(keys[0]) is not None  # a hit makes it the most recently used
    entry = cache.entry_path(keys[0]).stat().st_size
    freed = cache.trim(limit=3 * entry)
    alive = [k for k in keys if cache.entry_path(k).exists()]
    assert alive == [keys[0], keys[4], keys[5]]
    assert freed == 3 * entry


def test_trim_removes_stale_temporary_files():
    key = _key()
    cache.store(key, b"data")
    folder = cache.entry_path(key).parent
    stale, fresh = folder / ".stale.tmp", folder / ".fresh.tmp"
    stale.write_bytes(b"partial")
    fresh.write_bytes(b"being written")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    cache.trim()
    assert not stale.exists() and fresh.exists() and cache.load(key) == b"data"


def test_store_keeps_the_cache_under_its_limit(monkeypatch, cache_dir):
    monkeypatch.setattr(cache, "TRIM_EVERY", 1)
    monkeypatch.setenv("GRAPHC_CACHE_MAX_MB", "0.02")  # 20971 bytes
    keys = [_key(f"big {i}") for i in range(5)]
    for key in keys:
        assert cache.store(key, b"y" * 8000)
    sizes = [p.stat().st_size for p in cache_dir.rglob("*.o")]
    assert sum(sizes) <= cache.max_bytes() and len(sizes) == 2
    assert cache.load(keys[-1]) is not None


def test_max_bytes(monkeypatch):
    monkeypatch.delenv("GRAPHC_CACHE_MAX_MB", raising=False)
    assert cache.max_bytes() == 2**30
    monkeypatch.setenv("GRAPHC_CACHE_MAX_MB", "1.5")
    assert cache.max_bytes() == int(1.5 * 2**20)
    monkeypatch.setenv("GRAPHC_CACHE_MAX_MB", "lots")
    assert cache.max_bytes() == 2**30


def test_source_digest_is_kept_until_a_file_changes(cache_dir, tmp_path, monkeypatch):
    """`digest_of` hashes the .py files' paths and contents, and keeps the digest in the cache under
    their paths, sizes and times: unchanged files are not read again; a changed file, a damaged
    entry or the cache turned off give the digest of the contents as they are."""
    import hashlib

    src = tmp_path / "src"
    (src / "sub" / "__pycache__").mkdir(parents=True)
    files = {"a.py": "x = 1\n", "sub/b.py": "y = 2\n"}
    for rel, text in files.items():
        (src / rel).write_text(text)
    (src / "notes.txt").write_text("not source")
    (src / "sub" / "__pycache__" / "c.py").write_text("skipped")

    def direct() -> str:
        digest = hashlib.sha256()
        for rel in sorted(files):
            digest.update(rel.encode() + b"\0" + (src / rel).read_bytes() + b"\0")
        return digest.hexdigest()

    first = cache.digest_of(src)
    assert first == direct()
    with monkeypatch.context() as m:
        m.setattr(Path, "read_bytes", lambda self: pytest.fail(f"{self} read again"))
        assert cache.digest_of(src) == first
    files["a.py"] = "x = 3\n"  # same size; its time moves on
    (src / "a.py").write_text(files["a.py"])
    stat = (src / "a.py").stat()
    os.utime(src / "a.py", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert cache.digest_of(src) == direct() != first
    for entry in Path(cache_dir).rglob("*.o"):
        entry.write_bytes(entry.read_bytes()[:-1] + b"!")
    assert cache.digest_of(src) == direct()
    monkeypatch.setenv("GRAPHC_CACHE", "0")
    assert cache.digest_of(src) == direct()
