"""Numerical stability: huge logits and large-magnitude inputs give finite, correct values and gradients."""

import numpy as np
import pytest
from scipy import special

import graphc as gc

LOGITS = np.array([[1e4, -1e4, 0.0, 3.0], [-1e4, -1e4, -1e4 + 2.0, -1e4 + 1.0], [1e4, 1e4, -1e4, 5.0]])
W = np.array([[0.5, -1.0, 2.0, 0.25], [1.0, 1.0, -3.0, 0.5], [-2.0, 0.5, 1.0, 1.5]])


def _softmax64(z):
    return special.softmax(z, axis=-1)


def _tol(dtype):
    return {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


def _finite(*arrays):
    for a in arrays:
        assert np.all(np.isfinite(a)), a


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_and_log_softmax_at_1e4(dtype, run):
    z = gc.placeholder(dtype, LOGITS.shape)
    w = W.astype(dtype)
    p, lp = gc.nn.softmax(z), gc.nn.log_softmax(z)
    (gp,) = gc.gradients(gc.sum(p * w), z)
    (glp,) = gc.gradients(gc.sum(lp * w), z)
    pv, lpv, gpv, glpv = run([p, lp, gp, glp], {z: LOGITS.astype(dtype)})
    _finite(pv, lpv, gpv, glpv)
    p64 = _softmax64(LOGITS)
    np.testing.assert_allclose(pv, p64, **_tol(dtype))
    np.testing.assert_allclose(lpv, special.log_softmax(LOGITS, axis=-1), rtol=1e-6 if dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(gpv, p64 * (W - np.sum(p64 * W, axis=-1, keepdims=True)), **_tol(dtype))
    np.testing.assert_allclose(glpv, W - p64 * W.sum(axis=-1, keepdims=True), **_tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logsumexp_at_1e4(dtype, run):
    z = gc.placeholder(dtype, LOGITS.shape)
    lse = gc.logsumexp(z, axis=1)
    (g,) = gc.gradients(gc.sum(lse), z)
    lv, gv = run([lse, g], {z: LOGITS.astype(dtype)})
    _finite(lv, gv)
    np.testing.assert_allclose(lv, special.logsumexp(LOGITS, axis=1), rtol=1e-6 if dtype == np.float32 else 1e-14)
    np.testing.assert_allclose(gv, _softmax64(LOGITS), **_tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("soft", [False, True])
def test_cross_entropy_at_1e4(dtype, soft, run):
    z = gc.placeholder(dtype, LOGITS.shape)
    labels = np.array([1, 3, 2])
    targets = np.eye(4)[labels] * 0.9 + 0.025 if soft else np.eye(4)[labels]
    loss = gc.nn.softmax_cross_entropy(z, targets.astype(dtype) if soft else labels)
    (g,) = gc.gradients(loss, z)
    lv, gv = run([loss, g], {z: LOGITS.astype(dtype)})
    _finite(lv, gv)
    expected = -np.mean(np.sum(targets * special.log_softmax(LOGITS, axis=-1), axis=-1))
    np.testing.assert_allclose(lv, expected, rtol=1e-6 if dtype == np.float32 else 1e-14)
    np.testing.assert_allclose(gv, (_softmax64(LOGITS) - targets) / 3, **_tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_softplus_at_100(dtype, run):
    xv = np.array([-100.0, -30.0, 0.0, 30.0, 100.0])
    x = gc.placeholder(dtype, xv.shape)
    s, sp = gc.sigmoid(x), gc.softplus(x)
    (gs,) = gc.gradients(gc.sum(s), x)
    (gsp,) = gc.gradients(gc.sum(sp), x)
    sv, spv, gsv, gspv = run([s, sp, gs, gsp], {x: xv.astype(dtype)})
    _finite(sv, spv, gsv, gspv)
    tiny = 1e-44 if dtype == np.float32 else 1e-300  # below the smallest normal number
    ref_s = special.expit(xv)
    np.testing.assert_allclose(sv, ref_s, rtol=1e-6, atol=tiny)
    np.testing.assert_allclose(spv, np.logaddexp(xv, 0), rtol=1e-6, atol=tiny)
    np.testing.assert_allclose(gsv, ref_s * special.expit(-xv), rtol=1e-5, atol=tiny)
    np.testing.assert_allclose(gspv, ref_s, rtol=1e-6, atol=tiny)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_cross_entropy_at_100(dtype, run):
    xv = np.array([-100.0, 100.0, 100.0, -100.0])
    yv = np.array([1.0, 0.0, 1.0, 0.0])
    x = gc.placeholder(dtype, xv.shape)
    loss = gc.nn.sigmoid_cross_entropy(x, yv.astype(dtype), reduction="sum")
    (g,) = gc.gradients(loss, x)
    lv, gv = run([loss, g], {x: xv.astype(dtype)})
    _finite(lv, gv)
    np.testing.assert_allclose(lv, np.sum(np.logaddexp(0, xv) - yv * xv), rtol=1e-6)
    np.testing.assert_allclose(gv, special.expit(xv) - yv, rtol=1e-6, atol=1e-30)
