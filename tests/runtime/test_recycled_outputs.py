"""Large outputs reuse the array a run returned before once nothing holds it
(`graphc.passes.memory.RECYCLE_BYTES`): never an array the caller still holds, directly or through a
view, on the first-run path, the run-plan path and gc.function."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.passes.memory import RECYCLE_BYTES

N = RECYCLE_BYTES // 4 + 5  # float32 elements: just past the threshold


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


@pytest.fixture
def session():
    x = gc.placeholder(gc.float32, (N,), name="x")
    with gc.Session(backend="llvm") as sess:
        yield sess, x, gc.tanh(x) * 2.0


@pytest.mark.parametrize("nested", [False, True])  # a flat fetch list gets a cached callable; a nested one does not
def test_held_results_are_never_written_and_dropped_ones_are_reused(session, nested):
    sess, x, y = session
    fetches = [[y, y + 1.0]] if nested else [y, y + 1.0]
    flat = (lambda r: r[0]) if nested else (lambda r: r)
    v = [np.full(N, float(i), np.float32) for i in range(6)]
    held = flat(sess.run(fetches, {x: v[0]}))
    held2 = flat(sess.run(fetches, {x: v[1]}))
    view = flat(sess.run(fetches, {x: v[2]}))[0][3:]  # only a view of the result is held
    for _ in range(3):
        flat(sess.run(fetches, {x: v[3]}))
    np.testing.assert_allclose(held[0], np.tanh(v[0]) * 2, rtol=1e-6)
    np.testing.assert_allclose(held2[1], np.tanh(v[1]) * 2 + 1, rtol=1e-6)
    np.testing.assert_allclose(view, (np.tanh(v[2]) * 2)[3:], rtol=1e-6)
    first = flat(sess.run(fetches, {x: v[4]}))
    addresses = [_address(a) for a in first]
    del first
    again = flat(sess.run(fetches, {x: v[5]}))
    assert [_address(a) for a in again] == addresses  # dropped: the same memory, no fresh pages
    np.testing.assert_allclose(again[0], np.tanh(v[5]) * 2, rtol=1e-6)


def test_function_results(session):
    _, x, y = session
    f = gc.function(x, y)
    a = np.ones(N, np.float32)
    kept = f(a)
    for _ in range(3):
        f(a * 3)
    np.testing.assert_allclose(kept, np.tanh(a) * 2, rtol=1e-6)
    out = f(a)
    address = _address(out)
    del out
    assert _address(f(a * 2)) == address


def test_small_outputs_are_fresh_arrays(session):
    sess, _, _ = session
    z = gc.placeholder(gc.float32, (8,), name="z")
    w = z + 1.0
    first = sess.run(w, {z: np.zeros(8, np.float32)})
    second = sess.run(w, {z: np.ones(8, np.float32)})
    assert first is not second
    np.testing.assert_array_equal(first, np.ones(8, np.float32))


def test_other_sizes_of_a_polymorphic_program():
    """An output whose size changes between runs (a None dim) is never a reused array of
    another size."""
    x = gc.placeholder(gc.float32, (None,), name="x")
    y = gc.tanh(x) * 2.0
    with gc.Session(backend="llvm") as sess:
        for n in (N, N + 7, N, N // 2, N + 7):
            v = np.linspace(-1, 1, n, dtype=np.float32)
            for fetches in ([y], [[y]]):
                got = sess.run(fetches, {x: v})
                got = got[0][0] if isinstance(got[0], list) else got[0]
                assert got.shape == (n,)
                np.testing.assert_allclose(got, np.tanh(v) * 2, rtol=1e-6)
