import numpy as np
import pytest
from testkit import race_close

import graphc as gc


@pytest.fixture
def xy():
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    return x, gc.sum(x * 2.0, axis=1)


def test_unknown_feed_key(xy):
    x, y = xy
    other = gc.constant(1.0)
    with gc.Session() as sess, pytest.raises(gc.FeedError, match="not a placeholder"):
        sess.run(y, {x: np.ones((1, 3)), other: 1.0})


def test_missing_placeholder_is_named(xy):
    x, y = xy
    with gc.Session() as sess, pytest.raises(gc.FeedError, match="not fed: x"):
        sess.run(y)


def test_wrong_shape_names_expected_and_got(xy):
    x, y = xy
    with gc.Session() as sess, pytest.raises(gc.FeedError) as info:
        sess.run(y, {x: np.ones((2, 4), np.float32)})
    msg = str(info.value)
    assert "x" in msg and "(?, 3)" in msg and "(2, 4)" in msg


def test_wrong_rank(xy):
    x, y = xy
    with gc.Session() as sess, pytest.raises(gc.FeedError):
        sess.run(y, {x: np.ones(3, np.float32)})


def test_dtype_that_cannot_cast_same_kind():
    i = gc.placeholder(gc.int32, (2,), name="i")
    with gc.Session() as sess, pytest.raises(gc.FeedError, match="float64"):
        sess.run(i + 1, {i: np.array([1.5, 2.5])})
    with gc.Session() as sess, pytest.raises(gc.FeedError):
        sess.run(i + 1, {i: np.array(["a", "b"], dtype=object)})


def test_lists_scalars_and_noncontiguous_feeds_are_accepted(xy):
    x, y = xy
    s = gc.placeholder(gc.float64, (), name="s")
    big = np.arange(18, dtype=np.float64).reshape(3, 6)[:, ::2]
    assert not big.flags.c_contiguous
    with gc.Session() as sess:
        np.testing.assert_allclose(sess.run(y, {x: [[1, 2, 3]]}), [12.0])
        np.testing.assert_allclose(sess.run(y, {x: big}), big.sum(axis=1) * 2, rtol=1e-6)
        assert sess.run(s * 2, {s: 3}) == 6.0


def test_fetch_structures_and_ops_give_none(xy):
    x, y = xy
    v = gc.Variable(0.0, name="v")
    op = gc.group(gc.assign(v, 1.0))
    with gc.Session() as sess:
        out = sess.run({"a": [y, (y, op)], "b": {"c": y}}, {x: np.ones((1, 3))})
    assert out["a"][1][1] is None
    np.testing.assert_array_equal(out["b"]["c"], [6.0])
    with pytest.raises(gc.GraphcError):
        gc.Session().run([y, "not a tensor"])


def test_results_are_fresh_arrays(xy):
    x, _ = xy
    c = gc.constant([1.0, 2.0])
    with gc.Session() as sess:
        a = sess.run(c)
        a[0] = 100.0
        np.testing.assert_array_equal(sess.run(c), [1.0, 2.0])


def test_variable_reads_see_start_of_run_and_updates_apply_together():
    a = gc.Variable(1.0, name="a")
    b = gc.Variable(10.0, name="b")
    swap = gc.group(gc.assign(a, b), gc.assign(b, a))
    with gc.Session() as sess:
        read_during = sess.run([a + 0.0, swap, b + 0.0])
        assert read_during[0] == 1.0 and read_during[2] == 10.0
        assert sess.run([a, b]) == [10.0, 1.0]
        sess.run(gc.assign_add(a, 5.0))
        assert sess.run(a) == 15.0
        sess.run(gc.assign_sub(b, 3.0))
        assert sess.run(b) == -2.0


def test_two_assignments_to_one_variable_in_one_run():
    v = gc.Variable(0.0, name="v")
    with gc.Session() as sess, pytest.raises(gc.GraphcError, match="assigned twice"):
        sess.run([gc.assign(v, 1.0), gc.assign(v, 2.0)])


def test_sessions_own_their_variables():
    v = gc.Variable(np.zeros(2, np.float32), name="v")
    inc = gc.assign_add(v, 1.0)
    with gc.Session() as s1, gc.Session() as s2:
        s1.run(inc)
        s1.run(inc)
        np.testing.assert_array_equal(s1.run(v), [2, 2])
        np.testing.assert_array_equal(s2.run(v), [0, 0])


def test_only_what_the_fetches_need_is_computed():
    x = gc.placeholder(gc.float32, (2,), name="x")
    unused = gc.placeholder(gc.float32, (2,), name="unused")
    v = gc.Variable(0.0, name="v")
    gc.assign(v, 5.0)  # built but not fetched: must not run
    _ = unused * 2.0
    with gc.Session() as sess:
        np.testing.assert_array_equal(sess.run(x + 1.0, {x: [1, 2]}), [2, 3])
        assert sess.run(v) == 0.0


def test_assign_checks_shape_and_dtype():
    v = gc.Variable(np.zeros((2, 2), np.float32), name="v")
    with pytest.raises(gc.ShapeError):
        gc.assign(v, gc.placeholder(gc.float32, (3,)))
    with pytest.raises(gc.GraphcError):
        gc.assign(gc.constant(1.0), 2.0)


def test_closed_session_refuses_to_run(xy):
    x, y = xy
    sess = gc.Session()
    sess.close()
    with pytest.raises(gc.GraphcError, match="closed"):
        sess.run(y, {x: np.ones((1, 3))})


def test_variable_value_after_close_raises():
    v = gc.Variable(np.arange(3, dtype=np.float32), name="v")
    sess = gc.Session()
    sess.run(gc.assign(v, v + 1.0))
    np.testing.assert_array_equal(sess.variable_value(v), [1, 2, 3])
    sess.close()
    with pytest.raises(gc.GraphcError, match="session is closed"):
        sess.variable_value(v)
    with pytest.raises(gc.GraphcError, match="session is closed"):
        sess.compile(v)


@pytest.mark.parametrize("backend", ["llvm", "reference"])
def test_close_during_run_raises_session_closed_not_keyerror(backend):
    """Runs racing Session.close() finish or raise GraphcError("... session is closed"), never KeyError."""
    v = gc.Variable(np.zeros((64,), np.float32), name="v")
    x = gc.placeholder(gc.float32, (64,), name="x")
    reads, step = gc.sum(v * x), gc.assign(v, v + x)
    feed = {x: np.ones(64, np.float32)}
    for _ in range(15):
        sess = gc.Session(backend=backend)
        sess.run([reads, step], feed)  # compiled before the race
        runs = [lambda f=f, sess=sess: sess.run(f, feed) for f in (reads, step, reads, step)]
        errors = race_close(runs, sess.close, "session is closed")
        assert not errors, errors


def test_close_during_run_keeps_no_callable_that_runs_after_close(monkeypatch):
    """Issue 12 #19: a run without variables that overlapped close() kept its cached callable, so every
    later run of it went on working on the closed session (found by the #12 audit)."""
    from graphc.runtime.executable import Executable

    x = gc.placeholder(gc.float32, (3,), name="x")
    y, feed = x * 2.0, {x: np.ones(3, np.float32)}
    sess = gc.Session()
    sess.run(y, feed)  # compiled; the second run makes the cached callable (a native caller)
    callers = Executable.callers
    monkeypatch.setattr(Executable, "callers", lambda self, *a: (sess.close(), callers(self, *a))[1])
    np.testing.assert_array_equal(sess.run(y, feed), [2, 2, 2])  # the run in flight finishes
    monkeypatch.setattr(Executable, "callers", callers)
    for _ in range(2):
        with pytest.raises(gc.GraphcError, match="this session is closed"):
            sess.run(y, feed)


def test_set_variable_value_int_out_of_range_refused():
    """Issue 12 #8 (found by the #12 audit): a Python int (list) set into an int32 variable wrapped
    silently, 3,000,000,000 becoming -1294967296, as feeds did."""
    v = gc.Variable(np.zeros(2, np.int32), name="v")
    s0 = gc.Variable(np.int32(5), name="s0")
    with gc.Session() as sess:
        with pytest.raises(gc.DTypeError, match=r"set_variable_value: v: the value 3000000000 is out of range "
                                                r"for int32 \[-2147483648, 2147483647\]"):
            sess.set_variable_value(v, [3_000_000_000, 1])
        with pytest.raises(gc.DTypeError, match="the value -2147483649 is out of range"):
            sess.set_variable_value(s0, -2**31 - 1)
        np.testing.assert_array_equal(sess.variable_value(v), [0, 0])  # refused: unchanged
        assert sess.variable_value(s0) == 5
        sess.set_variable_value(v, [2**31 - 1, -2**31])
        np.testing.assert_array_equal(sess.variable_value(v), [2**31 - 1, -2**31])


def test_int_constant_out_of_range_refused():
    """Issue 12 #8 (found by the #12 audit): an int64 array made an int32 constant or variable
    wrapped silently; a Python int raised numpy's raw OverflowError (constants, variables,
    fills, `x + 3_000_000_000`). Both are a DTypeError now."""
    x = gc.placeholder(gc.int32, (None,), name="x")
    for build in (lambda: gc.constant(np.array([3_000_000_000, 1]), gc.int32),
                  lambda: gc.constant(3_000_000_000, gc.int32), lambda: gc.Variable([1, -2**31 - 1], dtype=gc.int32),
                  lambda: gc.fill((2,), 2**31, gc.int32), lambda: x + 3_000_000_000):
        with pytest.raises(gc.DTypeError, match=r"cannot convert to int32: the value -?\d+ is out of range for int32"):
            build()
    with gc.Session() as sess:
        np.testing.assert_array_equal(sess.run(gc.constant(np.array([2**31 - 1, -2**31]), gc.int32)),
                                      [2**31 - 1, -2**31])


def test_set_variable_value_big_endian_converted():
    """Issue 12 #20 (found by the #12 audit): set_variable_value refused a big-endian float32
    array with "Variable is float32, the value is >f4"; it is converted, as feeds are."""
    v = gc.Variable(np.zeros(3, np.float32), name="v")
    with gc.Session() as sess:
        sess.set_variable_value(v, np.arange(3, dtype=">f4"))
        np.testing.assert_array_equal(sess.run(v * 2.0), [0, 2, 4])
        with pytest.raises(gc.DTypeError, match="v is float32, the value is float64"):
            sess.set_variable_value(v, np.arange(3, dtype=">f8"))  # other dtypes: refused as before


@pytest.mark.parametrize("backend", ["llvm", "reference"])
def test_int_feed_out_of_range_refused(backend):
    """An int64 or Python-int feed that int32 cannot hold is a FeedError, not a wrapped value."""
    labels = gc.placeholder(gc.int32, (None,), name="labels")
    y = labels * 2
    with gc.Session(backend=backend) as sess:
        for bad in ([3_000_000_000], np.array([1, -2**31 - 1], np.int64), [2**63], np.array([2**32], np.uint64)):
            with pytest.raises(gc.FeedError, match=r"labels: the fed value -?\d+ is out of range for int32"):
                sess.run(y, {labels: bad})
        edge = np.array([-2**31, 2**31 - 1], np.int64)  # in range: converted exactly
        np.testing.assert_array_equal(sess.run(labels + 0, {labels: edge}), edge.astype(np.int32))
