"""gc.nn composites against float64 numpy/scipy references."""

import numpy as np
import pytest
from scipy import special

import graphc as gc
from graphc import nn

RNG = np.random.default_rng(1)


def _run(t, feeds=None):
    with gc.Session(backend="reference") as sess:
        return sess.run(t, feeds or {})


def _tol(dtype):
    return {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


def _logits(shape, scale=1.0):
    return RNG.standard_normal(shape) * scale


def _xent_ref(logits, labels, axis=-1):
    """Per-example cross-entropy in float64; labels are int classes or probabilities."""
    lsm = special.log_softmax(logits.astype(np.float64), axis=axis)
    if labels.dtype.kind in "iu":
        return -np.take_along_axis(lsm, np.expand_dims(labels, axis), axis).squeeze(axis)
    return -np.sum(np.where(labels == 0, 0, labels * lsm), axis=axis)


def _sigmoid_xent_ref(x, z):
    x, z = x.astype(np.float64), z.astype(np.float64)
    return np.logaddexp(0, x) - x * z  # -z*log(sigmoid(x)) - (1-z)*log(1-sigmoid(x))


SCALES = (1.0, 1e4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_and_log_softmax(dtype, scale, axis):
    a = _logits((4, 6), scale).astype(dtype)
    x = gc.placeholder(dtype, (None, 6))
    sm, lsm = _run([nn.softmax(x, axis), nn.log_softmax(x, axis)], {x: a})
    assert sm.dtype == lsm.dtype == dtype
    assert np.all(np.isfinite(sm)) and np.all(np.isfinite(lsm))
    a64 = a.astype(np.float64)
    np.testing.assert_allclose(sm, special.softmax(a64, axis=axis), **_tol(dtype))
    np.testing.assert_allclose(lsm, special.log_softmax(a64, axis=axis), rtol=_tol(dtype)["rtol"],
                               atol=_tol(dtype)["atol"] * scale)
    np.testing.assert_allclose(sm.sum(axis), 1, rtol=1e-5)


def test_softmax_over_several_axes_and_ints():
    a = RNG.integers(-3, 4, size=(2, 3, 4)).astype(np.int32)
    got = _run(nn.softmax(gc.constant(a), axis=(1, 2)))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, special.softmax(a.astype(np.float64), axis=(1, 2)))


def test_softmax_handles_minus_inf_entries():
    a = np.array([[0.0, -np.inf, 1.0], [-np.inf, 5.0, -np.inf]])
    sm, lsm = _run([nn.softmax(gc.constant(a)), nn.log_softmax(gc.constant(a))])
    np.testing.assert_allclose(sm, special.softmax(a, axis=-1))
    np.testing.assert_allclose(lsm, special.log_softmax(a, axis=-1))


def test_softmax_of_an_empty_axis_is_empty():
    x = gc.placeholder(gc.float32, (2, 0))
    assert _run(nn.softmax(x), {x: np.zeros((2, 0), np.float32)}).shape == (2, 0)


# --- softmax_cross_entropy ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("scale", SCALES)
def test_cross_entropy_integer_labels(dtype, label_dtype, scale):
    a = _logits((5, 4), scale).astype(dtype)
    lab = RNG.integers(0, 4, size=5).astype(label_dtype)
    x, y = gc.placeholder(dtype, (None, 4)), gc.placeholder(label_dtype, (None,))
    losses = [nn.softmax_cross_entropy(x, y, reduction=r) for r in ("mean", "sum", "none")]
    mean, total, per = _run(losses, {x: a, y: lab})
    want = _xent_ref(a, lab)
    assert per.dtype == mean.dtype == dtype and per.shape == (5,) and mean.shape == ()
    assert np.all(np.isfinite(per))
    tol = {"rtol": 1e-5, "atol": 1e-5 * scale} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12 * scale}
    np.testing.assert_allclose(per, want, **tol)
    np.testing.assert_allclose(mean, want.mean(), **tol)
    np.testing.assert_allclose(total, want.sum(), rtol=tol["rtol"], atol=5 * tol["atol"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", SCALES)
def test_cross_entropy_probability_labels(dtype, scale):
    a = _logits((6, 3), scale).astype(dtype)
    p = special.softmax(RNG.standard_normal((6, 3)), axis=1).astype(dtype)
    p[0] = [0, 1, 0]
    x, y = gc.placeholder(dtype, (None, 3)), gc.placeholder(dtype, (None, 3))
    per, mean = _run([nn.softmax_cross_entropy(x, y, reduction="none"), nn.softmax_cross_entropy(x, y)],
                     {x: a, y: p})
    want = _xent_ref(a, p)
    assert np.all(np.isfinite(per))
    tol = {"rtol": 1e-5, "atol": 1e-5 * scale} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12 * scale}
    np.testing.assert_allclose(per, want, **tol)
    np.testing.assert_allclose(mean, want.mean(), **tol)


def test_cross_entropy_label_forms_agree():
    a = _logits((4, 5))
    lab = np.array([4, 0, 2, 2])
    x = gc.constant(a)
    by_index = nn.softmax_cross_entropy(x, lab)
    by_prob = nn.softmax_cross_entropy(x, np.eye(5)[lab])
    got = _run([by_index, by_prob])
    np.testing.assert_allclose(got[0], got[1], rtol=1e-6)
    np.testing.assert_allclose(got[0], _xent_ref(a.astype(np.float32), lab).mean(), rtol=1e-6)


def test_cross_entropy_class_axis_and_extra_batch_dims():
    a = _logits((3, 4, 2))  # classes on axis 1
    lab = RNG.integers(0, 4, size=(3, 2))
    x = gc.placeholder(gc.float64, (None, 4, None))
    got = _run(nn.softmax_cross_entropy(x, gc.constant(lab), axis=1, reduction="none"), {x: a})
    np.testing.assert_allclose(got, _xent_ref(a, lab, axis=1))


def test_cross_entropy_with_unknown_class_dim():
    a = _logits((3, 4))
    lab = np.array([3, 1, 0])
    x = gc.placeholder(gc.float64, (None, None))
    got = _run(nn.softmax_cross_entropy(x, np.eye(4)[lab], reduction="none"), {x: a})
    np.testing.assert_allclose(got, _xent_ref(a, lab))
    with pytest.raises(gc.ShapeError, match="known number of classes"):
        nn.softmax_cross_entropy(x, lab)


def test_masked_logits_give_finite_losses():
    a = np.array([[0.0, -np.inf, 2.0], [-np.inf, 1.0, -1.0]])
    x = gc.constant(a)
    by_index = nn.softmax_cross_entropy(x, np.array([2, 1]), reduction="none")
    by_prob = nn.softmax_cross_entropy(x, np.array([[0.5, 0.0, 0.5], [0.0, 1.0, 0.0]]), reduction="none")
    got = _run([by_index, by_prob])
    assert np.all(np.isfinite(got[0])) and np.all(np.isfinite(got[1]))
    np.testing.assert_allclose(got[0], [np.log1p(np.exp(-2.0)), np.log1p(np.exp(-2.0))])


def test_cross_entropy_errors():
    x = gc.placeholder(gc.float32, (None, 3))
    with pytest.raises(gc.ShapeError, match="labels"):
        nn.softmax_cross_entropy(x, gc.placeholder(gc.int32, (None, 3)))
    with pytest.raises(gc.ShapeError, match="labels"):
        nn.softmax_cross_entropy(gc.placeholder(gc.float32, (2, 3)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="reduction"):
        nn.softmax_cross_entropy(x, gc.placeholder(gc.int32, (None,)), reduction="avg")


# --- sigmoid_cross_entropy and mse -------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", SCALES)
def test_sigmoid_cross_entropy(dtype, scale):
    a = _logits((7, 3), scale).astype(dtype)
    a[0, :] = [0.0, -1e4, 1e4]
    z = RNG.uniform(size=(7, 3)).astype(dtype)
    z[1] = [0, 1, 1]
    x, y = gc.placeholder(dtype, (None, 3)), gc.placeholder(dtype, (None, 3))
    per, mean = _run([nn.sigmoid_cross_entropy(x, y, reduction="none"), nn.sigmoid_cross_entropy(x, y)],
                     {x: a, y: z})
    want = _sigmoid_xent_ref(a, z)
    assert per.dtype == dtype and np.all(np.isfinite(per))
    tol = {"rtol": 1e-5, "atol": 1e-5 * scale} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12 * scale}
    np.testing.assert_allclose(per, want, **tol)
    np.testing.assert_allclose(mean, want.mean(), **tol)


def test_losses_take_array_targets_in_the_logits_dtype():
    x = gc.placeholder(gc.float32, (None, 2))
    assert nn.sigmoid_cross_entropy(x, np.ones((1, 2))).dtype == np.float32
    assert nn.mse(x, np.zeros((3, 2))).dtype == np.float32
    assert nn.softmax_cross_entropy(x, np.full((3, 2), 0.5)).dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mse(dtype):
    p, t = _logits((5, 2)).astype(dtype), _logits((5, 2)).astype(dtype)
    x = gc.placeholder(dtype, (None, 2))
    got = _run([nn.mse(x, t), nn.mse(x, t, reduction="sum"), nn.mse(x, t, reduction="none")], {x: p})
    d = p.astype(np.float64) - t
    for g, w in zip(got, [np.mean(d * d), np.sum(d * d), d * d]):
        np.testing.assert_allclose(g, w, **_tol(dtype))


def test_losses_average_over_a_none_batch_dim():
    x = gc.placeholder(gc.float64, (None,))
    loss = nn.mse(x, 1.0)
    for n in (1, 3, 8):
        a = RNG.standard_normal(n)
        np.testing.assert_allclose(_run(loss, {x: a}), np.mean((a - 1) ** 2))


# --- gradients of the composites (analytic values) ---------------------------------------------

@pytest.mark.parametrize("scale", SCALES)
def test_cross_entropy_gradient_is_softmax_minus_onehot(scale):
    a = _logits((4, 3), scale)
    lab = np.array([0, 2, 1, 1])
    x = gc.placeholder(gc.float64, (None, 3))
    (g,) = gc.gradients(nn.softmax_cross_entropy(x, lab), [x])
    got = _run(g, {x: a})
    np.testing.assert_allclose(got, (special.softmax(a, axis=1) - np.eye(3)[lab]) / 4, atol=1e-12)


def test_sigmoid_cross_entropy_gradient_including_zero_logits():
    a = np.array([0.0, 0.0, 2.0, -1e4, 1e4])
    z = np.array([0.0, 1.0, 0.3, 1.0, 0.0])
    x = gc.placeholder(gc.float64, (None,))
    (g,) = gc.gradients(nn.sigmoid_cross_entropy(x, z, reduction="sum"), [x])
    np.testing.assert_allclose(_run(g, {x: a}), special.expit(a) - z, atol=1e-12)


def test_logsumexp_and_max_gradients():
    a = np.array([[1.0, 3.0, 3.0], [-np.inf, 0.0, 0.0]])
    x = gc.placeholder(gc.float64, (None, 3))
    g_lse, g_max = gc.gradients([gc.logsumexp(x, 1)], [x])[0], gc.gradients(gc.max(x, 1), [x])[0]
    got = _run([g_lse, g_max], {x: a})
    np.testing.assert_allclose(got[0], special.softmax(a, axis=1))
    np.testing.assert_allclose(got[1], [[0, 0.5, 0.5], [0, 0.5, 0.5]])
