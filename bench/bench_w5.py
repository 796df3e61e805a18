"""W5: time to first result of W2 (batch 256) and W4 in a fresh process, cold and warm disk cache.

Each measurement starts a new Python process. "cold" points GRAPHC_CACHE_DIR at an empty
directory; "warm" reuses the directory a previous process filled. The child reports the
time to import graphc and, separately, the time from there to the first result (build the
graph, create the session, compile, run once). The targets of issue 4 (W2 cold <= 1 s,
warm <= 0.15 s) are compared with the second figure; the import is listed beside it.
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


def spawn(workload: str, cache_dir: str) -> dict[str, float]:
    env = dict(os.environ, GRAPHC_CACHE_DIR=cache_dir, PYTHONPATH=os.pathsep.join([str(HERE), str(HERE.parent)]))
    env.pop("GRAPHC_CACHE", None)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, str(Path(__file__)), "--child", workload], env=env,
                         capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process"] = wall
    return result


def main() -> None:
    from _timing import describe, fmt_time, graphc_status, parse_args, table

    args = parse_args(__doc__.splitlines()[0])
    _, backend = graphc_status()
    print(describe(backend))
    runs = 2 if args.quick else 5
    rows = []
    for workload in ("w2", "w4"):
        cold, warm = [], []
        try:
            for _ in range(runs):
                with tempfile.TemporaryDirectory(prefix="graphc-w5-") as cache_dir:
                    cold.append(spawn(workload, cache_dir))
                    warm.append(spawn(workload, cache_dir))
        except RuntimeError as exc:
            rows.append({"workload": workload.upper(), "cache": "-", "first result": f"failed: {exc}"})
            continue
        for label, results in (("cold", cold), ("warm", warm)):
            med = {k: statistics.median(r[k] for r in results) for k in results[0]}
            rows.append({"workload": workload.upper(), "cache": label, "first result": fmt_time(med["first"]),
                         "import graphc": fmt_time(med["import"]), "whole process": fmt_time(med["process"]),
                         "range of first": f"{fmt_time(min(r['first'] for r in results))} - "
                                           f"{fmt_time(max(r['first'] for r in results))}"})
    print(table(f"W5 time to first result in a fresh process (graphc {backend}), median of {runs}", rows,
                ["workload", "cache", "first result", "range of first", "import graphc", "whole process"]))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        main()
