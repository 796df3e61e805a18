"""Train a deep chain of tanh layers for a few steps under each checkpoint policy.

    python examples/deep_chain_checkpoint.py [--quick] [--depth N] [--width N] [--steps N]

A chain is where checkpointing matters most: reverse mode reads every layer's output, so
without checkpointing all `depth` activations stay alive until the backward pass. Each
row trains the same chain from the same weights under one policy and prints what the
compiled program reports (bytes of saved residuals, planned peak arena bytes and its
ratio to `none`'s, FLOPs recomputed in the backward part) next to measured compile and
step times. The last row asks for a memory budget of 70% of `none`'s planned peak. A
policy whose planned peak would not be lower than `none`'s is not used (marked `*`). The
losses must not depend on the policy beyond rounding: recomputation repeats the same
arithmetic (a recomputed value may fuse into a different kernel, and reductions
reassociate, so the last bits can differ).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np

import graphc as gc


def policies(depth: int) -> list[tuple[str, gc.CompileOptions]]:
    """(label, options) for each policy; revolve gets about sqrt(depth) slots, then one."""
    slots = max(1, math.isqrt(depth))
    return [("none", gc.CompileOptions(checkpoint="none")),
            ("sqrt", gc.CompileOptions(checkpoint="sqrt")),
            ("mincut", gc.CompileOptions(checkpoint="mincut")),
            (f"revolve({slots})", gc.CompileOptions(checkpoint="revolve", slots=slots)),
            ("revolve(1)", gc.CompileOptions(checkpoint="revolve", slots=1))]


def measure(options: gc.CompileOptions, depth: int, width: int, batch: int, steps: int, seed: int) -> dict:
    """Build the chain in a fresh graph, train `steps` SGD steps, return what was measured."""
    rng = np.random.Generator(np.random.PCG64(seed))
    X = rng.standard_normal((batch, width)).astype(np.float32)
    T = np.tanh(rng.standard_normal((batch, width))).astype(np.float32)
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float32, (batch, width), name="x")
        target = gc.placeholder(gc.float32, (batch, width), name="target")
        h = x
        for i in range(depth):
            h = gc.nn.dense(h, width, activation=gc.tanh, name=f"layer{i}", seed=seed + i)
        loss = gc.mean((h - target) ** 2)
        train = gc.train.SGD(0.5).minimize(loss)
        feed = {x: X, target: T}
        losses, times = [], []
        with gc.Session(options=options) as sess:
            t0 = time.perf_counter()
            program = sess.compile([loss, train], feed)
            compile_s = time.perf_counter() - t0
            for _ in range(steps):
                t0 = time.perf_counter()
                value, _ = sess.run([loss, train], feed)
                times.append(time.perf_counter() - t0)
                losses.append(float(value))
            report = program.optimized.checkpoint_report(options.checkpoint)
            peak = program.plan.arena_bytes
    return {"saved": report.saved_bytes, "peak": peak, "recomputed": report.recomputed_flops,
            "compile": compile_s, "step": statistics.median(times), "losses": losses, "unused": bool(report.note)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a shallow, narrow chain (used by the tests)")
    parser.add_argument("--depth", type=int, default=None, help="layers (default 64, 8 with --quick)")
    parser.add_argument("--width", type=int, default=None, help="units per layer (default 256, 16 with --quick)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    depth = args.depth or (8 if args.quick else 64)
    width = args.width or (16 if args.quick else 256)
    steps = max(1, args.steps)

    print(f"chain: {depth} x dense({width}) + tanh, batch {args.batch}, {steps} SGD steps")
    header = f"{'policy':12s}  {'saved B':>10s}  {'peak B':>10s}  {'vs none':>7s}  {'recomputed FLOPs':>16s}  " \
             f"{'compile s':>9s}  {'step ms':>8s}  losses"
    print(header)
    rows = policies(depth)
    all_losses, base = [], None
    while rows:
        label, options = rows.pop(0)
        m = measure(options, depth, width, args.batch, steps, args.seed)
        base = base or m["peak"]
        if label == "none":
            rows.append(("budget 70%", gc.CompileOptions(memory_budget=int(0.7 * base))))
        all_losses.append(m["losses"])
        losses = " ".join(f"{v:.6f}" for v in m["losses"])
        label += "*" if m["unused"] else ""
        print(f"{label:12s}  {m['saved']:10d}  {m['peak']:10d}  {m['peak'] / base:7.2f}  {m['recomputed']:16d}  "
              f"{m['compile']:9.2f}  {m['step'] * 1e3:8.2f}  {losses}")
    worst = max(abs(a - b) / abs(b) for ls in all_losses for a, b in zip(ls, all_losses[0]))
    same = worst <= 1e-5
    print("* not used: its planned peak was not below none's")
    print(f"losses equal under every policy (largest relative difference {worst:.1e}): {'yes' if same else 'no'}")
    if not same:
        raise SystemExit("checkpointing changed the losses")


if __name__ == "__main__":
    main()
