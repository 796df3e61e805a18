"""Memory of building and dropping 10,000 small graphs (issue 10, the intern table).

Each iteration builds a placeholder, a small expression and its gradient (about 20 nodes)
and drops every Python reference to them: in one graph that keeps every node (the
default graph, "keep-all", TF1's behaviour), in one graph that holds its nodes weakly
(``gc.Graph(keep_all=False)``, "weak", what the compiler binds shapes into), or in a fresh
`gc.Graph()` each time ("fresh"). Reported: growth of the resident set over the
loop, nodes still alive after a `gc.collect()`, and time; with ``--tracemalloc`` the Python
heap still allocated after the loop instead (about 6x slower).
"""

from __future__ import annotations

import argparse
import gc as pygc
import os
import time
import tracemalloc

import numpy as np

import graphc as gc


def build() -> None:
    x = gc.placeholder(np.float32, (4,), name="x")
    y = gc.sum(gc.tanh(x * 2.0 + 1.0) * gc.sigmoid(x))
    gc.gradients(y, [x])


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run(mode: str, n: int, trace: bool) -> dict[str, float]:
    gc.reset_default_graph()
    pygc.collect()
    if trace:
        tracemalloc.start()
    weak = gc.Graph(keep_all=False) if mode == "weak" else None
    base = tracemalloc.get_traced_memory()[0] if trace else rss()
    start = time.perf_counter()
    for _ in range(n):
        if mode == "fresh":
            with gc.Graph().as_default():
                build()
        elif mode == "weak":
            with weak.as_default():
                build()
        else:
            build()
    seconds = time.perf_counter() - start
    held = (tracemalloc.get_traced_memory()[0] if trace else rss()) - base
    pygc.collect()
    if trace:
        tracemalloc.stop()
    live = sum(1 for o in pygc.get_objects() if isinstance(o, gc.Tensor))
    return {"held_mb": held / 1e6, "live_nodes": live, "ms_per_graph": seconds / n * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--tracemalloc", action="store_true", help="Python heap (tracemalloc) instead of RSS")
    args = parser.parse_args()
    what = "heap MB" if args.tracemalloc else "RSS +MB"
    print(f"{'graphs':>8} {'mode':>8} {what:>8} {'live nodes':>10} {'ms/graph':>9}")
    for mode in ("keep-all", "weak", "fresh"):
        r = run(mode, args.n, args.tracemalloc)
        print(f"{args.n:>8} {mode:>8} {r['held_mb']:>8.1f} {r['live_nodes']:>10} {r['ms_per_graph']:>9.2f}")


if __name__ == "__main__":
    main()
