"""Profiler: the cost of traced runs, and the W2/W4 profiles against JAX.

For W2 (batch 256 and 32), W4 and a tiny graph, untraced and traced runs of one session
are timed in alternation (round-robin: every round times each once, so load changes hit
both alike) and the overhead of tracing is printed; then the profile table of 20 traced
runs. To split the gap to JAX the same way the profile splits graphc's time, each
network is also timed with its elementwise work removed (no activations, no biases, the
loss ``sum(h * t)`` for a fixed t): the same matrix products, in graphc and in JAX.
"""

from __future__ import annotations

import statistics
import time

import bench_w2
import bench_w4
import numpy as np
from _timing import Timing, fmt_time, measure, start, table

TRACED_RUNS = 20


def round_robin(fns: dict, rounds: int, target: float) -> dict[str, Timing]:
    """Median seconds per call of each callable, timed in alternation."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(measure(fn, 1, target, warmup=1).median)
    return {name: Timing(statistics.median(t), min(t), max(t), 0) for name, t in times.items()}


def cpu_per_call(fns: dict, rounds: int, calls: int = 20) -> dict[str, float]:
    """Median process CPU seconds (all threads) per call, in alternation: less sensitive than
    wall time to other processes taking the cores."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.process_time()
            for _ in range(calls):
                fn()
            times[name].append((time.process_time() - start) / calls)
    return {name: statistics.median(t) for name, t in times.items()}


def products_graphc(gc, ws: list[np.ndarray], x: np.ndarray, t: np.ndarray):
    """value and weight gradients of sum((x @ W_1 @ ... @ W_n) * t): the products alone."""
    with gc.Graph().as_default():
        xp = gc.placeholder(gc.float32, x.shape, name="x")
        tp = gc.placeholder(gc.float32, t.shape, name="t")
        vs = [gc.Variable(w, name=f"w{i}") for i, w in enumerate(ws)]
        h = xp
        for v in vs:
            h = h @ v
        loss = gc.sum(h * tp)
        fetches = [loss, gc.gradients(loss, vs)]
        sess = gc.Session()
    return lambda: sess.run(fetches, {xp: x, tp: t})


def products_jax(jax, ws: list[np.ndarray], x: np.ndarray, t: np.ndarray):
    def f(ws_, x_, t_):
        h = x_
        for w in ws_:
            h = h @ w
        return jax.numpy.sum(h * t_)

    step = jax.jit(jax.value_and_grad(f))
    args = ([jax.device_put(w) for w in ws], jax.device_put(x), jax.device_put(t))
    return lambda: jax.block_until_ready(step(*args))


def report(gc, jax, name: str, traced_step, untraced_step, products: tuple, jax_full, args) -> None:
    """Overhead of tracing, the profile table, and the step split into products and the rest."""
    meta = gc.RunMetadata()
    opts = gc.RunOptions(trace=True)
    fns = {"untraced": untraced_step, "traced": lambda: traced_step(options=opts, run_metadata=meta)}
    timings = round_robin(fns, args.repeat, args.target)
    cpu = cpu_per_call(fns, args.repeat)
    rows = [{"run": k, "median": fmt_time(t.median), "spread": f"{t.spread() * 100:.0f}%", "cpu": fmt_time(cpu[k])}
            for k, t in timings.items()]
    over = timings["traced"].median / timings["untraced"].median - 1
    rows.append({"run": "overhead", "median": f"{100 * over:+.1f}%",
                 "cpu": f"{100 * (cpu['traced'] / cpu['untraced'] - 1):+.1f}%"})
    print(table(f"{name}: traced vs untraced runs ({args.repeat} rounds; cpu: process CPU time per run)", rows,
                ["run", "median", "spread", "cpu"]))
    with gc.profile() as prof:
        for _ in range(TRACED_RUNS):
            untraced_step()
    print(f"\n{name}: profile of {TRACED_RUNS} runs\n```\n{prof.table(rows=12)}```")
    if products is None:
        return
    parts = {"graphc step": untraced_step, "graphc products only": products[0]}
    if jax is not None:
        parts.update({"jax step": jax_full, "jax products only": products[1]})
    split = round_robin(parts, args.repeat, args.target)
    rows = [{"impl": k, "median": fmt_time(t.median), "spread": f"{t.spread() * 100:.0f}%"} for k, t in split.items()]
    for impl in ("graphc", "jax"):
        if f"{impl} step" in split:
            rest = split[f"{impl} step"].median - split[f"{impl} products only"].median
            rows.append({"impl": f"{impl}: step - products", "median": fmt_time(rest)})
    print(table(f"{name}: the step and its matrix products alone", rows, ["impl", "median", "spread"]))


def main() -> None:
    args, gc, backend, jax, _ = start(__doc__)
    if gc is None:
        raise SystemExit(backend)
    rng = np.random.default_rng(2)
    for size in bench_w2.BATCHES:
        x, y = bench_w2.batch(size)
        ref = (float(bench_w2.numpy_step(bench_w2.init_params(), x, y)), None)
        _, _, step = bench_w2.graphc_model(gc)
        ws = bench_w2.init_params()[0::2]
        t = rng.standard_normal((size, bench_w2.SIZES[-1])).astype(np.float32)
        products = (products_graphc(gc, ws, x, t), products_jax(jax, ws, x, t) if jax else None)
        jax_full = None
        if jax is not None:
            jref = (ref[0], bench_w2.init_params())
            bench_w2.numpy_step(jref[1], x, y)
            jax_full = bench_w2.jax_step(jax, x, y, jref)
        report(gc, jax, f"W2 batch {size}", lambda s=step, x=x, y=y, **kw: s(x, y, **kw),
               lambda s=step, x=x, y=y: s(x, y), products, jax_full, args)
    ws, x = bench_w4.weights(), bench_w4.inputs()
    step = bench_w4.graphc_model(gc, ws)
    t = rng.standard_normal((bench_w4.BATCH, bench_w4.WIDTH)).astype(np.float32)
    products = (products_graphc(gc, ws, x, t), products_jax(jax, ws, x, t) if jax else None)
    jax_full = bench_w4.jax_step(jax, ws, x, bench_w4.reference(ws, x)) if jax else None
    report(gc, jax, "W4", lambda **kw: step(x, **kw), lambda: step(x), products, jax_full, args)
    with gc.Graph().as_default():  # W3's size: a run is almost all Python
        xp = gc.placeholder(gc.float32, (4,), name="x")
        w = gc.Variable(np.ones(4, np.float32), name="w")
        y = xp * w + 1.0
        sess = gc.Session()
    feed = {xp: np.ones(4, np.float32)}
    report(gc, jax, "tiny (y = x*w + 1, 4 elements)", lambda **kw: sess.run(y, feed, **kw),
           lambda: sess.run(y, feed), None, None, args)


if __name__ == "__main__":
    main()
