"""gc.function: calling convention, checks, updates, shared variables, signatures, threads."""

from __future__ import annotations

import numpy as np
import pytest
from testkit import race_close, run_threads

import graphc as gc
from graphc.backend.llvm import arraycall
from graphc.backend.llvm.arraycall import STACK_ARENA


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_single_and_list_outputs_match_numpy(dtype):
    rng = np.random.default_rng(0)
    x = gc.placeholder(dtype, (None, 3), name="x")
    w = gc.placeholder(dtype, (3,), name="w")
    y = gc.tanh(x * w) + 1.0
    one = gc.function([x, w], y)
    many = gc.function([x, w], [y, gc.sum(y, axis=0)])
    xv, wv = rng.standard_normal((5, 3)).astype(dtype), rng.standard_normal(3).astype(dtype)
    want = np.tanh(xv * wv) + 1.0
    got = one(xv, wv)
    assert isinstance(got, np.ndarray) and got.dtype == dtype and got.shape == (5, 3)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    values = many(xv, wv)
    assert isinstance(values, list) and len(values) == 2
    np.testing.assert_allclose(values[1], want.sum(axis=0), rtol=1e-5)


def test_single_input_and_scalar_output():
    x = gc.placeholder(gc.float64, (4,), name="x")
    f = gc.function(x, gc.sum(x * x))
    out = f(np.arange(4.0))
    assert out.shape == () and out == 14.0


def test_outputs_are_fresh_and_repeats_are_distinct_arrays():
    x = gc.placeholder(gc.float32, (3,), name="x")
    y = x * 2.0
    f = gc.function([x], [y, y])
    a, b = f(np.ones(3, np.float32))
    assert a is not b and not np.shares_memory(a, b)
    c, _ = f(np.full(3, 5.0, np.float32))
    np.testing.assert_array_equal(a, [2, 2, 2])
    np.testing.assert_array_equal(c, [10, 10, 10])


def test_inputs_are_checked_and_converted_like_session_run():
    x = gc.placeholder(gc.float32, (None, 2), name="x")
    n = gc.placeholder(gc.int32, (), name="n")
    f = gc.function([x, n], gc.sum(x) * gc.cast(n, gc.float32))
    assert f([[1.0, 2.0]], 3) == pytest.approx(9.0)  # lists and Python scalars convert
    np.testing.assert_allclose(f(np.ones((4, 2))[::2], np.int32(1)), 4.0)  # float64, strided
    with pytest.raises(TypeError, match="takes 2 input"):
        f(np.ones((1, 2), np.float32))
    with pytest.raises(gc.FeedError, match="placeholder x"):
        f(np.ones((1, 3), np.float32), 1)
    with pytest.raises(gc.FeedError, match="does not cast"):
        f(np.ones((1, 2), np.float32), 1.5)
    with pytest.raises(gc.FeedError, match="cannot convert|does not cast"):
        f("text", 1)


def test_equal_but_distinct_dtype_objects_are_accepted():
    x = gc.placeholder(gc.float32, (2,), name="x")
    f = gc.function([x], x + 1.0)
    f(np.zeros(2, np.float32))
    other = np.dtype(np.float32).newbyteorder("=")
    assert other is not np.dtype(np.float32)
    arr = np.array([1.0, 2.0], np.float32).view(other)
    np.testing.assert_array_equal(f(arr), [2.0, 3.0])
    v = gc.Variable(np.ones(2, np.float32).view(other), name="v")  # the session keeps this dtype object
    np.testing.assert_array_equal(gc.function([x], x * v)(arr), [1.0, 2.0])


def test_trust_input_skips_checks_and_can_be_turned_off():
    x = gc.placeholder(gc.float32, (None,), name="x")
    f = gc.function([x], x * 3.0)
    good = np.arange(4, dtype=np.float32)
    f(good)
    f.trust_input = True
    np.testing.assert_array_equal(f(good), good * 3)
    f.trust_input = False
    np.testing.assert_array_equal(f(np.arange(6, dtype=np.float32)), np.arange(6) * 3.0)
    with pytest.raises(gc.FeedError):
        f(np.ones((2, 2), np.float32))


def test_one_program_per_input_signature():
    x = gc.placeholder(gc.float32, (None,), name="x")
    f = gc.function([x], gc.sum(x))
    for n in (3, 5, 3, 0, 5):
        assert f(np.ones(n, np.float32)) == n
    assert sorted(f.signatures()) == [((0,),), ((3,),), ((5,),)]


def test_updates_apply_after_the_call_and_outputs_see_start_values():
    v = gc.Variable(np.array([1.0, 2.0]), name="v")
    x = gc.placeholder(gc.float64, (2,), name="x")
    f = gc.function([x], [v * 1.0, v], updates=[(v, v + x)])
    before, fetched = f(np.array([10.0, 20.0]))
    np.testing.assert_array_equal(before, [1, 2])
    np.testing.assert_array_equal(fetched, [1, 2])
    np.testing.assert_array_equal(f.session.variable_value(v), [11, 22])
    np.testing.assert_array_equal(f(np.zeros(2))[0], [11, 22])


def test_functions_share_variables_through_a_session():
    v = gc.Variable(np.zeros(3, np.float32), name="v")
    bump = gc.function([], [], updates={v: v + 1.0})
    read = gc.function([], v * 2.0, session=bump.session)
    assert bump() == []
    bump()
    np.testing.assert_array_equal(read(), [4, 4, 4])
    np.testing.assert_array_equal(bump.session.run(v), [2, 2, 2])
    with gc.Session() as sess:
        own = gc.function([], v * 1.0, session=sess)
        np.testing.assert_array_equal(own(), [0, 0, 0])  # another session: its own values
    with pytest.raises(gc.GraphcError, match="session is closed"):
        own()


def test_sgd_steps_match_a_session():
    rng = np.random.default_rng(1)
    x = gc.placeholder(gc.float32, (None, 8), name="x")
    w = gc.Variable(rng.standard_normal((8, 4)).astype(np.float32), name="w")
    loss = gc.mean(gc.tanh(x @ w) ** 2)
    (g,) = gc.gradients(loss, [w])
    step = gc.function([x], loss, updates=[(w, w - 0.1 * g)])
    train = gc.assign(w, w - 0.1 * g)
    xv = rng.standard_normal((16, 8)).astype(np.float32)
    with gc.Session() as sess:
        for _ in range(3):
            want, _ = sess.run([loss, train], {x: xv})
            np.testing.assert_allclose(step(xv), want, rtol=1e-6)
        np.testing.assert_allclose(step.session.variable_value(w), sess.variable_value(w), rtol=1e-6)


def test_large_arena_comes_from_a_pool():
    x = gc.placeholder(gc.float64, (64, 64), name="x")
    y = gc.sum(gc.exp(x @ x) * 0.5 + gc.tanh(x @ x.T))
    f = gc.function([x], y)
    xv = np.random.default_rng(2).standard_normal((64, 64)) * 0.1
    want = np.sum(np.exp(xv @ xv) * 0.5 + np.tanh(xv @ xv.T))
    np.testing.assert_allclose(f(xv), want, rtol=1e-10)
    assert f.program().plan.arena_bytes > STACK_ARENA
    np.testing.assert_allclose(f(xv), want, rtol=1e-10)


def test_concurrent_calls_match_serial_calls():
    rng = np.random.default_rng(3)
    x = gc.placeholder(gc.float32, (None, 16), name="x")
    w = gc.Variable(rng.standard_normal((16, 16)).astype(np.float32), name="w")
    f = gc.function([x], gc.tanh(x @ w).sum(axis=1))
    batches = [rng.standard_normal((32, 16)).astype(np.float32) for _ in range(8)]
    serial = [f(b) for b in batches]
    results: dict[int, list] = {}

    def work(i: int) -> None:
        results[i] = [f(batches[i]) for _ in range(20)]

    run_threads(work, range(8))
    for i, outs in results.items():
        for out in outs:
            np.testing.assert_array_equal(out, serial[i])


def test_concurrent_updates_are_not_lost():
    v = gc.Variable(np.zeros((), np.float64), name="count")
    bump = gc.function([], v, updates=[(v, v + 1.0)])
    run_threads(lambda _: [bump() for _ in range(50)], range(4))
    assert bump.session.variable_value(v) == 200


def test_without_struct_access_the_buffer_path_gives_the_same_results(monkeypatch):
    monkeypatch.setattr(arraycall, "struct_layout", lambda: None)
    v = gc.Variable(np.array([1.0, 2.0], np.float32), name="v")
    x = gc.placeholder(gc.float32, (None,), name="x")
    f = gc.function([x], [x * v, gc.sum(x)], updates=[(v, v * 2.0)])
    out, total = f(np.array([3.0, 4.0], np.float32))
    np.testing.assert_array_equal(out, [3, 8])
    assert total == 7
    np.testing.assert_array_equal(f(np.ones(2, np.float32))[0], [2, 4])
    with pytest.raises(gc.FeedError):
        f(np.ones(3, np.float64).reshape(3, 1))


def test_as_text_stages():
    x = gc.placeholder(gc.float32, (None,), name="x")
    f = gc.function([x], gc.sum(gc.exp(x)))
    with pytest.raises(gc.GraphcError, match="unknown dims"):
        f.as_text("kernels")
    assert "reduce" in f.as_text("kernels", shapes=[(10,)])
    f(np.ones(7, np.float32))  # the first size: a program of its own (unless the disk cache holds the template)
    f(np.ones(5, np.float32))
    assert "f32(s0)" in f.as_text("graph")  # the symbolic program (the last call's): dim 0 of x is s0
    assert "define" in f.as_text("llvm")
    with pytest.raises(gc.GraphcError, match="unknown stage"):
        f.as_text("bytecode")


def test_inputs_variables_and_any_dtype_as_outputs():
    x = gc.placeholder(gc.float32, (3,), name="x")
    v = gc.Variable(np.array([1, 2, 3], np.int64), name="v")
    f = gc.function([x], [x, v, x > 1.0, gc.cast(x, gc.int32)])
    xv = np.array([0.5, 1.5, 2.5], np.float32)
    got = f(xv)
    assert not np.shares_memory(got[0], xv)
    for g, want in zip(got, [xv, np.array([1, 2, 3]), xv > 1.0, xv.astype(np.int32)]):
        assert g.dtype == want.dtype
        np.testing.assert_array_equal(g, want)


def test_unused_inputs_are_checked_but_not_needed():
    x = gc.placeholder(gc.float32, (2,), name="x")
    unused = gc.placeholder(gc.int32, (3,), name="unused")
    f = gc.function([x, unused], x + 1.0)
    np.testing.assert_array_equal(f(np.zeros(2, np.float32), np.zeros(3, np.int32)), [1, 1])
    with pytest.raises(gc.FeedError, match="unused"):
        f(np.zeros(2, np.float32), np.zeros(4, np.int32))


def test_construction_errors():
    x = gc.placeholder(gc.float32, (2,), name="x")
    y = gc.placeholder(gc.float32, (2,), name="y")
    v = gc.Variable(np.zeros(2, np.float32), name="v")
    with pytest.raises(gc.GraphcError, match="placeholders"):
        gc.function([v], v + 1.0)
    with pytest.raises(gc.GraphcError, match="not inputs: y"):
        gc.function([x], x + y)
    with pytest.raises(gc.GraphcError, match="repeat"):
        gc.function([x, x], x)
    with pytest.raises(gc.GraphcError, match="updated twice"):
        gc.function([x], x, updates=[(v, x), (v, x * 2.0)])
    with pytest.raises(gc.GraphcError, match="pair"):
        gc.function([x], x, updates=[v])
    with pytest.raises(gc.GraphcError, match="values"):
        gc.function([x], gc.group(x))
    with gc.Graph().as_default():
        z = gc.placeholder(gc.float32, (2,), name="z")
    with pytest.raises(gc.GraphcError, match="one graph"):
        gc.function([x, z], x)


def test_int_feed_out_of_range_refused():
    labels = gc.placeholder(gc.int32, (None,), name="labels")
    f = gc.function([labels], labels * 2)
    with pytest.raises(gc.FeedError, match="the fed value 3000000000 is out of range for int32"):
        f([3_000_000_000])
    with pytest.raises(gc.FeedError, match="out of range for int32"):
        f(np.array([0, -2**40], np.int64))
    np.testing.assert_array_equal(f(np.array([2**31 - 1], np.int64) // 2), [2**31 - 2])


@pytest.mark.parametrize("trust", [False, True])
def test_close_stops_calls_of_functions_without_variables(trust):
    """Issue 12 #19: a gc.function reading no variables kept running after its session closed
    (its fast path takes no variable lock; found by the #12 audit)."""
    x = gc.placeholder(gc.float32, (None,), name="x")
    f = gc.function([x], x * 2.0)
    f.trust_input = trust
    for n in (3, 3):
        np.testing.assert_array_equal(f(np.ones(n, np.float32)), np.full(n, 2.0))
    f.session.close()
    for n in (3, 3, 4):  # the shape called before, and a new one
        with pytest.raises(gc.GraphcError, match="session is closed"):
            f(np.ones(n, np.float32))
    with pytest.raises(gc.GraphcError, match="session is closed"):
        gc.function([x], x + 1.0, session=f.session)


def test_close_during_function_calls_raises_session_closed_not_keyerror():
    """Calls of a gc.function racing Session.close() finish or raise GraphcError, never a raw KeyError."""
    x = gc.placeholder(gc.float32, (8,), name="x")
    v = gc.Variable(np.zeros(8, np.float32), name="v")
    for _ in range(3):
        f = gc.function([x], gc.sum(v * x), updates=[(v, v + x)])
        g = gc.function([x], gc.sum(v + x), session=f.session)
        f(np.ones(8, np.float32))
        g(np.ones(8, np.float32))
        calls = [lambda fn=fn: fn(np.ones(8, np.float32)) for fn in (f, g, f, g)]
        errors = race_close(calls, f.session.close, "closed")
        assert not errors, errors
