"""Issue 12 items 14-18: gradients and ops over dims unknown until run time."""

import sys

import numpy as np
import pytest

import graphc as gc
from graphc.ops.shape import reshape_like

BACKENDS = ["llvm", "reference"]


def _run(backend, fetches, feeds):
    with gc.Session(backend=backend) as sess:
        return sess.run(fetches, feeds)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_with_two_none_dims_reshaped_back(backend):
    x = gc.placeholder(gc.float64, (None, None, 3))
    y = (gc.reshape(x, (-1,)) ** 2).sum()
    (gx,) = gc.gradients(y, [x])
    assert gx.shape == (None, None, 3)
    v = np.arange(24.0).reshape(2, 4, 3)
    np.testing.assert_allclose(_run(backend, gx, {x: v}), 2 * v)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_through_squeeze_and_expand_dims_with_none_dims(backend):
    x = gc.placeholder(gc.float64, (None, 1, None))
    y = (gc.expand_dims(gc.squeeze(x, 1), 0) * 3).sum()
    (gx,) = gc.gradients(y, [x])
    np.testing.assert_allclose(_run(backend, gx, {x: np.ones((2, 1, 5))}), np.full((2, 1, 5), 3.0))


def test_reshape_like_with_none_dims_checks_counts_once_bound():
    x = gc.placeholder(gc.float32, (None,))
    like = gc.placeholder(gc.float32, (None, None, 3))
    r = reshape_like(x, like)
    assert r.shape == (None, None, 3)
    with gc.Session() as sess, pytest.raises(gc.ShapeError, match="cannot reshape 7 elements"):
        sess.run(r, {x: np.ones(7, np.float32), like: np.ones((1, 2, 3), np.float32)})


@pytest.mark.parametrize("backend", BACKENDS)
def test_matmul_batched_none_dims_with_vector(backend):
    a = gc.placeholder(gc.float64, (None, None, 3))
    v = gc.constant(np.array([1.0, 2.0, 3.0]))
    y = a @ v
    assert y.shape == (None, None)
    w = gc.placeholder(gc.float64, (None, 3, None))
    z = v @ w
    assert z.shape == (None, None)
    (ga,) = gc.gradients(y.sum(), [a])
    av, wv = np.arange(24.0).reshape(2, 4, 3), np.arange(30.0).reshape(2, 3, 5)
    got_y, got_z, got_g = _run(backend, [y, z, ga], {a: av, w: wv})
    np.testing.assert_allclose(got_y, av @ v.attrs["value"].array)
    np.testing.assert_allclose(got_z, v.attrs["value"].array @ wv)
    np.testing.assert_allclose(got_g, np.broadcast_to([1.0, 2.0, 3.0], av.shape))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("build", [
    lambda p: gc.reshape(p, (-1,)), lambda p: p.mean(axis=1), lambda p: gc.nn.softmax(p, axis=0),
    lambda p: p.T @ gc.constant(np.ones((3, 2))), lambda p: gc.concatenate([p, p], axis=1),
], ids=["reshape", "mean", "softmax", "matmul", "concatenate"])
def test_gradient_through_none_by_zero_tensor(backend, build):
    x = gc.placeholder(gc.float64, (None, 0))
    (gx,) = gc.gradients(build(x).sum(), [x])
    assert _run(backend, gx, {x: np.ones((3, 0))}).shape == (3, 0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, build", [
    ("max", lambda p: p.max()), ("logsumexp", lambda p: gc.logsumexp(p)),
    ("softmax", lambda p: gc.nn.softmax(p)), ("log_softmax", lambda p: gc.nn.log_softmax(p)),
])
def test_reduction_over_empty_run_time_axis_names_the_users_op(backend, name, build):
    x = gc.placeholder(gc.float32, (None,))
    y = build(x)
    with pytest.raises(gc.ShapeError, match=rf"^{name}\b.*empty axis(.|\n)*test_unknown_dim_grads.py"):
        _run(backend, y, {x: np.ones(0, np.float32)})


def _line():
    return sys._getframe(1).f_lineno


@pytest.mark.parametrize("backend", BACKENDS)
def test_item17_shared_node_error_names_the_function_the_fetch_used(backend):
    # softmax and logsumexp of one x share their max (interning): the error names the one fetched
    x = gc.placeholder(gc.float32, (None,))
    sm, sm_line = gc.nn.softmax(x), _line()
    lse, lse_line = gc.logsumexp(x), _line()
    m, m_line = x.max(), _line()
    (g,) = gc.gradients(gc.logsumexp(x), [x])  # the same logsumexp again: the first line is named
    lse3 = lse * 3
    empty = {x: np.ones(0, np.float32)}
    for fetch, name, line in [(lse, "logsumexp: its max", lse_line), (sm, "softmax: its max", sm_line),
                              (m, "max", m_line), (lse3, "logsumexp: its max", lse_line),
                              (g, "logsumexp: its max", lse_line), (m * 2, "max", m_line)]:
        with pytest.raises(gc.ShapeError, match=rf"^{name} with.*empty axis(.|\n)*at .*:{line}$"):
            _run(backend, fetch, empty)
    fn = gc.function([x], lse)
    with pytest.raises(gc.ShapeError, match=rf"^logsumexp: its max .*empty axis(.|\n)*at .*:{lse_line}$"):
        fn(np.ones(0, np.float32))


@pytest.mark.parametrize("backend", BACKENDS)
def test_concrete_grad_ys_seed_for_none_dims(backend):
    x = gc.placeholder(gc.float64, (None, 3))
    y = x * 2
    seed = np.arange(6.0).reshape(2, 3)
    (gx,) = gc.gradients(y, [x], grad_ys=[seed])
    np.testing.assert_allclose(_run(backend, gx, {x: np.ones((2, 3))}), 2 * seed)
    (gb,) = gc.gradients(y, [x], grad_ys=[np.array([1.0, 2.0, 3.0])])  # broadcasts over the None dim
    np.testing.assert_allclose(_run(backend, gb, {x: np.ones((4, 3))}), np.tile([2.0, 4.0, 6.0], (4, 1)))
    with pytest.raises(gc.ShapeError, match=r"^gradients \(a grad_ys seed\): its broadcast_like .* do not broadcast"):
        _run(backend, gx, {x: np.ones((5, 3))})  # the (2, 3) seed does not fit a (5, 3) y


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("other_shape", [(5, 3), (None, 3)])
def test_gradient_of_broadcast_none_dim_is_refused(backend, other_shape):
    x = gc.placeholder(gc.float32, (None, 3))
    z = gc.placeholder(gc.float32, other_shape)
    (gx,) = gc.gradients((x * z).sum(), [x])
    feeds = {x: np.ones((1, 3), np.float32), z: np.ones((5, 3), np.float32)}
    with pytest.raises(gc.ShapeError, match=r"^gradients: an unknown dim of .* was fed as 1 and broadcast"):
        _run(backend, gx, feeds)
    feeds[x] = np.full((5, 3), 2.0, np.float32)  # fed the broadcast shape: fine
    np.testing.assert_array_equal(_run(backend, gx, feeds), np.ones((5, 3)))
