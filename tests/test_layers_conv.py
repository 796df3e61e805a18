"""Batch normalization (training vs inference semantics, moving averages) and the Conv2D layer."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.testing import check_grads

F32, F64 = np.float32, np.float64


def _np_bn(x, mean, var, eps=1e-3):
    return (x - mean) / np.sqrt(var + eps)


def test_training_normalizes_with_batch_statistics_and_updates_moving_averages():
    rng = np.random.default_rng(0)
    xv = rng.standard_normal((6, 3, 2, 4)) * 2 + 5
    x = gc.placeholder(F64, (None, 3, 2, 4))
    bn = gc.layers.BatchNorm(momentum=0.9)
    y = bn(x, training=True)
    assert len(gc.nn.update_ops()) == 2 and bn.updates == gc.nn.update_ops()
    sess = gc.Session()
    got = sess.run([y, *gc.nn.update_ops()], {x: xv})[0]
    mean, var = xv.mean(axis=(0, 1, 2)), xv.var(axis=(0, 1, 2))
    np.testing.assert_allclose(got, _np_bn(xv, mean, var), rtol=1e-12, atol=1e-12)
    mm, mv = sess.run([bn.variables["moving_mean"], bn.variables["moving_variance"]])
    np.testing.assert_allclose(mm, 0.1 * mean, rtol=1e-12)
    np.testing.assert_allclose(mv, 0.9 + 0.1 * var, rtol=1e-12)
    assert {v.name for v in gc.trainable_variables()} == {"batch_norm/gamma", "batch_norm/beta"}


@pytest.mark.parametrize("backend", ["reference", "llvm"])
def test_bool_placeholder_switches_between_batch_and_moving_statistics(backend):
    rng = np.random.default_rng(1)
    xv = (rng.standard_normal((5, 3)) * 3 - 1).astype(F32)
    x = gc.placeholder(F32, (5, 3))
    training = gc.placeholder(gc.bool_, ())
    bn = gc.layers.BatchNorm(momentum=0.5)
    y = bn(x, training)
    sess = gc.Session(backend=backend)
    inference = sess.run(y, {x: xv, training: False})  # moving stats 0 and 1: x / sqrt(1 + eps)
    np.testing.assert_allclose(inference, xv / np.sqrt(1 + 1e-3), rtol=1e-5)
    sess.run(gc.nn.update_ops(), {x: xv, training: False})  # an inference run leaves the averages alone
    np.testing.assert_array_equal(sess.run(bn.variables["moving_mean"]), np.zeros(3, F32))
    trained = sess.run([y, *gc.nn.update_ops()], {x: xv, training: True})[0]
    np.testing.assert_allclose(trained, _np_bn(xv, xv.mean(0), xv.var(0)), rtol=1e-4, atol=1e-5)
    mm, mv = 0.5 * xv.mean(0), 0.5 + 0.5 * xv.var(0)
    np.testing.assert_allclose(sess.run(bn.variables["moving_mean"]), mm, rtol=1e-5)
    np.testing.assert_allclose(sess.run(y, {x: xv, training: False}), _np_bn(xv, mm, mv), rtol=1e-4, atol=1e-5)


def test_python_false_uses_moving_statistics_and_builds_no_update():
    x = gc.placeholder(F64, (4, 2))
    y = gc.nn.batch_norm(x, training=False, epsilon=0.5)
    assert gc.nn.update_ops() == []
    xv = np.arange(8.0).reshape(4, 2)
    np.testing.assert_allclose(gc.Session().run(y, {x: xv}), xv / np.sqrt(1.5))


def test_variance_is_stable_for_a_large_mean():
    """Two-pass variance: float32 data 1e4 + N(0, 1e-2) keeps its spread (E[x²] - E[x]² would lose it)."""
    rng = np.random.default_rng(2)
    xv = (1e4 + 0.01 * rng.standard_normal((256, 2))).astype(F32)
    x = gc.placeholder(F32, xv.shape)
    y = gc.nn.batch_norm(x, training=True, epsilon=1e-12)
    got = gc.Session().run(y, {x: xv})
    np.testing.assert_allclose(got.std(axis=0), 1.0, rtol=1e-2)


def test_batch_norm_gradient_matches_finite_differences():
    rng = np.random.default_rng(3)
    check_grads(lambda x: gc.nn.batch_norm(x, True, axis=1) ** 2, [rng.standard_normal((4, 3, 2))], order=2,
                backend="llvm")


@pytest.mark.parametrize("training, what", [(1, "got 1"), ("yes", "got 'yes'")])
def test_bad_training_flags(training, what):
    x = gc.placeholder(F32, (4, 2))
    with pytest.raises(gc.GraphcError, match=f"batch_norm: training must be a Python bool.*{what}"):
        gc.nn.batch_norm(x, training)
    for flag in (gc.placeholder(gc.float32, ()), gc.placeholder(gc.bool_, (2,))):
        with pytest.raises(gc.DTypeError, match="test_layers_conv.py"):
            gc.nn.batch_norm(x, flag)


def test_batch_norm_refuses_other_channel_counts_on_reuse():
    bn = gc.layers.BatchNorm()
    bn(gc.placeholder(F32, (4, 3)), True)
    with pytest.raises(gc.ShapeError, match="built for 3 channels"):
        bn(gc.placeholder(F32, (4, 5)), True)


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
def test_conv2d_layer_shares_its_variables(fmt):
    rng = np.random.default_rng(4)
    shape = (2, 6, 5, 3) if fmt == "NHWC" else (2, 3, 6, 5)
    a, b = gc.placeholder(F32, shape), gc.placeholder(F32, shape)
    layer = gc.layers.Conv2D(4, (3, 2), strides=(1, 2), padding="SAME", data_format=fmt, activation=gc.relu)
    ya, yb = layer(a), layer(b)
    assert len(gc.global_variables()) == 2 and layer.kernel.shape == ((3, 2, 3, 4) if fmt == "NHWC" else (4, 3, 3, 2))
    av = rng.standard_normal(shape).astype(F32)
    sess = gc.Session()
    sess.run(gc.assign(layer.bias, np.arange(4.0, dtype=F32) - 1.5))
    got_a, got_b = sess.run([ya, yb], {a: av, b: av})
    np.testing.assert_array_equal(got_a, got_b)
    kernel, bias = sess.run([layer.kernel, layer.bias])
    ref = gc.nn.conv2d(av, kernel, (1, 2), "SAME", data_format=fmt)
    bias_b = bias.reshape(-1, 1, 1) if fmt == "NCHW" else bias
    np.testing.assert_allclose(got_a, np.maximum(gc.Session().run(ref) + bias_b, 0), rtol=1e-5, atol=1e-6)


def test_conv2d_layer_errors_name_the_line():
    with pytest.raises(gc.ShapeError, match="Conv2D: filters must be a positive int"):
        gc.layers.Conv2D(0, 3)
    with pytest.raises(gc.ShapeError, match="(?s)divisible by groups=2.*test_layers_conv.py"):
        gc.layers.Conv2D(4, 3, groups=2)(gc.placeholder(F32, (1, 5, 5, 3)))
