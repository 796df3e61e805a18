"""The small steps between a network's forward and backward products on both threads
(docs/backend.md, "Threads"): a narrow product (one panel of the tiled kernel) split in blocks
of row tiles, a short-k product split by its stores' cost, a kernel that soon follows a job on
the pool cut in pieces (the pool is warm), and a bias gradient's epilogue deferred into the
pair that follows. Against the reference backend, odd sizes, feeds against guard pages, and
the traced run's pieces (which thread ran what)."""

from __future__ import annotations

import numpy as np
import pytest
from gemm_checks import close, train_step_agrees
from test_llvm_memory import Guarded

import graphc as gc
from graphc.backend.llvm import pairs, tiled

pytestmark = pytest.mark.skipif(tiled.blocking(np.float32) is None, reason="host has no AVX2/FMA kernel")


def _pieces(sess, fetches, feeds) -> dict[str, int]:
    """Pieces per step of a traced run (0 for a step that ran on one thread without the pool)."""
    meta = gc.RunMetadata()
    sess.run(fetches, feeds, options=gc.RunOptions(trace=True), run_metadata=meta)
    return {s.name: len(s.pieces) for s in meta.step_stats}


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("m", [301, 130])
def test_narrow_product_in_row_blocks(monkeypatch, ta, m):
    """A product narrower than a panel (n = 10), large enough for two pieces: a block of row
    tiles per thread (m not a multiple of the tile's rows), plain, with an epilogue, and as a
    folded SGD update of a narrow weight (beta 1, op(A) transposed); feeds against guard pages."""
    monkeypatch.delenv("GRAPHC_GEMM", raising=False)
    rng = np.random.default_rng(m)
    k, n = 523, 10
    a = gc.placeholder(gc.float32, (k, m) if ta else (m, k), name="a")
    w = gc.Variable((rng.standard_normal((k, n)) * 0.05).astype(np.float32), name="w")
    op_a = a.T if ta else a
    y = op_a @ w
    fetches = [y, gc.tanh(y) * 0.5]
    d = gc.placeholder(gc.float32, (m, n), name="d")
    v0 = (rng.standard_normal((k, n)) * 0.05).astype(np.float32)
    v = gc.Variable(v0, name="v")
    train = gc.assign_sub(v, 0.01 * (op_a.T @ d))  # k x n from a k-row op(A): its tiles are rows of v
    values = {a: rng.standard_normal(a.shape).astype(np.float32), d: rng.standard_normal((m, n)).astype(np.float32)}
    guard = Guarded()
    with gc.Session(backend="reference") as ref:
        want = ref.run(fetches, values)
    want_v = v0 - 0.01 * (values[a].T if not ta else values[a]) @ values[d]
    for threads in (1, 2, 3):
        for at_end in (True, False):
            feeds = {t: guard.array(x, at_end) for t, x in values.items()}
            with gc.Session(threads=threads) as sess:
                close(sess.run(fetches, feeds), want, np.float32)
                sess.run(train, feeds)
                np.testing.assert_allclose(sess.variable_value(v), want_v, rtol=1e-4, atol=1e-4)
                if threads == 2 and at_end:
                    pieces = _pieces(sess, [y], feeds)
                    assert list(pieces.values()) == [2], pieces  # one block of row tiles per thread


def test_narrow_product_of_a_symbolic_batch():
    """One symbolic-batch program: the forward product of a narrow last layer splits in row
    blocks at a large batch and runs on one thread at a small one (pieces follow the fed rows);
    the values are the reference's at both, feeds against guard pages."""
    rng = np.random.default_rng(5)
    k, n = 512, 10
    x = gc.placeholder(gc.float32, (None, k), name="x")
    w = gc.Variable((rng.standard_normal((k, n)) * 0.05).astype(np.float32), name="w")
    fetches = [x @ w]
    guard = Guarded()
    with gc.Session(threads=2, options=gc.CompileOptions(specialize=False)) as sess, \
            gc.Session(backend="reference") as ref:  # the template from the first batch on
        for batch, split in ((259, True), (7, False)):
            values = {x: rng.standard_normal((batch, k)).astype(np.float32)}
            for at_end in (True, False):
                close(sess.run(fetches, {x: guard.array(values[x], at_end)}), ref.run(fetches, values), np.float32)
            pieces = _pieces(sess, fetches, values)
            assert list(pieces.values()) == ([2] if split else [0]), (batch, pieces)
        assert sess.stats()["symbolic"] == 1


def test_short_k_product_splits_by_its_stores():
    """A product with k = 10 and a large C (W2's d3 @ W3.T): its work is mostly storing C, which
    the estimate counts (`tiled.STORE_K`), so it runs over the pool; its epilogue after it."""
    rng = np.random.default_rng(6)
    m, n, k = 263, 517, 10
    d = gc.placeholder(gc.float32, (m, k), name="d")
    z = gc.placeholder(gc.float32, (m, n), name="z")
    w = gc.Variable((rng.standard_normal((n, k)) * 0.3).astype(np.float32), name="w")
    fetches = [gc.where(z > 0, d @ w.T, 0.0)]
    values = {d: rng.standard_normal((m, k)).astype(np.float32), z: rng.standard_normal((m, n)).astype(np.float32)}
    guard = Guarded()
    with gc.Session(backend="reference") as ref:
        want = ref.run(fetches, values)
    with gc.Session(threads=2) as sess:
        for at_end in (True, False):
            close(sess.run(fetches, {t: guard.array(v, at_end) for t, v in values.items()}), want, np.float32)
        gemm = [p for name, p in _pieces(sess, fetches, values).items() if name.startswith("g")]
        assert gemm and gemm[0] >= 2, gemm


def test_kernel_after_a_job_on_the_pool_runs_in_pieces():
    """A row kernel (softmax cross-entropy) right after a product that ran over the pool is cut
    in pieces of `WARM_PARALLEL_NS`: the same values as the reference, feeds against guard pages;
    without a product before it, the same kernel runs on one thread."""
    rng = np.random.default_rng(7)
    m, k, n = 1001, 128, 10
    x = gc.placeholder(gc.float32, (m, k), name="x")
    y = gc.placeholder(gc.int32, (m,), name="y")
    logits = gc.placeholder(gc.float32, (m, n), name="logits")
    w = gc.Variable((rng.standard_normal((k, n)) * 0.05).astype(np.float32), name="w")
    after = gc.nn.softmax_cross_entropy(x @ w, y)
    alone = gc.nn.softmax_cross_entropy(logits, y)
    values = {x: rng.standard_normal((m, k)).astype(np.float32), y: rng.integers(0, n, m).astype(np.int32),
              logits: rng.standard_normal((m, n)).astype(np.float32)}
    guard = Guarded()
    with gc.Session(backend="reference") as ref:
        want = ref.run([after, alone], values)
    with gc.Session(threads=2) as sess:
        for at_end in (True, False):
            got = sess.run([after, alone], {t: guard.array(v, at_end) for t, v in values.items()})
            np.testing.assert_allclose(got, want, rtol=1e-5)
        kernels = [p for name, p in _pieces(sess, [after], values).items() if name.startswith("k")]
        assert max(kernels) >= 2, kernels
        assert max(_pieces(sess, [alone], values).values()) == 0


def _mlp_sides(rng, sizes, biases: bool = True):
    """Two copies (variables, loss, SGD step) of a ReLU MLP with biases, softmax cross-entropy on
    int labels: one for the LLVM backend, one for the reference."""
    x = gc.placeholder(gc.float32, (None, sizes[0]), name="x")
    y = gc.placeholder(gc.int32, (None,), name="y")
    inits = [rng.standard_normal(s).astype(np.float32) * 0.3 for s in zip(sizes[:-1], sizes[1:])]
    inits += [rng.standard_normal(s).astype(np.float32) * 0.1 for s in sizes[1:]]
    sides = []
    for _ in range(2):
        ws = [gc.Variable(w) for w in inits]
        h = x
        for i in range(len(sizes) - 1):
            h = h @ ws[i] + ws[len(sizes) - 1 + i]
            h = h if i == len(sizes) - 2 else gc.relu(h)
        loss = gc.nn.softmax_cross_entropy(h, y)
        sides.append((ws, loss, gc.group(*[gc.assign_sub(w, 0.1 * g) for w, g in zip(ws, gc.gradients(loss, ws))])))
    return x, y, sides


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_deferred_epilogues_match_reference(monkeypatch, threads):
    """W2's shape in small, a symbolic batch: each bias gradient (a column sum in the epilogue of
    an input-gradient product) runs inside the pair that follows, beside the product that does
    not read its output, and the other product waits for it (`pairs.deferred_epilogues`). The
    pairs are taken at some batches and not at others (the code's checks), so the epilogue runs
    in the pair, before it, or with the products before it; each once: variables and loss
    against the reference after every step, feeds against guard pages; one program whose
    deferred steps share no arena bytes with the pair's."""
    monkeypatch.setenv("GRAPHC_CACHE", "0")
    monkeypatch.setattr(pairs, "PAIR_MIN_NS", 30)  # m * n * k of at least 900 per product
    monkeypatch.setattr(pairs, "PAIR_CUT_MIN_NS", 30)
    monkeypatch.setattr(pairs, "PAIR_CUT_ALIGN", 1)
    monkeypatch.setattr(pairs, "PAIR_MIN_BLOCK", 4)
    rng = np.random.default_rng(17)
    x, y, sides = _mlp_sides(rng, (30, 70, 70, 6))
    guard = Guarded()
    with gc.Session(threads=threads, options=gc.CompileOptions(specialize=False)) as sess, \
            gc.Session(backend="reference") as ref:  # the template from the first batch on
        for n in (1, 3, 40, 301, 2, 131):
            values = {x: rng.standard_normal((n, 30)).astype(np.float32), y: rng.integers(0, 6, n).astype(np.int32)}
            for at_end in (True, False):
                feeds = {p: guard.array(v, at_end) for p, v in values.items()}
                train_step_agrees(sess, ref, sides, feeds, values)
        assert sess.stats()["symbolic"] == 1 and sess.stats()["specialized"] == 0
        plan = sess.compile(sides[0][1:], feeds).plan
    assert len(plan.deferred) == 2, plan.deferred  # both input gradients' bias sums
    def end(buf):
        return buf.slot + buf.size * buf.dtype.itemsize

    for i in plan.deferred:
        assert plan.times()[i - 1] == plan.times()[i] == plan.times()[i + 1]
        late = [b for b in plan.steps[i - 1].buffers() if b.kind == "arena"]
        for b in (b for s in plan.steps[i:i + 2] for b in s.buffers() if b.kind == "arena"):
            assert all(a is b or end(a) <= b.slot or end(b) <= a.slot for a in late)


def test_pair_ops_put_the_epilogue_first_and_wait_for_it(monkeypatch):
    """The deferred epilogue's thread is item 0 (the caller's, and the first when one thread runs
    both), and a product that reads what the epilogue writes waits for it on the other thread."""
    monkeypatch.setattr(pairs, "PAIR_MIN_NS", 30)  # pairs at these small sizes
    monkeypatch.setattr(pairs, "PAIR_CUT_MIN_NS", 30)
    monkeypatch.setattr(pairs, "PAIR_CUT_ALIGN", 1)
    monkeypatch.setattr(pairs, "PAIR_MIN_BLOCK", 4)
    rng = np.random.default_rng(2)
    x, y, sides = _mlp_sides(rng, (30, 70, 70, 6))
    with gc.Session(threads=2) as sess:
        values = {x: rng.standard_normal((40, 30)).astype(np.float32), y: rng.integers(0, 6, 40).astype(np.int32)}
        plan = sess.compile(sides[0][1:], values).plan
    assert plan.deferred, "no deferred epilogue: the test checks nothing"
    for i in plan.deferred:
        late = plan.steps[i - 1].epilogue
        pair = (plan.steps[i], plan.steps[i + 1])
        ops = pairs.pair_ops(pairs.pair_items(pair, pairs.epilogue_ns(late)), late)
        assert ops[0][0] == ("epilogue", late) and ("epilogue", late) not in ops[1]
        waits = ops[1].index(("wait",)) if ("wait",) in ops[1] else len(ops[1])
        assert all(pairs._independent(op[1], late) for op in ops[1][:waits])  # before the wait: free products
        assert (("signal",) in ops[0]) == (waits < len(ops[1]))


def test_deferred_epilogues_from_two_threads_at_once():
    """Two Python threads run training steps on one shared pool at once: a pair that finds the
    workers busy runs both items on its own thread (the epilogue's first), never waiting for
    itself; each session's variables match the reference's after the same steps."""
    import threading

    rng = np.random.default_rng(23)
    x, y, sides = _mlp_sides(rng, (30, 70, 70, 6))
    values = {x: rng.standard_normal((301, 30)).astype(np.float32), y: rng.integers(0, 6, 301).astype(np.int32)}
    with gc.Session(backend="reference") as ref:
        for _ in range(5):
            ref.run(sides[1][2], values)
        want = [ref.variable_value(w) for w in sides[1][0]]
    results = {}
    graph = gc.get_default_graph()

    def train(name: str) -> None:
        with gc.Session(graph, threads=2) as sess:
            for _ in range(5):
                sess.run(sides[0][2], values)
            results[name] = [sess.variable_value(w) for w in sides[0][0]]

    workers = [threading.Thread(target=train, args=(f"t{i}",)) for i in range(2)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert sorted(results) == ["t0", "t1"]
    for got in results.values():
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
