"""Checkpointing of loops: a differentiated scan stores every k-th carry and recomputes segments."""

import numpy as np
import pytest

import graphc as gc
from graphc.backend.interpreter import evaluate
from graphc.passes.loop_checkpoint import checkpoint_loops, segment_length, share_forward
from graphc.passes.module import Module


def _rnn(steps, reverse=False, seed=0):
    rng = np.random.default_rng(seed)
    g = gc.Graph()
    with g.as_default():
        xs = gc.placeholder(gc.float64, (steps, 3, 2), name="xs")
        wx = gc.Variable(rng.standard_normal((2, 4)), name="wx")
        wh = gc.Variable(rng.standard_normal((4, 4)) * 0.5, name="wh")

        def cell(h, x):
            h = gc.tanh(x @ wx + h @ wh)
            return h, gc.sum(h, axis=1)

        h, ys = gc.scan(cell, gc.zeros((3, 4), gc.float64), xs, reverse=reverse)
        loss = gc.sum(h * h) + gc.sum(ys ** 2)
        fetches = [loss, *gc.gradients(loss, [wx, wh, xs])]
    return g, fetches, {xs: rng.standard_normal((steps, 3, 2))}


@pytest.mark.parametrize("reverse", [False, True])
def test_segmented_scans_give_the_same_values_and_gradients(reverse):
    g, fetches, feed = _rnn(12, reverse)
    module = Module(tuple(fetches), frozenset(g.adjoint))
    out, loops = checkpoint_loops(module)
    assert [(r.iterations, r.segment, r.stored_after * r.segment) for r in loops] == [(12, 3, loops[0].stored_before)]
    for want, got in zip(evaluate(module.outputs, feed), evaluate(out.outputs, feed)):
        np.testing.assert_array_equal(got, want)


def test_sqrt_on_a_long_scan_stores_fewer_carries_and_lowers_the_planned_peak():
    peaks, values = {}, {}
    for policy in ("none", "sqrt"):
        g, fetches, feed = _rnn(400)
        with gc.Session(g, options=gc.CompileOptions(checkpoint=policy)) as sess:
            program = sess.compile(fetches, feed)
            values[policy] = sess.run(fetches, feed)
        peaks[policy] = program.plan.arena_bytes
        report = program.report()
    print(f"\nplanned peak: none {peaks['none']} B, sqrt {peaks['sqrt']} B\n{report}")
    assert peaks["sqrt"] < peaks["none"]
    assert "400 iterations in segments of 20: stored carries 38400 -> 1920 B" in report
    for a, b in zip(values["sqrt"], values["none"]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def test_segment_length_is_the_divisor_nearest_the_square_root():
    assert [segment_length(n) for n in (1000, 400, 60, 13, 2)] == [25, 20, 6, 1, 1]


def test_the_forward_loop_runs_once_without_checkpointing():
    g, fetches, feed = _rnn(12)
    module = Module(tuple(fetches), frozenset(g.adjoint))
    assert sum(n.op == "scan" for n in module.nodes) == 3  # the user's, the one stacking carries, the reverse
    shared, count = share_forward(module)
    assert count == 1 and sum(n.op == "scan" for n in shared.nodes) == 2
    for want, got in zip(evaluate(module.outputs, feed), evaluate(shared.outputs, feed)):
        np.testing.assert_array_equal(got, want)
    segmented, loops = checkpoint_loops(shared)  # values and carries from one scan over segments
    assert len(loops) == 1 and sum(n.op == "scan" for n in segmented.nodes) == 2  # (segments give the values)
    for want, got in zip(evaluate(module.outputs, feed), evaluate(segmented.outputs, feed)):
        np.testing.assert_array_equal(got, want)
