"""Export the loss and gradients of a 64-32-10 ReLU MLP as a C library (see docs/export.md).

    python export_mlp.py -o build              # writes build/libmlp.so, mlp.h, mlp.json, mlp.state.bin
    python export_mlp.py -o build --reference  # also prints the losses of the same SGD run in-process

The C program (main.c) makes the same data as `make_batch` below with the same generator,
so its losses can be compared with `--reference`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing

import graphc as gc  # noqa: E402

BATCH, FEATURES, HIDDEN, CLASSES = 32, 64, 32, 10
STEPS, LR = 8, 0.5


class LCG:
    """The generator main.c uses: 64-bit LCG, top 24 bits as a float in [0, 1)."""

    def __init__(self, seed: int):
        self.state = seed

    def uniform(self) -> float:
        self.state = (self.state * 6364136223846793005 + 1442695040888963407) % 2**64
        return (self.state >> 40) / float(1 << 24)


def make_batch(seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """Labels cycle through the classes; features are noise plus a bump at the label's features."""
    rng = LCG(seed)
    labels = np.arange(BATCH, dtype=np.int32) % CLASSES
    x = np.empty((BATCH, FEATURES), np.float32)
    for i in range(BATCH):
        for j in range(FEATURES):
            x[i, j] = np.float32(rng.uniform() - 0.5) + np.float32(1.0 if j % CLASSES == labels[i] else 0.0)
    return x, labels


def build() -> tuple[gc.Function, gc.Function]:
    """(loss and gradients, an in-process SGD step with the same graph)."""
    rng = np.random.default_rng(0)
    x = gc.placeholder(gc.float32, (None, FEATURES), name="x")
    labels = gc.placeholder(gc.int32, (None,), name="labels")
    w1 = gc.Variable((rng.standard_normal((FEATURES, HIDDEN)) * 0.2).astype(np.float32), name="w1")
    b1 = gc.Variable(np.zeros(HIDDEN, np.float32), name="b1")
    w2 = gc.Variable((rng.standard_normal((HIDDEN, CLASSES)) * 0.2).astype(np.float32), name="w2")
    b2 = gc.Variable(np.zeros(CLASSES, np.float32), name="b2")
    params = [w1, b1, w2, b2]
    loss = gc.nn.softmax_cross_entropy(gc.relu(x @ w1 + b1) @ w2 + b2, labels)
    grads = gc.gradients(loss, params)
    loss_and_grads = gc.function([x, labels], [loss, *grads])
    step = gc.function([x, labels], loss, updates=[(p, p - LR * g) for p, g in zip(params, grads)])
    return loss_and_grads, step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", default="build", help="output directory")
    parser.add_argument("--cpu", default="x86-64-v3", help="target CPU ('host': this machine's)")
    parser.add_argument("--reference", action="store_true", help="print the in-process SGD losses")
    args = parser.parse_args()
    loss_and_grads, step = build()
    library = loss_and_grads.export(args.out, "mlp", signatures=[[(BATCH, FEATURES), (BATCH,)]], cpu=args.cpu,
                                    output_names=["loss", "grad_w1", "grad_b1", "grad_w2", "grad_b2"])
    print(f"wrote {library}")
    if args.reference:
        x, labels = make_batch()
        for i in range(STEPS):
            print(f"step {i}: loss {float(step(x, labels)):.6f}")


if __name__ == "__main__":
    main()
