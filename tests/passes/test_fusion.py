"""Fusion as the issue states it: W1's loss and gradient become one loop that reads x once."""

import numpy as np
import pytest
from demo_model import demo_step

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


def _mlp_step(optimizer, batch: int = 32):
    """The examples/mlp_digits.py training step (64-128-10, ReLU, softmax cross-entropy, accuracy)."""
    (x, labels), fetches = demo_step(optimizer)
    rng = np.random.default_rng(0)
    feed = {x: rng.uniform(0, 1, (batch, 64)).astype(np.float32), labels: rng.integers(0, 10, batch).astype(np.int32)}
    return fetches, feed


@pytest.mark.parametrize("specialize", [True, False])
def test_demo_mlp_step_kernel_count(specialize):
    """43 steps (29 of them maps) before row kernels, fused optimizer updates and fused column
    reductions, 13 after, for the program specialized to batch 32 and for the symbolic one
    (the batch dim is None): a fusion regression shows up here."""
    with gc.Graph().as_default():
        fetches, feed = _mlp_step(gc.train.Adam(3e-3))
        with gc.Session(options=gc.CompileOptions(specialize=specialize)) as sess:
            program = sess.compile(fetches, feed)
    assert len(program.plan.steps) <= 13, program.as_text("kernels")
    assert f"kernels: {len(program.plan.steps)} (" in program.report()


@pytest.mark.parametrize("make", [lambda: gc.train.Adam(0.01), lambda: gc.train.SGD(0.1),
                                  lambda: gc.train.SGD(0.1, momentum=0.9), lambda: gc.train.RMSProp(0.01)])
def test_fused_optimizer_steps_match_the_reference(make):
    """Each parameter's update (slots and parameter) is one kernel writing them in place."""
    results = {}
    for backend in ("reference", "llvm"):
        with gc.Graph().as_default():
            fetches, feed = _mlp_step(make())
            with gc.Session(backend=backend) as sess:
                losses = [float(sess.run(fetches, feed)[0]) for _ in range(3)]
                results[backend] = losses, [sess.variable_value(v) for v in gc.global_variables()]
                if backend == "llvm":
                    listing = sess.compile(fetches, feed).as_text("kernels")
    (ref_loss, ref_vars), (got_loss, got_vars) = results["reference"], results["llvm"]
    np.testing.assert_allclose(got_loss, ref_loss, rtol=1e-5)
    for g, w in zip(got_vars, ref_vars):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)
    assert "copy assign" not in listing, listing  # every update writes its variables in place


def test_sgd_update_waits_for_the_input_gradient_and_writes_in_place():
    x = gc.placeholder(gc.float32, (8, 5), name="x")
    w = gc.Variable(np.ones((5, 3), np.float32), name="w")
    v = gc.Variable(np.ones((3, 2), np.float32), name="v")
    loss = gc.sum(gc.tanh(x @ w) @ v)
    gw, gv = gc.gradients(loss, [w, v])
    train = gc.group(gc.assign_sub(w, 0.1 * gw), gc.assign_sub(v, 0.1 * gv))
    xv = np.linspace(-1, 1, 40, dtype=np.float32).reshape(8, 5)
    with gc.Session() as sess:
        listing = sess.compile([loss, train], {x: xv}).as_text("kernels")
        sess.run([loss, train], {x: xv})
        got = [sess.variable_value(w), sess.variable_value(v)]
    with gc.Session(backend="reference") as ref:
        ref.run([loss, train], {x: xv})
        want = [ref.variable_value(w), ref.variable_value(v)]
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)
    assert "copy assign" not in listing, listing
