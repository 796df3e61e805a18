"""The in-memory program cache is an LRU (CompileOptions.program_cache), and dropped programs are freed."""

import gc as pygc
import weakref

import numpy as np
import pytest

import graphc as gc


def _graph():
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    return x, gc.sum(gc.exp(x), axis=1)


def test_program_cache_is_bounded_lru_in_session():
    """300 batch sizes on one session kept 301 programs (+87.6 MB); the cache now keeps program_cache."""
    x, y = _graph()
    with gc.Session(options=gc.CompileOptions(program_cache=3, specialize=True)) as sess:
        for n in (1, 2, 3, 1, 4):  # 1 is used again, so 2 is the least recently used when 4 arrives
            np.testing.assert_allclose(sess.run(y, {x: np.ones((n, 3), np.float32)}), np.full(n, 3 * np.e), rtol=1e-6)
        (plan,) = sess._requests.values()
        assert sorted(plan.programs) == [((1, 3),), ((3, 3),), ((4, 3),)]
        np.testing.assert_allclose(sess.run(y, {x: np.ones((2, 3), np.float32)}), np.full(2, 3 * np.e), rtol=1e-6)
        assert len(plan.programs) == 3


def test_program_cache_is_bounded_lru_in_function():
    x, y = _graph()
    f = gc.function([x], y, options=gc.CompileOptions(program_cache=2, specialize=True))
    for n in (1, 2, 3, 4, 5):
        assert f(np.ones((n, 3), np.float32)).shape == (n,)
    assert sorted(f.signatures()) == [((4, 3),), ((5, 3),)]
    assert gc.CompileOptions().program_cache == 64
    with pytest.raises(gc.GraphcError, match="program_cache"):
        gc.CompileOptions(program_cache=0)


def test_dropped_programs_are_freed():
    """Evicted programs and those of a closed session are garbage: nothing in graphc keeps them."""
    x, y = _graph()
    sess = gc.Session(options=gc.CompileOptions(program_cache=1, specialize=True))
    sess.run(y, {x: np.ones((1, 3), np.float32)})
    (plan,) = sess._requests.values()
    first = weakref.ref(plan.programs.values()[0].program)
    sess.run(y, {x: np.ones((2, 3), np.float32)})
    pygc.collect()
    assert first() is None
    second = weakref.ref(plan.programs.values()[0].program)
    sess.close()
    del plan
    pygc.collect()
    assert second() is None


def test_a_cached_callable_in_flight_keeps_its_evicted_program():
    """Issue 12 #13/#19: a session's cached callable or gc.function fast path (a native caller) held the program's
    code address only; a run in flight while the LRU evicted its program, or while close dropped
    it, ran freed code (SIGSEGV, found by the #12 audit). A caller now keeps its program."""
    x, y = _graph()
    sess = gc.Session(options=gc.CompileOptions(program_cache=1, specialize=True))
    feed = {x: np.ones((1, 3), np.float32)}
    sess.run(y, feed)
    sess.run(y, feed)  # the second run makes the cached callable
    (plan,) = sess._callables.values()
    (req,) = sess._requests.values()
    program = weakref.ref(req.programs.values()[0].program)
    sess.run(y, {x: np.ones((2, 3), np.float32)})  # evicts the program of (1, 3)
    f = gc.function([x], y, options=gc.CompileOptions(program_cache=1, specialize=True))
    f(np.ones((1, 3), np.float32))
    fast = f._fast
    f_program = weakref.ref(f._last.program)
    f(np.ones((2, 3), np.float32))
    sess.close()
    f.session.close()
    pygc.collect()
    assert program() is not None and f_program() is not None
    np.testing.assert_allclose(plan(feed), np.full(1, 3 * np.e), rtol=1e-6)
    np.testing.assert_allclose(fast(np.ones((1, 3), np.float32)), np.full(1, 3 * np.e), rtol=1e-6)
    del plan, fast, req
    pygc.collect()
    assert program() is None and f_program() is None
