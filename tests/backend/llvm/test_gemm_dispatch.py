"""How products run on the pool: split into blocks of rows or columns, or two independent
products at once (a pair). Every form against the reference backend, at odd sizes, with
transposed operands and with feeds against guard pages; the thresholds are lowered so that
small products take these paths."""

from __future__ import annotations

import numpy as np
import pytest
from gemm_checks import close, symbolic_sgd_steps_agree, train_step_agrees
from test_llvm_memory import Guarded

import graphc as gc
from graphc.backend.llvm import blas, pairs
from graphc.backend.llvm.program import LLVMProgram
from graphc.backend.llvm.steps import Buffer, Gemm

SYMBOLIC = gc.CompileOptions(specialize=False)  # the template from the first batch on


@pytest.fixture
def small_products(monkeypatch):
    """Split and pair even tiny products (on the BLAS: graphc's own kernel is test_tiled_gemm.py's)."""
    monkeypatch.setenv("GRAPHC_GEMM", "blas")
    monkeypatch.setattr(blas, "GEMM_MIN_WIDTH", 4)
    monkeypatch.setattr(blas, "GEMM_MIN_PIECE_NS", 0)
    monkeypatch.setattr(pairs, "PAIR_MIN_NS", 0)
    monkeypatch.setattr(pairs, "PAIR_CUT_MIN_NS", 0)


def _run(fetches, feeds, threads: int) -> tuple[list, LLVMProgram]:
    with gc.Session(backend="llvm", threads=threads) as sess:
        got = sess.run(fetches, feeds)
        (prog,) = [e.program for plan in sess._requests.values() for e in plan.programs.values()]
    return got, prog


def _reference(fetches, feeds) -> list:
    with gc.Session(backend="reference") as sess:
        return sess.run(fetches, feeds)


def _agrees_with_guards(fetches, values, threads: int, dtype) -> LLVMProgram:
    """Run on the LLVM backend with the feeds against guard pages (at the end of their pages,
    then at the start) and compare with the reference backend; the program."""
    want = _reference(fetches, values)
    guard = Guarded()
    for at_end in (True, False):
        feeds = {t: guard.array(v, at_end) for t, v in values.items()}
        got, prog = _run(fetches, feeds, threads)
        close(got, want, dtype)
    return prog


def test_split_rule():
    """Columns of C when op(A) is the smaller shared operand, rows otherwise; None when small."""
    assert blas.gemm_split(64, 512, 256) == (False, blas.GEMM_MIN_WIDTH)
    by_rows, chunk = blas.gemm_split(784, 512, 256)
    assert by_rows and chunk >= blas.GEMM_MIN_WIDTH
    assert blas.gemm_split(64, 255, 256) is None  # fewer than two pieces of GEMM_MIN_WIDTH
    assert blas.gemm_split(64, 512, 0) is None
    by_rows, chunk = blas.gemm_split(100, 100_000, 4)  # cheap columns: pieces of more than the least width
    assert not by_rows and chunk * 2.0 * 100 * 4 / blas.GEMM_GFLOPS >= blas.GEMM_MIN_PIECE_NS


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("m,n,k", [(37, 53, 29), (61, 9, 17), (5, 70, 3)])
def test_split_products_match_reference(small_products, dtype, ta, tb, m, n, k):
    rng = np.random.default_rng(m * n + k)
    a = gc.placeholder(dtype, (k, m) if ta else (m, k), name="a")
    b = gc.placeholder(dtype, (n, k) if tb else (k, n), name="b")
    y = (a.T if ta else a) @ (b.T if tb else b)
    fetches = [y, gc.tanh(y) * 0.5]  # a plain product and one with an epilogue
    values = {a: rng.standard_normal(a.shape).astype(dtype), b: rng.standard_normal(b.shape).astype(dtype)}
    prog = _agrees_with_guards(fetches, values, 2, dtype)
    assert "graphc_gemm_chunk" in prog.ir_text  # the split path was built


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_paired_layer_gradients_match_reference(small_products, dtype, threads):
    """The weight gradient and the input gradient of each layer run as pairs."""
    rng = np.random.default_rng(threads)
    x = gc.placeholder(dtype, (13, 21), name="x")
    w1 = gc.placeholder(dtype, (21, 19), name="w1")
    w2 = gc.placeholder(dtype, (19, 21), name="w2")
    h = gc.tanh(gc.tanh(x @ w1) @ w2)
    loss = gc.sum(h * h)
    fetches = [loss, *gc.gradients(loss, [x, w1, w2])]
    values = {t: rng.standard_normal(t.shape).astype(dtype) * 0.5 for t in (x, w1, w2)}
    prog = _agrees_with_guards(fetches, values, threads, dtype)
    assert prog.plan.pairs and "pair_" in prog.ir_text
    steps = list(prog.plan.steps)
    for i in prog.plan.pairs:
        assert isinstance(steps[i], Gemm) and isinstance(steps[i + 1], Gemm)
    _no_shared_bytes(prog.plan)


def _no_shared_bytes(plan) -> None:
    """The two steps of each pair run at once: no arena buffer of one shares a byte with
    another buffer of the other."""
    for i in plan.pairs:
        for x in plan.steps[i].buffers():
            for y in plan.steps[i + 1].buffers():
                if x is not y and x.kind == y.kind == "arena":
                    assert x.slot + x.size * x.dtype.itemsize <= y.slot or y.slot + y.size * y.dtype.itemsize <= x.slot


@pytest.mark.parametrize("gemm", ["blas", "tiled"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("rows", [True, False])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, True)])
def test_balanced_pair_blocks_match_reference(small_products, monkeypatch, gemm, dtype, threads, rows, ta, tb):
    """An unequal pair: the larger product (with an epilogue) is cut in two blocks of rows (or
    columns) of C, the first run after the smaller product, the epilogue once both ran."""
    monkeypatch.setenv("GRAPHC_GEMM", gemm)
    monkeypatch.setattr(pairs, "PAIR_CUT_ALIGN", 1)
    monkeypatch.setattr(pairs, "PAIR_MIN_BLOCK", 3)
    rng = np.random.default_rng(threads + 7 * rows)
    m, n, k = (37, 23, 29) if rows else (23, 37, 29)
    a = gc.placeholder(dtype, (k, m) if ta else (m, k), name="a")
    b = gc.placeholder(dtype, (n, k) if tb else (k, n), name="b")
    c = gc.placeholder(dtype, (21, 29), name="c")
    d = gc.placeholder(dtype, (29, 23), name="d")
    fetches = [gc.tanh((a.T if ta else a) @ (b.T if tb else b)) * 0.5, c @ d]
    values = {t: rng.standard_normal(t.shape).astype(dtype) for t in (a, b, c, d)}
    prog = _agrees_with_guards(fetches, values, threads, dtype)
    steps = list(prog.plan.steps)
    (i,) = prog.plan.pairs
    items = pairs.pair_items((steps[i], steps[i + 1]))
    assert [block[0] for item in items for _, block in item if block] == [rows, rows]
    assert ("_rows" if rows else "_cols") in prog.ir_text


def test_dependent_products_never_pair(small_products):
    rng = np.random.default_rng(5)
    a, b, c = (gc.placeholder(gc.float64, (9, 9), name=n) for n in "abc")
    ab = a @ b
    fetches = [(ab @ c) @ a, ab + 1.0]
    values = {t: rng.standard_normal((9, 9)) for t in (a, b, c)}
    got, prog = _run(fetches, values, threads=2)
    close(got, _reference(fetches, values), np.float64)
    steps = list(prog.plan.steps)
    assert sum(isinstance(s, Gemm) for s in steps) == 3 and prog.plan.pairs == ()


def test_draft_buffers_overlap_by_identity():
    """Pairs are found on the draft plan, before the arena is placed: distinct arena buffers are
    distinct memory (placed apart by liveness after), table buffers are by kind and slot."""
    f4 = np.dtype(np.float32)
    x = Buffer("arena", 0, f4, 16, "x")
    assert pairs.overlap(x, x) and not pairs.overlap(x, Buffer("arena", 0, f4, 16, "y"))
    assert pairs.overlap(Buffer("variable", 2, f4, 4, "v"), Buffer("variable", 2, f4, 4, "w"))
    assert not pairs.overlap(Buffer("variable", 2, f4, 4, "v"), Buffer("output", 2, f4, 4, "o"))


@pytest.mark.parametrize("threads", [1, 2])
def test_symbolic_batch_splits_by_the_fed_size(monkeypatch, threads):
    """A symbolic batch dim: BLAS products that the template's nominal (huge) batch splits over
    the pool, whose least piece the code computes from the fed sizes: inline at small batches,
    in blocks at larger ones (x @ w with the batch as rows, the weight gradient x.T @ d with the
    batch as k, and its SGD update folded in), against the reference at 1, 5, 33 and 1030
    rows, with feeds against guard pages at the small sizes; one program."""
    monkeypatch.setenv("GRAPHC_GEMM", "blas")
    text = symbolic_sgd_steps_agree(threads, 10, (1, 5, 33, 1030),
                                    lambda x, d, w: [x.T @ d, gc.relu(x @ w), (d.T @ x).T * 2.0], seed=5)
    assert "graphc_gemm_chunk_" in text  # a split product


@pytest.mark.parametrize("gemm", ["blas", "tiled"])
@pytest.mark.parametrize("threads", [1, 2])
def test_symbolic_batch_pairs_folded_updates(monkeypatch, gemm, threads):
    """A symbolic batch dim: the two folded SGD updates of a two-layer net write only variables,
    so the template pairs them (the larger cut in two blocks of rows); the code pairs them only
    when both products have the least work at the fed batch (here from batch 9 on: inline at 1
    and 5, paired at 33 and 1030). Variables and loss against the reference backend at each
    batch, feeds against guard pages; one program."""
    monkeypatch.setenv("GRAPHC_GEMM", gemm)
    monkeypatch.setenv("GRAPHC_CACHE", "0")  # no template built with other constants
    monkeypatch.setattr(pairs, "PAIR_MIN_NS", 167)  # m * n * k of at least 5010 per product
    monkeypatch.setattr(pairs, "PAIR_CUT_MIN_NS", 167)
    monkeypatch.setattr(pairs, "PAIR_CUT_ALIGN", 1)  # the larger update in two blocks of rows
    monkeypatch.setattr(pairs, "PAIR_MIN_BLOCK", 4)
    rng = np.random.default_rng(11)
    x = gc.placeholder(gc.float32, (None, 30), name="x")
    t = gc.placeholder(gc.float32, (None, 20), name="t")
    w1 = rng.standard_normal((30, 20)).astype(np.float32) * 0.3
    w2 = rng.standard_normal((20, 20)).astype(np.float32) * 0.3  # 2/3 of w1's gradient work
    guard = Guarded()
    with gc.Session(threads=threads, options=SYMBOLIC) as sess, gc.Session(backend="reference") as ref:
        got, want = ([gc.Variable(w, name=f"w{i}") for i, w in enumerate((w1, w2))] for _ in range(2))
        trains = []
        for v in (got, want):
            loss = gc.sum((gc.tanh(x @ v[0]) @ v[1] - t) ** 2)
            trains.append((loss, gc.group(*[gc.assign_sub(w, 0.01 * g) for w, g in zip(v, gc.gradients(loss, v))])))
        for n in (1, 5, 33, 1030):
            values = {x: rng.standard_normal((n, 30)).astype(np.float32),
                      t: rng.standard_normal((n, 20)).astype(np.float32)}
            for at_end in ((True, False) if n < 100 else (None,)):
                feeds = values if at_end is None else {p: guard.array(v, at_end) for p, v in values.items()}
                (mine, _), (theirs, _) = sess.run(trains[0], feeds), ref.run(trains[1], values)
                np.testing.assert_allclose(mine, theirs, rtol=1e-4)
                for a, b in zip(got, want):
                    np.testing.assert_allclose(sess.variable_value(a), ref.variable_value(b), rtol=1e-4, atol=1e-5)
        assert sess.stats()["symbolic"] == 1 and sess.stats()["specialized"] == 0
        prog = sess.compile(trains[0], feeds)
        assert "pair_" in prog.ir_text and "_rows5_30" in prog.ir_text
        _no_shared_bytes(prog.plan)


@pytest.mark.parametrize("threads", [1, 2])
def test_symbolic_batch_pairs_products_writing_the_arena(monkeypatch, threads):
    """A symbolic batch dim, W2's shape in small: the last layer's folded update pairs with the
    middle layer's input gradient (which writes the arena, cut in blocks of columns: its rows
    are the batch), whose buffers liveness keeps apart from the update's at every size."""
    monkeypatch.setenv("GRAPHC_CACHE", "0")
    monkeypatch.setattr(pairs, "PAIR_MIN_NS", 1)
    monkeypatch.setattr(pairs, "PAIR_CUT_MIN_NS", 1)
    monkeypatch.setattr(pairs, "PAIR_CUT_ALIGN", 1)
    monkeypatch.setattr(pairs, "PAIR_MIN_BLOCK", 4)
    rng = np.random.default_rng(3)
    x = gc.placeholder(gc.float32, (None, 30), name="x")
    y = gc.placeholder(gc.int32, (None,), name="y")
    shapes = [(30, 40), (40, 40), (40, 6)]
    inits = [rng.standard_normal(s).astype(np.float32) * 0.3 for s in shapes]
    guard = Guarded()
    with gc.Session(threads=threads, options=SYMBOLIC) as sess, gc.Session(backend="reference") as ref:
        sides = []
        for _ in range(2):
            ws = [gc.Variable(w) for w in inits]
            h = x
            for i, w in enumerate(ws):
                h = h @ w if i == 2 else gc.relu(h @ w)
            loss = gc.nn.softmax_cross_entropy(h, y)
            sides.append((ws, loss, gc.group(*[gc.assign_sub(w, 0.1 * g) for w, g in zip(ws, gc.gradients(loss, ws))])))
        for n in (1, 3, 40, 700):
            values = {x: rng.standard_normal((n, 30)).astype(np.float32), y: rng.integers(0, 6, n).astype(np.int32)}
            for at_end in ((True, False) if n < 100 else (None,)):
                feeds = values if at_end is None else {p: guard.array(v, at_end) for p, v in values.items()}
                train_step_agrees(sess, ref, sides, feeds, values)
        assert sess.stats()["symbolic"] == 1 and sess.stats()["specialized"] == 0
        plan = sess.compile(sides[0][1:], feeds).plan
        steps = plan.steps
        assert any(b.kind == "arena" for i in plan.pairs for s in steps[i:i + 2] for b in pairs._written(s))
        _no_shared_bytes(plan)
