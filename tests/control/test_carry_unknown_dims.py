"""A loop carry with an unknown dim that the body makes known (issue 12, fuzz finding: gc.scan's
carry (?) was refused against the body's (3)). The types fit when each dim is equal or unknown
on one side; once the graph runs every dim is bound and must be equal."""

import numpy as np
import pytest

import graphc as gc


def _scan(x, w):
    h, ys = gc.scan(lambda c, xt: (gc.tanh(c * w + xt), c * xt), gc.zeros_like(w), x)
    return gc.concatenate([h, gc.reshape(ys, (-1,))], 0)


def _numpy_scan(x, w):
    c, ys = np.zeros_like(w), []
    for xt in x:
        c, y = np.tanh(c * w + xt), c * xt
        ys.append(y)
    return np.concatenate([c, np.concatenate(ys)])


@pytest.mark.parametrize("backend", ["reference", "llvm"])
def test_scan_carry_unknown_dim_made_known_by_the_body(backend):
    rng = np.random.default_rng(0)
    xv, wv = rng.standard_normal((4, 3)), rng.standard_normal(3)
    g = gc.Graph()
    with g.as_default():
        x, w = gc.placeholder(np.float64, (4, 3)), gc.placeholder(np.float64, (None,))
        y = _scan(x, w)
        n = gc.while_loop(lambda c: gc.sum(c) < 10.0, lambda c: c + x[0], gc.zeros_like(w))
    with gc.Session(g, backend=backend) as sess:
        got, got_n = sess.run([y, n], {x: xv, w: wv})
        np.testing.assert_allclose(got, _numpy_scan(xv, wv), rtol=1e-12)
        assert got_n.shape == (3,)
        with pytest.raises(gc.ShapeError, match=r"\(5,\), \(3,\) do not broadcast"):
            sess.run(y, {x: xv, w: rng.standard_normal(5)})  # bound: the carry's dim is 5, the body's 3


def test_scan_carry_unknown_dim_gradients():
    """Reverse mode through the loop with the (?) carry, on both backends, against central differences."""
    rng = np.random.default_rng(1)
    xv, wv = rng.standard_normal((4, 3)), rng.standard_normal(3)
    g = gc.Graph()
    with g.as_default():
        x, w = gc.placeholder(np.float64, (4, 3)), gc.placeholder(np.float64, (None,))
        gx, gw = gc.gradients(gc.sum(_scan(x, w) ** 2), [x, w])

    def loss(xa, wa):
        return float(np.sum(_numpy_scan(xa, wa) ** 2))

    eps = 1e-6
    want_w = [(loss(xv, wv + eps * e) - loss(xv, wv - eps * e)) / (2 * eps) for e in np.eye(3)]
    want_x = [(loss(xv + eps * e.reshape(4, 3), wv) - loss(xv - eps * e.reshape(4, 3), wv)) / (2 * eps)
              for e in np.eye(12)]
    for backend in ("reference", "llvm"):
        with gc.Session(g, backend=backend) as sess:
            got_x, got_w = sess.run([gx, gw], {x: xv, w: wv})
        np.testing.assert_allclose(got_w, want_w, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(got_x.reshape(-1), want_x, rtol=1e-6, atol=1e-8)


def test_scan_carry_that_cannot_fit_names_both_types():
    with gc.Graph().as_default():
        x, w = gc.placeholder(np.float32, (4, 3)), gc.placeholder(np.float32, (None, 2))
        with pytest.raises(gc.ShapeError, match=r"takes a carry .*f32\(\?,2\).* but returns a carry .*f32\(\?,3\)"):
            gc.scan(lambda c, xt: (c[:, :1] + xt, xt), gc.zeros_like(w), x)
        with pytest.raises(gc.ShapeError, match=r"f32\(3\).* but returns .*f64\(3\)"):
            gc.while_loop(lambda c: gc.sum(c) < 1.0, lambda c: gc.cast(c, np.float64), gc.zeros((3,), np.float32))
