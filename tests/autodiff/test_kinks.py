"""Derivatives at non-differentiable points follow JAX's conventions (as docs/autodiff.md lists)."""

import numpy as np

import graphc as gc


def _grad(fn, xv, run):
    x = gc.placeholder(gc.float64, np.shape(xv))
    (g,) = gc.gradients(gc.sum(fn(x)), x, unconnected="zero")
    (t,) = gc.jvp(gc.sum(fn(x)), x, [np.ones(np.shape(xv))])
    gv, tv = run([g, t], {x: xv})
    np.testing.assert_allclose(np.sum(gv), tv, rtol=1e-15)  # both modes use the same convention
    return gv


def test_relu_and_abs_at_zero(run):
    np.testing.assert_array_equal(_grad(gc.relu, [-1.0, 0.0, 2.0], run), [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(_grad(gc.abs, [-1.0, 0.0, 2.0], run), [-1.0, 0.0, 1.0])


def test_ties_share_the_cotangent_evenly(run):
    np.testing.assert_array_equal(_grad(lambda x: gc.max(x), [1.0, 3.0, 3.0, 3.0], run), [0, 1 / 3, 1 / 3, 1 / 3])
    np.testing.assert_array_equal(_grad(lambda x: gc.min(x, axis=1), [[2.0, 2.0], [1.0, 5.0]], run),
                                  [[0.5, 0.5], [1.0, 0.0]])
    a = gc.placeholder(gc.float64, (3,))
    b = gc.placeholder(gc.float64, (3,))
    ga, gb = gc.gradients(gc.sum(gc.maximum(a, b)), [a, b])
    va, vb = run([ga, gb], {a: [1.0, 2.0, 3.0], b: [1.0, 5.0, 0.0]})
    np.testing.assert_array_equal(va, [0.5, 0.0, 1.0])
    np.testing.assert_array_equal(vb, [0.5, 1.0, 0.0])


def test_piecewise_constant_ops_have_zero_gradient(run):
    for fn in (gc.floor, gc.ceil, gc.round, gc.sign):
        np.testing.assert_array_equal(_grad(fn, [-1.5, 0.0, 0.5, 2.0], run), np.zeros(4))
    x = gc.placeholder(gc.float64, (3,))
    assert gc.gradients(gc.argmax(x), x) == [None]
    assert gc.gradients(gc.cast(x > 0, gc.float64), x) == [None]


def test_clip_passes_the_cotangent_at_its_bounds(run):
    np.testing.assert_array_equal(_grad(lambda x: gc.clip(x, -1.0, 1.0), [-2.0, -1.0, 0.0, 1.0, 2.0], run),
                                  [0.0, 1.0, 1.0, 1.0, 0.0])
