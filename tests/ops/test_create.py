"""zeros, ones, fill and the *_like forms against numpy, including run-time (None) shapes."""

import inspect

import numpy as np
import pytest

import graphc as gc
from graphc.ir.traverse import toposort
from graphc.ops import create

SHAPES = [(), (0,), (2, 3), (4, 0, 2), 5]
DTYPES = [np.float32, np.float64, np.int32, np.int64, np.bool_]


def run(t, feeds=None):
    return gc.Session(backend="reference").run(t, feeds)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_zeros_ones_fill_match_numpy(shape, dtype):
    for got, want in [(gc.zeros(shape, dtype), np.zeros(shape, dtype)), (gc.ones(shape, dtype), np.ones(shape, dtype)),
                      (gc.fill(shape, 3, dtype), np.full(shape, 3, dtype))]:
        out = run(got)
        assert got.shape == want.shape and got.dtype == want.dtype
        assert out.dtype == want.dtype
        np.testing.assert_array_equal(out, want)


def test_default_dtypes():
    assert gc.zeros((2,)).dtype == np.float32 and gc.ones(()).dtype == np.float32
    assert gc.fill((2,), 1.5).dtype == np.float32
    assert gc.fill((2,), 7).dtype == np.int32
    assert gc.fill((2,), True).dtype == np.bool_
    assert gc.fill((2,), np.float64(0.5)).dtype == np.float64
    np.testing.assert_array_equal(run(gc.fill((2, 2), -2.5)), np.full((2, 2), -2.5, np.float32))


@pytest.mark.parametrize("fn, value", [(gc.zeros_like, 0), (gc.ones_like, 1)])
@pytest.mark.parametrize("dtype", [None, np.float64, np.int32, np.bool_])
def test_like_with_unknown_dims(fn, value, dtype):
    x = gc.placeholder(gc.float32, (None, 3, None))
    y = fn(x, dtype)
    assert y.shape == (None, 3, None)
    assert y.dtype == (np.float32 if dtype is None else dtype)
    for shape in [(2, 3, 4), (0, 3, 1)]:
        out = run(y, {x: np.random.default_rng(0).standard_normal(shape).astype(np.float32)})
        np.testing.assert_array_equal(out, np.full(shape, value, y.dtype))
        assert out.dtype == y.dtype


@pytest.mark.parametrize("fn, value", [(gc.zeros_like, 0), (gc.ones_like, 1)])
def test_like_does_not_read_data(fn, value):
    x = gc.placeholder(gc.int32, (2, 0, 3))
    y = fn(x)
    assert y.shape == (2, 0, 3) and y.dtype == np.int32
    assert x not in toposort([y])  # a static shape needs no edge to x at all
    np.testing.assert_array_equal(run(y), np.full((2, 0, 3), value, np.int32))
    z = gc.placeholder(gc.float64, (None,))
    node = fn(z)
    assert node.op == "broadcast_like" and 1 in node.opdef.shape_only


def test_results_differentiate_to_nothing():
    x = gc.placeholder(gc.float64, (None, 2))
    (g,) = gc.gradients(gc.sum(gc.ones_like(x) * 3.0), [x])
    assert g is None


@pytest.mark.parametrize("build, error, message", [
    (lambda: gc.zeros((2, None)), gc.ShapeError, "unknown dim; use zeros_like"),
    (lambda: gc.ones((-1, 2)), gc.ShapeError, "negative dim"),
    (lambda: gc.fill((2,), [1, 2]), gc.ShapeError, "value must be a scalar"),
    (lambda: gc.fill((2,), gc.constant(1.0)), gc.GraphcError, "not a tensor"),
    (lambda: gc.zeros((2,), np.complex64), gc.DTypeError, "unsupported dtype"),
    (lambda: gc.fill((2,), 1.5, np.int32), gc.DTypeError, "cannot convert"),
    (lambda: gc.zeros_like(np.zeros(3)), gc.GraphcError, "expected a graphc tensor"),
])
def test_errors(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_public_names():
    assert set(create.__all__) == {"fill", "ones", "ones_like", "zeros", "zeros_like"}
    for name in create.__all__:
        assert inspect.unwrap(getattr(gc, name)) is getattr(create, name)  # gc adds name=
