"""The machine's peak: sgemm GFLOP/s and STREAM-like triad GB/s, measured once and cached.

Both are measured with graphc's own compiled code at the thread count the profiled
program uses: a float32 matrix product (OpenBLAS through the LLVM backend's GEMM steps)
and the triad ``a = b + 3 * c`` over float32 arrays far larger than the caches, written
into a variable (no fresh output pages to fault in). The best of a few runs counts.
STREAM counts 3 arrays of traffic per element, and so does this.

The result is stored next to the compiled programs (`graphc.backend.llvm.cache`
directory), in ``peak-<key>.json`` where the key hashes the toolchain and host CPU and
the thread count. A file that is unreadable, garbled, or for another key is measured
again and rewritten; with the disk cache off the measurement is kept for the process.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

FORMAT = 1
GEMM_N = 768  # sgemm of GEMM_N^3 (0.9 GFLOP)
TRIAD_N = 1 << 22  # float32 elements per triad array (16 MB each)
REPEATS = 5

_memo: dict[int, Peak] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class Peak:
    """Attainable compute and memory bandwidth at `threads` threads."""

    gflops: float
    gbps: float
    threads: int
    measured: str  # UTC time of the measurement

    @property
    def balance(self) -> float:
        """FLOPs per byte at which a step stops being memory-bound (the roofline's ridge)."""
        return self.gflops / self.gbps


def machine_peak(threads: int, refresh: bool = False) -> Peak:
    """The peak at `threads` threads: from memory, the disk cache, or measured (and stored)."""
    with _lock:
        if not refresh and threads in _memo:
            return _memo[threads]
        path = _path(threads)
        peak = None if refresh or path is None else _read(path, threads)
        if peak is None:
            peak = measure(threads)
            if path is not None:
                _write(path, threads, peak)
        _memo[threads] = peak
        return peak


def measure(threads: int) -> Peak:
    """Run the sgemm and the triad now (about a second with compilation)."""
    from ..backend.llvm.program import LLVMProgram
    from ..ir.graph import Graph
    from ..ops.core import Variable, placeholder
    from ..ops.linalg import matmul
    from ..ops.state import assign
    from ..options import CompileOptions
    from ..runtime.executable import Executable, VariableStore

    graph = Graph()
    with graph.as_default():
        a = placeholder(np.float32, (GEMM_N, GEMM_N), name="a")
        product = matmul(a, a)
        b = placeholder(np.float32, (TRIAD_N,), name="b")
        c = placeholder(np.float32, (TRIAD_N,), name="c")
        out = Variable(np.zeros(TRIAD_N, np.float32), name="out")
        triad = assign(out, b + 3.0 * c)
    rng = np.random.default_rng(0)
    options = CompileOptions(threads=threads)
    gemm = LLVMProgram([product], [], {a: a.shape}, options)
    update = LLVMProgram([], [triad], {b: b.shape, c: c.shape}, options)
    am = rng.random((GEMM_N, GEMM_N), np.float32)
    bv, cv, held = rng.random(TRIAD_N, np.float32), rng.random(TRIAD_N, np.float32), np.zeros(TRIAD_N, np.float32)
    gemm_s = _best(lambda: Executable(gemm, None).call({a: am}, {}))
    triad = Executable(update, VariableStore({out: held}))
    triad_s = _best(lambda: triad.call({b: bv, c: cv}, {out: held}))
    return Peak(2.0 * GEMM_N**3 / gemm_s / 1e9, 3 * 4 * TRIAD_N / triad_s / 1e9, threads,
                time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))


def _best(fn) -> float:
    fn()  # compile and warm up
    times = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _key(threads: int) -> str:
    from ..backend.llvm.cache import _toolchain

    text = f"peak format={FORMAT} gemm={GEMM_N} triad={TRIAD_N} threads={threads}\n{_toolchain()}"
    return hashlib.sha256(text.encode()).hexdigest()


def _path(threads: int) -> Path | None:
    from ..backend.llvm.cache import cache_dir

    base = cache_dir()
    return None if base is None else base / f"peak-{_key(threads)[:32]}.json"


def _read(path: Path, threads: int) -> Peak | None:
    """The stored peak, or None for a missing, unreadable, garbled or foreign file."""
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("key") != _key(threads):
            return None
        peak = Peak(float(data["gflops"]), float(data["gbps"]), int(data["threads"]), str(data["measured"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    ok = all(math.isfinite(v) and v > 0 for v in (peak.gflops, peak.gbps)) and peak.threads == threads
    return peak if ok else None


def _write(path: Path, threads: int, peak: Peak) -> None:
    """Store the peak atomically; a read-only or full disk only means it is measured again."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".peak-", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump({"format": FORMAT, "key": _key(threads), **asdict(peak)}, f)
        os.replace(tmp, path)
    except OSError:
        pass
