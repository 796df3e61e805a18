"""gc.nn.dense: its variables, its values, and deterministic default seeds."""

import numpy as np
import pytest

import graphc as gc


def test_dense_variables_and_values():
    x = gc.placeholder(gc.float64, (None, 4), name="x")
    y = gc.nn.dense(x, 3, activation=gc.relu, name="layer", seed=5)
    kernel, bias = gc.trainable_variables()
    assert kernel.name == "layer/kernel" and bias.name == "layer/bias"
    assert kernel.shape == (4, 3) and bias.shape == (3,) and kernel.dtype == np.float64
    W = kernel.attrs["initial"].array
    np.testing.assert_array_equal(W, gc.init.glorot_uniform((4, 3), seed=5, dtype=np.float64))
    assert not bias.attrs["initial"].array.any()
    xv = np.random.Generator(np.random.PCG64(0)).standard_normal((5, 4))
    with gc.Session() as sess:
        np.testing.assert_allclose(sess.run(y, {x: xv}), np.maximum(xv @ W, 0.0), rtol=1e-12)


def test_second_layer_gets_its_own_scope_and_seed():
    x = gc.placeholder(gc.float32, (2, 4))
    gc.nn.dense(gc.nn.dense(x, 4), 4)
    names = [v.name for v in gc.trainable_variables()]
    assert names == ["dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias"]
    k0, _, k1, _ = gc.trainable_variables()
    assert not np.array_equal(k0.attrs["initial"].array, k1.attrs["initial"].array)


def test_default_seed_is_reproducible_across_graphs():
    def build():
        with gc.Graph().as_default() as g:
            gc.nn.dense(gc.nn.dense(gc.placeholder(gc.float32, (None, 3)), 6), 2)
            return [v.attrs["initial"].array for v in gc.trainable_variables(g)]

    for a, b in zip(build(), build()):
        assert a.tobytes() == b.tobytes()


def test_dense_on_batched_input_and_errors():
    x = gc.placeholder(gc.float32, (2, 3, 4))
    assert gc.nn.dense(x, 7).shape == (2, 3, 7)
    with pytest.raises(gc.ShapeError):
        gc.nn.dense(gc.placeholder(gc.float32, (2, None)), 3)
    with pytest.raises(gc.ShapeError):
        gc.nn.dense(gc.placeholder(gc.float32, (2, 3)), 0)
