"""Each optimizer's update against a hand-written numpy step, over several iterations."""

import numpy as np
import pytest

import graphc as gc
from graphc.runtime.session import BACKENDS

STEPS = 5


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def _problem(dtype):
    """0.5 * ||X @ W + b - Y||^2: gradients X^T R and sum(R, 0) change every step."""
    rng = np.random.Generator(np.random.PCG64(42))
    X = rng.standard_normal((6, 3)).astype(dtype)
    Y = rng.standard_normal((6, 2)).astype(dtype)
    W0 = rng.standard_normal((3, 2)).astype(dtype)
    b0 = rng.standard_normal(2).astype(dtype)
    return X, Y, W0, b0


def _np_grads(X, Y, W, b):
    R = X @ W + b - Y
    return [X.T @ R, R.sum(axis=0)]


def np_sgd(lr, momentum=0.0, nesterov=False):
    def step(params, grads, state, t):
        out = []
        for i, (p, g) in enumerate(zip(params, grads)):
            if momentum:
                buf = state[i] = momentum * state.get(i, 0.0) + g
                g = g + momentum * buf if nesterov else buf
            out.append(p - lr * g)
        return out
    return step


def np_adam(lr, b1=0.9, b2=0.999, eps=1e-8, wd=0.0):
    def step(params, grads, state, t):
        out = []
        for i, (p, g) in enumerate(zip(params, grads)):
            m, v = state.get(i, (0.0, 0.0))
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            state[i] = (m, v)
            m_hat = m / (1 - b1 ** t)
            v_hat = v / (1 - b2 ** t)
            out.append(p * (1 - lr * wd) - lr * m_hat / (np.sqrt(v_hat) + eps))
        return out
    return step


def np_rmsprop(lr, rho=0.99, eps=1e-8, momentum=0.0, centered=False):
    def step(params, grads, state, t):
        out = []
        for i, (p, g) in enumerate(zip(params, grads)):
            s, a, buf = state.get(i, (0.0, 0.0, 0.0))
            s = rho * s + (1 - rho) * g * g
            if centered:
                a = rho * a + (1 - rho) * g
                d = np.sqrt(s - a * a) + eps
            else:
                d = np.sqrt(s) + eps
            if momentum:
                buf = momentum * buf + g / d
                out.append(p - lr * buf)
            else:
                out.append(p - lr * g / d)
            state[i] = (s, a, buf)
        return out
    return step


CASES = {
    "sgd": (lambda: gc.train.SGD(0.05), np_sgd(0.05)),
    "momentum": (lambda: gc.train.SGD(0.05, momentum=0.9), np_sgd(0.05, 0.9)),
    "nesterov": (lambda: gc.train.SGD(0.05, momentum=0.8, nesterov=True), np_sgd(0.05, 0.8, True)),
    "adam": (lambda: gc.train.Adam(0.1), np_adam(0.1)),
    "adam_betas": (lambda: gc.train.Adam(0.02, beta1=0.5, beta2=0.9, eps=1e-3), np_adam(0.02, 0.5, 0.9, 1e-3)),
    "adamw": (lambda: gc.train.AdamW(0.1, weight_decay=0.1), np_adam(0.1, wd=0.1)),
    "rmsprop": (lambda: gc.train.RMSProp(0.01), np_rmsprop(0.01)),
    "rmsprop_momentum": (lambda: gc.train.RMSProp(0.01, rho=0.9, momentum=0.5), np_rmsprop(0.01, 0.9, momentum=0.5)),
    "rmsprop_centered": (lambda: gc.train.RMSProp(0.01, centered=True, momentum=0.3),
                         np_rmsprop(0.01, centered=True, momentum=0.3)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", sorted(CASES))
def test_update_rule_matches_numpy(case, dtype, backend):
    make, np_step = CASES[case]
    X, Y, W0, b0 = _problem(dtype)
    W, b = gc.Variable(W0, name="W"), gc.Variable(b0, name="b")
    x, y = gc.placeholder(dtype, (None, 3)), gc.placeholder(dtype, (None, 2))
    loss = 0.5 * gc.sum((x @ W + b - y) ** 2)
    opt = make()
    train = opt.minimize(loss)
    params = [W0, b0]  # the numpy reference computes in the same dtype
    state: dict = {}
    rtol, atol = (2e-5, 2e-6) if dtype == np.float32 else (1e-12, 1e-14)
    with gc.Session(backend=backend) as sess:
        for t in range(1, STEPS + 1):
            before, _ = sess.run([loss, train], {x: X, y: Y})
            R = X @ params[0] + params[1] - Y
            assert before == pytest.approx(0.5 * np.sum(R * R), rel=rtol)  # loss is read before the update
            params = np_step(params, _np_grads(X, Y, *params), state, t)
            got = [sess.variable_value(W), sess.variable_value(b)]
            assert got[0].dtype == dtype
            for g, want in zip(got, params):
                np.testing.assert_allclose(g, want, rtol=rtol, atol=atol)
        assert sess.variable_value(opt.step_variable(W.graph)) == STEPS
    assert all(not s.attrs["trainable"] for s in gc.global_variables() if s not in (W, b))
    assert gc.trainable_variables() == [W, b]


@pytest.mark.parametrize("clip, expect_scaled", [(0.5, True), (1e6, False)])
def test_clip_norm_clips_by_global_norm(clip, expect_scaled, backend):
    X, Y, W0, b0 = _problem(np.float64)
    W, b = gc.Variable(W0), gc.Variable(b0)
    loss = 0.5 * gc.sum((gc.constant(X) @ W + b - gc.constant(Y)) ** 2)
    train = gc.train.SGD(0.1).minimize(loss, clip_norm=clip)
    grads = _np_grads(X, Y, W0, b0)
    norm = np.sqrt(sum(np.sum(g * g) for g in grads))
    assert (norm > clip) == expect_scaled
    scale = clip / max(norm, clip)
    with gc.Session(backend=backend) as sess:
        sess.run(train)
        np.testing.assert_allclose(sess.variable_value(W), W0 - 0.1 * scale * grads[0], rtol=1e-12)
        np.testing.assert_allclose(sess.variable_value(b), b0 - 0.1 * scale * grads[1], rtol=1e-12)


def test_learning_rate_can_be_a_placeholder(backend):
    w = gc.Variable(np.array([1.0, 2.0]))
    lr = gc.placeholder(gc.float32, ())
    train = gc.train.SGD(lr).minimize(gc.sum(w * w))
    with gc.Session(backend=backend) as sess:
        sess.run(train, {lr: 0.25})
        np.testing.assert_allclose(sess.variable_value(w), [0.5, 1.0])
        sess.run(train, {lr: 0.5})
        np.testing.assert_allclose(sess.variable_value(w), [0.0, 0.0])


def test_var_list_unconnected_and_initializer(backend):
    a = gc.Variable(np.float32(3.0), name="a")
    b = gc.Variable(np.float32(5.0), name="b")
    unused = gc.Variable(np.float32(7.0), name="unused")
    loss = a * a + b * b
    opt = gc.train.Adam(0.5)
    only_a = opt.minimize(loss, var_list=[a])
    both = gc.train.SGD(0.1).minimize(loss)  # `unused` has no gradient and is skipped
    with gc.Session(backend=backend) as sess:
        sess.run(only_a)
        assert sess.variable_value(b) == 5.0
        assert sess.variable_value(a) == pytest.approx(2.5)  # Adam's first step moves by lr
        sess.run(both)
        assert sess.variable_value(unused) == 7.0
        assert sess.variable_value(b) == pytest.approx(4.0)
        assert float(sess.variable_value(opt.get_slot(a, "m"))) != 0.0
        sess.run(gc.global_variables_initializer())
        assert sess.variable_value(a) == 3.0 and sess.variable_value(b) == 5.0
        assert float(sess.variable_value(opt.get_slot(a, "m"))) == 0.0
        assert sess.variable_value(opt.step_variable(a.graph)) == 0


def test_compute_and_apply_gradients_by_hand(backend):
    w = gc.Variable(np.array([2.0, -1.0], np.float32))
    opt = gc.train.SGD(0.5)
    (g, v), = opt.compute_gradients(gc.sum(w * w))
    assert v is w and g.shape == (2,)
    train = opt.apply_gradients([(g * 0.5, v)])
    with gc.Session(backend=backend) as sess:
        sess.run(train)
        np.testing.assert_allclose(sess.variable_value(w), [1.0, -0.5])


def test_errors():
    a = gc.Variable(np.float32(1.0))
    loss = a * 2.0
    with pytest.raises(gc.GraphcError, match="no gradients"):
        gc.train.SGD(0.1).minimize(loss, var_list=[gc.Variable(np.float32(0.0))])
    with pytest.raises(gc.GraphcError, match="twice"):
        gc.train.SGD(0.1).minimize(loss, var_list=[a, a])
    with pytest.raises(gc.GraphcError, match="not a Variable"):
        gc.train.SGD(0.1).minimize(loss, var_list=[loss])
    with pytest.raises(ValueError):
        gc.train.SGD(-1.0)
    with pytest.raises(ValueError):
        gc.train.Adam(beta1=1.0)
    with pytest.raises(ValueError):
        gc.train.SGD(0.1, nesterov=True)
    with pytest.raises(gc.GraphcError, match="no slot"):
        gc.train.SGD(0.1).get_slot(a, "momentum")
