"""Forms numpy accepts that graphc once refused (issue 15, defect 5): lists of tensors as
operands, and an int mixed with an array index."""

import numpy as np
import pytest

import graphc as gc
from graphc.testing import check_grads

X = np.arange(5 * 6 * 7, dtype=np.float64).reshape(5, 6, 7)


@pytest.mark.parametrize("fn", [
    lambda m, a, b: m.mean([a, b]),
    lambda m, a, b: m.sum([a, b], axis=0),
    lambda m, a, b: m.max([[a, b], [b, a]], axis=1),
    lambda m, a, b: m.std([a, 2.0 * b], axis=(0, 2)),
    lambda m, a, b: m.exp([a, b]),
    lambda m, a, b: m.mean([a[0, 0], 1.5, b[1, 2]]),
], ids=["mean", "sum-axis", "nested-max", "std", "exp", "scalars-and-numbers"])
def test_lists_of_tensors_act_like_numpy_arrays(fn):
    av, bv = np.random.default_rng(0).standard_normal((2, 2, 3))
    a, b = gc.placeholder(gc.float64, (2, 3)), gc.placeholder(gc.float64, (2, 3))
    want = fn(np, av, bv)
    got = gc.Session().run(fn(gc, a, b), {a: av, b: bv})
    assert np.shape(got) == np.shape(want)
    np.testing.assert_allclose(got, want, rtol=1e-13)


def test_list_of_tensors_gradient_and_errors():
    check_grads(lambda a, b: gc.mean([a, b * b], axis=0), [np.ones((2, 3)), np.arange(6.0).reshape(2, 3)])
    a = gc.placeholder(gc.float32, (2, 3))
    assert gc.mean([a, a]).dtype == gc.float32
    with pytest.raises(gc.ShapeError, match=r"one shape .*\(2, 3\), \(3,\)\n  at .*test_numpy_forms.py"):
        gc.mean([a, gc.placeholder(gc.float32, (3,))])


KEYS = [(3, slice(2, None), [1, 3]), (slice(None), 3, [1, 3]), (3, [1, 2]), ([1, 2], 3), (Ellipsis, 3, [1, 2]),
        (3, slice(None), np.array([[1], [2]])), (-1, None, [0, 2], 4), ([4, 0], slice(1, 3), -2),
        (1, Ellipsis, [0, -1])]


@pytest.mark.parametrize("key", KEYS, ids=str)
def test_int_mixed_with_an_array_index(key):
    x = gc.placeholder(gc.float64, X.shape)
    out = x[key]
    assert out.shape == X[key].shape
    for backend in ("reference", "llvm"):
        np.testing.assert_array_equal(gc.Session(backend=backend).run(out, {x: X}), X[key])


def test_int_mixed_with_an_array_index_gradient():
    check_grads(lambda x: x[3, 2:, [1, 3]] ** 3, [np.random.default_rng(1).standard_normal((5, 6, 7))])


def test_several_arrays_are_refused_clearly():
    x = gc.placeholder(gc.float64, X.shape)
    with pytest.raises(gc.GraphcError, match="several arrays"):
        x[[0, 1], [1, 2]]
