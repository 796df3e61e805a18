"""gc.random and gc.nn.dropout: Philox bits, determinism across backends / gc.function / export, fresh
numbers per run, moments, the run counter in checkpoints, None batch dims, bad input."""

import math

import numpy as np
import pytest

import graphc as gc
from graphc.ops.random import philox_words, run_counter
from graphc.ops.scalar import NumpyEmitter


def test_philox_known_answers():
    """Random123's known-answer vectors for philox4x32-10."""
    assert [int(w) for w in philox_words(0, np.array(0, np.uint64), (0, 0))] == [
        0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    assert [int(w) for w in philox_words(2**64 - 1, np.array(2**64 - 1, np.uint64), (2**32 - 1, 2**32 - 1))] == [
        0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]


@pytest.mark.parametrize("op", ["random_uniform", "random_normal"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gather_form_matches_ref(op, dtype):
    g = gc.Graph()
    with g.as_default():
        node = g.make(op, (run_counter(g),), {"shape": (3, 5), "dtype": np.dtype(dtype), "key": (7, 2**32 - 3)})
    for run in (0, 5, 2**40 + 3):
        counter = np.array(run, np.int64)
        idx = tuple(np.indices(node.shape, dtype=np.int64))
        got = node.opdef.gather(NumpyEmitter(), idx, lambda i, index: np.broadcast_to(counter, node.shape), node)
        want = node.opdef.ref(counter, **node.params)
        assert got.dtype == want.dtype == dtype
        if op == "random_uniform":
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == np.float32 else 1e-14, atol=1e-6)


def _draws():
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    return x, [gc.random.uniform(x), gc.random.uniform((4,), gc.float64), gc.random.bernoulli(x, 0.3),
               gc.random.normal((5,), gc.float64), gc.random.truncated_normal((2, 2))]


def _close(a, b, exact):
    for u, v, e in zip(a, b, exact):
        if e:
            np.testing.assert_array_equal(u, v)
        else:
            np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


EXACT = [True, True, True, False, False]  # uniform bits are identical everywhere; normal: elementary functions


def test_same_numbers_on_both_backends_fresh_every_run():
    g = gc.Graph()
    with g.as_default():
        x, draws = _draws()
    feed = {x: np.zeros((2, 3), np.float32)}
    with gc.Session(g) as fast, gc.Session(g, backend="reference") as ref:
        runs = [fast.run(draws, feed) for _ in range(3)]
        for r in runs:
            _close(r, ref.run(draws, feed), EXACT)
        assert fast.variable_value(run_counter(g)) == 3
    assert not np.array_equal(runs[0][0], runs[1][0]) and not np.array_equal(runs[1][3], runs[2][3])
    assert runs[0][0].shape == (2, 3) and runs[0][2].dtype == np.bool_
    with gc.Session(g) as again:  # a new session starts at run 0 again
        _close(again.run(draws, feed), runs[0], [True] * 5)


def test_seeds_decide_the_numbers():
    g = gc.Graph()
    with g.as_default():
        a, b = gc.random.uniform((6,), seed=1), gc.random.uniform((6,), seed=1)
        c, d = gc.random.uniform((6,)), gc.random.uniform((6,))
        assert a is b  # the same op seed is the same op (TF1: the same sequence)
    with gc.Graph().as_default() as g2:
        gc.random.set_seed(5)
        e = gc.random.uniform((6,), seed=1)
    va, vc, vd = gc.Session(g).run([a, c, d])
    (ve,) = gc.Session(g2).run([e])
    assert len({v.tobytes() for v in (va, vc, vd, ve)}) == 4


def test_function_and_export_draw_what_the_session_draws(tmp_path):
    g = gc.Graph()
    with g.as_default():
        x, draws = _draws()
        fn = gc.function([x], draws)
        xs = np.zeros((2, 3), np.float32)
        with gc.Session(g) as sess:
            want = [sess.run(draws, {x: xs}) for _ in range(2)]
        got = [fn(xs) for _ in range(2)]
        fn2 = gc.function([x], draws)
        fn2.export(tmp_path, "draws", signatures=[[(2, 3)]])
    for w, f in zip(want, got):
        _close(f, w, [True] * 5)
    loaded = gc.load_exported(tmp_path, "draws")
    for w in want:
        _close(loaded(xs), w, EXACT)
    assert int(loaded.state["random/run_count"]) == 2


def test_run_counter_is_saved_with_the_variables(tmp_path):
    g = gc.Graph()
    with g.as_default():
        u = gc.random.uniform((4,))
        saver = gc.train.Saver()
    with gc.Session(g) as sess:
        sess.run(u)
        saver.save(sess, tmp_path / "ckpt")
        third = [sess.run(u) for _ in range(2)][0]
    with gc.Session(g) as restored:
        saver.restore(restored, tmp_path / "ckpt")
        np.testing.assert_array_equal(restored.run(u), third)


def test_unknown_batch_dims():
    x = gc.placeholder(gc.float64, (None, 2), name="x")
    z = gc.random.normal(x, gc.float64)
    with gc.Session() as sess:
        for n in (1, 7, 3):
            assert sess.run(z, {x: np.zeros((n, 2))}).shape == (n, 2)


def _moments(values, mean, var):
    """Mean and variance within 4 standard errors (variance's SE from the 4th moment)."""
    v = np.asarray(values, np.float64).ravel()
    n = v.size
    assert abs(v.mean() - mean) < 4 * math.sqrt(var / n), (v.mean(), mean)
    m4 = np.mean((v - mean) ** 4)
    assert abs(v.var() - var) < 4 * math.sqrt(max(m4 - var**2, 1e-12) / n), (v.var(), var)


def test_moments():
    n = 40_000
    phi2 = math.exp(-2) / math.sqrt(2 * math.pi)  # the normal density at 2
    mass = math.erf(math.sqrt(2))
    draws = {"uniform": gc.random.uniform((n,), minval=-1.0, maxval=3.0),
             "normal32": gc.random.normal((n,), mean=1.0, stddev=2.0),
             "normal64": gc.random.normal((n,), gc.float64),
             "truncated": gc.random.truncated_normal((n,), gc.float64),
             "bernoulli": gc.cast(gc.random.bernoulli((n,), 0.2), gc.float32)}
    got = gc.Session().run(draws)
    _moments(got["uniform"], 1.0, 16 / 12)
    _moments(got["normal32"], 1.0, 4.0)
    _moments(got["normal64"], 0.0, 1.0)
    _moments(got["truncated"], 0.0, 1 - 4 * phi2 / mass)
    assert np.abs(got["truncated"]).max() <= 2.0
    _moments(got["bernoulli"], 0.2, 0.16)
    assert got["uniform"].min() >= -1 and got["uniform"].max() < 3


def test_dropout_keep_rate_scale_gradient_and_inference():
    x = gc.placeholder(gc.float32, (None, 500), name="x")
    training = gc.placeholder(gc.bool_, (), name="training")
    y = gc.nn.dropout(x, 0.25, training)
    (gx,) = gc.gradients(gc.sum(y * 3.0), [x])
    ones = np.ones((8, 500), np.float32)
    with gc.Session() as sess:
        out, grad = sess.run([y, gx], {x: ones, training: True})
        kept = out != 0
        _moments(kept, 0.75, 0.75 * 0.25)
        np.testing.assert_allclose(out[kept], 1 / 0.75, rtol=1e-6)
        np.testing.assert_allclose(grad, np.where(kept, 3 / 0.75, 0), rtol=1e-6)  # the same mask
        np.testing.assert_array_equal(sess.run(y, {x: ones * 2, training: False}), ones * 2)
    assert gc.nn.dropout(x, 0.5, training=False) is x and gc.nn.dropout(x, 0.0) is x


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, "0.5", None])
def test_dropout_bad_rate(rate):
    x = gc.placeholder(gc.float32, (2, 3), name="x")
    with pytest.raises(gc.GraphcError, match=r"dropout: rate must be a number in \[0, 1\).*float32\(2, 3\)"
                                             r"(.|\n)*test_random.py:\d+"):
        gc.nn.dropout(x, rate)


@pytest.mark.parametrize("training", [1, "yes", None, "tensor"])
def test_dropout_bad_training(training):
    x = gc.placeholder(gc.float32, (2, 3), name="x")
    if training == "tensor":
        training = gc.placeholder(gc.float32, (), name="t")
    with pytest.raises(gc.GraphcError, match=r"dropout: training must be a Python bool or a scalar bool tensor"
                                             r"(.|\n)*test_random.py:\d+"):
        gc.nn.dropout(x, 0.5, training)


def test_bad_random_input():
    with pytest.raises(gc.DTypeError, match="random.uniform: dtype must be float32 or float64, got int32"):
        gc.random.uniform((3,), gc.int32)
    with pytest.raises(gc.ShapeError, match="random.normal: shape"):
        gc.random.normal("abc")
    with pytest.raises(gc.ShapeError, match="negative dim"):
        gc.random.normal((2, -1))
    with pytest.raises(gc.GraphcError, match="seed must be an int"):
        gc.random.normal((2,), seed=1.5)
    with pytest.raises(gc.GraphcError, match=r"bernoulli: p must be a number in \[0, 1\]"):
        gc.random.bernoulli((2,), 1.5)


def test_saved_graph_draws_the_same_numbers(tmp_path):
    g = gc.Graph()
    with g.as_default():
        u = gc.random.uniform((5,), seed=3)
        gc.save(u, tmp_path / "g.json")
    loaded = gc.load(tmp_path / "g.json")
    with loaded.graph.as_default():
        more = gc.random.normal((2,))  # new random ops reuse the loaded graph's counter
    assert run_counter(loaded.graph).name == "random/run_count" and more.inputs[0] is run_counter(loaded.graph)
    with gc.Session(g) as a, gc.Session(loaded.graph) as b:
        for _ in range(2):
            np.testing.assert_array_equal(a.run(u), b.run(loaded.outputs))
