"""Newton's method on L2-regularised logistic regression with gc.hessian and gc.hessian_vector_product.

    python examples/hessian.py [--quick] [--seed N]

The loss is strictly convex, so Newton's method converges quadratically: the gradient
norm roughly squares each iteration. Method 1 forms the Hessian with `gc.hessian` and
solves H d = g; method 2 never forms it and solves with conjugate gradients using only
Hessian-vector products (`gc.hessian_vector_product`). Both reach the same minimiser.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

import graphc as gc

L2 = 1e-2


def conjugate_gradient(hvp: Callable[[np.ndarray], np.ndarray], b: np.ndarray, tol: float) -> tuple[np.ndarray, int]:
    """Solve H x = b for symmetric positive definite H given only v -> H v."""
    x = np.zeros_like(b)
    r = b.copy()
    p = r.copy()
    rs = r @ r
    for i in range(1, 2 * len(b) + 1):
        Hp = hvp(p)
        alpha = rs / (p @ Hp)
        x += alpha * p
        r -= alpha * Hp
        rs_new = r @ r
        if np.sqrt(rs_new) < tol:
            return x, i
        p = r + (rs_new / rs) * p
        rs = rs_new
    return x, 2 * len(b)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller problem (used by the tests)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iterations", type=int, default=8)
    args = parser.parse_args(argv)
    n, d = (60, 3) if args.quick else (500, 10)

    rng = np.random.Generator(np.random.PCG64(args.seed))
    X = rng.standard_normal((n, d))
    w_true = rng.standard_normal(d)
    labels = np.where(X @ w_true + 0.5 * rng.standard_normal(n) > 0, 1.0, -1.0)

    w = gc.placeholder(gc.float64, (d,), name="w")
    v = gc.placeholder(gc.float64, (d,), name="v")
    margins = gc.constant(labels) * (gc.constant(X) @ w)
    loss = gc.mean(gc.softplus(-margins)) + 0.5 * L2 * gc.sum(w * w)
    (grad,) = gc.gradients(loss, w)
    hess = gc.hessian(loss, w)
    (hvp,) = gc.hessian_vector_product(loss, w, v)

    print(f"logistic regression, {n} examples, {d} features, L2 = {L2}")
    solutions = {}
    with gc.Session() as sess:
        H0 = sess.run(hess, {w: np.zeros(d)})
        probe = rng.standard_normal(d)
        hv_err = np.max(np.abs(sess.run(hvp, {w: np.zeros(d), v: probe}) - H0 @ probe))
        print(f"Hessian-vector product vs explicit H @ v at w = 0: max difference {hv_err:.2e}")
        if hv_err > 1e-12:
            raise SystemExit("Hessian-vector product disagrees with the Hessian")

        for method in ("explicit Hessian", "Newton-CG with HVPs"):
            print(f"method: {method}")
            w_value = np.zeros(d)
            for it in range(args.iterations + 1):
                loss_value, g = sess.run([loss, grad], {w: w_value})
                gnorm = float(np.linalg.norm(g))
                print(f"  iter {it}  loss {float(loss_value):.12f}  |grad| {gnorm:.3e}", end="")
                if gnorm < 1e-12:
                    print()
                    break
                if method == "explicit Hessian":
                    step = np.linalg.solve(sess.run(hess, {w: w_value}), g)
                    print()
                else:
                    step, cg_its = conjugate_gradient(lambda p: sess.run(hvp, {w: w_value, v: p}), g, tol=1e-14)
                    print(f"  (step from {cg_its} HVPs)")
                w_value = w_value - step
            solutions[method] = w_value
    a, b = solutions.values()
    print(f"max |w_explicit - w_cg| = {np.max(np.abs(a - b)):.2e}")
    print("w* =", np.array2string(a, precision=4))


if __name__ == "__main__":
    main()
