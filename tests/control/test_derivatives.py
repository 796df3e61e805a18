"""Derivatives through control flow: against the unrolled graph, finite differences (float64),
higher order, and JAX's lax.scan / cond / while_loop when JAX is installed."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.testing import check_grads

rng = np.random.default_rng(31)


def run(fetches, feeds=None):
    return gc.Session(backend="reference").run(fetches, feeds)


def _cell(w, u):
    def step(h, x):
        h = gc.tanh(gc.matmul(h, w) + x * u)
        return h, gc.sum(h * h)
    return step


def test_scan_gradients_match_the_unrolled_graph():
    x, w, u = (gc.placeholder(gc.float64, s) for s in ((5, 2, 3), (3, 3), (3,)))
    h0 = gc.zeros((2, 3), gc.float64)
    h, ys = gc.scan(_cell(w, u), h0, x)
    loss = gc.sum(h) + gc.sum(ys * np.arange(1.0, 6.0))
    h_u, total = h0, 0.0
    for t in range(5):
        h_u, y = _cell(w, u)(h_u, x[t])
        total = total + y * (t + 1.0)
    unrolled = gc.sum(h_u) + total
    feeds = {x: rng.standard_normal((5, 2, 3)), w: rng.standard_normal((3, 3)) * 0.5, u: rng.standard_normal(3)}
    looped = run(gc.gradients(loss, [x, w, u]), feeds)
    flat = run(gc.gradients(unrolled, [x, w, u]), feeds)
    for a, b in zip(looped, flat):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    tx = rng.standard_normal((5, 2, 3))
    np.testing.assert_allclose(*run([gc.jvp(loss, x, tx)[0], gc.jvp(unrolled, x, tx)[0]], feeds), rtol=1e-12)


def test_scan_fori_cond_while_against_finite_differences():
    def rnn(x, w):
        h, ys = gc.scan(lambda c, xt: (gc.sin(c * w) + xt, c * xt), gc.zeros_like(w), x, reverse=True)
        return gc.concatenate([h, gc.reshape(ys, (-1,))], 0)

    def fori(a):
        return gc.fori_loop(1, 4, lambda i, v: v * gc.cos(v) * gc.cast(i, v.dtype), a)

    def bounded(a):
        return gc.while_loop(lambda c: gc.sum(c * c) < 30.0, lambda c: c * 1.3 + 0.2, a, max_iterations=12)

    def unbounded(a):
        return gc.while_loop(lambda c: gc.sum(c * c) < 30.0, lambda c: c * 1.3 + gc.sin(c), a)

    check_grads(rnn, [rng.standard_normal((4, 3)), rng.standard_normal(3)], order=2)
    check_grads(fori, [rng.standard_normal(3)], order=2)
    check_grads(bounded, [rng.uniform(0.5, 1.0, 3)], order=2)
    check_grads(unbounded, [rng.uniform(0.5, 1.0, 3)], modes=("fwd",), order=2)


def test_reverse_mode_of_an_unbounded_while_loop_is_a_clear_error():
    a = gc.placeholder(gc.float64, (3,))
    out = gc.while_loop(lambda c: gc.sum(c) < 10.0, lambda c: c * 2.0, a)
    with pytest.raises(gc.GraphcError, match=r"(?s)while_loop .* needs a bounded loop.*max_iterations.*test_deriv"):
        gc.gradients(gc.sum(out), a)


def test_gradient_through_a_loop_inside_a_cond_and_a_cond_inside_a_loop():
    def f(x, w):
        inner = gc.cond(gc.sum(x) > 0, lambda: gc.scan(lambda c, r: (c * w + r, None), w, x)[0],
                        lambda: gc.fori_loop(0, 2, lambda i, v: gc.exp(v * 0.3), w))
        out, _ = gc.scan(lambda c, r: (gc.cond(gc.sum(c) > 0, lambda: c * r, lambda: c + r), None), inner, x)
        return out

    check_grads(f, [np.abs(rng.standard_normal((3, 2))), rng.standard_normal(2)], order=2)
    check_grads(f, [-np.abs(rng.standard_normal((3, 2))), rng.standard_normal(2)], order=2)


def test_integer_and_bool_carries_get_no_gradient():
    x = gc.placeholder(gc.float64, (3,))
    (n, v, flag), _ = gc.scan(lambda c, _: ((c[0] + 1, c[1] * 2.0, gc.logical_not(c[2])), None),
                              (0, x, True), length=3)
    (g,) = gc.gradients(gc.sum(v * gc.cast(n, gc.float64)), [x])
    np.testing.assert_allclose(run(g, {x: np.ones(3)}), np.full(3, 24.0))
    assert gc.gradients(gc.cast(n, gc.float64), [x]) == [None]


def test_higher_order_scan_of_a_gradient_and_gradient_of_that_scan():
    w = gc.placeholder(gc.float64, ())
    xs = gc.placeholder(gc.float64, (4,))

    def step(c, x):  # one gradient-descent step of (c*x - w)^2 inside the body
        (g,) = gc.gradients((c * x - w) ** 2, [c])
        return c - 0.1 * g, g

    c, gs = gc.scan(step, np.float64(1.0), xs)
    (dw,) = gc.gradients(c + gc.sum(gs), [w])
    (ddw,) = gc.gradients(dw, [w])
    feeds = {w: 0.7, xs: rng.standard_normal(4)}
    got = run([c, dw, ddw], feeds)

    def python(wv):
        cv, tot = 1.0, 0.0
        for x in feeds[xs]:
            g = 2 * (cv * x - wv) * x
            cv, tot = cv - 0.1 * g, tot + g
        return cv + tot

    eps = 1e-5
    cv = 1.0
    for x in feeds[xs]:
        cv -= 0.1 * 2 * (cv * x - 0.7) * x
    np.testing.assert_allclose(got[0], cv)
    np.testing.assert_allclose(got[1], (python(0.7 + eps) - python(0.7 - eps)) / (2 * eps), rtol=1e-7)
    np.testing.assert_allclose(got[2], 0.0, atol=1e-9)  # the loss is linear in w here


def test_gradient_of_a_scan_of_a_gradient_against_finite_differences():
    def f(w, xs):
        def step(c, x):
            (g,) = gc.gradients(gc.sin(c * x) * w, [c])
            return c - 0.1 * g * w, g

        c, gs = gc.scan(step, w * 0.5, xs)
        return c + gs

    check_grads(f, [rng.standard_normal(2), rng.standard_normal((3, 2))], order=2)


def test_hessian_vector_product_through_a_scan_agrees_across_routes():
    x = gc.placeholder(gc.float64, (4, 2))
    w = gc.placeholder(gc.float64, (2,))
    h, ys = gc.scan(lambda c, xt: (gc.tanh(c * w + xt), gc.sum(c * xt)), gc.zeros((2,), gc.float64), x)
    y = gc.sum(h * h) + gc.sum(ys)
    v = rng.standard_normal(2)
    rr = gc.hessian_vector_product(y, [w], [v])[0]
    fr = gc.jvp(gc.gradients(y, [w]), [w], [v])[0]
    rf = gc.gradients(gc.jvp(y, [w], [v])[0], [w])[0]
    hess = gc.hessian(y, w)
    got = run([rr, fr, rf, hess], {x: rng.standard_normal((4, 2)), w: rng.standard_normal(2)})
    for g in got[:3]:
        np.testing.assert_allclose(g, got[3] @ v, rtol=1e-10, atol=1e-12)


def _jax():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    return jax


def test_jax_agrees_on_scan_cond_and_while_loop_derivatives():
    jax = _jax()
    jnp, lax = jax.numpy, jax.lax
    xv, wv = rng.standard_normal((6, 3)), rng.standard_normal(3)

    def jax_f(x, w):
        h, ys = lax.scan(lambda c, xt: (jnp.tanh(c * w + xt), jnp.sum(c * xt)), jnp.zeros(3), x)
        z = lax.cond(jnp.sum(h) > 0, lambda a: jnp.sin(a) * w, lambda a: a * a, h)
        v = lax.fori_loop(0, 3, lambda i, v: v * jnp.cos(v) + w, z)
        return jnp.sum(v) + jnp.sum(ys ** 2)

    def gc_f(x, w):
        h, ys = gc.scan(lambda c, xt: (gc.tanh(c * w + xt), gc.sum(c * xt)), gc.zeros((3,), gc.float64), x)
        z = gc.cond(gc.sum(h) > 0, lambda a: gc.sin(a) * w, lambda a: a * a, h)
        v = gc.fori_loop(0, 3, lambda i, v: v * gc.cos(v) + w, z)
        return gc.sum(v) + gc.sum(ys ** 2)

    x, w = gc.placeholder(gc.float64, (6, 3)), gc.placeholder(gc.float64, (3,))
    y = gc_f(x, w)
    got = run([y, *gc.gradients(y, [x, w])], {x: xv, w: wv})
    want = [jax_f(xv, wv), *jax.grad(jax_f, argnums=(0, 1))(xv, wv)]
    for g, j in zip(got, want):
        np.testing.assert_allclose(g, np.asarray(j), rtol=1e-10, atol=1e-12)
    a = gc.placeholder(gc.float64, (3,))
    wl = gc.while_loop(lambda c: gc.sum(c * c) < 50.0, lambda c: c * 1.5 + gc.sin(c), a)
    t = rng.standard_normal(3)
    av = rng.uniform(0.5, 1.0, 3)
    jw = jax.jvp(lambda c0: lax.while_loop(lambda c: jnp.sum(c * c) < 50.0, lambda c: c * 1.5 + jnp.sin(c), c0),
                 (av,), (t,))
    got = run([wl, gc.jvp(wl, a, t)[0]], {a: av})
    np.testing.assert_allclose(got[0], np.asarray(jw[0]), rtol=1e-12)
    np.testing.assert_allclose(got[1], np.asarray(jw[1]), rtol=1e-10)
