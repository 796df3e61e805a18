"""Recurrent networks over long sequences with gc.scan: a tanh RNN and an LSTM, trained on a toy task.

    python examples/rnn_scan.py [--quick] [--length N] [--hidden N] [--steps N]

The task: from a sequence of scalars x_t, predict y_t = 0.6 x_{t-1} - 0.4 x_{t-2} at every
step (a filter the networks must learn to remember). Each cell is written once, as the
body of `gc.scan`, so the graph, the compile time and the generated code do not depend
on the sequence length: the LLVM backend runs a native loop around the body's kernels.
The script prints the compile time for a 10-step and a full-length sequence, the time of
a train step, the memory report of the train step under each checkpoint policy (saved
residual bytes, planned peak; instead of every iteration's residuals, sqrt stores every
k-th carry of the scan, k about √length, and recomputes each segment in the backward
loop; revolve(4) stores 4 carries (+ 2) on the binomial schedule; a memory budget of 90%
of none's peak picks among them: the lines under each say what the loop stores and
recomputes), and the losses of a short training run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import graphc as gc


def toy_batch(rng: np.random.Generator, length: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal((length, batch, 1)).astype(np.float32)
    y = np.zeros_like(x)
    y[1:] += 0.6 * x[:-1]
    y[2:] -= 0.4 * x[:-2]
    return x, y


def tanh_rnn(xs: gc.Tensor, hidden: int, seed: int) -> gc.Tensor:
    rng = np.random.default_rng(seed)
    wx = gc.Variable((rng.standard_normal((1, hidden)) * 0.5).astype(np.float32), name="rnn/Wx")
    wh = gc.Variable((rng.standard_normal((hidden, hidden)) / np.sqrt(hidden)).astype(np.float32), name="rnn/Wh")
    b = gc.Variable(np.zeros(hidden, np.float32), name="rnn/b")

    def cell(h, x):
        h = gc.tanh(x @ wx + h @ wh + b)
        return h, h

    return gc.scan(cell, gc.zeros((xs.shape[1], hidden), gc.float32), xs)[1]


def lstm(xs: gc.Tensor, hidden: int, seed: int) -> gc.Tensor:
    rng = np.random.default_rng(seed)
    w = gc.Variable((rng.standard_normal((1 + hidden, 4 * hidden)) / np.sqrt(1 + hidden)).astype(np.float32),
                    name="lstm/W")
    b = gc.Variable(np.concatenate([np.zeros(hidden), np.ones(hidden), np.zeros(2 * hidden)]).astype(np.float32),
                    name="lstm/b")  # forget gate biased open

    def cell(carry, x):
        h, c = carry
        z = gc.concatenate([x, h], 1) @ w + b
        i, f, g, o = (z[:, k * hidden:(k + 1) * hidden] for k in range(4))
        c = gc.sigmoid(f) * c + gc.sigmoid(i) * gc.tanh(g)
        h = gc.sigmoid(o) * gc.tanh(c)
        return (h, c), h

    zeros = gc.zeros((xs.shape[1], hidden), gc.float32)
    return gc.scan(cell, (zeros, zeros), xs)[1]


def build(kind: str, length: int, batch: int, hidden: int, seed: int):
    """(graph, xs, ys, loss, train op) of one network."""
    g = gc.Graph()
    with g.as_default():
        xs = gc.placeholder(gc.float32, (length, batch, 1), name="xs")
        ys = gc.placeholder(gc.float32, (length, batch, 1), name="ys")
        hs = (tanh_rnn if kind == "tanh RNN" else lstm)(xs, hidden, seed)
        wo = gc.Variable((np.random.default_rng(seed + 1).standard_normal((hidden, 1)) * 0.1).astype(np.float32),
                         name="out/W")
        pred = gc.reshape(gc.reshape(hs, (length * batch, hidden)) @ wo, (length, batch, 1))
        loss = gc.mean((pred - ys) ** 2)
        train = gc.train.Adam(0.01).minimize(loss)
    return g, xs, ys, loss, train


def compile_seconds(kind: str, length: int, batch: int, hidden: int, seed: int) -> tuple[float, int]:
    """Seconds to compile the train step (disk cache bypassed by a fresh seed-free graph) and its steps."""
    g, xs, ys, loss, train = build(kind, length, batch, hidden, seed)
    x, y = toy_batch(np.random.default_rng(seed), length, batch)
    with gc.Session(g) as sess:
        t0 = time.perf_counter()
        program = sess.compile([loss, train], {xs: x, ys: y})
        return time.perf_counter() - t0, len(program.plan.steps)


def memory_rows(kind: str, length: int, batch: int, hidden: int, seed: int) -> list[str]:
    """One line per checkpoint policy: saved residual bytes, planned peak, note."""
    x, y = toy_batch(np.random.default_rng(seed), length, batch)
    lines, base = [], None
    policies = [("none", {}), ("sqrt", {"checkpoint": "sqrt"}), ("revolve(4)", {"checkpoint": "revolve", "slots": 4}),
                ("budget 90%", None)]
    for label, opts in policies:
        if opts is None:
            opts = {"memory_budget": int(0.9 * base)}
        g, xs, ys, loss, train = build(kind, length, batch, hidden, seed)
        try:
            with gc.Session(g, options=gc.CompileOptions(**opts)) as sess:
                program = sess.compile([loss, train], {xs: x, ys: y})
        except gc.GraphcError as exc:
            lines.append(f"  {label:11s} {'-':>12s} {'-':>12s}  {str(exc).splitlines()[0]}")
            continue
        rep = program.optimized.checkpoint_report(opts.get("checkpoint", "none"))
        base = base or program.plan.arena_bytes
        note = rep.note or rep.policy
        lines.append(f"  {label:11s} {rep.saved_bytes:12,d} {program.plan.arena_bytes:12,d}  {note}")
        lines += [f"{'':40s}loop {line}" for line in rep.loops]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short sequences, a small network (used by the tests)")
    parser.add_argument("--length", type=int, default=None, help="sequence length (default 1000, 60 with --quick)")
    parser.add_argument("--hidden", type=int, default=None, help="hidden units (default 32, 8 with --quick)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=None, help="train steps (default 60, 15 with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    length = args.length or (60 if args.quick else 1000)
    hidden = args.hidden or (8 if args.quick else 32)
    steps = args.steps or (15 if args.quick else 60)
    print(f"toy task: y_t = 0.6 x_(t-1) - 0.4 x_(t-2); sequences of {length}, batch {args.batch}, hidden {hidden}")
    for kind in ("tanh RNN", "LSTM"):
        print(f"\n{kind}")
        for n in (10, length):
            seconds, program_steps = compile_seconds(kind, n, args.batch, hidden, args.seed)
            print(f"  compile, {n:5d}-step sequences: {seconds:6.2f} s ({program_steps} program steps)")
        g, xs, ys, loss, train = build(kind, length, args.batch, hidden, args.seed)
        rng = np.random.default_rng(args.seed)
        losses, times = [], []
        with gc.Session(g) as sess:
            for _ in range(steps):
                x, y = toy_batch(rng, length, args.batch)
                t0 = time.perf_counter()
                value, _ = sess.run([loss, train], {xs: x, ys: y})
                times.append(time.perf_counter() - t0)
                losses.append(float(value))
        print(f"  train step: {statistics.median(times[1:] or times) * 1e3:.1f} ms (median; the first run compiles)")
        print(f"  loss: {losses[0]:.4f} -> {losses[-1]:.4f} over {steps} steps")
        print(f"  memory of the train step (bytes):\n  {'policy':11s} {'saved':>12s} {'planned peak':>12s}  note")
        for line in memory_rows(kind, length, args.batch, hidden, args.seed):
            print(line)


if __name__ == "__main__":
    main()
