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


@pytest.mark.parametrize("options, optimizer", [
    (dict(checkpoint="sqrt"), "adam"), (dict(checkpoint="mincut"), "adam"),
    (dict(checkpoint="revolve", slots=2), "sgd")])  # revolve needs a pure chain; Adam's step math is not one
def test_checkpointed_training_repeats_the_losses(options, optimizer):
    """Recomputing forward values must not change a training run, optimizer state included."""
    rng = np.random.Generator(np.random.PCG64(0))
    X = rng.standard_normal((16, 8)).astype(np.float32)
    T = np.tanh(rng.standard_normal((16, 8))).astype(np.float32)

    def train(compile_options):
        with gc.Graph().as_default():
            x = gc.placeholder(gc.float32, (16, 8))
            h = x
            for i in range(6):
                h = gc.nn.dense(h, 8, activation=gc.tanh, seed=i)
            loss = gc.mean((h - T) ** 2)
            opt = gc.train.Adam(0.01) if optimizer == "adam" else gc.train.SGD(0.5)
            step = opt.minimize(loss)
            with gc.Session(options=compile_options) as sess:
                return [float(sess.run([loss, step], {x: X})[0]) for _ in range(4)]

    baseline = train(gc.CompileOptions(checkpoint="none"))
    # the same arithmetic, but recomputed values fuse into other kernels than saved ones, and
    # LLVM may contract a multiply-add into an FMA in one kernel and not in another (last bit)
    np.testing.assert_allclose(train(gc.CompileOptions(**options)), baseline, rtol=1e-6)
    assert baseline[-1] < baseline[0]
