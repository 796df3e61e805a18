"""Pooling: max_pool2d, avg_pool2d, global_avg_pool2d against numpy, finite differences and JAX.

The numpy oracle loops over output positions and takes each window of the unpadded input
(so it never sees padding). Every row of the table runs in both data formats on both
backends, float32 and float64, as one program per backend.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import graphc as gc
from graphc.ops.conv import parse_padding
from graphc.testing import check_grads

F32, F64 = np.float32, np.float64


def np_pool(x, window, strides, pads, kind):
    """NHWC pooling over the input elements of each window (padding excluded)."""
    n, h, w, c = x.shape
    outs = [(d + lo + hi - k) // s + 1 for d, k, s, (lo, hi) in zip((h, w), window, strides, pads)]
    y = np.empty((n, *outs, c), x.dtype)
    for i, j in itertools.product(*map(range, outs)):
        r0, c0 = i * strides[0] - pads[0][0], j * strides[1] - pads[1][0]
        win = x[:, max(r0, 0):r0 + window[0], max(c0, 0):c0 + window[1]]
        y[:, i, j] = win.max(axis=(1, 2)) if kind == "max" else win.mean(axis=(1, 2))
    return y


# (input spatial, ksize, strides, padding)
POOLS = [((6, 6), (2, 2), None, "VALID"), ((7, 5), (2, 2), None, "SAME"), ((7, 6), (3, 3), (2, 2), "SAME"),
         ((5, 7), (3, 2), (1, 2), "VALID"), ((6, 5), (2, 3), (2, 1), [(1, 0), (2, 1)]), ((3, 3), (3, 3), 1, "VALID"),
         ((1, 1), (1, 1), None, "SAME")]


@pytest.mark.parametrize("backend", ["reference", "llvm"])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_table_matches_numpy(backend, dtype):
    rng = np.random.default_rng(0)
    outs, wants, feeds = [], [], {}
    for spatial, ksize, strides, padding in POOLS:
        x = rng.standard_normal((2, *spatial, 3)).astype(dtype)
        steps = ksize if strides is None else (strides,) * 2 if isinstance(strides, int) else strides
        pads = parse_padding(padding, spatial, ksize, steps, (1, 1), "test")
        for kind, fn in (("max", gc.nn.max_pool2d), ("avg", gc.nn.avg_pool2d)):
            want = np_pool(x, ksize, steps, pads, kind)
            for fmt in ("NHWC", "NCHW"):
                xv = np.moveaxis(x, -1, 1).copy() if fmt == "NCHW" else x
                xp = gc.placeholder(dtype, xv.shape)
                outs.append(fn(xp, ksize, strides, padding, fmt))
                wants.append(np.moveaxis(want, -1, 1) if fmt == "NCHW" else want)
                feeds[xp] = xv
        xp = gc.placeholder(dtype, x.shape)
        outs += [gc.nn.global_avg_pool2d(xp), gc.nn.global_avg_pool2d(gc.transpose(xp, (0, 3, 1, 2)), "NCHW", True)]
        wants += [x.mean(axis=(1, 2)), np.moveaxis(x, -1, 1).mean(axis=(2, 3), keepdims=True)]
        feeds[xp] = x
    got = gc.Session(backend=backend).run(outs, feeds)
    tol = 1e-6 if dtype == F32 else 1e-13
    for g, w in zip(got, wants):
        assert g.dtype == dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


@pytest.mark.parametrize("build", [
    lambda x: gc.nn.max_pool2d(x, (3, 2), (2, 1), "SAME"),
    lambda x: gc.nn.avg_pool2d(x, (2, 3), 1, [(1, 0), (2, 1)], "NCHW"),
    lambda x: gc.nn.max_pool2d(x, 2, padding="SAME", data_format="NCHW") ** 2,
    lambda x: gc.nn.global_avg_pool2d(x) ** 2,
])
def test_gradients_match_finite_differences(build):
    x = np.random.default_rng(5).permutation(2 * 5 * 4 * 3).reshape(2, 5, 4, 3) / 10.0  # no ties
    check_grads(build, [x], order=2, backend="llvm")


def test_max_pool_gradient_goes_to_the_first_maximum():
    x = np.array([[1.0, 3.0, 3.0, 0.0], [3.0, 2.0, 3.0, 3.0]]).reshape(1, 2, 4, 1)
    xp = gc.placeholder(F64, x.shape)
    y = gc.nn.max_pool2d(xp, 2, 1)
    (dx,) = gc.gradients(gc.sum(y), [xp])
    for backend in ("reference", "llvm"):
        got = gc.Session(backend=backend).run(dx, {xp: x})
        np.testing.assert_array_equal(got[0, :, :, 0], [[0.0, 2.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])


def _msg(build):
    with pytest.raises(gc.GraphcError) as info:
        build()
    return str(info.value)


@pytest.mark.parametrize("build, parts", [
    (lambda x: gc.nn.max_pool2d(x[0], 2), ["max_pool2d", "rank 4", "(5, 5, 3)"]),
    (lambda x: gc.nn.avg_pool2d(x, 6), ["avg_pool2d", "larger than the padded input", "5 + padding 0+0"]),
    (lambda x: gc.nn.max_pool2d(x, 2, padding=[(2, 0), (0, 0)]), ["max_pool2d", "smaller than the window"]),
    (lambda x: gc.nn.max_pool2d(x, 2, padding="FULL"), ["max_pool2d", "padding must be"]),
    (lambda x: gc.nn.avg_pool2d(x, (2, 2, 2)), ["avg_pool2d", "ksize must be"]),
    (lambda x: gc.nn.max_pool2d(x, 2, data_format="HWC"), ["max_pool2d", "NHWC or NCHW"]),
    (lambda x: gc.nn.max_pool2d(gc.cast(x, gc.int32), 2), ["max_pool2d", "floating point"]),
    (lambda x: gc.nn.global_avg_pool2d(x[0]), ["global_avg_pool2d", "rank 4"]),
])
def test_bad_input_names_op_shapes_and_line(build, parts):
    x = gc.placeholder(F32, (2, 5, 5, 3))
    msg = _msg(lambda: build(x))
    for part in parts + ["test_pool.py"]:
        assert part in msg, (part, msg)


def test_against_jax_reduce_window_with_ties():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    from jax import lax
    rng = np.random.default_rng(6)
    outs, wants, feeds = [], [], {}
    for spatial, ksize, strides, padding in POOLS:
        x = rng.integers(-2, 3, (2, *spatial, 3)).astype(F64)  # many ties
        steps = ksize if strides is None else (strides,) * 2 if isinstance(strides, int) else strides
        pads = ((0, 0), *parse_padding(padding, spatial, ksize, steps, (1, 1), "test"), (0, 0))
        dims, st = (1, *ksize, 1), (1, *steps, 1)

        def f(a, dims=dims, st=st, pads=pads):
            return lax.reduce_window(a, -np.inf, lax.max, dims, st, pads)

        def avg(a, dims=dims, st=st, pads=pads):
            return lax.reduce_window(a, 0.0, lax.add, dims, st, pads) / lax.reduce_window(
                np.ones_like(a), 0.0, lax.add, dims, st, pads)

        y, pull = jax.vjp(f, x)
        g = rng.standard_normal(y.shape)
        xp = gc.placeholder(F64, x.shape)
        ym = gc.nn.max_pool2d(xp, ksize, strides, padding)
        (dx,) = gc.gradients(ym, [xp], grad_ys=gc.constant(g))
        outs += [ym, dx, gc.nn.avg_pool2d(xp, ksize, strides, padding)]
        wants += [y, pull(g)[0], avg(x)]
        feeds[xp] = x
    for backend in ("reference", "llvm"):
        for got, want in zip(gc.Session(backend=backend).run(outs, feeds), wants):
            np.testing.assert_allclose(got, np.asarray(want), rtol=1e-12, atol=1e-12)
