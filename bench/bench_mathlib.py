"""ns/element of graphc's vectorized math functions against numpy, on float32 arrays.

Usage: python3 bench/bench_mathlib.py [--cpu] [name ...]   (default: exp tanh; names from MATH_FUNCTIONS)
Each figure is the median of 5 runs over 1e7 elements, uniform in [-10, 10]; sin, cos and tan
also over 1e7 magnitudes log-uniform in [1e7, 1e30] (beyond the Cody-Waite range: Payne-Hanek).
--cpu: the minimum thread CPU time of 400 runs over 65,536 elements (in cache), steadier than
wall time on a shared machine.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from graphc.backend.llvm.mapkernel import MapKernel  # noqa: E402

CPU = "--cpu" in sys.argv
N = 65_536 if CPU else 10_000_000
REPEATS = 5
# numpy equivalents writing into a preallocated output.
NUMPY: dict[str, Callable[[np.ndarray, np.ndarray], object]] = {
    "exp": lambda x, out: np.exp(x, out=out),
    "expm1": lambda x, out: np.expm1(x, out=out),
    "log": lambda x, out: np.log(x, out=out),
    "log1p": lambda x, out: np.log1p(x, out=out),
    "tanh": lambda x, out: np.tanh(x, out=out),
    "sin": lambda x, out: np.sin(x, out=out),
    "cos": lambda x, out: np.cos(x, out=out),
    "tan": lambda x, out: np.tan(x, out=out),
}
TRIG = ("sin", "cos", "tan")


def ns_per_element(run: Callable[[], object]) -> float:
    if CPU:
        best = min(_cpu_ns(run) for _ in range(400))
        return best / N
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / N * 1e9


def _cpu_ns(run: Callable[[], object]) -> int:
    t0 = time.thread_time_ns()
    run()
    return time.thread_time_ns() - t0


def main(names: list[str]) -> None:
    x = np.random.default_rng(0).uniform(-10, 10, N).astype(np.float32)
    if any(name in ("log", "log1p") for name in names):
        x = np.abs(x)
    far = (10.0 ** np.random.default_rng(1).uniform(7, 30, N)).astype(np.float32)
    out = np.empty_like(x)
    how = "minimum thread CPU time of 400" if CPU else f"median of {REPEATS}"
    print(f"float32, n = {N}, {how} (ns/element)")
    print(f"{'function':10s} {'graphc':>8s} {'numpy':>8s} {'large: graphc':>14s} {'numpy':>8s}")
    for name in names:
        compiled = MapKernel(name, np.float32)  # holds the engine while `kernel` runs
        kernel = compiled.fn
        ref = NUMPY.get(name)
        row = []
        for arg in (x, far) if name in TRIG else (x,):
            row.append(ns_per_element(lambda: kernel(arg.ctypes.data, out.ctypes.data, N)))
            row.append(ns_per_element(lambda: ref(arg, out)) if ref else float("nan"))
        print(f"{name:10s} {row[0]:8.2f} {row[1]:8.2f}" + (f" {row[2]:14.2f} {row[3]:8.2f}" if len(row) > 2 else ""))


if __name__ == "__main__":
    main([a for a in sys.argv[1:] if a != "--cpu"] or ["exp", "tanh"])
