"""gc.scan, gc.fori_loop, gc.while_loop and gc.cond against plain-Python reference loops."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
import graphc.control.ops as control_ops

rng = np.random.default_rng(13)


def run(fetches, feeds=None):
    return gc.Session(backend="reference").run(fetches, feeds)


def test_scan_matches_a_python_loop_with_pytrees():
    xs_a, xs_b = rng.standard_normal((5, 3)), rng.standard_normal((5,))
    a, b = gc.placeholder(gc.float64, (5, 3)), gc.placeholder(gc.float64, (5,))
    w = gc.placeholder(gc.float64, (3,))
    wv = rng.standard_normal(3)

    def step(carry, x):
        h, (n, tot) = carry["h"], carry["stats"]
        h = gc.tanh(h * w + x["a"] * x["b"])
        return {"h": h, "stats": (n + 1, tot + gc.sum(h))}, [h, gc.sum(h) > 0]

    init = {"h": np.zeros(3), "stats": (0, np.float64(0.0))}
    carry, (hs, pos) = gc.scan(step, init, {"a": a, "b": b})
    got = run([carry["h"], carry["stats"][0], carry["stats"][1], hs, pos], {a: xs_a, b: xs_b, w: wv})
    h, n, tot, want_hs = np.zeros(3), 0, 0.0, []
    for t in range(5):
        h = np.tanh(h * wv + xs_a[t] * xs_b[t])
        n, tot = n + 1, tot + h.sum()
        want_hs.append(h)
    np.testing.assert_allclose(got[0], h)
    assert got[1] == 5 and got[1].dtype == np.int32
    np.testing.assert_allclose(got[2], tot)
    np.testing.assert_allclose(got[3], np.stack(want_hs))
    np.testing.assert_array_equal(got[4], np.stack(want_hs).sum(1) > 0)


@pytest.mark.parametrize("reverse", [False, True])
def test_reverse_scan_keeps_the_order_of_xs(reverse):
    xs = gc.placeholder(gc.float32, (4,))
    total, partial = gc.scan(lambda c, x: (c * 0.5 + x, c), np.float32(0), xs, reverse=reverse)
    v = np.arange(1, 5, dtype=np.float32)
    got_total, got_partial = run([total, partial], {xs: v})
    c, want = np.float32(0), [0.0] * 4
    for t in (range(3, -1, -1) if reverse else range(4)):
        want[t] = c
        c = c * np.float32(0.5) + v[t]
    np.testing.assert_allclose(got_total, c)
    np.testing.assert_allclose(got_partial, want)
    assert got_partial.dtype == np.float32


def test_scan_with_length_and_carries_of_several_dtypes():
    (i, f, d, flag), ys = gc.scan(lambda c, _: ((c[0] + 2, c[1] * 1.5, c[2] - 0.25, gc.logical_not(c[3])), c[0]),
                                  (np.int64(1), np.float32(1), np.float64(2), np.bool_(True)), length=3)
    got = run([i, f, d, flag, ys])
    assert [g.dtype for g in got] == [np.int64, np.float32, np.float64, np.bool_, np.int64]
    assert got[0] == 7 and got[1] == np.float32(3.375) and got[2] == 1.25 and not got[3]
    np.testing.assert_array_equal(got[4], [1, 3, 5])


def test_zero_length_scans():
    xs = gc.placeholder(gc.float32, (None, 3))
    c, ys = gc.scan(lambda c, x: (c + x, (c * x, gc.sum(x))), gc.ones((3,)), xs)
    got = run([c, ys[0], ys[1]], {xs: np.zeros((0, 3), np.float32)})
    np.testing.assert_array_equal(got[0], np.ones(3))
    assert got[1].shape == (0, 3) and got[2].shape == (0,) and got[1].dtype == np.float32
    c2, ys2 = gc.scan(lambda c, _: (c, c), np.float64(2.0), length=0)
    got = run([c2, ys2])
    assert got[0] == 2.0 and got[1].shape == (0,)


def test_unknown_sequence_length_binds_at_run_time():
    xs = gc.placeholder(gc.float64, (None, 2))
    c, ys = gc.scan(lambda c, x: (c + x, c), gc.zeros((2,), gc.float64), xs)
    assert ys.shape == (None, 2)
    for n in (1, 4, 7):
        v = rng.standard_normal((n, 2))
        got_c, got_ys = run([c, ys], {xs: v})
        np.testing.assert_allclose(got_c, v.sum(0))
        np.testing.assert_allclose(got_ys, np.concatenate([np.zeros((1, 2)), np.cumsum(v, 0)[:-1]]))


def test_fori_loop_static_and_runtime_bounds():
    x = gc.placeholder(gc.float64, (3,))
    n = gc.placeholder(gc.int32, ())
    v = rng.standard_normal(3)

    def body(i, val):
        return val * 0.9 + gc.cast(i, gc.float64)

    static = gc.fori_loop(2, 6, body, x)
    dynamic = gc.fori_loop(0, n, body, x)
    assert "scan" in gc.as_text(static) and "while_loop" in gc.as_text(dynamic)

    def python(lo, hi):
        val = v.copy()
        for i in range(lo, hi):
            val = val * 0.9 + i
        return val

    got = run([static, dynamic], {x: v, n: 5})
    np.testing.assert_allclose(got[0], python(2, 6))
    np.testing.assert_allclose(got[1], python(0, 5))
    np.testing.assert_allclose(run(dynamic, {x: v, n: 0}), v)
    np.testing.assert_allclose(run(gc.fori_loop(5, 2, body, x), {x: v}), v)  # empty range


def test_while_loop_matches_python():
    x = gc.placeholder(gc.float64, ())
    limit = gc.placeholder(gc.float64, ())
    steps, val = gc.while_loop(lambda c: c[1] < limit, lambda c: (c[0] + 1, c[1] * 2.0 + 1.0), (0, x))
    for start, lim in ((0.5, 100.0), (200.0, 100.0), (-0.5, 7.0)):
        n, v = 0, start
        while v < lim:
            n, v = n + 1, v * 2 + 1
        assert run([steps, val], {x: start, limit: lim}) == [n, v]


def test_bounded_while_loop_stops_at_max_iterations():
    x = gc.placeholder(gc.float64, ())
    out = gc.while_loop(lambda c: c < 1e9, lambda c: c * 2.0, x, max_iterations=5)
    assert run(out, {x: 1.0}) == 32.0
    assert run(out, {x: 1e10}) == 1e10


def test_only_the_taken_branch_runs(monkeypatch):
    x = gc.placeholder(gc.float64, (2,))
    out = gc.cond(gc.sum(x) > 0, lambda a: a * 2.0, lambda a: a - 1.0, x)
    node = out.inputs[0]
    ran = []
    real = control_ops.run_region

    def spy(region, values):
        ran.append(region)
        return real(region, values)

    monkeypatch.setattr(control_ops, "run_region", spy)
    np.testing.assert_array_equal(run(out, {x: [1.0, 2.0]}), [2.0, 4.0])
    np.testing.assert_array_equal(run(out, {x: [-1.0, -2.0]}), [-2.0, -3.0])
    assert ran == [node.attrs["true_branch"], node.attrs["false_branch"]]


def test_cond_with_python_and_integer_predicates_and_no_operands():
    w = gc.placeholder(gc.float32, (2,))
    k = gc.placeholder(gc.int32, ())
    a = gc.cond(k, lambda: w + 1.0, lambda: w * 0.0)
    b = gc.cond(True, lambda: (w, {"s": gc.sum(w)}), lambda: (-w, {"s": gc.max(w)}))
    got = run([a, b[0], b[1]["s"]], {w: [1.0, 2.0], k: 3})
    np.testing.assert_array_equal(got[0], [2.0, 3.0])
    np.testing.assert_array_equal(got[1], [1.0, 2.0])
    assert got[2] == 3.0
    np.testing.assert_array_equal(run(a, {w: [1.0, 2.0], k: 0}), [0.0, 0.0])


def test_nested_loops_loop_in_cond_and_cond_in_loop():
    x = gc.placeholder(gc.float64, (4, 3))
    w = gc.placeholder(gc.float64, (3,))
    xv, wv = rng.standard_normal((4, 3)), rng.standard_normal(3)

    def outer(c, row):
        inner, _ = gc.scan(lambda h, e: (h * w + e, None), c, row[:, None] * np.ones((3, 3)))
        picked = gc.cond(gc.sum(inner) > 0, lambda u: gc.tanh(u), lambda u: u * w, inner)
        return picked, gc.sum(picked)

    c, ys = gc.scan(outer, gc.zeros((3,), gc.float64), x)
    looped = gc.cond(gc.sum(x) > 0, lambda: gc.fori_loop(0, 3, lambda i, v: v * 0.5 + w, w),
                     lambda: gc.while_loop(lambda v: gc.sum(v * v) < 100.0, lambda v: v * 2.0 + 1.0, w))
    got = run([c, ys, looped], {x: xv, w: wv})
    h, want_ys = np.zeros(3), []
    for row in xv:
        inner = h
        for e in row[:, None] * np.ones((3, 3)):
            inner = inner * wv + e
        h = np.tanh(inner) if inner.sum() > 0 else inner * wv
        want_ys.append(h.sum())
    np.testing.assert_allclose(got[0], h)
    np.testing.assert_allclose(got[1], want_ys)
    if xv.sum() > 0:
        v = wv.copy()
        for _ in range(3):
            v = v * 0.5 + wv
    else:
        v = wv.copy()
        while (v * v).sum() < 100:
            v = v * 2 + 1
    np.testing.assert_allclose(got[2], v)


def test_variables_are_read_at_run_start_and_assigned_after_the_loop():
    v = gc.Variable(np.float32(2.0))
    total, _ = gc.scan(lambda c, _: (c + v, None), np.float32(0), length=3)
    update = gc.assign(v, total)
    sess = gc.Session(backend="reference")
    assert sess.run(total) == 6.0
    sess.run(update)
    assert sess.variable_value(v) == 6.0 and sess.run(total) == 18.0
