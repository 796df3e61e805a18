"""Session.run's cached callables: a repeated run keeps every check of a first run."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import graphc as gc


def _model():
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    w = gc.Variable(np.arange(3, dtype=np.float32), name="w")
    y = gc.sum(x * w, axis=1)
    return x, w, y


def test_repeated_runs_keep_the_feed_checks():
    x, w, y = _model()
    with gc.Session() as sess:
        good = np.ones((2, 3), np.float32)
        for _ in range(3):
            np.testing.assert_array_equal(sess.run(y, {x: good}), [3, 3])
        np.testing.assert_array_equal(sess.run(y, {x: [[1, 1, 1]]}), [3])  # a list: converted
        np.testing.assert_array_equal(sess.run(y, {x: np.ones((4, 3))}), [3] * 4)  # float64: same_kind cast
        np.testing.assert_array_equal(sess.run(y, {x: np.ones((3, 2), np.float32).T}), [3, 3])  # not contiguous
        with pytest.raises(gc.FeedError, match="placeholder x"):
            sess.run(y, {x: np.ones((2, 4), np.float32)})
        with pytest.raises(gc.FeedError, match="placeholder x"):
            sess.run(y, {x: np.ones((2, 3), np.complex64)})
        with pytest.raises(gc.FeedError, match="not fed"):
            sess.run(y, {})
        np.testing.assert_array_equal(sess.run(y, {x: good}), [3, 3])


def test_callables_for_names_tuples_ops_and_changed_lists():
    x, w, y = _model()
    step = gc.group(gc.assign(w, w + 1.0))  # an op: fetched as None
    with gc.Session() as sess:
        feed = np.ones((1, 3), np.float32)
        for i in range(3):
            assert sess.run(y, {"x:0": feed})[0] == 3 + 3 * i  # by name, and the callable sees each update
            value, none = sess.run([y, step], {x: feed})
            assert none is None and value[0] == 3 + 3 * i
        pair = sess.run((y, w), {x: feed})
        assert type(pair) is tuple and pair[1].tolist() == [3, 4, 5]
        fetches = [y]
        sess.run(fetches, {x: feed})
        fetches.append(w)  # the same list object, now two fetches
        assert len(sess.run(fetches, {x: feed})) == 2
        assert sess.run({"y": y}, {x: feed})["y"][0] == 12  # dicts take the full path


def test_closed_session_refuses_runs_through_callables():
    x, w, y = _model()
    z = x * 2.0
    sess = gc.Session()
    feed = {x: np.ones((1, 3), np.float32)}
    for _ in range(2):
        sess.run(y, feed)
        sess.run(z, feed)
    sess.close()
    for fetch in (y, z):
        with pytest.raises(gc.GraphcError, match="closed"):
            sess.run(fetch, feed)


def test_readers_and_writers_through_callables_from_eight_threads():
    """Readers never see a half-applied update: both variables move together."""
    a = gc.Variable(np.zeros(64, np.float64), name="a")
    b = gc.Variable(np.zeros(64, np.float64), name="b")
    bump = gc.group(gc.assign(a, a + 1.0), gc.assign(b, b + 1.0))
    diff = gc.sum(gc.abs(a - b))
    sess = gc.Session()
    bad = []

    def reader():
        bad.extend(d for d in (sess.run(diff) for _ in range(200)) if d != 0)

    def writer():
        for _ in range(50):
            sess.run(bump)

    threads = [threading.Thread(target=reader if i % 2 else writer) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad
    np.testing.assert_array_equal(sess.variable_value(a), np.full(64, 200.0))
