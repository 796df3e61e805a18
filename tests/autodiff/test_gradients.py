"""Reverse mode: the seed examples, fan-out, broadcasting, seeds, unconnected and integer inputs."""

import numpy as np
import pytest

import graphc as gc
from graphc.autodiff.reverse import sum_to_like

rng = np.random.default_rng(0)


def test_polynomial_derivative_by_both_modes(run):
    x = gc.placeholder(gc.float64, (5,))
    y = x * x + 2 * x
    (g,) = gc.gradients(y, x)
    (t,) = gc.jvp(y, x, [np.ones(5)])
    xv = np.linspace(-2, 2, 5)
    gv, tv = run([g, t], {x: xv})
    np.testing.assert_allclose(gv, 2 * xv + 2, rtol=0, atol=0)
    np.testing.assert_allclose(tv, 2 * xv + 2, rtol=0, atol=0)


def test_fan_out_sums_both_paths(run):
    x = gc.placeholder(gc.float64, ())
    f = gc.sin(x)
    g = x * x
    h = f * g  # h = sin(x) x^2, x reaches h through f and through g
    (dx,) = gc.gradients(h, x)
    xv = 0.7
    expected = np.cos(xv) * xv**2 + np.sin(xv) * 2 * xv
    np.testing.assert_allclose(run(dx, {x: xv}), expected, rtol=1e-15)


def test_sum_of_product_gives_the_other_factor(run):
    x = gc.placeholder(gc.float32, (2, 3))
    w = gc.placeholder(gc.float32, (2, 3))
    L = gc.sum(x * w)
    dx, dw = gc.gradients(L, [x, w])
    xv, wv = rng.standard_normal((2, 2, 3)).astype(np.float32)
    gx, gw = run([dx, dw], {x: xv, w: wv})
    assert gx.dtype == np.float32 and gw.dtype == np.float32
    np.testing.assert_array_equal(gx, wv)
    np.testing.assert_array_equal(gw, xv)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_gradients(run, dtype):
    A = gc.placeholder(dtype, (3, 4))
    B = gc.placeholder(dtype, (4, 5))
    C = A @ B
    dC = rng.standard_normal((3, 5)).astype(dtype)
    dA, dB = gc.gradients(C, [A, B], grad_ys=dC)
    av, bv = rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal((4, 5)).astype(dtype)
    ga, gb = run([dA, dB], {A: av, B: bv})
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(ga, dC @ bv.T, rtol=tol)
    np.testing.assert_allclose(gb, av.T @ dC, rtol=tol)


def test_broadcasting_is_summed_back():
    a = gc.placeholder(gc.float64, (3, 1))
    b = gc.placeholder(gc.float64, (4,))
    c = gc.placeholder(gc.float64, ())
    y = a * b + c
    ga, gb, gc_ = gc.gradients(y, [a, b, c])
    assert (ga.shape, gb.shape, gc_.shape) == ((3, 1), (4,), ())
    av, bv = rng.standard_normal((3, 1)), rng.standard_normal(4)
    va, vb, vc = gc.Session().run([ga, gb, gc_], {a: av, b: bv, c: 1.5})
    np.testing.assert_allclose(va, np.full((3, 1), bv.sum()))
    np.testing.assert_allclose(vb, np.full(4, av.sum()))
    assert vc == 12.0


def test_sum_to_like_handles_leading_size1_and_unknown_dims():
    g = gc.placeholder(gc.float64, (2, 3, 4))
    x = gc.placeholder(gc.float64, (3, 1))
    s = sum_to_like(g, x)
    assert s.shape == (3, 1)
    gv = rng.standard_normal((2, 3, 4))
    np.testing.assert_allclose(gc.Session().run(s, {g: gv}), gv.sum(axis=(0, 2))[:, None])
    xu = gc.placeholder(gc.float64, (None, 1))
    gu = gc.placeholder(gc.float64, (None, 4))
    su = sum_to_like(gu, xu)
    assert su.shape == (None, 1)
    gv = rng.standard_normal((5, 4))
    np.testing.assert_allclose(gc.Session().run(su, {gu: gv}), gv.sum(axis=1, keepdims=True))
    # a smaller derivative is broadcast up to the tensor's shape
    up = sum_to_like(gc.constant(2.0, gc.float64), x)
    assert up.shape == (3, 1)


def test_unknown_batch_dim_gradient(run):
    x = gc.placeholder(gc.float64, (None, 3))
    w = gc.placeholder(gc.float64, (3,))
    loss = gc.mean(gc.sum(x * w, axis=1) ** 2)
    gx, gw = gc.gradients(loss, [x, w])
    xv, wv = rng.standard_normal((4, 3)), rng.standard_normal(3)
    vx, vw = run([gx, gw], {x: xv, w: wv})
    s = xv @ wv
    np.testing.assert_allclose(vx, (2 * s / 4)[:, None] * wv, rtol=1e-12)
    np.testing.assert_allclose(vw, (2 * s / 4) @ xv, rtol=1e-12)


def test_grad_ys_seed_and_several_ys(run):
    x = gc.placeholder(gc.float64, (3,))
    y1, y2 = x * x, gc.exp(x)
    (g,) = gc.gradients([y1, y2], x, grad_ys=[np.array([1.0, 2.0, 3.0]), None])
    xv = np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(run(g, {x: xv}), 2 * xv * [1, 2, 3])
    (g2,) = gc.gradients([y1, y2], x)
    np.testing.assert_allclose(run(g2, {x: xv}), 2 * xv + np.exp(xv))
    (g3,) = gc.gradients(y1, x, grad_ys=2.0)  # a scalar seed broadcasts
    np.testing.assert_allclose(run(g3, {x: xv}), 4 * xv)


def test_gradient_of_x_with_respect_to_itself_is_the_seed():
    x = gc.placeholder(gc.float64, (2,))
    (g,) = gc.gradients(x, x)
    np.testing.assert_array_equal(gc.Session().run(g), [1.0, 1.0])


def test_unconnected_inputs_none_or_zero():
    x = gc.placeholder(gc.float64, (2, 3))
    z = gc.placeholder(gc.float32, (4,))
    y = gc.sum(gc.exp(x))
    assert gc.gradients(y, [x, z])[1] is None
    gz = gc.gradients(y, [x, z], unconnected="zero")[1]
    assert gz.shape == (4,) and gz.dtype == np.float32
    np.testing.assert_array_equal(gc.Session().run(gz), np.zeros(4, np.float32))
    with pytest.raises(gc.GraphcError, match="unconnected"):
        gc.gradients(y, x, unconnected="zeros")


def test_integer_and_bool_tensors_carry_no_gradient():
    n = gc.placeholder(gc.int32, (3,))
    x = gc.placeholder(gc.float64, (3,))
    y = gc.sum(x * gc.cast(n, gc.float64))
    gn, gx = gc.gradients(y, [n, x])
    assert gn is None
    np.testing.assert_array_equal(gc.Session().run(gx, {n: [1, 2, 3]}), [1.0, 2.0, 3.0])
    gz = gc.gradients(y, n, unconnected="zero")[0]
    assert gz.dtype == np.int32
    # a path through an integer cast is cut: x -> int -> float has zero gradient
    y2 = gc.sum(gc.cast(gc.cast(x, gc.int32), gc.float64) * x)
    (g2,) = gc.gradients(y2, x)
    np.testing.assert_array_equal(gc.Session().run(g2, {x: [1.5, 2.5, -3.5]}), [1.0, 2.0, -3.0])
    # comparisons are bool: no gradient flows through them
    y3 = gc.sum(gc.where(x > 0, x, -x))
    (g3,) = gc.gradients(y3, x)
    np.testing.assert_array_equal(gc.Session().run(g3, {x: [1.5, -2.0, 3.0]}), [1.0, -1.0, 1.0])


def test_integer_output_has_no_gradient():
    x = gc.placeholder(gc.float64, (3,))
    assert gc.gradients(gc.argmax(x), x) == [None]


def test_stop_gradient(run):
    x = gc.placeholder(gc.float64, (3,))
    y = gc.sum(x * gc.stop_gradient(x))
    (g,) = gc.gradients(y, x)
    (t,) = gc.jvp(y, x, [np.ones(3)])
    xv = np.array([1.0, -2.0, 3.0])
    gv, tv = run([g, t], {x: xv})
    np.testing.assert_array_equal(gv, xv)  # only the unstopped factor is differentiated
    assert tv == xv.sum()
    assert gc.gradients(gc.stop_gradient(x), x) == [None]


def test_no_grad_block_is_a_constant(run):
    x = gc.placeholder(gc.float64, (3,))
    with gc.no_grad():
        scale = gc.exp(x)
    y = gc.sum(scale * x)
    (g,) = gc.gradients(y, x)
    (t,) = gc.jvp(y, x, [np.ones(3)])
    xv = np.array([0.1, 0.2, 0.3])
    gv, tv = run([g, t], {x: xv})
    np.testing.assert_allclose(gv, np.exp(xv))
    np.testing.assert_allclose(tv, np.exp(xv).sum())
    assert gc.gradients(gc.sum(scale), x) == [None]


def test_gradient_with_respect_to_intermediate_and_variable(run):
    w = gc.Variable(np.array([1.0, 2.0]), dtype=gc.float64)
    x = gc.placeholder(gc.float64, (2,))
    h = x * w
    y = gc.sum(gc.square(h))
    gh, gw, gx = gc.gradients(y, [h, w, x])
    xv = np.array([3.0, -1.0])
    vh, vw, vx = run([gh, gw, gx], {x: xv})
    hv = xv * [1.0, 2.0]
    np.testing.assert_allclose(vh, 2 * hv)
    np.testing.assert_allclose(vw, 2 * hv * xv)
    np.testing.assert_allclose(vx, 2 * hv * [1.0, 2.0])


def test_gradients_are_bit_for_bit_repeatable(backend):
    def build():
        x = gc.placeholder(gc.float32, (8, 5), name="x")
        w1 = gc.Variable(np.random.default_rng(1).standard_normal((5, 16)).astype(np.float32), name="w1")
        w2 = gc.Variable(np.random.default_rng(2).standard_normal((16, 3)).astype(np.float32), name="w2")
        h = gc.tanh(x @ w1)
        logits = h @ w2 + gc.sum(h, axis=1, keepdims=True) * 0.1  # h fans out to three users
        loss = gc.nn.softmax_cross_entropy(logits, np.arange(8) % 3)
        return x, loss, gc.gradients(loss, [w1, w2, x])

    xv = np.random.default_rng(3).standard_normal((8, 5)).astype(np.float32)
    texts, values = [], []
    for _ in range(2):
        g = gc.Graph()
        with g.as_default():
            x, loss, grads = build()
            texts.append(gc.as_text(grads))
            values.append(gc.Session(g, backend=backend).run(grads, {x: xv}))
    assert texts[0] == texts[1]
    for a, b in zip(*values):
        assert a.tobytes() == b.tobytes()


def test_gradient_graph_is_ordinary_graph_nodes():
    x = gc.placeholder(gc.float64, (3,))
    (g,) = gc.gradients(gc.sum(gc.exp(x)), x)
    text = gc.as_text(g)
    assert "exp(" in text and "multiply(" in text
    (gg,) = gc.gradients(gc.sum(g), x)  # differentiate the gradient again
    xv = np.array([0.0, 1.0, -1.0])
    np.testing.assert_allclose(gc.Session().run(gg, {x: xv}), np.exp(xv))


def test_bad_arguments():
    x = gc.placeholder(gc.float64, (3,))
    with pytest.raises(gc.GraphcError, match="tensors"):
        gc.gradients(x, [np.ones(3)])
    with pytest.raises(gc.GraphcError, match="grad_ys"):
        gc.gradients([x, x], x, grad_ys=[np.ones(3)])
    with pytest.raises(gc.ShapeError, match="grad_ys"):
        gc.gradients(x, x, grad_ys=np.ones(4))


def test_gradient_graph_saves_loads_and_differentiates_again(tmp_path):
    x = gc.placeholder(gc.float64, (3,), name="x")
    (g,) = gc.gradients(gc.sum(gc.sin(x) * x), x)
    path = tmp_path / "grad.json"
    gc.save({"x": x, "g": g}, path)
    loaded = gc.load(path, graph=gc.Graph()).outputs
    x2, g2 = loaded["x"], loaded["g"]
    (gg,) = gc.gradients(gc.sum(g2), x2)  # the loaded gradient is ordinary nodes
    xv = np.array([0.1, -0.7, 2.0])
    gv, ggv = gc.Session(x2.graph).run([g2, gg], {x2: xv})
    np.testing.assert_allclose(gv, np.cos(xv) * xv + np.sin(xv), rtol=1e-15)
    np.testing.assert_allclose(ggv, -np.sin(xv) * xv + 2 * np.cos(xv), rtol=1e-15)
