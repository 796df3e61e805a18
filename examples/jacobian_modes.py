"""Jacobians by forward mode (one JVP per input) and reverse mode (one VJP per output).

    python examples/jacobian_modes.py [--quick] [--small N] [--large N]

For f(x) = sin(A tanh(x)) + A x with A of shape (m, n), builds the Jacobian both ways for
a tall case (n << m) and a wide case (n >> m), checks both against each other and the
analytic Jacobian, and prints the passes, graph size and times (graph building, the first
run including compilation, and the best later run): forward mode needs n passes, reverse
mode m, so each wins on the side where it needs fewer.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import graphc as gc
from graphc.ir.traverse import toposort


def analytic(A: np.ndarray, x: np.ndarray) -> np.ndarray:
    """d/dx [sin(A tanh x) + A x] = diag(cos(A tanh x)) A diag(1 - tanh(x)^2) + A."""
    return np.cos(A @ np.tanh(x))[:, None] * A * (1.0 - np.tanh(x) ** 2)[None, :] + A


def compare(n: int, m: int, seed: int, repeats: int, backend: str | None) -> None:
    rng = np.random.Generator(np.random.PCG64(seed))
    A = rng.standard_normal((m, n)) / np.sqrt(n)
    x_value = rng.standard_normal(n)
    kind = "n << m" if n < m else "n >> m"
    print(f"f: R^{n} -> R^{m}  ({kind}); auto mode picks {'fwd' if n < m else 'rev'}")
    print(f"  {'mode':4s}  {'passes':>6s}  {'nodes':>6s}  {'build ms':>8s}  {'1st run ms':>10s}  {'run us':>8s}")
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float64, (n,), name="x")
        a = gc.constant(A)
        y = gc.sin(a @ gc.tanh(x)) + a @ x
        results = {}
        with gc.Session(**({} if backend is None else {"backend": backend})) as sess:
            for mode, passes in (("fwd", n), ("rev", m)):
                t0 = time.perf_counter()
                J = gc.jacobian(y, x, mode=mode)
                build = time.perf_counter() - t0
                t0 = time.perf_counter()
                results[mode] = sess.run(J, {x: x_value})
                first = time.perf_counter() - t0
                runs = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    sess.run(J, {x: x_value})
                    runs.append(time.perf_counter() - t0)
                nodes = len(toposort([J]))
                print(f"  {mode:4s}  {passes:6d}  {nodes:6d}  {build * 1e3:8.1f}  {first * 1e3:10.1f}  "
                      f"{min(runs) * 1e6:8.1f}")
    diff = np.max(np.abs(results["fwd"] - results["rev"]))
    err = max(np.max(np.abs(results[k] - analytic(A, x_value))) for k in results)
    print(f"  max |J_fwd - J_rev| = {diff:.2e}; max error vs the analytic Jacobian = {err:.2e}")
    if not (diff < 1e-10 and err < 1e-10):
        raise SystemExit("forward and reverse Jacobians disagree")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (used by the tests)")
    parser.add_argument("--small", type=int, default=None, help="the short side (default 8, 3 with --quick)")
    parser.add_argument("--large", type=int, default=None, help="the long side (default 200, 24 with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default=None)
    args = parser.parse_args(argv)
    small = args.small or (3 if args.quick else 8)
    large = args.large or (24 if args.quick else 200)
    repeats = 3 if args.quick else 50
    compare(small, large, args.seed, repeats, args.backend)
    compare(large, small, args.seed + 1, repeats, args.backend)


if __name__ == "__main__":
    main()
