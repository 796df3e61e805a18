import warnings

import numpy as np
import pytest

import graphc as gc


@pytest.fixture
def x64_off():
    gc.enable_x64(False)
    yield
    gc.enable_x64(False)


def test_float64_variable_in_a_float32_model_warns_once_per_graph(x64_off):
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, 3), name="x")
        w = gc.Variable(np.zeros((3, 2)), name="w")  # float64: the classic trap
        with pytest.warns(gc.Float64Warning, match=r"with w promotes to float64") as record:
            y = x @ w
        assert y.dtype == np.float64  # numpy's promotion is kept
        assert record[0].filename == __file__
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            z = x + np.ones(3)  # once per graph
            assert z.dtype == np.float64
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float32, (3,), name="x")
        with pytest.warns(gc.Float64Warning, match=r"a float64 array"):
            x - np.ones(3)


def test_scalars_float32_and_x64_do_not_warn(x64_off):
    with gc.Graph().as_default(), warnings.catch_warnings():
        warnings.simplefilter("error")
        x = gc.placeholder(gc.float32, (3,), name="x")
        assert (x * 0.5 + 1 - np.float32(2)).dtype == np.float32
        d = gc.placeholder(gc.float64, (3,), name="d")
        assert (d * 2.0 + d).dtype == np.float64
        gc.enable_x64()
        assert (x + d).dtype == np.float64
