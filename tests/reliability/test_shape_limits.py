"""Issue 12 items 2, 20, 21: shapes are integers that fit the index type; byte order is converted."""

import numpy as np
import pytest

import graphc as gc


def test_reshape_element_count_overflow():
    x = gc.constant(np.ones(2, np.float32))
    with pytest.raises(gc.ShapeError, match="cannot reshape 2 elements"):
        gc.reshape(x, (3, 6148914691236517206))  # 3 * that wraps to 2 in int64


@pytest.mark.parametrize("build", [
    lambda: gc.zeros((2**40, 2**40)),
    lambda: gc.placeholder(gc.float32, (None, 2**62)),  # 2**62 elements fit, 2**64 bytes do not
    lambda: gc.broadcast_to(gc.constant(1.0), (2**32, 2**32)),
    lambda: gc.reshape(gc.placeholder(gc.float64, (None,)), (2**31, 2**31, -1)),
], ids=["zeros", "placeholder", "broadcast_to", "reshape"])
def test_shape_larger_than_index_type_refused(build):
    with pytest.raises(gc.ShapeError, match="more than the index type holds"):
        build()


@pytest.mark.parametrize("dims", [(2.5, 4), (2.0, 4), (np.float64(3), 1), ("3", 2), (True, 2)])
def test_float_dims_refused(dims):
    with pytest.raises(gc.ShapeError, match="not an integer|is a bool"):
        gc.placeholder(gc.float32, dims)
    with pytest.raises(gc.ShapeError):
        gc.zeros(dims)
    with pytest.raises(gc.ShapeError):
        gc.reshape(gc.constant(np.ones(10, np.float32)), dims)


def test_integer_like_dims_accepted():
    p = gc.placeholder(gc.float32, (np.int64(2), None, np.int32(3)))
    assert p.shape == (2, None, 3) and all(type(d) is int for d in p.shape if d is not None)


@pytest.mark.parametrize("backend", ["llvm", "reference"])
def test_big_endian_arrays_converted(backend):
    c = gc.constant(np.arange(3, dtype=">f4"))
    v = gc.Variable(np.arange(3, dtype=">f8"))
    p = gc.placeholder(">f4", (3,))
    assert (c.dtype, v.dtype, p.dtype) == (gc.float32, gc.float64, gc.float32)
    with gc.Session(backend=backend) as sess:
        a, b, d = sess.run([c + 1, v * 2, p * 3], {p: np.arange(3, dtype=">f4")})
    np.testing.assert_array_equal(a, [1, 2, 3])
    np.testing.assert_array_equal(b, [0, 2, 4])
    np.testing.assert_array_equal(d, [0, 3, 6])
    f = gc.function([p], p * 3)
    np.testing.assert_array_equal(f(np.arange(3, dtype=">f4")), [0, 3, 6])
