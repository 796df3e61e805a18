"""Fit y = 3x + 2 + noise by minibatch SGD with momentum and print the learned parameters.

    python examples/linear_regression.py [--quick] [--seed N]
"""

from __future__ import annotations

import argparse

import numpy as np

import graphc as gc

TRUE_W, TRUE_B, NOISE = 3.0, 2.0, 0.1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and epochs (used by the tests)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    n, epochs = (256, 8) if args.quick else (2000, 20)

    rng = np.random.Generator(np.random.PCG64(args.seed))
    X = rng.uniform(-1.0, 1.0, (n, 1)).astype(np.float32)
    Y = (TRUE_W * X + TRUE_B + NOISE * rng.standard_normal((n, 1))).astype(np.float32)

    x = gc.placeholder(gc.float32, (None, 1), name="x")
    y = gc.placeholder(gc.float32, (None, 1), name="y")
    w = gc.Variable(gc.init.zeros((1, 1)), name="w")
    b = gc.Variable(gc.init.zeros((1,)), name="b")
    loss = gc.mean((x @ w + b - y) ** 2)
    train = gc.train.SGD(0.05, momentum=0.9).minimize(loss)

    data = gc.train.batches(X, Y, batch_size=32, seed=args.seed)
    with gc.Session() as sess:
        for epoch in range(1, epochs + 1):
            losses = [sess.run([loss, train], {x: xb, y: yb})[0] for xb, yb in data]
            print(f"epoch {epoch:2d}  mean batch loss {np.mean(losses):.6f}")
        w_fit, b_fit = float(sess.variable_value(w)[0, 0]), float(sess.variable_value(b)[0])
        final = float(sess.run(loss, {x: X, y: Y}))

    A = np.hstack([X, np.ones_like(X)]).astype(np.float64)
    w_ls, b_ls = np.linalg.lstsq(A, Y.astype(np.float64), rcond=None)[0][:, 0]
    print(f"learned  w = {w_fit:.4f}  b = {b_fit:.4f}  (full-data MSE {final:.6f})")
    print(f"lstsq    w = {w_ls:.4f}  b = {b_ls:.4f}")
    print(f"true     w = {TRUE_W:.4f}  b = {TRUE_B:.4f}  (noise std {NOISE})")


if __name__ == "__main__":
    main()
