"""W1-W5 in one command, one table: graphc, numpy, numpy with one BLAS thread, JAX, PyTorch.

Every implementation of a case is built (and checked against its reference) once; then
`--rounds` rounds each time every implementation once, in an order that rotates from round
to round, so that the machine's load hits all of them alike. A cell is the median over the
rounds of each round's median time per call. W5 (time to the first result in a fresh
process) is graphc's alone: medians of fresh processes, cold and warm disk cache.

    python bench/run_all.py            # about 2-4 minutes on a quiet 2-core machine
    python bench/run_all.py --quick    # a smoke run
    python bench/run_all.py --dry-run  # every case built, checked and called a few times

tests/test_bench_run_all.py runs `main` with --dry-run at tiny sizes (W5's children stubbed),
so a bench script whose functions change breaks a test rather than `make bench`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import bench_w1
import bench_w2
import bench_w3
import bench_w4
import bench_w5
import numpy as np
from _timing import describe, fmt_time, graphc_status, measure, optional, table
from threadpoolctl import threadpool_limits

IMPLS = ("graphc", "numpy", "numpy 1 thread", "jax.jit", "torch eager")


def w1_cases(gc, jax, torch) -> dict[str, dict[str, Callable | str]]:
    cases = {}
    rng = np.random.default_rng(0)
    for n in bench_w1.SIZES:
        x = rng.standard_normal(n, dtype=np.float32) * 2
        ref = bench_w1.reference(x)
        cases[f"W1 value+grad {n:.0e}"] = {
            "graphc": lambda x=x, ref=ref: bench_w1.graphc_step(gc, x, ref),
            "numpy": lambda x=x: lambda: bench_w1.numpy_step(x),
            "jax.jit": lambda x=x, ref=ref: bench_w1.jax_step(jax, x, ref),
            "torch eager": lambda x=x, ref=ref: bench_w1.torch_step(torch, x, ref)}
    return cases


def w2_cases(gc, jax, torch) -> dict[str, dict[str, Callable | str]]:
    cases = {}
    for size in bench_w2.BATCHES:
        x, y = bench_w2.batch(size)
        ref_params = bench_w2.init_params()
        ref = (float(bench_w2.numpy_step(ref_params, x, y)), ref_params)

        def graphc(x=x, y=y, ref=ref):
            sess, params, step = bench_w2.graphc_model(gc, bench_w2.symbolic(gc))
            bench_w2.check("graphc", float(step(x, y)), [sess.variable_value(p) for p in params], *ref)
            return lambda: step(x, y)

        def numpy(x=x, y=y):
            params = bench_w2.init_params()
            return lambda: bench_w2.numpy_step(params, x, y)

        cases[f"W2 SGD step, batch {size}"] = {
            "graphc": graphc, "numpy": numpy,
            "jax.jit": lambda x=x, y=y, ref=ref: bench_w2.jax_step(jax, x, y, ref),
            "torch eager": lambda x=x, y=y, ref=ref: bench_w2.torch_step(torch, x, y, ref)}
    return cases


def w3_cases(gc, jax, torch) -> dict[str, dict[str, Callable | str]]:
    cases = {}
    for grad in (False, True):
        fn = bench_w3.numpy_value_grad if grad else bench_w3.numpy_value
        cases[f"W3 x*w+b, {'value+grad' if grad else 'value'}"] = {
            "graphc": lambda grad=grad: bench_w3.graphc_step(gc, grad),
            "numpy": lambda fn=fn: lambda: fn(bench_w3.X),
            "jax.jit": lambda grad=grad: bench_w3.jax_step(jax, grad),
            "torch eager": lambda grad=grad: bench_w3.torch_step(torch, grad)}
    return cases


def w4_cases(gc, jax, torch) -> dict[str, dict[str, Callable | str]]:
    ws, x = bench_w4.weights(), bench_w4.inputs()
    ref = bench_w4.reference(ws, x)

    def graphc():
        step = bench_w4.graphc_model(gc, ws)
        value, grads = step(x)
        bench_w4.check("graphc", float(value), grads, ref)
        return lambda: step(x)

    return {"W4 64 x tanh(h @ W), grads": {
        "graphc": graphc, "numpy": lambda: lambda: bench_w4.numpy_step(ws, x),
        "jax.jit": lambda: bench_w4.jax_step(jax, ws, x, ref),
        "torch eager": lambda: bench_w4.torch_step(torch, ws, x, ref)}}


def build(makers: dict[str, Callable], available: dict[str, Any]) -> dict[str, Callable | str]:
    """Each implementation's step callable, or why it is missing."""
    steps: dict[str, Callable | str] = {}
    for impl in IMPLS:
        if impl == "numpy 1 thread":
            steps[impl] = steps["numpy"] if callable(steps.get("numpy")) else "-"
            continue
        if available.get(impl, True) is None:
            steps[impl] = "not installed"
            continue
        try:
            steps[impl] = makers[impl]()
        except Exception as exc:  # a baseline that fails is reported, not fatal
            steps[impl] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:60] if str(exc) else ''}"
    return steps


def interleaved(steps: dict[str, Callable | str], rounds: int, target: float) -> dict[str, list[float] | str]:
    """Per implementation, each round's median seconds per call (rounds rotate the order).

    "numpy 1 thread" is numpy's step timed with every BLAS in the process capped at one
    thread (threadpoolctl; the cap is restored after each timing).
    """
    runnable = [k for k, v in steps.items() if callable(v)]
    times: dict[str, list[float] | str] = {k: (v if isinstance(v, str) else []) for k, v in steps.items()}
    for r in range(rounds):
        for impl in runnable[r % len(runnable):] + runnable[:r % len(runnable)]:
            capped = threadpool_limits(1, user_api="blas") if impl == "numpy 1 thread" else contextlib.nullcontext()
            with capped:
                times[impl].append(_time(steps[impl], target))
    return times


def _time(fn: Callable[[], Any], target: float) -> float:
    """Median seconds per call over 3 repeats of about `target` s; one call when a call takes
    longer than 0.2 s (so a baseline that collapses under load does not stall the run)."""
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    if once > 0.2:
        return once
    return measure(fn, repeat=3, target=target, warmup=0).median


def w5_rows(runs: int) -> list[dict[str, str]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="graphc-w5-pyc-") as pycache:  # bytecode, as an installed package has
        for workload in ("w2", "w4"):
            rows += _w5_workload(workload, runs, pycache)
    return rows


def _w5_workload(workload: str, runs: int, pycache: str) -> list[dict[str, str]]:
    rows = []
    cold, warm = [], []
    with tempfile.TemporaryDirectory(prefix="graphc-w5-") as cache_dir:
        bench_w5.spawn(workload, cache_dir, pycache)  # untimed: writes the bytecode
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="graphc-w5-") as cache_dir:
            cold.append(bench_w5.spawn(workload, cache_dir, pycache)["first"])
            warm.append(bench_w5.spawn(workload, cache_dir, pycache)["first"])
    label = "W5 first result, " + ("W2 batch 256" if workload == "w2" else "W4")
    rows.append({"case": label + ", cold cache", "graphc": fmt_time(statistics.median(cold))})
    rows.append({"case": label + ", warm cache", "graphc": fmt_time(statistics.median(warm))})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds, short timings (smoke run)")
    parser.add_argument("--dry-run", action="store_true",
                        help="1 round of a few calls each, 1 W5 process each: checks the plumbing, not the speed")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds per case (median reported)")
    parser.add_argument("--only", default="", help="comma-separated workloads to run, e.g. W2,W4")
    args = parser.parse_args(argv)
    rounds, target = (1, 0.0) if args.dry_run else (2, 0.01) if args.quick else (args.rounds, 0.03)
    gc, backend = graphc_status()
    jax, torch = optional("jax"), optional("torch")
    print(describe(backend))
    started = time.time()
    only = {w.strip().upper() for w in args.only.split(",") if w.strip()}
    available = {"graphc": gc, "jax.jit": jax, "torch eager": torch}
    rows = []
    for workload, cases in (("W1", w1_cases), ("W2", w2_cases), ("W3", w3_cases), ("W4", w4_cases)):
        if only and workload not in only:
            continue
        for case, makers in cases(gc, jax, torch).items():
            load = os.getloadavg()[0]
            times = interleaved(build(makers, available), rounds, target)
            medians = {k: statistics.median(v) for k, v in times.items() if isinstance(v, list)}
            row = {"case": case, "load": f"{load:.1f}"}
            for impl in IMPLS:
                row[impl] = fmt_time(medians[impl]) if impl in medians else times[impl]
            for base in ("numpy", "jax.jit"):
                if "graphc" in medians and base in medians:
                    row[f"graphc vs {base}"] = f"{medians[base] / medians['graphc']:.2f}x"
            rows.append(row)
            print(f"# {case}: done at {time.time() - started:.0f} s", file=sys.stderr)
    if not only or "W5" in only:
        with contextlib.suppress(RuntimeError):
            runs = 1 if args.dry_run else 2 if args.quick else 5
            rows += [dict(r, load=f"{os.getloadavg()[0]:.1f}") for r in w5_rows(runs)]
    print(table(f"W1-W5, graphc ({backend}) and its peers: medians of {rounds} interleaved rounds "
                f"(graphc vs X above 1: graphc faster)", rows,
                ["case", *IMPLS, "graphc vs numpy", "graphc vs jax.jit", "load"]))
    print(f"# total {time.time() - started:.0f} s; load average at the end "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
