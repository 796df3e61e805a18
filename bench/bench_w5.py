"""W5: time to first result of W2 (batch 256) and W4 in a fresh process, cold and warm disk cache.

Each measurement starts a new Python process. "cold" points GRAPHC_CACHE_DIR at an empty
directory; "warm" reuses the directory a previous process filled. The child reports the
time to import graphc and, separately, the time from there to the first result (build the
graph, create the session, compile, run once). The targets of issue 4 (W2 cold <= 1 s,
warm <= 0.15 s) are compared with the second figure; the import is listed beside it.

Python's bytecode is cached as for an installed package (pip writes .pyc files): the
children write and read it under one directory of this run (PYTHONPYCACHEPREFIX), filled
by an untimed child first, whatever PYTHONDONTWRITEBYTECODE says. The row "warm, no .pyc"
runs the children as this script did until 2026-12-05 (the environment's
PYTHONDONTWRITEBYTECODE=1, no prefix): where the source tree has no __pycache__, every
process compiles graphc's Python source, a cost that grows with the size of the source,
not with what a first run does.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(workload: str) -> None:
    """Runs in the fresh process: prints {"import": s, "first": s} as JSON."""
    start = time.perf_counter()
    import graphc as gc

    imported = time.perf_counter()
    if workload == "w2":
        import bench_w2

        x, y = bench_w2.batch(256)
        _, _, step = bench_w2.graphc_model(gc)
        step(x, y)
    else:
        import bench_w4

        bench_w4.graphc_model(gc, bench_w4.weights())(bench_w4.inputs())
    done = time.perf_counter()
    print(json.dumps({"import": imported - start, "first": done - imported}))


def spawn(workload: str, cache_dir: str, pycache: str | None) -> dict[str, float]:
    """One child's figures (and its whole process's wall time), its bytecode under `pycache`
    (None: written nowhere, read from __pycache__ directories only)."""
    env = dict(os.environ, GRAPHC_CACHE_DIR=cache_dir, PYTHONPATH=os.pathsep.join([str(HERE), str(HERE.parent)]))
    for name in ("GRAPHC_CACHE", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX"):
        env.pop(name, None)
    if pycache is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env["PYTHONPYCACHEPREFIX"] = pycache
    start = time.perf_counter()
    out = subprocess.run([sys.executable, str(Path(__file__)), "--child", workload], env=env,
                         capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process"] = wall
    return result


def measure_workload(workload: str, runs: int, pycache: str) -> list[dict[str, str]]:
    """Table rows: cold and warm disk cache with bytecode, and warm without."""
    from _timing import fmt_time

    cold, warm, source = [], [], []
    try:
        with tempfile.TemporaryDirectory(prefix="graphc-w5-") as cache_dir:
            spawn(workload, cache_dir, pycache)  # untimed: writes the bytecode
        for _ in range(runs):
            with tempfile.TemporaryDirectory(prefix="graphc-w5-") as cache_dir:
                cold.append(spawn(workload, cache_dir, pycache))
                warm.append(spawn(workload, cache_dir, pycache))
                source.append(spawn(workload, cache_dir, None))
    except RuntimeError as exc:
        return [{"workload": workload.upper(), "cache": "-", "first result": f"failed: {exc}"}]
    rows = []
    for label, results in (("cold", cold), ("warm", warm), ("warm, no .pyc", source)):
        med = {k: statistics.median(r[k] for r in results) for k in results[0]}
        rows.append({"workload": workload.upper(), "cache": label, "first result": fmt_time(med["first"]),
                     "import graphc": fmt_time(med["import"]), "whole process": fmt_time(med["process"]),
                     "range of first": f"{fmt_time(min(r['first'] for r in results))} - "
                                       f"{fmt_time(max(r['first'] for r in results))}"})
    return rows


def main() -> None:
    from _timing import describe, graphc_status, parse_args, table

    args = parse_args(__doc__.splitlines()[0])
    _, backend = graphc_status()
    print(describe(backend))
    runs = 2 if args.quick else 5
    rows = []
    with tempfile.TemporaryDirectory(prefix="graphc-w5-pyc-") as pycache:
        for workload in ("w2", "w4"):
            rows += measure_workload(workload, runs, pycache)
    print(table(f"W5 time to first result in a fresh process (graphc {backend}), median of {runs}", rows,
                ["workload", "cache", "first result", "range of first", "import graphc", "whole process"]))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        main()
