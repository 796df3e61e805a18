"""Compiled programs: inspection, caching per signature, fresh outputs, concurrency."""

from __future__ import annotations

import re

import numpy as np
import pytest
from testkit import run_threads

import graphc as gc
from graphc.backend.llvm.program import LLVMProgram


def _programs(sess: gc.Session) -> list[LLVMProgram]:
    return [e.program for plan in sess._requests.values() for e in plan.programs.values()]


def test_stages_as_text():
    x = gc.placeholder(gc.float32, (None,), name="x")
    loss = gc.sum(gc.tanh(x) * gc.sigmoid(x) + 0.5 * x * x)
    with gc.Session(backend="llvm", options=gc.CompileOptions(specialize=True)) as sess:
        sess.run(loss, {x: np.ones(100, np.float32)})
        (prog,) = _programs(sess)
    graph = prog.as_text("graph")
    assert "placeholder() : f32(100)" in graph and "sum(" in graph
    kernels = prog.as_text("kernels")
    assert "reduce-inner f32()" in kernels and "tanh" in kernels and "sigmoid" in kernels
    assert kernels.count(" = reduce-inner") == 1  # the elementwise chain is inlined into the sum
    assert "define void @\"graphc_entry\"" in prog.as_text("llvm")
    assert "<8 x float>" in prog.as_text("llvm-opt") or "<16 x float>" in prog.as_text("llvm-opt")
    asm = prog.as_text("asm")
    assert re.search(r"\bv\w+ps\s.*%[yz]mm", asm), "the W1 kernel should use packed AVX registers"
    with pytest.raises(gc.GraphcError, match="unknown stage"):
        prog.as_text("bitcode")


def test_views_cost_no_kernels_and_transposes_reach_blas():
    a = gc.placeholder(gc.float64, (4, 3), name="a")
    b = gc.placeholder(gc.float64, (5, 3), name="b")
    out = gc.reshape(a @ b.T, (-1,))
    with gc.Session(backend="llvm") as sess:
        av, bv = np.arange(12.0).reshape(4, 3), np.arange(15.0).reshape(5, 3)
        np.testing.assert_allclose(sess.run(out, {a: av, b: bv}), (av @ bv.T).ravel())
        (prog,) = _programs(sess)
    kernels = prog.as_text("kernels")
    assert kernels.count(" = gemm") == 1
    assert " = map" in kernels  # the reshape of the product is a copy into the output array
    assert "transpose" not in kernels.split("steps:")[1].split("= map")[0]


def test_programs_are_cached_per_feed_shapes():
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    y = gc.sum(x * 2.0, axis=0)
    with gc.Session(backend="llvm", options=gc.CompileOptions(specialize=True)) as sess:
        for rows in (1, 4, 1, 4, 2):
            np.testing.assert_allclose(sess.run(y, {x: np.ones((rows, 3), np.float32)}), [2.0 * rows] * 3)
        assert len(_programs(sess)) == 3
    with gc.Session(backend="llvm", options=gc.CompileOptions(specialize=False)) as sess:  # symbolic: one program
        for rows in (1, 4, 1, 4, 2):
            np.testing.assert_allclose(sess.run(y, {x: np.ones((rows, 3), np.float32)}), [2.0 * rows] * 3)
        assert len(_programs(sess)) == 1


def test_results_stay_unchanged_by_later_runs():
    x = gc.placeholder(gc.float64, (3,), name="x")
    v = gc.Variable(np.zeros(3), name="v")
    y = x * 2.0
    step = gc.assign_add(v, x)
    with gc.Session(backend="llvm") as sess:
        first = sess.run(y, {x: np.ones(3)})
        v1 = sess.run(step, {x: np.ones(3)})
        second = sess.run(y, {x: np.full(3, 5.0)})
        sess.run(step, {x: np.ones(3)})
        np.testing.assert_array_equal(first, [2, 2, 2])
        np.testing.assert_array_equal(second, [10, 10, 10])
        np.testing.assert_array_equal(v1, [1, 1, 1])
        np.testing.assert_array_equal(sess.run(v), [2, 2, 2])


def test_concurrent_runs_match_serial_runs():
    rng = np.random.default_rng(0)
    x = gc.placeholder(gc.float32, (None, 64), name="x")
    w = gc.Variable(rng.standard_normal((64, 32)).astype(np.float32), name="w")
    h = gc.tanh(x @ w)
    fetches = [gc.sum(h * h, axis=1), gc.argmax(h, axis=1), gc.nn.softmax(h, axis=-1)]
    batches = [rng.standard_normal((rng.integers(1, 300), 64)).astype(np.float32) for _ in range(16)]
    with gc.Session(backend="llvm") as sess:
        serial = [sess.run(fetches, {x: b}) for b in batches]
        results: dict[int, list] = {}
        errors: list[BaseException] = []

        def worker(t: int) -> None:
            try:
                for rep in range(6):
                    i = (t + 3 * rep) % len(batches)
                    results[(t, rep)] = (i, sess.run(fetches, {x: batches[i]}))
            except BaseException as exc:  # noqa: BLE001 (reported below)
                errors.append(exc)

        run_threads(worker, range(8))
    assert not errors, errors
    assert len(results) == 48
    for i, got in results.values():
        for g, s in zip(got, serial[i]):
            np.testing.assert_array_equal(g, s)


def test_concurrent_assignments_are_not_lost():
    v = gc.Variable(np.zeros(4), name="v")
    inc = gc.assign_add(v, 1.0)
    with gc.Session(backend="llvm") as sess:
        run_threads(lambda _: [sess.run(inc) for _ in range(50)], range(8))
        np.testing.assert_array_equal(sess.run(v), np.full(4, 400.0))


def test_thread_count_does_not_change_results():
    rng = np.random.default_rng(1)
    n = 300_007
    x = gc.placeholder(gc.float32, (n,), name="x")
    d = gc.placeholder(gc.float64, (n,), name="d")
    i = gc.placeholder(gc.int32, (n,), name="i")
    m = gc.placeholder(gc.float64, (300, 400), name="m")
    fetches = [gc.sum(x), gc.max(x), gc.min(d), gc.prod(1.0 + d * 1e-6), gc.sum(i), gc.max(i > 0),
               gc.min(gc.reshape(i, (1, n, 1)) < 3), gc.tanh(x) * 2.0, gc.sum(gc.exp(gc.reshape(d, (1, -1))), 1),
               m @ gc.transpose(m), gc.sum(m * m, axis=1)]
    feeds = {x: rng.standard_normal(n).astype(np.float32), d: rng.standard_normal(n),
             i: rng.integers(-5, 6, n).astype(np.int32), m: rng.standard_normal((300, 400))}
    want = gc.Session(backend="reference").run(fetches, feeds)
    one = gc.Session(threads=1).run(fetches, feeds)
    two = gc.Session(threads=2).run(fetches, feeds)
    for k, (a, b, w) in enumerate(zip(one, two, want)):
        if k != 9:  # BLAS may round a product split across threads differently in the last bit
            np.testing.assert_array_equal(a, b, err_msg=str(k))
        tol = 2e-5 if w.dtype == np.float32 else 1e-9
        np.testing.assert_allclose(a, w, rtol=tol, atol=tol, err_msg=str(k))


def test_assignments_written_in_place_keep_run_semantics():
    m = gc.Variable(np.arange(9.0).reshape(3, 3), name="m")
    v = gc.Variable(np.arange(4.0), name="v")
    u = gc.Variable(np.ones(4), name="u")
    with gc.Session(backend="llvm") as sess:
        sess.run(gc.assign(m, gc.transpose(m) * 1.0))  # reads m at other elements than it writes
        np.testing.assert_array_equal(sess.run(m), np.arange(9.0).reshape(3, 3).T)
        old, _, total = sess.run([v * 1.0, gc.group(gc.assign(v, v * 2.0), gc.assign(u, u + v)), gc.sum(v)])
        np.testing.assert_array_equal(old, [0, 1, 2, 3])
        assert total == 6.0
        np.testing.assert_array_equal(sess.run(v), [0, 2, 4, 6])
        np.testing.assert_array_equal(sess.run(u), [1, 2, 3, 4])


def test_an_update_nobody_reads_afterwards_is_written_straight_into_the_variable():
    x = gc.placeholder(gc.float32, (4,), name="x")
    w = gc.Variable(np.ones(4, np.float32), name="w")
    step = gc.assign_sub(w, 0.5 * x)
    with gc.Session(backend="llvm") as sess:
        sess.run(step, {x: np.ones(4, np.float32)})
        sess.run(gc.group(step), {x: np.ones(4, np.float32)})
        np.testing.assert_array_equal(sess.run(w), [0, 0, 0, 0])
        kernels = [p.as_text("kernels") for p in _programs(sess)]
    assert "copy assign" in kernels[0]  # the fetched new value goes to its output array first
    var = re.search(r"(b\d+): variable\[0\]", kernels[1]).group(1)
    assert "copy assign" not in kernels[1] and f"-> {var}[strides 1]" in kernels[1]


def test_repeated_layers_share_their_functions():
    rng = np.random.default_rng(2)
    x = gc.placeholder(gc.float32, (8, 16), name="x")
    ws = [gc.Variable(rng.standard_normal((16, 16)).astype(np.float32) * 0.3) for _ in range(12)]
    h = x
    for w in ws:
        h = gc.tanh(h @ w)
    loss = gc.sum(h)
    fetches = [loss, gc.gradients(loss, ws)]
    feeds = {x: rng.standard_normal((8, 16)).astype(np.float32)}
    with gc.Session(backend="llvm") as sess:
        got = sess.run(fetches, feeds)
        (prog,) = _programs(sess)
    want = gc.Session(backend="reference").run(fetches, feeds)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
    for g, w in zip(got[1], want[1]):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)
    kernels = prog.as_text("kernels")
    steps = len(re.findall(r"\n  [kg]\d+ = ", kernels))
    functions = prog.as_text("llvm").count("define ")
    assert steps > 30 and functions < 12  # 12 forward GEMMs carry their tanh as an epilogue


def test_arena_bytes_are_reused_by_buffers_with_disjoint_lifetimes():
    n = 1 << 17  # one row this long is not a row kernel (rows.SINGLE_ROW_LIMIT): a split sum, then a map
    x = gc.placeholder(gc.float64, (n,), name="x")
    h = x
    for _ in range(10):
        h = gc.sum(h * h, keepdims=True) * h  # h has two readers: each step gets its own buffers
    with gc.Session(backend="llvm") as sess:
        xv = np.linspace(0.99, 1.01, n) / np.sqrt(n)  # sum(h * h) stays near 1
        got = sess.run(h, {x: xv})
        (prog,) = _programs(sess)
    np.testing.assert_allclose(got, gc.Session(backend="reference").run(h, {x: xv}), rtol=1e-9)
    arena = [b for b in prog.plan.buffers if b.kind == "arena"]
    assert len(arena) >= 10 and prog.plan.arena_bytes < sum(b.size * 8 for b in arena) / 3


def _kernel_lines(prog) -> list[str]:
    return re.findall(r"\n  ([kg]\d+ = .*)", prog.as_text("kernels"))


@pytest.mark.parametrize("n", [1000, 200_003])
def test_w1_value_and_gradient_are_one_loop(n):
    x = gc.placeholder(gc.float32, (n,), name="x")
    loss = gc.sum(gc.tanh(x) * gc.sigmoid(x) + 0.5 * x * x)
    (grad,) = gc.gradients(loss, [x])
    xv = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    with gc.Session(backend="llvm") as sess:
        got = sess.run([loss, grad], {x: xv})
        (prog,) = _programs(sess)
    want = gc.Session(backend="reference").run([loss, grad], {x: xv})
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-6)
    assert len(_kernel_lines(prog)) == 1 and "also" in prog.as_text("kernels")


def test_kernels_sharing_a_producer_fuse_into_one_with_several_results():
    rng = np.random.default_rng(3)
    x = gc.placeholder(gc.float64, (5, 70), name="x")
    t = gc.tanh(x)
    fetches = [t * 2.0, t + 1.0, gc.sum(t, axis=1), gc.max(t * t, axis=1), gc.sum(gc.exp(t), axis=0)]
    xv = rng.standard_normal((5, 70))
    with gc.Session(backend="llvm") as sess:
        got = sess.run(fetches, {x: xv})
        (prog,) = _programs(sess)
    want = gc.Session(backend="reference").run(fetches, {x: xv})
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12)
    kernels = _kernel_lines(prog)
    # the row reductions share a loop with both maps; the column sum (other axes) is separate
    assert len(kernels) == 2, kernels


def test_a_reduction_read_by_its_own_siblings_is_not_fused():
    x = gc.placeholder(gc.float32, (4, 9), name="x")
    e = gc.exp(x - gc.max(x, axis=1, keepdims=True))
    soft = e / gc.sum(e, axis=1, keepdims=True)
    xv = np.random.default_rng(4).standard_normal((4, 9)).astype(np.float32)
    with gc.Session(backend="llvm") as sess:
        got = sess.run(soft, {x: xv})
    np.testing.assert_allclose(got, gc.Session(backend="reference").run(soft, {x: xv}), rtol=1e-6)
