"""Control flow on the LLVM backend: native loops and branches against the reference backend.

Each region (a scan or while body, a cond branch) is one function; the program loops or
branches around it (graphc/backend/llvm/control.py), so the generated code does not grow
with the trip count.
"""

import numpy as np
import pytest

import graphc as gc

RNG = np.random.default_rng(7)


def _both(fetches, feed):
    """(LLVM values, reference values, the compiled program)."""
    with gc.Session() as sess:
        program = sess.compile(fetches, feed)
        got = sess.run(fetches, feed)
    want = gc.Session(backend="reference").run(fetches, feed)
    return got, want, program


def _close(got, want, rtol=1e-10, atol=1e-12):
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def _rnn(steps, hidden=5, batch=3, reverse=False, dtype=np.float64):
    xs = gc.placeholder(dtype, (steps, batch, 2), name="xs")
    wx = gc.Variable(RNG.standard_normal((2, hidden)).astype(dtype) * 0.5, name="Wx")
    wh = gc.Variable(RNG.standard_normal((hidden, hidden)).astype(dtype) * 0.5, name="Wh")

    def step(h, x):
        h = gc.tanh(x @ wx + h @ wh)
        return h, gc.sum(h * h, axis=1)

    h, ys = gc.scan(step, gc.zeros((batch, hidden), dtype), xs, reverse=reverse)
    loss = gc.sum(h) + gc.sum(ys * ys)
    return [h, ys, loss, *gc.gradients(loss, [wx, wh])], {xs: RNG.standard_normal((steps, batch, 2)).astype(dtype)}


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_values_and_gradients_match_the_reference_and_a_python_loop(reverse):
    fetches, feed = _rnn(6, reverse=reverse)
    got, want, program = _both(fetches, feed)
    _close(got, want)
    assert any(s.name.startswith("r") and s.node.op == "scan" for s in program.plan.steps if hasattr(s, "bodies"))
    wx, wh = (v for v in gc.get_default_graph().variables if v.name in ("Wx", "Wh"))
    sess = gc.Session(backend="reference")
    h = np.zeros((3, 5))
    xs = feed[next(iter(feed))]
    order = range(5, -1, -1) if reverse else range(6)
    ys = np.zeros((6, 3))
    for t in order:
        h = np.tanh(xs[t] @ sess.run(wx) + h @ sess.run(wh))
        ys[t] = (h * h).sum(1)
    np.testing.assert_allclose(got[0], h, rtol=1e-12)
    np.testing.assert_allclose(got[1], ys, rtol=1e-12)


def test_zero_length_scan_returns_the_initial_carry_and_empty_ys():
    got, want, _ = _both(*_rnn(0))
    _close(got, want)
    assert got[1].shape == (0, 3) and not got[0].any()


def test_generated_code_does_not_grow_with_the_trip_count():
    sizes = {}
    for steps in (10, 1000):
        with gc.Graph().as_default():
            fetches, feed = _rnn(steps, dtype=np.float32)
            got, want, program = _both(fetches, feed)
            _close(got, want, rtol=2e-4, atol=1e-5)
            sizes[steps] = (len(program.plan.steps), program.as_text("llvm").count("define "))
    assert sizes[10] == sizes[1000], sizes


def test_carries_of_several_dtypes_and_a_nested_scan():
    x = gc.placeholder(gc.float32, (4, 3), name="x")

    def outer(c, row):
        i, acc = c

        def inner(a, v):
            return a + v * gc.cast(i, gc.float32), a

        acc, _ = gc.scan(inner, acc, row)
        return (i + 1, acc), gc.cast(i, gc.float64) * 0.5

    (n, acc), ys = gc.scan(outer, (gc.constant(np.int32(1)), gc.constant(np.float32(0))), x)
    got, want, _ = _both([n, acc, ys], {x: RNG.standard_normal((4, 3)).astype(np.float32)})
    _close(got, want, rtol=1e-6)
    assert got[0].dtype == np.int32 and got[0] == 5


def test_while_loop_runs_a_trip_count_known_only_at_run_time():
    x = gc.placeholder(gc.float64, (3,), name="x")
    limit = gc.placeholder(gc.float64, (), name="limit")
    n, y = gc.while_loop(lambda c: gc.sum(c[1]) < limit, lambda c: (c[0] + 1, c[1] * 1.5 + 0.1),
                         (gc.constant(np.int64(0)), x))
    with gc.Session() as sess:
        for lim in (1.0, 50.0, 5000.0):
            feed = {x: np.array([0.1, 0.2, 0.3]), limit: np.float64(lim)}
            got = sess.run([n, y], feed)
            want = gc.Session(backend="reference").run([n, y], feed)
            assert got[0] == want[0]
            np.testing.assert_allclose(got[1], want[1], rtol=1e-12)
        assert sess.run(n, {x: np.array([0.1, 0.2, 0.3]), limit: np.float64(5000.0)}) > 15


def test_cond_takes_one_branch_inside_a_loop_and_a_loop_inside_a_branch():
    x = gc.placeholder(gc.float64, (5,), name="x")

    def body(c, v):
        c = gc.cond(v > 0, lambda a: a + v, lambda a: a * 0.5, c)
        return c, c

    c, ys = gc.scan(body, gc.constant(np.float64(1.0)), x)
    looped = gc.cond(c > 2, lambda a: gc.scan(lambda s, v: (s + v * v, s), gc.zeros((), gc.float64), a)[0],
                     lambda a: gc.sum(a), x)
    for values in ([1.0, -2.0, 3.0, 0.5, -1.0], [-1.0] * 5):
        feed = {x: np.array(values)}
        got, want, _ = _both([c, ys, looped, *gc.gradients(looped, [x])], feed)
        _close(got, want)


def test_a_result_too_large_to_address_is_refused_before_codegen():
    y = gc.scan(lambda c, _: (c, gc.zeros((1 << 30,), gc.float64)), gc.zeros((), gc.float64),
                length=1 << 29)[1]  # 2**62 bytes of ys
    with pytest.raises(gc.GraphcError, match="too large"):
        gc.Session().compile(y[0, 0], {})
