"""Train a deep chain of tanh layers for a few steps under each checkpoint policy.

    python examples/deep_chain_checkpoint.py [--quick] [--depth N] [--width N] [--steps N]

A chain is where checkpointing matters most: reverse mode reads every layer's output,
so without checkpointing all `depth` activations stay alive until the backward pass.

Status: the session does not yet accept a checkpoint policy, so this runs the policy
"none" only and prints what is measured (graph sizes, losses, step times). Saved bytes,
planned peak bytes and recomputed FLOPs per policy are to be added in `POLICIES` and
`measure` once the passes issue exposes them through the session.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import graphc as gc
from graphc.ir.traverse import toposort

POLICIES = ("none",)  # the checkpoint policies the session supports today


def measure(policy: str, depth: int, width: int, batch: int, steps: int, seed: int) -> dict:
    """Build the chain in a fresh graph, train `steps` SGD steps, return what was measured."""
    if policy != "none":
        raise ValueError(f"checkpoint policy {policy!r} is not available yet")
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
        forward_nodes = len(toposort([loss]))
        all_nodes = len(toposort([train]))
        losses, times = [], []
        with gc.Session() as sess:
            for _ in range(steps):
                t0 = time.perf_counter()
                value, _ = sess.run([loss, train], {x: X, target: T})
                times.append(time.perf_counter() - t0)
                losses.append(float(value))
    return {"forward_nodes": forward_nodes, "all_nodes": all_nodes, "losses": losses,
            "first_step": times[0], "step": statistics.median(times[1:]) if len(times) > 1 else times[0]}


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
    steps = max(2, args.steps)

    print(f"chain: {depth} x dense({width}) + tanh, batch {args.batch}, {steps} SGD steps")
    print(f"{'policy':8s}  {'fwd nodes':>9s}  {'train nodes':>11s}  {'1st step ms':>11s}  {'step ms':>8s}  losses")
    for policy in POLICIES:
        m = measure(policy, depth, width, args.batch, steps, args.seed)
        losses = " ".join(f"{v:.6f}" for v in m["losses"])
        print(f"{policy:8s}  {m['forward_nodes']:9d}  {m['all_nodes']:11d}  {m['first_step'] * 1e3:11.2f}  "
              f"{m['step'] * 1e3:8.2f}  {losses}")


if __name__ == "__main__":
    main()
