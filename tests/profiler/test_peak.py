"""The machine peak: measured once, cached on disk like compiled programs, validated when read."""

import json

import pytest

from graphc.profiler import peak


@pytest.fixture
def small_peak(monkeypatch, tmp_path):
    """A private cache directory, tiny measurement sizes and a count of measurements."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("GRAPHC_CACHE", raising=False)
    monkeypatch.setattr(peak, "GEMM_N", 64)
    monkeypatch.setattr(peak, "TRIAD_N", 1 << 14)
    monkeypatch.setattr(peak, "REPEATS", 2)
    monkeypatch.setattr(peak, "_memo", {})
    calls = []
    measure = peak.measure

    def counted(threads):
        calls.append(threads)
        return measure(threads)

    monkeypatch.setattr(peak, "measure", counted)
    return tmp_path, calls


def test_measured_once_then_read_back(small_peak, monkeypatch):
    folder, calls = small_peak
    first = peak.machine_peak(1)
    assert calls == [1] and first.gflops > 0 and first.gbps > 0 and first.balance == first.gflops / first.gbps
    (path,) = folder.glob("peak-*.json")
    assert json.loads(path.read_text())["gflops"] == first.gflops
    assert peak.machine_peak(1) is first and calls == [1]  # from memory
    monkeypatch.setattr(peak, "_memo", {})
    assert peak.machine_peak(1) == first and calls == [1]  # from the disk cache
    peak.machine_peak(2)
    assert calls == [1, 2]  # another thread count is another entry
    assert len(list(folder.glob("peak-*.json"))) == 2


@pytest.mark.parametrize("content", [
    b"\x00\xffgarbage", b"", b"[1, 2]", b'{"format": 1}',
    None,  # valid JSON with the right key but a negative bandwidth
    "nan",  # ... with a NaN
])
def test_garbled_cache_is_measured_again(small_peak, monkeypatch, content):
    folder, calls = small_peak
    good = peak.machine_peak(1)
    (path,) = folder.glob("peak-*.json")
    if content is None or content == "nan":
        data = json.loads(path.read_text())
        data["gbps"] = -1.0 if content is None else float("nan")
        path.write_text(json.dumps(data))
    else:
        path.write_bytes(content)
    monkeypatch.setattr(peak, "_memo", {})
    again = peak.machine_peak(1)
    assert calls == [1, 1] and again.gbps > 0 and again.threads == good.threads == 1
    assert json.loads(path.read_text())["gbps"] == again.gbps  # rewritten


def test_unwritable_or_disabled_cache_still_measures(small_peak, monkeypatch):
    folder, calls = small_peak
    blocker = folder / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(blocker))
    assert peak.machine_peak(1).gflops > 0 and calls == [1]
    monkeypatch.setenv("GRAPHC_CACHE", "0")
    monkeypatch.setattr(peak, "_memo", {})
    assert peak.machine_peak(1).gbps > 0 and calls == [1, 1]
    assert peak.machine_peak(1) and calls == [1, 1]  # kept for the process
