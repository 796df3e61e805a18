"""The matrix products of W2 and W4, one at a time: graphc's own kernel against OpenBLAS, MKL.

Each product of W2 (batch 256 and 32) and W4, as a one-product graphc program with
``GRAPHC_GEMM=tiled`` (graphc's kernel, docs/backend.md "Tiled products") and ``=blas``
(scipy's OpenBLAS through graphc), against numpy (its own OpenBLAS) and PyTorch eager (MKL
in the CPU wheel), all at `--threads` threads (default 1: the kernels alone, which other
jobs on a shared machine disturb least). Rounds alternate the implementations; a cell is
the fastest call over the rounds (the least disturbed one) and, after the slash, the
median round's median call.

    python bench/bench_gemm.py [--threads 2] [--quick] [--only "W2 b256"]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from _timing import describe, graphc_status, optional, table
from threadpoolctl import threadpool_limits

# (case, m, k, n, A transposed, B transposed): op(A) is m x k, op(B) k x n
PRODUCTS = [
    ("W2 b256 x @ W1", 256, 784, 512, False, False),
    ("W2 b256 h @ W2", 256, 512, 512, False, False),
    ("W2 b256 dW1 = x.T @ d", 784, 256, 512, True, False),
    ("W2 b256 dW2 = h.T @ d", 512, 256, 512, True, False),
    ("W2 b256 dh = d @ W2.T", 256, 512, 512, False, True),
    ("W2 b32 x @ W1", 32, 784, 512, False, False),
    ("W2 b32 dW1 = x.T @ d", 784, 32, 512, True, False),
    ("W2 b32 dW2 = h.T @ d", 512, 32, 512, True, False),
    ("W2 b32 dh = d @ W2.T", 32, 512, 512, False, True),
    ("W4 h @ W", 64, 256, 256, False, False),
    ("W4 dW = h.T @ d", 256, 64, 256, True, False),
    ("W4 dh = d @ W.T", 64, 256, 256, False, True),
]


def calls(fn, count: int) -> list[float]:
    fn()
    times = []
    for _ in range(count):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def graphc_product(gc, mode: str, a: np.ndarray, b: np.ndarray, ta: bool, tb: bool, threads: int):
    os.environ["GRAPHC_GEMM"] = mode  # read when the program is built (its first run)
    with gc.Graph().as_default():
        ap = gc.placeholder(gc.float32, a.shape)
        bp = gc.placeholder(gc.float32, b.shape)
        out = (gc.transpose(ap) if ta else ap) @ (gc.transpose(bp) if tb else bp)
        sess = gc.Session(threads=threads)
    feeds = {ap: a, bp: b}
    sess.run(out, feeds)
    os.environ.pop("GRAPHC_GEMM")
    return lambda: sess.run(out, feeds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="", help="run the products whose name contains this text")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.calls = 1, 10
    gc, backend = graphc_status()
    torch = optional("torch")
    print(describe(backend))
    if torch is not None:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    for name, m, k, n, ta, tb in [p for p in PRODUCTS if args.only in p[0]]:
        a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
        op_a, op_b = (a.T if ta else a), (b.T if tb else b)
        fns = {"graphc tiled": graphc_product(gc, "tiled", a, b, ta, tb, args.threads),
               "graphc OpenBLAS": graphc_product(gc, "blas", a, b, ta, tb, args.threads),
               "numpy": lambda op_a=op_a, op_b=op_b: op_a @ op_b}
        want = op_a.astype(np.float64) @ op_b
        for impl in ("graphc tiled", "graphc OpenBLAS"):
            np.testing.assert_allclose(fns[impl](), want, rtol=1e-3, atol=1e-3 * np.sqrt(k))
        if torch is not None:
            ta_, tb_ = torch.from_numpy(a), torch.from_numpy(b)
            fns["torch (MKL)"] = lambda ta_=ta_, tb_=tb_, x=ta, y=tb: (ta_.T if x else ta_) @ (tb_.T if y else tb_)
        best = {impl: [] for impl in fns}
        with threadpool_limits(args.threads, user_api="blas"):
            for r in range(args.rounds):
                for impl in list(fns)[r % len(fns):] + list(fns)[:r % len(fns)]:
                    best[impl].append(calls(fns[impl], args.calls))
        flops = 2.0 * m * n * k
        row = {"product": name, "MFLOP": f"{flops / 1e6:.1f}"}
        for impl, rounds in best.items():
            fastest = min(min(t) for t in rounds)
            median = statistics.median(statistics.median(t) for t in rounds)
            row[impl] = f"{fastest * 1e6:.0f} / {median * 1e6:.0f} us ({flops / fastest / 1e9:.0f})"
        rows.append(row)
        print(f"  {name} done (load {os.getloadavg()[0]:.1f})", flush=True)
    columns = ["product", "MFLOP", *best]
    print(table(f"fastest / median call, {args.threads} thread(s), (GFLOP/s of the fastest); load average now "
                + " ".join(f"{x:.1f}" for x in os.getloadavg()), rows, columns))


if __name__ == "__main__":
    main()
