"""End-to-end training: a small MLP's loss must fall by a stated factor."""

import numpy as np
import pytest

import graphc as gc
from graphc.runtime.session import BACKENDS

FACTOR = 20  # the loss after training must be at most 1/FACTOR of the initial loss


def _spirals(n, seed):
    """Two interleaved spirals: not linearly separable, so the hidden layer has to learn."""
    rng = np.random.Generator(np.random.PCG64(seed))
    t = np.sqrt(rng.random(n)) * 3 * np.pi
    cls = rng.integers(0, 2, n)
    r = t / (3 * np.pi)
    angle = t + np.pi * cls
    X = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1) + 0.02 * rng.standard_normal((n, 2))
    return X.astype(np.float32), cls.astype(np.int32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mlp_loss_falls_by_factor(backend):
    X, y = _spirals(256, seed=0)
    x = gc.placeholder(gc.float32, (None, 2))
    labels = gc.placeholder(gc.int32, (None,))
    h = gc.nn.dense(x, 64, activation=gc.tanh, seed=1)
    h = gc.nn.dense(h, 64, activation=gc.tanh, seed=2)
    loss = gc.nn.softmax_cross_entropy(gc.nn.dense(h, 2, seed=3), labels)
    train = gc.train.Adam(0.01).minimize(loss, clip_norm=5.0)
    feed = {x: X, labels: y}
    with gc.Session(backend=backend) as sess:
        first = float(sess.run(loss, feed))
        for _ in range(300):
            sess.run(train, feed)
        last = float(sess.run(loss, feed))
    print(f"loss {first:.4f} -> {last:.4f} ({first / last:.1f}x)")
    assert np.isfinite(last) and last <= first / FACTOR
