"""The native array call (backend/llvm/arraycall.py): every mismatch falls back to the full checks,
argument counts are checked natively, and no reference is leaked or lost."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import graphc as gc
from graphc.backend.llvm import arraycall

MISS = object()


class Sub(np.ndarray):
    pass


def _feeds(good: np.ndarray) -> dict[str, np.ndarray]:
    """Arrays equal to `good` that the native check must refuse (each is then converted in Python)."""
    swapped = good.astype(good.dtype.newbyteorder(">"))
    fortran = np.asfortranarray(np.stack([good, good]))[0]  # a row of a Fortran array: strided
    return {"subclass": good.copy().view(Sub), "byte-swapped": swapped, "strided": fortran,
            "float64": good.astype(np.float64), "list": good.tolist()}


@pytest.mark.parametrize("kind", ["subclass", "byte-swapped", "strided", "float64", "list"])
def test_refused_arrays_take_the_checked_path_with_the_same_results(kind):
    x = gc.placeholder(gc.float32, (4,), name="x")
    v = gc.Variable(np.arange(4, dtype=np.float32), name="v")
    y = x * v + 1.0
    good = np.array([1.0, -2.0, 3.0, 0.5], np.float32)
    want = good * np.arange(4) + 1.0
    f = gc.function([x], y)
    sess = gc.Session()
    for _ in range(2):  # the second call and run use the native caller
        np.testing.assert_array_equal(f(good), want)
        np.testing.assert_array_equal(sess.run(y, {x: good}), want)
    feed = _feeds(good)[kind]
    np.testing.assert_array_equal(f(feed), want)
    np.testing.assert_array_equal(sess.run(y, {x: feed}), want)
    np.testing.assert_array_equal(sess.run([y], {x: feed})[0], want)


def test_wrong_shapes_and_dtypes_after_native_calls_raise_the_same_errors():
    x = gc.placeholder(gc.int32, (2,), name="x")
    y = x * 2
    f = gc.function([x], y)
    sess = gc.Session()
    good = np.array([1, 2], np.int32)
    for _ in range(2):
        f(good)
        sess.run(y, {x: good})
    for run in (f, lambda a: sess.run(y, {x: a})):
        with pytest.raises(gc.FeedError, match=r"placeholder x: expected int32\(2,\), got int32\(3,\)"):
            run(np.ones(3, np.int32))
        with pytest.raises(gc.FeedError, match="does not cast"):
            run(np.ones(2, np.float32))
        with pytest.raises(gc.FeedError, match="out of range"):
            run(np.array([1, 2**40], np.int64))
        np.testing.assert_array_equal(run(good), [2, 4])


def test_native_function_checks_the_argument_count_and_keeps_references():
    x = gc.placeholder(gc.float32, (3,), name="x")
    f = gc.function([x], x + 1.0)
    a = np.ones(3, np.float32)
    f(a)
    program = f.program()
    args = [(slot, np.dtype(np.float32), (3,)) for _, slot in program.feed_slots]
    args += [(slot, np.dtype(dtype), shape) for shape, dtype, slot in program.out_slots]
    words = arraycall.spec_words(1, program.template(), program.bases["arena"], program.plan.arena_bytes, args,
                                 program.entry, True, MISS)
    native = arraycall.native_function(words)
    out = np.empty(3, np.float32)
    before = sys.getrefcount(MISS), sys.getrefcount(arraycall.DONE), sys.getrefcount(a)
    for _ in range(100):
        assert native((a,), out) is arraycall.DONE
        assert native((a,)) is MISS  # too few arguments: nothing runs
        assert native((a,), out, out) is MISS  # too many
        assert native((a.astype(np.float64),), out) is MISS  # checked: wrong dtype
        assert native((a,), out[:2]) is MISS  # an output of the wrong shape
    assert (sys.getrefcount(MISS), sys.getrefcount(arraycall.DONE), sys.getrefcount(a)) == before
    np.testing.assert_array_equal(out, [2, 2, 2])


def test_the_layout_check_refuses_an_unexpected_struct(monkeypatch):
    arraycall.struct_layout.cache_clear()
    try:
        monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)
        assert arraycall.struct_layout() is None
    finally:
        monkeypatch.undo()
        arraycall.struct_layout.cache_clear()
    assert arraycall.struct_layout() is not None
