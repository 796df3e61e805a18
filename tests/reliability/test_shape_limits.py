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


@pytest.mark.parametrize("build", [
    lambda x: gc.random.normal((2.5, 3)), lambda x: gc.random.uniform((2.0,)),
    lambda x: gc.function([x], x * 2.0).program([(2.5, 3)]),
    lambda x: gc.function([x], x * 2.0).export("unused", "f", signatures=[[(2.0, 3)]]),
    lambda x: gc.one_hot(gc.constant(np.array([1], np.int32)), 2.5),
    lambda x: gc.nn.conv2d(gc.placeholder(gc.float32, (1, 6, 6, 3)), gc.placeholder(gc.float32, (3, 3, 3, 2)),
                           padding=[(1.5, 1), (1, 1)]),
    lambda x: gc.nn.max_pool2d(gc.placeholder(gc.float32, (1, 6, 6, 3)), 2, 2, padding=[(0.5, 0), (0, 0)]),
    lambda x: gc.split(x, 3.0, axis=1),
    lambda x: gc.transpose(x, (1.0, 0.0)), lambda x: gc.expand_dims(x, 0.5), lambda x: gc.sum(x, axis=1.0),
    lambda x: gc.sum(x, axis=(0.0, 1)), lambda x: gc.stack([x, x], axis=1.5), lambda x: gc.flip(x, 1.5),
    lambda x: gc.moveaxis(x, 0.0, 1), lambda x: gc.linalg.norm(x, axis=1.0), lambda x: gc.nn.softmax(x, 0.5),
], ids=["random.normal", "random.uniform", "function.program", "export signatures", "one_hot depth",
        "conv2d padding", "max_pool2d padding", "split", "transpose", "expand_dims", "sum", "sum tuple", "stack",
        "flip", "moveaxis", "linalg.norm", "softmax"])
def test_float_dims_and_axes_refused_everywhere(build):
    """Issue 12 #21, found by the #12 audit: random shapes, function/export signatures and
    conv/pool paddings truncated float dims (random.normal((2.5, 3)) drew (2, 3)); transpose,
    expand_dims took float axes; sum, stack, split, flip, linalg.norm raised a raw TypeError."""
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    with pytest.raises(gc.GraphcError, match="not an integer|must be an int|must be 'VALID'"):
        build(x)


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
