"""Forward mode, and reverse and forward mode agreeing on composite graphs: uᵀ(J v) = (Jᵀu)ᵀ v."""

import numpy as np
import pytest

import graphc as gc

rng = np.random.default_rng(0)


def _mlp(x, w1, b1, w2):
    return gc.nn.softmax_cross_entropy(gc.tanh(x @ w1 + b1) @ w2, np.array([0, 2, 1, 2]))


def _layer_norm(x, g, b):
    mu = gc.mean(x, axis=-1, keepdims=True)
    return gc.sum(((x - mu) / gc.sqrt(gc.var(x, axis=-1, keepdims=True) + 1e-5) * g + b) ** 2)


def _attention(q, k, v):
    scores = gc.nn.softmax(q @ gc.transpose(k, (0, 2, 1)) / 2.0, axis=-1)
    return gc.gelu(scores @ v)


def _mixed(a, b):
    return gc.logsumexp(a * b, axis=0) + gc.std(gc.sigmoid(a), axis=1) + gc.max(gc.softplus(b) - a, axis=1)


COMPOSITES = {
    "mlp": (_mlp, [(4, 3), (3, 5), (5,), (5, 3)]),
    "layer_norm": (_layer_norm, [(2, 6), (6,), (6,)]),
    "attention": (_attention, [(2, 3, 4), (2, 5, 4), (2, 5, 2)]),
    "mixed": (_mixed, [(3, 3), (3, 1)]),
}


@pytest.mark.parametrize("name", sorted(COMPOSITES))
def test_reverse_and_forward_agree(name, run):
    fn, shapes = COMPOSITES[name]
    xs = [gc.placeholder(gc.float64, s) for s in shapes]
    y = fn(*xs)
    u = rng.standard_normal(y.shape)
    vs = [rng.standard_normal(s) for s in shapes]
    (jv,) = gc.jvp(y, xs, vs)
    jtu = gc.gradients(y, xs, grad_ys=u)
    feed = {x: rng.standard_normal(s) for x, s in zip(xs, shapes)}
    jv_val, *jtu_val = run([jv, *jtu], feed)
    forward = float(np.sum(u * jv_val))
    reverse = float(sum(np.sum(g * v) for g, v in zip(jtu_val, vs)))
    np.testing.assert_allclose(forward, reverse, rtol=1e-12, atol=1e-12)


def test_jvp_of_polynomial_and_several_outputs(run):
    x = gc.placeholder(gc.float64, (3,))
    y = gc.placeholder(gc.float64, (3,))
    f, g = x * y, gc.sin(x)
    tf, tg = gc.jvp([f, g], [x, y], [np.ones(3), None])
    xv, yv = np.array([1.0, 2.0, 3.0]), np.array([-1.0, 0.5, 2.0])
    vf, vg = run([tf, tg], {x: xv, y: yv})
    np.testing.assert_allclose(vf, yv)
    np.testing.assert_allclose(vg, np.cos(xv))


def test_tangent_broadcasts_to_the_input_and_output_shapes(run):
    a = gc.placeholder(gc.float64, (3, 1))
    b = gc.placeholder(gc.float64, (4,))
    (t,) = gc.jvp(a + b, [a, b], [2.0, None])  # a scalar tangent is broadcast to a's shape
    assert t.shape == (3, 4)
    np.testing.assert_array_equal(run(t, {a: np.zeros((3, 1)), b: np.zeros(4)}), np.full((3, 4), 2.0))


def test_unconnected_outputs_and_integer_inputs():
    x = gc.placeholder(gc.float64, (2,))
    n = gc.placeholder(gc.int32, (2,))
    z = gc.placeholder(gc.float64, (3,))
    t_z, t_n = gc.jvp([gc.exp(z), gc.cast(n, gc.float64) * 2], [x, n], [np.ones(2), np.ones(2)])
    assert t_z.shape == (3,)
    np.testing.assert_array_equal(gc.Session().run(t_z), np.zeros(3))
    np.testing.assert_array_equal(gc.Session().run(t_n), np.zeros(2))  # integer inputs carry no tangent
    assert gc.jvp(gc.exp(z), x, np.ones(2), unconnected="none") == [None]
    assert gc.jvp(gc.argmax(x), x, np.ones(2)) == [None]


def test_bad_tangents():
    x = gc.placeholder(gc.float64, (2,))
    with pytest.raises(gc.GraphcError, match="tangents"):
        gc.jvp(x * 2, [x], [np.ones(2), np.ones(2)])
    with pytest.raises(gc.ShapeError):
        gc.jvp(x * 2, x, np.ones((3, 2)))
    with pytest.raises(gc.GraphcError, match="float32"):
        gc.jvp(x * 2, x, gc.constant(np.ones(2, np.float32)))


def test_forward_mode_with_unknown_batch_dim(run):
    x = gc.placeholder(gc.float64, (None, 3))
    y = gc.sum(gc.tanh(x), axis=1)
    (t1,) = gc.jvp(y, x, [gc.ones_like(x)])
    (t2,) = gc.jvp(y, x, [np.ones(3)])  # broadcast to x's run-time shape
    xv = rng.standard_normal((5, 3))
    for t in run([t1, t2], {x: xv}):
        np.testing.assert_allclose(t, (1 - np.tanh(xv) ** 2).sum(axis=1), rtol=1e-12)
