"""The crafted-file fuzzer (crafted_fuzz.py) at a fixed seed and a small case count, per kind of file.

Every damaged saved graph, checkpoint, compile-cache entry and export file must end in a
GraphcError or a correct result; each kind runs in a child process, so a crash fails the
test with the case that caused it. Long campaigns: python tests/fuzz/crafted_fuzz.py --cases N.
"""

import os
import shutil

import crafted_fuzz
import pytest

CASES = 15


@pytest.mark.parametrize("kind", crafted_fuzz.KINDS)
def test_crafted_files_end_in_graphc_errors(kind, tmp_path):
    if kind == "export" and shutil.which(os.environ.get("CC", "cc").split()[0]) is None:
        pytest.skip("exporting needs a C compiler")
    counts, findings = crafted_fuzz.run_kind(kind, seed=0, cases=CASES, keep=tmp_path)
    assert not findings, "\n\n".join(findings)
    assert sum(counts.values()) == CASES
    assert counts.get("refused", 0) + counts.get("recompiled", 0) > 0  # the damage is seen, not only absorbed


def test_mutations_are_deterministic():
    import random

    a = crafted_fuzz.mutate_json(random.Random("x"), {"a": [1, {"b": 2}]})
    b = crafted_fuzz.mutate_json(random.Random("x"), {"a": [1, {"b": 2}]})
    assert a == b
    data, what = crafted_fuzz.mutate_bytes(random.Random(3), bytes(range(64)))
    assert data != bytes(range(64)) or "truncate to 64" in what


@pytest.mark.parametrize("which", [0, 1])
def test_cache_kind_catches_a_reader_that_accepts_damage(tmp_path, monkeypatch, which):
    """The cache kind checks most cases at graphc's cache reader instead of recompiling: a reader
    that returned a damaged payload (no checksum) is still a finding, for the program's object
    code (0) and its description (1)."""
    from graphc.backend.llvm import cache

    monkeypatch.setenv("GRAPHC_CACHE", "1")
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    kind = crafted_fuzz.CacheEntry(tmp_path)
    damaged = bytearray(kind.originals[which])
    damaged[-8] ^= 1
    assert kind.check(bytes(damaged), full=False, which=which) == "refused"
    assert kind.check(bytes(damaged), full=True, which=which) == "recompiled"
    monkeypatch.setattr(cache, "load", lambda key: cache.entry_path(key).read_bytes()[cache._HEADER.size:])
    with pytest.raises(crafted_fuzz.FindingError, match="damaged payload"):
        kind.check(bytes(damaged), full=False, which=which)
