"""clip_by_norm and clip_by_global_norm, with TensorFlow's semantics."""

import numpy as np
import pytest

import graphc as gc


def _tf_clip_by_norm(t, clip, axes=None):
    norm = np.sqrt(np.sum(t * t, axis=axes, keepdims=True))
    return t * clip / np.maximum(norm, clip)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_by_norm(dtype, run):
    t = gc.placeholder(dtype, (2, 3))
    big = np.array([[3.0, 0.0, 4.0], [0.0, 0.0, 0.0]], dtype)  # norm 5
    out = gc.clip_by_norm(t, 2.0)
    assert out.dtype == dtype
    np.testing.assert_allclose(run(out, {t: big}), big * 2 / 5, rtol=1e-6)
    np.testing.assert_array_equal(run(gc.clip_by_norm(t, 10.0), {t: big}), big)  # within the bound: unchanged
    rows = gc.clip_by_norm(t, 2.0, axes=1)
    np.testing.assert_allclose(run(rows, {t: big}), _tf_clip_by_norm(big, 2.0, axes=1), rtol=1e-6)


def test_clip_by_norm_of_zeros_has_finite_gradient(run):
    t = gc.placeholder(gc.float64, (3,))
    out = gc.clip_by_norm(t, 1.0)
    (g,) = gc.gradients(gc.sum(out * np.array([1.0, 2.0, 3.0])), t)
    ov, gv = run([out, g], {t: np.zeros(3)})
    np.testing.assert_array_equal(ov, np.zeros(3))
    np.testing.assert_array_equal(gv, [1.0, 2.0, 3.0])


def test_clip_by_global_norm(run):
    a = gc.placeholder(gc.float32, (2,))
    b = gc.placeholder(gc.float64, (2, 2))
    clipped, norm = gc.clip_by_global_norm([a, None, b], 1.0)
    assert clipped[1] is None
    assert clipped[0].dtype == np.float32 and clipped[2].dtype == np.float64 and norm.dtype == np.float64
    av, bv = np.array([3.0, 0.0], np.float32), np.array([[0.0, 4.0], [0.0, 0.0]])
    ca, cb, nv = run([clipped[0], clipped[2], norm], {a: av, b: bv})
    assert nv == 5.0
    np.testing.assert_allclose(ca, av / 5, rtol=1e-7)
    np.testing.assert_allclose(cb, bv / 5, rtol=1e-15)
    (small, _), _ = gc.clip_by_global_norm([a, b], 10.0)
    np.testing.assert_array_equal(run(small, {a: av, b: bv}), av)  # within the bound: unchanged


def test_clip_by_global_norm_of_zeros_and_of_infinity(run):
    a = gc.placeholder(gc.float64, (2,))
    (ca,), norm = gc.clip_by_global_norm([a], 1.0)
    cv, nv = run([ca, norm], {a: np.zeros(2)})
    np.testing.assert_array_equal(cv, np.zeros(2))
    assert nv == 0.0
    cv, nv = run([ca, norm], {a: np.array([np.inf, 1.0])})
    assert np.isinf(nv) and np.all(np.isnan(cv))  # TensorFlow: a non-finite norm poisons every entry


def test_clipping_gradients_of_a_loss(run):
    w = gc.placeholder(gc.float64, (3,))
    loss = gc.sum(w * w) * 10.0
    grads = gc.gradients(loss, [w])
    clipped, norm = gc.clip_by_global_norm(grads, 1.0)
    wv = np.array([1.0, 2.0, 2.0])
    cv, nv = run([clipped[0], norm], {w: wv})
    assert nv == pytest.approx(60.0)
    np.testing.assert_allclose(np.linalg.norm(cv), 1.0, rtol=1e-12)


def test_clip_errors():
    with pytest.raises(gc.DTypeError):
        gc.clip_by_norm(gc.placeholder(gc.int32, (2,)), 1.0)
    with pytest.raises(gc.GraphcError, match="list"):
        gc.clip_by_global_norm(gc.placeholder(gc.float32, (2,)), 1.0)
    with pytest.raises(gc.GraphcError, match="no tensors"):
        gc.clip_by_global_norm([None], 1.0)
