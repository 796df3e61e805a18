"""Session semantics hold on every backend: feeds, fetch structures, variables, pruning."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.ops import shape as shp
from graphc.runtime.session import BACKENDS


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def test_llvm_is_the_default_backend():
    assert gc.Session().backend == "llvm"
    with pytest.raises(gc.GraphcError, match="unknown backend"):
        gc.Session(backend="tpu")


def test_feeds_are_checked_before_running(backend):
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    y = gc.sum(x * 2.0, axis=1)
    with gc.Session(backend=backend) as sess:
        with pytest.raises(gc.FeedError, match="not fed: x"):
            sess.run(y)
        with pytest.raises(gc.FeedError, match=r"\(\?, 3\)"):
            sess.run(y, {x: np.ones((2, 4), np.float32)})
        with pytest.raises(gc.FeedError, match="float32"):
            sess.run(y, {x: np.ones((2, 3), np.float64) + 0j})
        with pytest.raises(gc.FeedError, match="not a placeholder"):
            sess.run(y, {x: np.ones((1, 3)), y: np.ones(1)})


def test_conversions_and_noncontiguous_feeds(backend):
    x = gc.placeholder(gc.float64, (None, 3), name="x")
    s = gc.placeholder(gc.float32, (), name="s")
    big = np.arange(18, dtype=np.float64).reshape(3, 6)[:, ::2]
    assert not big.flags.c_contiguous
    with gc.Session(backend=backend) as sess:
        np.testing.assert_array_equal(sess.run(x * 1.0, {x: big}), big)
        np.testing.assert_array_equal(sess.run(x + 0.0, {x: [[1, 2, 3]]}), [[1, 2, 3]])
        np.testing.assert_array_equal(sess.run(x.T, {x: big[::-1]}), big[::-1].T)
        assert sess.run(s * 2, {s: 3}) == 6.0
        assert sess.run(s * 2, {s: np.float32(4)}).dtype == np.float32


def test_fetch_structures(backend):
    x = gc.placeholder(gc.float32, (2,), name="x")
    v = gc.Variable(0.0, name="v")
    op = gc.group(gc.assign(v, 1.0))
    y = x + 1.0
    with gc.Session(backend=backend) as sess:
        out = sess.run({"a": [y, (y, op)], "b": {"c": x * 2.0}, "d": (v,)}, {x: np.ones(2, np.float32)})
        assert out["a"][1][1] is None
        np.testing.assert_array_equal(out["a"][0], [2, 2])
        assert out["a"][0] is not out["a"][1][0]  # one node fetched twice gives two arrays
        np.testing.assert_array_equal(out["b"]["c"], [2, 2])
        assert out["d"][0] == 0.0 and sess.run(v) == 1.0


def test_variables_read_start_of_run_values_and_update_together(backend):
    a = gc.Variable(np.array([1.0, 2.0]), name="a")
    b = gc.Variable(np.array([10.0, 20.0]), name="b")
    swap = gc.group(gc.assign(a, b), gc.assign(b, a + 0.0))
    with gc.Session(backend=backend) as sess:
        before = sess.run([a * 1.0, swap, b * 1.0])
        np.testing.assert_array_equal(before[0], [1, 2])
        np.testing.assert_array_equal(before[2], [10, 20])
        after = sess.run([a, b])
        np.testing.assert_array_equal(after[0], [10, 20])
        np.testing.assert_array_equal(after[1], [1, 2])
        held = after[0]
        sess.run(gc.assign_add(a, np.array([1.0, 1.0])))
        np.testing.assert_array_equal(held, [10, 20])  # a fetched value is a copy
        np.testing.assert_array_equal(sess.variable_value(a), [11, 21])


def test_two_assignments_in_one_run_is_an_error(backend):
    v = gc.Variable(0.0, name="v")
    with gc.Session(backend=backend) as sess, pytest.raises(gc.GraphcError, match="assigned twice"):
        sess.run([gc.assign(v, 1.0), gc.assign(v, 2.0)])


def test_only_what_the_fetches_need_runs(backend):
    x = gc.placeholder(gc.float32, (2,), name="x")
    gc.placeholder(gc.float32, (2,), name="unused")
    v = gc.Variable(0.0, name="v")
    gc.assign(v, 5.0)
    like = gc.placeholder(gc.float32, (None, 2), name="like")
    with gc.Session(backend=backend) as sess:
        np.testing.assert_array_equal(sess.run(x + 1.0, {x: [1, 2]}), [2, 3])
        assert sess.run(v) == 0.0
        shaped = shp.broadcast_like(x, like)
        np.testing.assert_array_equal(sess.run(shaped, {x: [1, 2], like: np.zeros((3, 2))}), [[1, 2]] * 3)


def test_sessions_own_their_variables(backend):
    v = gc.Variable(np.zeros(2, np.float32), name="v")
    inc = gc.assign_add(v, 1.0)
    with gc.Session(backend=backend) as s1, gc.Session(backend=backend) as s2:
        s1.run(inc)
        s1.run(inc)
        np.testing.assert_array_equal(s1.run(v), [2, 2])
        np.testing.assert_array_equal(s2.run(v), [0, 0])


def test_variables_created_after_the_session_starts(backend):
    with gc.Session(backend=backend) as sess:
        w = gc.Variable(np.full(3, 2.0), name="late")
        np.testing.assert_array_equal(sess.run(gc.assign(w, w * w)), [4, 4, 4])
        np.testing.assert_array_equal(sess.run(w), [4, 4, 4])
        sess.run(gc.global_variables_initializer())
        np.testing.assert_array_equal(sess.run(w), [2, 2, 2])


def test_closed_session_refuses_to_run(backend):
    sess = gc.Session(backend=backend)
    sess.close()
    with pytest.raises(gc.GraphcError, match="closed"):
        sess.run(gc.constant(1.0))
