"""gc.dot follows numpy.dot for every rank (a regression test of issue 15, defect 1)."""

import numpy as np
import pytest

import graphc as gc
from graphc.testing import check_grads

SHAPES = [((2, 3), (2, 3, 4)), ((2, 2, 3), (2, 3, 4)), ((3,), (2, 3, 4)), ((2, 1, 3), (5, 3, 2)),
          ((4, 3), (3,)), ((2, 5, 3), (3,)), ((3,), (3,)), ((2, 3), (3, 4)), ((0, 3), (2, 3, 1)),
          ((), (2, 3)), ((2, 3), ()), ((), ())]


@pytest.mark.parametrize("backend", ["reference", "llvm"])
@pytest.mark.parametrize("sa, sb", SHAPES)
def test_dot_matches_numpy(sa, sb, backend):
    rng = np.random.default_rng(len(sa) * 10 + len(sb))
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    pa, pb = gc.placeholder(gc.float64, sa), gc.placeholder(gc.float64, sb)
    out = gc.dot(pa, pb)
    want = np.dot(a, b)
    assert out.shape == np.shape(want)
    np.testing.assert_allclose(gc.Session(backend=backend).run(out, {pa: a, pb: b}), want, rtol=1e-12, atol=1e-14)


def test_dot_with_python_scalar_and_unknown_dims():
    x = gc.placeholder(gc.float32, (None, 3))
    assert gc.dot(x, 2.0).dtype == gc.float32
    got = gc.Session().run(gc.dot(2.0, x), {x: np.ones((2, 3), np.float32)})
    np.testing.assert_array_equal(got, 2 * np.ones((2, 3)))
    assert gc.dot(x, gc.placeholder(gc.float32, (2, 3, None))).shape == (None, 2, None)


def test_matmul_with_a_scalar_is_an_error_as_in_numpy():
    x = gc.placeholder(gc.float64, (2, 3), name="x")
    with pytest.raises(gc.ShapeError, match="matmul: scalar operand"):
        gc.matmul(x, 2.0)
    with pytest.raises(gc.ShapeError, match="matmul: scalar operand"):
        gc.constant(2.0, dtype=gc.float64) @ x


@pytest.mark.parametrize("sa, sb", [((2, 3), (2, 3, 4)), ((2, 2, 3), (2, 3, 2)), ((), (2, 3))])
def test_dot_gradients(sa, sb):
    rng = np.random.default_rng(5)
    check_grads(gc.dot, [rng.standard_normal(sa), rng.standard_normal(sb)], order=2)
