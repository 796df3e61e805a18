"""gc.distributed on this machine: allreduce time and bandwidth, W2 steps/s at 1 and 2 ranks.

    python bench/bench_distributed.py [--quick] [--buckets]   (--buckets: only the bucket comparison)

The script launches itself under ``mpiexec -n N`` (from the MPICH wheel of graphc[mpi]) for
each measurement and prints Markdown tables (docs/distributed.md, docs/benchmarks.md):

* allreduce of float32 buffers of 1 KB to 64 MB at 2 ranks, three ways: a compiled program
  whose collective step calls MPI's C ABI, the same through a host callback into Python
  (GRAPHC_MPI_CALL=callback), and mpi4py's blocking ``Allreduce`` on numpy arrays (MPI alone);
* the latency and bandwidth constants of ``t(S) = a + S / B`` fitted to the C-ABI times, and
  the ring-allreduce model built on them;
* W2 (MLP 784-512-512-10, SGD) training steps/s with DistributedOptimizer at 1 and 2 ranks,
  for the same global batch (256, split over the ranks) and the same per-rank batch (256);
* W2 at 2 ranks (global batch 256) with one gradient buffer, and with 4 buckets whose
  allreduces overlap the rest of the backward pass or wait right after they start
  (GRAPHC_MPI_OVERLAP=0), run twice in turn.

All ranks run the same fixed numbers of calls (collectives must match); rank 0 times them.
Times are medians over repeats separated by barriers.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _timing import ROOT, describe, fmt_time, parse_args, table

SIZES = [1 << k for k in range(10, 27, 2)]  # 1 KB .. 64 MB
HERE = Path(__file__).resolve()


def timed(fn, calls: int, repeat: int, barrier) -> tuple[float, float]:
    """(median, min) seconds per call over `repeat` repeats of `calls` calls (every rank runs the same)."""
    fn()
    times = []
    for _ in range(repeat):
        barrier()
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t0) / calls)
    return statistics.median(times), min(times)


def calls_for(nbytes: int, quick: bool) -> int:
    return max(2, min(400, (1 << (22 if quick else 25)) // nbytes))


def worker_allreduce(gc, repeat: int, quick: bool) -> list[dict]:
    from mpi4py import MPI

    D = gc.distributed
    rows = []
    for nbytes in SIZES[:7] if quick else SIZES:
        n = nbytes // 4
        x = np.full(n, D.rank() + 1, np.float32)
        row = {"bytes": nbytes}
        for impl in ("c", "callback"):
            os.environ["GRAPHC_MPI_CALL"] = impl  # read when a program is compiled
            with gc.Graph().as_default():
                ph = gc.placeholder(gc.float32, (n,), name="x")
                sess = gc.Session()
                y = D.allreduce(ph, op="sum")
                assert sess.run(y, {ph: x})[0] == D.size() * (D.size() + 1) / 2
                row[impl] = timed(lambda: sess.run(y, {ph: x}), calls_for(nbytes, quick), repeat, D.barrier)
        out = np.empty_like(x)
        row["mpi4py"] = timed(lambda: MPI.COMM_WORLD.Allreduce(x, out), calls_for(nbytes, quick), repeat, D.barrier)
        rows.append(row)
    return rows


def worker_w2(gc, repeat: int, quick: bool, per_rank: int, buckets: int) -> dict:
    from bench_w2 import LR, batch, graphc_loss

    from graphc.backend.llvm.parallel import default_threads

    D = gc.distributed
    with gc.Graph().as_default():
        xp, yp, _, loss = graphc_loss(gc)
        train = D.DistributedOptimizer(gc.train.SGD(LR), buckets=buckets).minimize(loss)
        sess = gc.Session()
        x, y = batch(per_rank, seed=1 + D.rank())
        step = lambda: sess.run([loss, train], {xp: x, yp: y})  # noqa: E731
        seconds, best = timed(step, 3 if quick else 10, repeat, D.barrier)
    return {"ranks": D.size(), "per_rank": per_rank, "global": per_rank * D.size(), "buckets": buckets,
            "overlap": os.environ.get("GRAPHC_MPI_OVERLAP", "1") == "1", "steps_per_s": 1 / seconds,
            "best_steps_per_s": 1 / best, "threads": sess.threads or default_threads()}


def worker(task: str, args) -> None:
    import graphc as gc

    if task == "allreduce":
        result = worker_allreduce(gc, args.repeat, args.quick)
    else:
        _, per_rank, buckets = task.split(":")
        result = worker_w2(gc, args.repeat, args.quick, int(per_rank), int(buckets))
    if gc.distributed.rank() == 0:
        print("RESULT " + json.dumps(result), flush=True)


def launch(ranks: int, task: str, args, threads: int | None = None, overlap: bool = True) -> object:
    mpiexec = Path(sys.executable).parent / "mpiexec"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE.parent)]),
               GRAPHC_MPI_OVERLAP="1" if overlap else "0")
    if threads is not None:
        env["GRAPHC_THREADS"] = str(threads)
    cmd = [str(mpiexec), "-n", str(ranks), sys.executable, str(HERE), "--worker", task, "--repeat", str(args.repeat)]
    proc = subprocess.run(cmd + (["--quick"] if args.quick else []), capture_output=True, text=True, timeout=1800,
                          env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(lines[-1][len("RESULT "):])


def fit(rows: list[dict], key: str, which: int) -> tuple[float, float]:
    """Least-squares (latency a in s, bandwidth B in bytes/s) of t = a + S/B over the rows'
    medians (which=0) or minima (which=1)."""
    s = np.array([r["bytes"] for r in rows], float)
    t = np.array([r[key][which] for r in rows], float)
    slope, intercept = np.polyfit(s, t, 1, w=1 / t)  # relative errors: small and large sizes both count
    return max(intercept, 0.0), 1 / slope


def size_str(nbytes: float) -> str:
    for unit, scale in (("MB", 1 << 20), ("KB", 1 << 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:g} {unit}"
    return f"{nbytes:g} B"


def driver(args) -> None:
    print(describe("llvm"))
    rows = launch(2, "allreduce", args)
    methods = ("c", "callback", "mpi4py")
    out = [{"buffer": size_str(r["bytes"]),
            **{f"{k} median": fmt_time(r[k][0]) for k in methods},
            **{f"{k} min": fmt_time(r[k][1]) for k in methods},
            **{f"{k} GB/s": f"{r['bytes'] / r[k][0] / 1e9:.2f}" for k in methods}} for r in rows]
    print(table("allreduce (sum) of float32 buffers, 2 ranks: time per call (median and min over repeats) "
                "and S/t at the median", out, list(out[0])))
    for which, label in ((0, "medians"), (1, "minima")):
        a, bw = fit(rows, "c", which)
        print(f"\nfit of the C-ABI {label}, t = a + S/B: a = {a * 1e6:.1f} us, B = {bw / 1e9:.2f} GB/s")
    model = []
    for nbytes in (1 << 20, 40 << 20, 400 << 20):
        model.append({"buffer": size_str(nbytes),
                      **{f"N={n}": fmt_time((n - 1) * a + 2 * (n - 1) / n * nbytes / bw) for n in (2, 4, 8, 16)}})
    print(table("ring-allreduce model t(N, S) = (N-1) a + 2 (N-1)/N S/B with the minima's constants", model,
                list(model[0])))
    w2 = [launch(1, "w2:256:1", args), launch(1, "w2:256:1", args, threads=1),
          launch(2, "w2:128:1", args, threads=1), launch(2, "w2:256:1", args, threads=1)]
    print(table("W2 training step with DistributedOptimizer(SGD), float32",
                [{"ranks": r["ranks"], "threads per rank": r["threads"], "batch per rank": r["per_rank"],
                  "global batch": r["global"], "steps/s (median)": f"{r['steps_per_s']:.1f}",
                  "steps/s (best)": f"{r['best_steps_per_s']:.1f}",
                  "examples/s (median)": f"{r['steps_per_s'] * r['global']:.0f}"} for r in w2],
                ["ranks", "threads per rank", "batch per rank", "global batch", "steps/s (median)", "steps/s (best)",
                 "examples/s (median)"]))
    print_buckets(args)


def print_buckets(args) -> None:
    """W2 at 2 ranks, global batch 256: one buffer, 4 overlapping buckets, 4 blocking buckets, twice in turn."""
    cases = [(1, True), (4, True), (4, False)] * 2
    rows = [launch(2, f"w2:128:{buckets}", args, threads=1, overlap=overlap) for buckets, overlap in cases]
    print(table("W2 at 2 ranks (1 thread each, batch 128 per rank): gradient buckets and overlap, two rounds",
                [{"round": 1 + k // 3, "buckets": r["buckets"],
                  "waits": "late (overlap)" if r["overlap"] else "right after start",
                  "steps/s (median)": f"{r['steps_per_s']:.1f}", "steps/s (best)": f"{r['best_steps_per_s']:.1f}"}
                 for k, r in enumerate(rows)],
                ["round", "buckets", "waits", "steps/s (median)", "steps/s (best)"]))


def main() -> None:
    if "--buckets" in sys.argv:  # only the bucket comparison
        sys.argv.remove("--buckets")
        args = parse_args(__doc__.splitlines()[0])
        print(describe("llvm"))
        print_buckets(args)
    elif "--worker" in sys.argv:
        i = sys.argv.index("--worker")
        task = sys.argv[i + 1]
        del sys.argv[i:i + 2]
        worker(task, parse_args(__doc__.splitlines()[0]))
    else:
        driver(parse_args(__doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
