"""Gradients of gradients: analytic second derivatives and finite-difference checks of order 2."""

import numpy as np
import pytest

import graphc as gc
from graphc.testing import check_grads

rng = np.random.default_rng(0)


def _second(fn, xv, run):
    x = gc.placeholder(gc.float64, xv.shape)
    (g,) = gc.gradients(gc.sum(fn(x)), x)
    (gg,) = gc.gradients(gc.sum(g), x)
    return run(gg, {x: xv})


def test_tanh_second_derivative(run):
    xv = np.linspace(-3, 3, 7)
    t = np.tanh(xv)
    np.testing.assert_allclose(_second(gc.tanh, xv, run), -2 * t * (1 - t * t), rtol=1e-12, atol=1e-15)


def test_sigmoid_second_derivative(run):
    xv = np.linspace(-3, 3, 7)
    s = 1 / (1 + np.exp(-xv))
    np.testing.assert_allclose(_second(gc.sigmoid, xv, run), s * (1 - s) * (1 - 2 * s), rtol=1e-12, atol=1e-15)


def test_softmax_cross_entropy_hessian_is_diag_p_minus_ppT(run):
    z = gc.placeholder(gc.float64, (1, 4))
    loss = gc.nn.softmax_cross_entropy(z, np.array([2]))
    H = gc.hessian(loss, z)
    zv = rng.standard_normal((1, 4))
    p = np.exp(zv[0] - zv.max()) / np.exp(zv[0] - zv.max()).sum()
    np.testing.assert_allclose(run(H, {z: zv}).reshape(4, 4), np.diag(p) - np.outer(p, p), rtol=1e-12, atol=1e-15)


def _mlp(x, w1, b1, w2):
    return gc.nn.softmax_cross_entropy(gc.tanh(x @ w1 + b1) @ w2, np.array([0, 1, 2]))


CASES = {
    "tanh": (lambda x: gc.tanh(x), [(3, 2)]),
    "sigmoid": (lambda x: gc.sigmoid(x * 2.0), [(4,)]),
    "softmax_cross_entropy": (lambda z: gc.nn.softmax_cross_entropy(z, np.array([1, 0])), [(2, 3)]),
    "softmax_cross_entropy_soft_targets": (
        lambda z: gc.nn.softmax_cross_entropy(z, np.array([[0.2, 0.5, 0.3]])), [(2, 3)]),
    "mlp": (_mlp, [(3, 4), (4, 5), (5,), (5, 3)]),
    "log_softmax_logsumexp": (lambda z: gc.sum(gc.nn.log_softmax(z) * gc.logsumexp(z, axis=0)), [(3, 2)]),
    "std_gelu": (lambda x: gc.std(gc.gelu(x), axis=0), [(4, 2)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_second_order_against_finite_differences(name, backend):
    fn, shapes = CASES[name]
    check_grads(fn, [rng.standard_normal(s) for s in shapes], order=2, backend=backend)


def test_third_order_of_tanh(run):
    x = gc.placeholder(gc.float64, (5,))
    g = x
    for _ in range(3):
        g = gc.gradients(gc.sum(gc.tanh(x) if g is x else g), x)[0]
    xv = np.linspace(-1, 1, 5)
    t = np.tanh(xv)
    np.testing.assert_allclose(run(g, {x: xv}), -2 * (1 - t * t) * (1 - 3 * t * t), rtol=1e-12, atol=1e-14)
