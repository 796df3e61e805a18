"""Loop-invariant code motion: values of a loop body's consts alone are computed once, before the loop."""

import numpy as np
import pytest

import graphc as gc
from graphc.backend.interpreter import evaluate
from graphc.compiler import optimize
from graphc.ir.region import walk
from graphc.passes.hoist import _invariants


def _rnn_gradient():
    rng = np.random.default_rng(4)
    g = gc.Graph()
    with g.as_default():
        xs = gc.placeholder(gc.float64, (6, 2, 3), name="xs")
        wx = gc.Variable(rng.standard_normal((3, 4)), name="wx")
        wh = gc.Variable(rng.standard_normal((4, 4)) * 0.5, name="wh")
        _, hs = gc.scan(lambda h, x: (gc.tanh(x @ wx + h @ wh),) * 2, gc.zeros((2, 4), gc.float64), xs)
        loss = gc.sum(hs * hs)
        fetches = [loss, *gc.gradients(loss, [wx, wh, xs])]
    return g, fetches, {xs: rng.standard_normal((6, 2, 3))}


def _bounded_power():
    rng = np.random.default_rng(5)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float64, (3, 4), name="x")
        b = gc.Variable(rng.standard_normal(4), name="b")
        w = gc.Variable(rng.standard_normal((4, 4)) * 0.3, name="w")

        def body(c):
            i, h = c  # exp(b) and w.T are invariant; the broadcast of exp(b) stays in the body
            return i + 1, gc.tanh(h @ gc.transpose(w)) * gc.broadcast_to(gc.exp(b), (3, 4))

        _, h = gc.while_loop(lambda c: c[0] < 5, body, (gc.constant(0), x))
        fetches = [h]
    return g, fetches, {x: rng.standard_normal((3, 4))}


def _loops(module):
    return [n for n in walk(module.outputs) if n.op in ("scan", "while_loop")]


def _movable(module):
    return [m.op for n in _loops(module)
            for m in _invariants(n.attrs["body"], n.attrs["num_consts" if n.op == "scan" else "body_nconsts"])]


@pytest.mark.parametrize("build", [_rnn_gradient, _bounded_power])
def test_invariant_values_leave_the_loop_and_results_do_not_change(build):
    values, movable = {}, {}
    for level in (0, 2):
        g, fetches, feed = build()
        optimized = optimize(fetches, {k: v.shape for k, v in feed.items()}, gc.CompileOptions(opt_level=level))
        movable[level] = _movable(optimized.module)
        values["reference", level] = evaluate(optimized.module.outputs,
                                              {optimized.mapping[k]: v for k, v in feed.items()})
        with gc.Session(g, options=gc.CompileOptions(opt_level=level)) as sess:
            values["llvm", level] = sess.run(fetches, feed)
    assert movable[0] and not movable[2], movable  # opt_level 0 hoists nothing; 2 leaves nothing to hoist
    assert "broadcast_to" not in movable[0]
    for backend in ("reference", "llvm"):
        for a, b in zip(values[backend, 0], values[backend, 2]):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)


def test_the_rnn_backward_body_reads_the_transposed_weight_from_outside():
    g, fetches, feed = _rnn_gradient()
    with gc.Session(g) as sess:
        program = sess.compile(fetches, feed)
    module = program.optimized.module
    outside = [n for n in module.nodes if n.op == "transpose"]
    assert [n.inputs[0].op for n in outside] == ["variable", "variable"]  # Wx.T and Wh.T
    inside = [n for loop in _loops(module) for n in loop.attrs["body"].nodes
              if n.op == "transpose" and n.inputs[0].op == "param"
              and loop.attrs["body"].params.index(n.inputs[0]) < loop.attrs["num_consts"]]
    assert inside == []


def test_a_gather_stays_in_a_loop_that_may_not_run():
    """take is not speculatable (its reference checks the indices): hoisted out of a while_loop
    that runs zero times, its out-of-range invariant indices would raise where the program does not."""
    g = gc.Graph()
    with g.as_default():
        table = gc.Variable(np.arange(4.0), name="table")
        x = gc.placeholder(gc.float64, (2,), name="x")
        far = gc.constant(np.array([7, 9]))
        _, h = gc.while_loop(lambda c: c[0] < 0, lambda c: (c[0] + 1, c[1] + gc.take(table, far)),
                             (gc.constant(0), x))
    optimized = optimize([h], {x: (2,)}, gc.CompileOptions(opt_level=0))
    (loop,) = _loops(optimized.module)
    assert "take" in {n.op for n in loop.attrs["body"].nodes} and "take" not in _movable(optimized.module)
    (got,) = evaluate(optimized.module.outputs, {optimized.mapping[x]: np.ones(2)})
    np.testing.assert_array_equal(got, np.ones(2))
