"""Fusion as the issue states it: W1's loss and gradient become one loop that reads x once."""

import numpy as np

import graphc as gc


def test_w1_value_and_gradient_compile_to_one_kernel_reading_x_once():
    x = gc.placeholder(gc.float32, (10007,), name="x")
    loss = gc.sum(gc.tanh(x) * gc.sigmoid(x) + 0.5 * x * x)
    (dx,) = gc.gradients(loss, [x])
    xv = np.random.default_rng(0).standard_normal(10007).astype(np.float32) * 3
    with gc.Session() as sess:
        program = sess.compile([loss, dx], {x: xv})
        got = sess.run([loss, dx], {x: xv})
    want = gc.Session(backend="reference").run([loss, dx], {x: xv})
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-6)
    listing = program.as_text("kernels")
    assert len(program.plan.steps) == 1, listing
    assert listing.count("read x:") == 1 and program.plan.arena_bytes == 0, listing
