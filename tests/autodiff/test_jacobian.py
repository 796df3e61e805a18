"""jacobian (fwd, rev, auto), hessian and hessian_vector_product."""

import numpy as np
import pytest

import graphc as gc
from graphc.autodiff.api import choose_mode
from graphc.ir.traverse import toposort

rng = np.random.default_rng(0)


def _count(t, op):
    return sum(1 for n in toposort([t]) if n.op == op)


@pytest.mark.parametrize("mode", ["fwd", "rev", "auto"])
def test_jacobian_of_linear_map_is_the_matrix(mode, run):
    A = rng.standard_normal((5, 3))
    x = gc.placeholder(gc.float64, (3,))
    J = gc.jacobian(gc.matmul(gc.constant(A), x), x, mode=mode)
    assert J.shape == (5, 3)
    np.testing.assert_allclose(run(J, {x: np.ones(3)}), A, rtol=1e-15)


def test_auto_picks_forward_for_few_inputs_and_reverse_for_few_outputs():
    x = gc.placeholder(gc.float64, (2,))
    y_tall = gc.tanh(gc.constant(np.ones((6, 2))) @ x)  # 2 inputs, 6 outputs
    y_wide = gc.sum(gc.tanh(x))  # 2 inputs, 1 output
    assert choose_mode(y_tall, x) == "fwd"
    assert choose_mode(y_wide, x) == "rev"
    assert choose_mode(x * 2, x) == "rev"  # a tie goes to reverse mode
    # fwd: one pass (one seeded tangent constant) per input element; rev: one seed per output element
    J_fwd = gc.jacobian(y_tall, x)
    J_rev = gc.jacobian(y_tall, x, mode="rev")
    assert len(toposort([J_fwd])) < len(toposort([J_rev]))
    xv = np.array([0.3, -0.2])
    np.testing.assert_allclose(gc.Session().run(J_fwd, {x: xv}), gc.Session().run(J_rev, {x: xv}), rtol=1e-14)


def test_jacobian_of_matrix_function_has_y_then_x_shape(run):
    x = gc.placeholder(gc.float64, (3, 2))
    w = rng.standard_normal((2, 3))
    y = gc.exp(x) @ gc.constant(w)  # (3, 3)
    xv = rng.standard_normal((3, 2))
    Jf, Jr = gc.jacobian(y, x, mode="fwd"), gc.jacobian(y, x, mode="rev")
    assert Jf.shape == Jr.shape == (3, 3, 3, 2)
    expected = np.zeros((3, 3, 3, 2))
    for i in range(3):
        for j in range(3):
            for k in range(2):
                expected[i, j, i, k] = np.exp(xv[i, k]) * w[k, j]
    vf, vr = run([Jf, Jr], {x: xv})
    np.testing.assert_allclose(vf, expected, rtol=1e-14)
    np.testing.assert_allclose(vr, expected, rtol=1e-14)


def test_jacobian_of_a_list_and_of_empty_and_scalar_shapes(run):
    a = gc.placeholder(gc.float64, ())
    b = gc.placeholder(gc.float64, (2,))
    y = a * b
    Ja, Jb = gc.jacobian(y, [a, b])
    assert Ja.shape == (2,) and Jb.shape == (2, 2)
    va, vb = run([Ja, Jb], {a: 3.0, b: [1.0, 2.0]})
    np.testing.assert_allclose(va, [1.0, 2.0])
    np.testing.assert_allclose(vb, 3.0 * np.eye(2))
    e = gc.placeholder(gc.float64, (0, 2))
    assert run(gc.jacobian(gc.sum(e, axis=0), e), {e: np.zeros((0, 2))}).shape == (2, 0, 2)


def test_jacobian_errors():
    x = gc.placeholder(gc.float64, (None, 2))
    with pytest.raises(gc.ShapeError, match="static shapes"):
        gc.jacobian(x * 2, x)
    n = gc.placeholder(gc.int32, (2,))
    with pytest.raises(gc.GraphcError, match="floating"):
        gc.jacobian(gc.cast(n, gc.float64), n)
    z = gc.placeholder(gc.float64, (2,))
    with pytest.raises(gc.GraphcError, match="mode"):
        gc.jacobian(z, z, mode="forward")


def _f(x):
    return gc.sum(x ** 3) + x[0] * x[1] + gc.sum(gc.sin(x)) * x[2]


def _hessian_numpy(xv):
    n = len(xv)
    H = np.diag(6 * xv)
    H[0, 1] += 1
    H[1, 0] += 1
    for i in range(n):
        for j in range(n):
            H[i, j] -= np.sin(xv[i]) * xv[2] * (i == j)
            H[i, j] += np.cos(xv[i]) * (j == 2) + np.cos(xv[j]) * (i == 2)
    return H


@pytest.mark.parametrize("mode", ["fwd", "rev"])
def test_hessian_matches_analytic(mode, run):
    x = gc.placeholder(gc.float64, (4,))
    H = gc.hessian(_f(x), x, mode=mode)
    assert H.shape == (4, 4)
    xv = rng.standard_normal(4)
    np.testing.assert_allclose(run(H, {x: xv}), _hessian_numpy(xv), rtol=1e-12, atol=1e-12)


def test_hessian_needs_a_scalar():
    x = gc.placeholder(gc.float64, (3,))
    with pytest.raises(gc.ShapeError, match="scalar"):
        gc.hessian(x * x, x)
    with pytest.raises(gc.ShapeError, match="scalar"):
        gc.hessian_vector_product(x * x, x, np.ones(3))


def test_hessian_vector_product_matches_explicit_hessian(run):
    x = gc.placeholder(gc.float64, (3,))
    w = gc.placeholder(gc.float64, (3, 2))
    loss = gc.nn.softmax_cross_entropy(gc.reshape(gc.tanh(x @ w), (1, 2)), np.array([1]))
    vx, vw = rng.standard_normal(3), rng.standard_normal((3, 2))
    hx, hw = gc.hessian_vector_product(loss, [x, w], [vx, vw])
    # the explicit Hessian of loss over the flattened (x, w)
    flat = gc.placeholder(gc.float64, (9,))
    loss_flat = gc.nn.softmax_cross_entropy(
        gc.reshape(gc.tanh(flat[:3] @ gc.reshape(flat[3:], (3, 2))), (1, 2)), np.array([1]))
    H = gc.hessian(loss_flat, flat)
    xv, wv = rng.standard_normal(3), rng.standard_normal((3, 2))
    got_x, got_w, Hv = run([hx, hw, H], {x: xv, w: wv, flat: np.concatenate([xv, wv.ravel()])})
    expected = Hv @ np.concatenate([vx, vw.ravel()])
    np.testing.assert_allclose(np.concatenate([got_x, got_w.ravel()]), expected, rtol=1e-10, atol=1e-12)
    assert np.allclose(Hv, Hv.T, atol=1e-12)
    # no Hessian is formed: the HVP graph is far smaller than the explicit one
    assert len(toposort([hx, hw])) < len(toposort([H])) / 3
