"""Convolutions: conv1d, conv2d, conv2d_transpose against numpy, finite differences and JAX.

The numpy oracle below sums one matmul per window offset over slices of the padded input
(no im2col), so it shares no code with graphc's patches. Every combination of padding,
stride, dilation, groups and data format is a row of one table, run on both backends in
float32 and float64 (each backend compiles the whole table as one program).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import graphc as gc
from graphc.ops.conv import parse_padding
from graphc.testing import check_grads

F32, F64 = np.float32, np.float64


def np_conv(x, w, strides, pads, dilation, groups=1):
    """Channels-last cross-correlation: x (N, *S, C), w (*K, C/groups, O)."""
    nsp = x.ndim - 2
    window, cg, o = w.shape[:-2], w.shape[-2], w.shape[-1]
    xp = np.pad(x, ((0, 0), *pads, (0, 0)))
    outs = [(xp.shape[1 + i] - (window[i] - 1) * dilation[i] - 1) // strides[i] + 1 for i in range(nsp)]
    y = np.zeros((x.shape[0], *outs, o), np.float64)
    og = o // groups
    for g in range(groups):
        for ks in itertools.product(*(range(k) for k in window)):
            sl = tuple(slice(k * d, k * d + (n - 1) * s + 1, s) for k, d, n, s in zip(ks, dilation, outs, strides))
            y[..., g * og:(g + 1) * og] += xp[(slice(None), *sl, slice(g * cg, (g + 1) * cg))] @ \
                w[(*ks, slice(None), slice(g * og, (g + 1) * og))]
    return y.astype(x.dtype)


def np_conv_transpose(x, w, strides, pads, dilation, out_spatial):
    """The adjoint of np_conv in its input: scatter-add x (N, *I, Co) @ w (*K, Ci, Co)ᵀ."""
    window = w.shape[:-2]
    padded = [n + lo + hi for n, (lo, hi) in zip(out_spatial, pads)]
    acc = np.zeros((x.shape[0], *padded, w.shape[-2]))
    for ks in itertools.product(*(range(k) for k in window)):
        sl = tuple(slice(k * d, k * d + (n - 1) * s + 1, s) for k, d, n, s in zip(ks, dilation, x.shape[1:-1], strides))
        acc[(slice(None), *sl)] += x @ w[ks].T
    crop = tuple(slice(lo, lo + n) for n, (lo, _) in zip(out_spatial, pads))
    return acc[(slice(None), *crop)].astype(x.dtype)


# (input spatial, window, strides, dilation, padding, groups, channels in, channels out)
CONV2D = [
    ((5, 7), (3, 3), (1, 1), (1, 1), "VALID", 1, 3, 4),
    ((5, 7), (3, 2), (1, 1), (1, 1), "SAME", 1, 3, 5),
    ((6, 7), (3, 3), (2, 2), (1, 1), "SAME", 1, 2, 3),
    ((7, 5), (2, 3), (2, 3), (1, 1), "VALID", 1, 3, 2),
    ((9, 8), (3, 2), (1, 2), (2, 2), "SAME", 1, 2, 3),
    ((9, 9), (2, 2), (3, 1), (3, 2), "VALID", 1, 1, 2),
    ((5, 6), (3, 3), (1, 1), (1, 1), [(2, 0), (1, 3)], 1, 3, 2),
    ((6, 5), (2, 3), (2, 1), (2, 1), [(0, 1), (2, 2)], 1, 2, 2),
    ((5, 5), (3, 3), (1, 1), (1, 1), "SAME", 2, 4, 6),
    ((7, 6), (3, 2), (2, 1), (1, 2), "VALID", 3, 3, 6),  # depthwise, multiplier 2
    ((7, 6), (3, 3), (2, 1), (1, 2), "SAME", 4, 4, 4),  # depthwise, one filter per channel (direct form)
    ((6, 7), (2, 3), (1, 2), (2, 1), [(1, 0), (0, 2)], 3, 3, 3),
    ((6, 6), (1, 1), (2, 2), (1, 1), "SAME", 1, 5, 3),
    ((4, 4), (4, 4), (1, 1), (1, 1), "VALID", 1, 2, 3),  # the window covers the input
]
CONV1D = [((9,), (3,), (2,), (1,), "SAME", 1, 3, 4), ((8,), (2,), (1,), (3,), [(1, 2)], 1, 2, 2),
          ((7,), (3,), (3,), (1,), "VALID", 2, 4, 2)]
TRANSPOSE = [((3, 4), (3, 3), (2, 2), (1, 1), "SAME", None), ((3, 2), (2, 3), (2, 3), (1, 1), "VALID", None),
             ((2, 3), (3, 2), (1, 2), (2, 1), [(1, 0), (0, 2)], None), ((3, 3), (3, 3), (2, 2), (1, 1), "SAME", (6, 5))]


def _build_table(rng, dtype):
    """Every conv row in both data formats: (graphc tensors, expected arrays, feeds, labels)."""
    outs, wants, feeds, labels = [], [], {}, []
    for row in CONV2D + CONV1D:
        spatial, window, strides, dilation, padding, groups, ci, co = row
        nsp = len(spatial)
        x = rng.standard_normal((2, *spatial, ci)).astype(dtype)
        w = rng.standard_normal((*window, ci // groups, co)).astype(dtype)
        pads = parse_padding(padding, spatial, window, strides, dilation, "test")
        want = np_conv(x, w, strides, pads, dilation, groups)
        fn = gc.nn.conv2d if nsp == 2 else gc.nn.conv1d
        for first in (False, True):
            fmt = ("NCHW" if nsp == 2 else "NCW") if first else ("NHWC" if nsp == 2 else "NWC")
            xv = np.moveaxis(x, -1, 1).copy() if first else x
            wv = np.transpose(w, (nsp + 1, nsp, *range(nsp))).copy() if first else w
            xp, wp = gc.placeholder(dtype, xv.shape), gc.placeholder(dtype, wv.shape)
            outs.append(fn(xp, wp, strides=strides, padding=padding, dilations=dilation, groups=groups,
                           data_format=fmt))
            wants.append(np.moveaxis(want, -1, 1) if first else want)
            feeds.update({xp: xv, wp: wv})
            labels.append(f"{fmt} {row}")
    for spatial, window, strides, dilation, padding, out_shape in TRANSPOSE:
        x = rng.standard_normal((2, *spatial, 3)).astype(dtype)
        w = rng.standard_normal((*window, 2, 3)).astype(dtype)
        xp, wp = gc.placeholder(dtype, x.shape), gc.placeholder(dtype, w.shape)
        y = gc.nn.conv2d_transpose(xp, wp, out_shape, strides=strides, padding=padding, dilations=dilation)
        target = y.shape[1:3]
        pads = parse_padding(padding, target, window, strides, dilation, "test")
        outs.append(y)
        wants.append(np_conv_transpose(x, w, strides, pads, dilation, target))
        feeds.update({xp: x, wp: w})
        labels.append(f"transpose {spatial} {window} {strides} {dilation} {padding}")
    return outs, wants, feeds, labels


@pytest.mark.parametrize("backend", ["reference", "llvm"])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_table_matches_numpy(backend, dtype):
    outs, wants, feeds, labels = _build_table(np.random.default_rng(0), dtype)
    got = gc.Session(backend=backend).run(outs, feeds)
    tol = 2e-5 if dtype == F32 else 1e-12
    for g, w, label in zip(got, wants, labels):
        assert g.dtype == dtype and g.shape == w.shape, label
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol, err_msg=label)


def _transposes(seed):
    """Per TRANSPOSE row: (strides, padding, dilation, input x, filter w, placeholder for x, its transpose)."""
    rng = np.random.default_rng(seed)
    for spatial, window, strides, dilation, padding, out_shape in TRANSPOSE:
        x = rng.standard_normal((2, *spatial, 3))
        w = rng.standard_normal((*window, 2, 3))
        xp = gc.placeholder(F64, x.shape)
        y = gc.nn.conv2d_transpose(xp, w, out_shape, strides=strides, padding=padding, dilations=dilation)
        yield strides, padding, dilation, x, w, xp, y


def test_transpose_is_the_input_gradient_of_conv2d():
    for strides, padding, dilation, x, w, xp, y in _transposes(1):
        z = gc.placeholder(F64, y.shape)
        (gz,) = gc.gradients(gc.nn.conv2d(z, w, strides, padding, dilation), [z], grad_ys=xp)
        a, b = gc.Session(backend="llvm").run([y, gz], {xp: x, z: np.zeros(y.shape)})
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_unknown_batch_dim():
    x = gc.placeholder(F32, (None, 6, 5, 2))
    w = np.random.default_rng(2).standard_normal((3, 3, 2, 4)).astype(F32)
    y = gc.nn.conv2d(x, w, strides=2, padding="SAME")
    assert y.shape == (None, 3, 3, 4)
    sess = gc.Session()
    for n in (1, 3):
        xv = np.random.default_rng(n).standard_normal((n, 6, 5, 2)).astype(F32)
        want = np_conv(xv, w, (2, 2), parse_padding("SAME", (6, 5), (3, 3), (2, 2), (1, 1), "t"), (1, 1))
        np.testing.assert_allclose(sess.run(y, {x: xv}), want, rtol=2e-5, atol=2e-5)


GRAD_CASES = [
    (lambda x, w: gc.nn.conv2d(x, w, strides=(2, 1), padding="SAME", dilations=(1, 2)), (2, 5, 6, 3), (3, 2, 3, 2)),
    (lambda x, w: gc.nn.conv2d(x, w, 2, [(1, 0), (2, 1)], groups=2, data_format="NCHW"), (1, 4, 5, 5), (4, 2, 2, 3)),
    (lambda x, w: gc.nn.conv1d(x, w, strides=2, padding="SAME", data_format="NCW"), (2, 3, 7), (2, 3, 3)),
    (lambda x, w: gc.nn.conv2d(x, w, (1, 2), "SAME", (2, 1), groups=3), (2, 5, 6, 3), (3, 2, 1, 3)),
    (lambda x, w: gc.nn.conv2d_transpose(x, w, strides=(2, 3), padding="VALID", dilations=(2, 1)), (1, 3, 2, 3),
     (2, 3, 2, 3)),
]


@pytest.mark.parametrize("case", range(len(GRAD_CASES)))
def test_gradients_match_finite_differences(case):
    build, xs, ws = GRAD_CASES[case]
    rng = np.random.default_rng(case)
    check_grads(build, [rng.standard_normal(xs), rng.standard_normal(ws)], order=2, backend="llvm")


def _msg(build):
    with pytest.raises(gc.GraphcError) as info:
        build()
    return str(info.value)


@pytest.mark.parametrize("build, parts", [
    (lambda x, w: gc.nn.conv2d(x[0], w), ["conv2d", "rank 4", "(5, 5, 3)"]),
    (lambda x, w: gc.nn.conv2d(x, w[0]), ["conv2d", "filter must have rank 4", "(3, 3, 4)"]),
    (lambda x, w: gc.nn.conv2d(x, gc.concatenate([w, w], 2)), ["conv2d", "3 channels", "takes 6"]),
    (lambda x, w: gc.nn.conv2d(x, w, groups=2), ["conv2d", "groups=2"]),
    (lambda x, w: gc.nn.conv2d(x, gc.tile(w, (3, 3, 1, 1))), ["larger than the padded input", "(2, 5, 5, 3)"]),
    (lambda x, w: gc.nn.conv2d(x, w, dilations=3), ["spans 7", "5 + padding 0+0"]),
    (lambda x, w: gc.nn.conv2d(x, w, padding="FULL"), ["conv2d", "padding must be"]),
    (lambda x, w: gc.nn.conv2d(x, w, padding=[(1, 1)]), ["conv2d", "2 non-negative"]),
    (lambda x, w: gc.nn.conv2d(x, w, strides=0), ["conv2d", "strides must be"]),
    (lambda x, w: gc.nn.conv2d(x, w, data_format="NWHC"), ["conv2d", "NHWC or NCHW"]),
    (lambda x, w: gc.nn.conv2d(gc.cast(x, gc.int32), gc.cast(w, gc.int32)), ["conv2d", "floating point"]),
    (lambda x, w: gc.nn.conv1d(x, w), ["conv1d", "rank 3"]),
    (lambda x, w: gc.nn.conv2d_transpose(x, w), ["conv2d_transpose", "3 channels", "takes 4"]),
    (lambda x, w: gc.nn.conv2d_transpose(x, w[:, :, :, :3], (9, 9)), ["conv2d_transpose", "output_shape"]),
])
def test_bad_input_names_op_shapes_and_line(build, parts):
    x = gc.placeholder(F32, (2, 5, 5, 3))
    w = gc.placeholder(F32, (3, 3, 3, 4))
    msg = _msg(lambda: build(x, w))
    for part in parts + ["test_conv.py"]:
        assert part in msg, (part, msg)


def _jax():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    return jax


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
def test_against_jax_conv_general_dilated(fmt):
    jax = _jax()
    from jax import lax
    rng = np.random.default_rng(3)
    dn = ("NHWC", "HWIO", "NHWC") if fmt == "NHWC" else ("NCHW", "OIHW", "NCHW")
    for spatial, window, strides, dilation, padding, groups, ci, co in CONV2D:
        x = rng.standard_normal((2, *spatial, ci))
        w = rng.standard_normal((*window, ci // groups, co))
        if fmt == "NCHW":
            x, w = np.moveaxis(x, -1, 1).copy(), np.transpose(w, (3, 2, 0, 1)).copy()
        g = rng.standard_normal(np.shape(lax.conv_general_dilated(x, w, strides, padding, rhs_dilation=dilation,
                                                                  dimension_numbers=dn, feature_group_count=groups)))

        def f(a, b):
            return lax.conv_general_dilated(a, b, strides, padding, rhs_dilation=dilation, dimension_numbers=dn,
                                            feature_group_count=groups)

        want, pull = jax.vjp(f, x, w)
        want_dx, want_dw = pull(g)
        xp, wp = gc.placeholder(F64, x.shape), gc.placeholder(F64, w.shape)
        y = gc.nn.conv2d(xp, wp, strides, padding, dilation, groups, fmt)
        dx, dw = gc.gradients(y, [xp, wp], grad_ys=gc.constant(g))
        got = gc.Session(backend="llvm").run([y, dx, dw], {xp: x, wp: w})
        for a, b in zip(got, (want, want_dx, want_dw)):
            np.testing.assert_allclose(a, np.asarray(b), rtol=1e-10, atol=1e-10, err_msg=str((fmt, strides, padding)))


def test_transpose_against_jax():
    jax = _jax()
    from jax import lax
    for strides, padding, dilation, x, w, xp, y in _transposes(4):
        z0 = np.zeros(y.shape)
        _, pull = jax.vjp(lambda z: lax.conv_general_dilated(z, w, strides, padding, rhs_dilation=dilation,
                                                             dimension_numbers=("NHWC", "HWIO", "NHWC")), z0)
        np.testing.assert_allclose(gc.Session().run(y, {xp: x}), np.asarray(pull(x)[0]), rtol=1e-10, atol=1e-10)


KNOWN_WHEN_BUILT = "must be known when the graph is built"  # docs/ops.md; the graph fuzzer accepts this refusal


@pytest.mark.parametrize("build, name", [
    (lambda f32: gc.nn.conv2d(gc.placeholder(f32, (2, None, 5, 3)), np.ones((2, 2, 3, 4), f32)), "conv2d"),
    (lambda f32: gc.nn.conv2d(gc.placeholder(f32, (2, 5, 5, 3)), gc.placeholder(f32, (2, None, 3, 4))), "conv2d"),
    (lambda f32: gc.nn.conv2d(gc.placeholder(f32, (2, 5, 5, None)), np.ones((2, 2, 3, 4), f32)), "conv2d"),
    (lambda f32: gc.nn.conv1d(gc.placeholder(f32, (2, None, 3)), np.ones((2, 3, 4), f32)), "conv1d"),
    (lambda f32: gc.nn.conv2d_transpose(gc.placeholder(f32, (2, 5, None, 4)), np.ones((2, 2, 3, 4), f32)),
     "conv2d_transpose"),
    (lambda f32: gc.nn.conv2d_transpose(gc.placeholder(f32, (2, 5, 5, 4)), gc.placeholder(f32, (None, 2, 3, 4))),
     "conv2d_transpose"),
    (lambda f32: gc.nn.max_pool2d(gc.placeholder(f32, (2, None, 5, 3)), 2), "max_pool2d"),
    (lambda f32: gc.get_default_graph().make("conv_patches", (gc.placeholder(f32, (2, None, 5, 3)),), {
        "window": (2, 2), "strides": (1, 1), "dilation": (1, 1), "padding": ((0, 0), (0, 0)), "pad_value": 0.0}),
     "conv_patches"),
])
def test_conv_none_spatial_or_filter_dims_is_a_documented_refusal(build, name):
    """Fuzz finding (issue 12): None spatial/filter dims were refused with undocumented messages."""
    with gc.Graph().as_default():
        with pytest.raises(gc.ShapeError, match=KNOWN_WHEN_BUILT) as err:
            build(np.float32)
    assert name in str(err.value) and "?" in str(err.value)
