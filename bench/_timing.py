"""Shared benchmark helpers: timing by medians of repeats, the machine description, tables.

Every bench script is standalone (``python3 bench/bench_w1.py``); it imports this module
from its own directory and graphc from the repository root.
"""

from __future__ import annotations

import argparse
import datetime
import gc as _pygc
import importlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@dataclass
class Timing:
    """Seconds per call: the median of `repeat` repeats and their range."""

    median: float
    low: float
    high: float
    calls: int

    def spread(self) -> float:
        """(high - low) / median: how noisy the repeats were."""
        return (self.high - self.low) / self.median if self.median else 0.0


def measure(fn: Callable[[], Any], repeat: int = 7, target: float = 0.05, warmup: int = 2) -> Timing:
    """Time `fn()`: calibrate calls per repeat to about `target` seconds, report medians.

    Python's garbage collector is off while timing (as in `timeit`).
    """
    for _ in range(warmup):
        fn()
    number = 1
    while True:
        elapsed = _run(fn, number)
        if elapsed >= target or number >= 1 << 20:
            break
        number = max(number * 2, int(number * target / max(elapsed, 1e-9) * 1.1))
    times = [_run(fn, number) / number for _ in range(repeat)]
    return Timing(statistics.median(times), min(times), max(times), number)


def _run(fn: Callable[[], Any], number: int) -> float:
    enabled = _pygc.isenabled()
    _pygc.disable()
    try:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        return time.perf_counter() - start
    finally:
        if enabled:
            _pygc.enable()


def parse_args(description: str, flags: dict[str, str] | None = None) -> argparse.Namespace:
    """Common flags: --quick (fewer repeats, for a smoke run) and --repeat; `flags` adds the
    script's own on/off flags (name -> help)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="few repeats, short timings (smoke test)")
    parser.add_argument("--repeat", type=int, default=7, help="repeats per measurement (median reported)")
    for flag, text in (flags or {}).items():
        parser.add_argument(flag, action="store_true", help=text)
    args = parser.parse_args()
    if args.quick:
        args.repeat = 3
    args.target = 0.01 if args.quick else 0.05
    return args


def optional(name: str) -> Any:
    """The module if it imports, else None (JAX and PyTorch are optional baselines)."""
    try:
        return importlib.import_module(name)
    except Exception:  # any failure means "not available"
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown"
    libs = [f"{Path(i['filepath']).name.split('-')[0]} {i.get('version')} {i.get('architecture')} "
            f"{i['num_threads']}thr" for i in threadpool_info() if i["user_api"] == "blas"]
    return "; ".join(libs) or "none loaded"


def describe(session_backend: str | None = None) -> str:
    """Date, machine, load, versions: printed above every table."""
    import llvmlite
    import numpy
    import scipy

    parts = [f"date: {datetime.datetime.now().isoformat(timespec='minutes')}",
             f"cpu: {_cpu_model()}, {os.cpu_count()} logical cores, load average "
             + " ".join(f"{x:.2f}" for x in os.getloadavg()),
             f"python {platform.python_version()}, numpy {numpy.__version__}, scipy {scipy.__version__}, "
             f"llvmlite {llvmlite.__version__}"]
    for name in ("jax", "torch"):
        mod = optional(name)
        parts.append(f"{name}: {mod.__version__ if mod else 'not installed'}")
    if session_backend:
        parts.append(f"graphc backend: {session_backend}")
    env = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "GRAPHC_"))}
    parts.append(f"BLAS: {_blas()}; env: {env or 'none'}")
    return "\n".join("# " + p for p in parts)


def graphc_status() -> tuple[Any, str]:
    """(graphc module or None, the default Session backend or why graphc can't run)."""
    try:
        import graphc as gc
    except Exception as exc:  # report and go on with the other baselines
        return None, f"graphc import failed: {exc!r}"
    with gc.Graph().as_default():
        backend = gc.Session().backend
    return gc, backend


def start(doc: str, flags: dict[str, str] | None = None) -> tuple[argparse.Namespace, Any, str, Any, Any]:
    """Parse the script's arguments (`flags` as in `parse_args`), print the machine, and import
    what it compares: returns (args, graphc or None, graphc's backend or why it is missing, jax, torch)."""
    args = parse_args(doc.splitlines()[0], flags)
    gc, backend = graphc_status()
    print(describe(backend))
    return args, gc, backend, optional("jax"), optional("torch")


def fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A Markdown pipe table (readable as plain text too)."""
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = [f"\n{title}\n", "| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |" for row in cells]
    return "\n".join(lines)


def compare(results: dict[str, Timing | str], baseline: str = "numpy") -> list[dict[str, Any]]:
    """Rows of name, median, spread and speed relative to `baseline` (>1: faster than it)."""
    base = results.get(baseline)
    rows = []
    for name, t in results.items():
        if isinstance(t, str):  # why it did not run
            rows.append({"impl": name, "median": "-", "spread": "-", f"speed vs {baseline}": t})
            continue
        ratio = f"{base.median / t.median:.2f}x" if isinstance(base, Timing) else "-"
        rows.append({"impl": name, "median": fmt_time(t.median), "spread": f"{t.spread() * 100:.0f}%",
                     f"speed vs {baseline}": ratio})
    return rows


def attempt(fn: Callable[[], Timing]) -> Timing | str:
    """Run one measurement; a failure becomes its one-line reason in the table."""
    try:
        return fn()
    except Exception as exc:  # a baseline that fails is reported, not fatal
        return f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:90] if str(exc) else ''}"
