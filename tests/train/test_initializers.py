"""gc.init: shapes, dtypes, statistics of large draws, and seed determinism."""

import math

import numpy as np
import pytest

import graphc as gc
from graphc.train import init

RANDOM = [init.normal, init.uniform, init.glorot_uniform, init.glorot_normal, init.he_normal, init.he_uniform]


def test_deterministic_ones_zeros_constant():
    assert init.zeros((2, 3)).dtype == np.float32 and not init.zeros((2, 3)).any()
    np.testing.assert_array_equal(init.ones(4, dtype=np.float64), np.ones(4))
    c = init.constant([1.0, 2.0], (3, 2), dtype=gc.float64)
    np.testing.assert_array_equal(c, [[1, 2]] * 3)
    assert c.flags.writeable and c.dtype == np.float64
    assert init.zeros((3, 0)).shape == (3, 0)
    assert init.ones((), dtype=np.int32).dtype == np.int32


@pytest.mark.parametrize("fn", RANDOM)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_seed_same_bytes_other_seed_differs(fn, dtype):
    a = fn((7, 5), seed=3, dtype=dtype)
    b = fn((7, 5), seed=3, dtype=dtype)
    c = fn((7, 5), seed=4, dtype=dtype)
    assert a.dtype == dtype and a.shape == (7, 5)
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)


def test_float32_is_the_float64_draw_cast():
    a64 = init.glorot_normal((30, 20), seed=11, dtype=np.float64)
    a32 = init.glorot_normal((30, 20), seed=11, dtype=np.float32)
    np.testing.assert_array_equal(a32, a64.astype(np.float32))


def test_known_values_pin_the_generator():
    # PCG64(0).standard_normal() and .random() first draws: fixed by numpy's stream policy.
    expected_normal = np.random.Generator(np.random.PCG64(0)).standard_normal(3)
    np.testing.assert_array_equal(init.normal(3, seed=0, dtype=np.float64), expected_normal)
    np.testing.assert_allclose(expected_normal, [0.12573022, -0.13210486, 0.64042265], rtol=1e-7)


def test_random_initializers_reject_int_dtype():
    with pytest.raises(ValueError):
        init.normal((2,), seed=0, dtype=np.int32)
    with pytest.raises(ValueError):
        init.uniform((2,), low=1.0, high=1.0, seed=0)


def test_fans():
    assert init.fans(()) == (1, 1)
    assert init.fans((5,)) == (5, 5)
    assert init.fans((3, 4)) == (3, 4)
    assert init.fans((3, 3, 8, 16)) == (72, 144)


# Large draws (n = 400*300 = 120000): the sample mean's standard error is std/sqrt(n) ~ 0.003*std,
# so 5% tolerances on mean (relative to std) and std cannot be flaky, yet catch a wrong scale.
SHAPE = (400, 300)


@pytest.mark.parametrize("fn, std, bound", [
    (init.glorot_uniform, math.sqrt(2 / 700), math.sqrt(6 / 700)),
    (init.glorot_normal, math.sqrt(2 / 700), None),
    (init.he_normal, math.sqrt(2 / 400), None),
    (init.he_uniform, math.sqrt(2 / 400), math.sqrt(6 / 400)),
])
def test_variance_scaling_statistics(fn, std, bound):
    a = fn(SHAPE, seed=1, dtype=np.float64)
    assert abs(a.mean()) < 0.05 * std
    assert a.std() == pytest.approx(std, rel=0.05)
    if bound is not None:
        assert a.min() >= -bound and a.max() < bound
        assert a.max() > 0.99 * bound  # really uniform over the whole range


def test_normal_and_uniform_statistics():
    a = init.normal(SHAPE, mean=2.0, stddev=0.5, seed=5, dtype=np.float64)
    assert a.mean() == pytest.approx(2.0, abs=0.05 * 0.5)
    assert a.std() == pytest.approx(0.5, rel=0.05)
    u = init.uniform(SHAPE, low=1.0, high=3.0, seed=5, dtype=np.float64)
    assert u.min() >= 1.0 and u.max() < 3.0
    assert u.mean() == pytest.approx(2.0, abs=0.05)
    assert u.std() == pytest.approx(2 / math.sqrt(12), rel=0.05)
