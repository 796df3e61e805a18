"""bench/run_all.py end to end at tiny sizes: every case is built, checked against its reference,
timed and tabled, so a bench script whose functions change breaks here, not in `make bench`.

graphc and numpy only (JAX and PyTorch are reported as not installed); W5's fresh processes
are stubbed by a function that must accept exactly the arguments `bench_w5.spawn` takes.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
CASES = ["W1 value+grad 1e+03", "W2 SGD step, batch 4", "W3 x*w+b, value", "W3 x*w+b, value+grad",
         "W4 64 x tanh(h @ W), grads"]


@pytest.fixture
def run_all(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    for name in ("_timing", "bench_w1", "bench_w2", "bench_w3", "bench_w4", "bench_w5", "run_all"):
        sys.modules.pop(name, None)  # fresh modules: the constants patched below are not shared
    module = importlib.import_module("run_all")
    w1, w2, w4, w5, timing = (sys.modules[n] for n in ("bench_w1", "bench_w2", "bench_w4", "bench_w5", "_timing"))
    monkeypatch.setattr(w1, "SIZES", (1000,))
    monkeypatch.setattr(w2, "SIZES", (12, 8, 8, 4))
    monkeypatch.setattr(w2, "BATCHES", (4,))
    monkeypatch.setattr(w4, "WIDTH", 8)
    monkeypatch.setattr(w4, "BATCH", 4)
    monkeypatch.setattr(w4, "LAYERS", 3)
    for mod in (module, timing):
        monkeypatch.setattr(mod, "optional", lambda name: None)
    spawned = []
    real = inspect.signature(w5.spawn)

    def spawn(*args, **kwargs):
        real.bind(*args, **kwargs)  # a TypeError here is the call run_all makes going stale
        spawned.append(args[0])
        return {"import": 0.25, "first": 0.5, "process": 1.0}

    monkeypatch.setattr(w5, "spawn", spawn)
    yield module, spawned
    for name in ("_timing", "bench_w1", "bench_w2", "bench_w3", "bench_w4", "bench_w5", "run_all"):
        sys.modules.pop(name, None)


def _rows(text: str) -> dict[str, dict[str, str]]:
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [dict(zip(head, (c.strip() for c in ln.strip("|").split("|")))) for ln in lines[1:]]
    return {r["case"]: r for r in rows}


def test_run_all_dry_run_builds_checks_times_and_tables_every_case(run_all, capsys):
    module, spawned = run_all
    module.main(["--dry-run"])
    rows = _rows(capsys.readouterr().out)
    assert list(rows)[:len(CASES)] == CASES
    for case in CASES:
        row = rows[case]
        for impl in ("graphc", "numpy", "numpy 1 thread"):
            assert row[impl].endswith(("us", "ms", " s")), (case, impl, row[impl])
        assert row["graphc vs numpy"].endswith("x") and row["jax.jit"] == row["torch eager"] == "not installed"
    assert [c for c in rows if c.startswith("W5")] == [
        "W5 first result, W2 batch 256, cold cache", "W5 first result, W2 batch 256, warm cache",
        "W5 first result, W4, cold cache", "W5 first result, W4, warm cache"]
    assert rows["W5 first result, W4, warm cache"]["graphc"] == "500.00 ms"
    assert set(spawned) == {"w2", "w4"}


def test_run_all_only_selects_workloads(run_all, capsys):
    module, spawned = run_all
    module.main(["--dry-run", "--only", "w3"])
    assert [c for c in _rows(capsys.readouterr().out)] == CASES[2:4] and spawned == []
