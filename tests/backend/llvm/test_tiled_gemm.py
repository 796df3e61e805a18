"""graphc's own GEMM kernel (`graphc.backend.llvm.tiled`) against the reference backend: odd
sizes (not multiples of the mr x nr tile), transposed operands, batches, epilogues,
NaN/Inf, several thread counts, and feeds against guard pages."""

from __future__ import annotations

import numpy as np
import pytest
from gemm_checks import close, symbolic_sgd_steps_agree
from test_llvm_memory import Guarded

import graphc as gc
from graphc.backend.llvm import tiled

pytestmark = pytest.mark.skipif(tiled.blocking(np.float32) is None, reason="host has no AVX2/FMA kernel")
SYMBOLIC = gc.CompileOptions(specialize=False)  # the template from the first batch on


@pytest.fixture
def tiled_mode(monkeypatch):
    """Every product the kernel can take runs on it."""
    monkeypatch.setenv("GRAPHC_GEMM", "tiled")


def _run(fetches, feeds, threads: int, backend: str = "llvm"):
    with gc.Session(backend=backend, threads=threads) as sess:
        got = sess.run(fetches, feeds)
        progs = [e.program for plan in sess._requests.values() for e in plan.programs.values()] \
            if backend == "llvm" else []
    return got, progs


SIZES = [(1, 1, 1), (7, 33, 5), (8, 32, 16), (9, 65, 31), (37, 53, 29), (17, 100, 3), (64, 70, 130)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("m,n,k", SIZES)
def test_products_match_reference(tiled_mode, dtype, ta, tb, m, n, k):
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    a = gc.placeholder(dtype, (k, m) if ta else (m, k), name="a")
    b = gc.placeholder(dtype, (n, k) if tb else (k, n), name="b")
    y = (a.T if ta else a) @ (b.T if tb else b)
    fetches = [y, gc.tanh(y) * 0.5]  # a plain product and one with an epilogue
    values = {a: rng.standard_normal(a.shape).astype(dtype), b: rng.standard_normal(b.shape).astype(dtype)}
    want, _ = _run(fetches, values, 1, "reference")
    for threads in (1, 2, 3):
        got, (prog,) = _run(fetches, values, threads)
        close(got, want, dtype)
    assert "graphc_tiled_" in prog.ir_text and "graphc_sgemm" not in prog.ir_text


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batched_and_broadcast_products(tiled_mode, dtype):
    rng = np.random.default_rng(3)
    a = gc.placeholder(dtype, (3, 1, 11, 19), name="a")
    b = gc.placeholder(dtype, (2, 19, 35), name="b")
    c = gc.placeholder(dtype, (2, 35, 19), name="c")
    fetches = [a @ b, gc.relu(a @ gc.transpose(c, (0, 2, 1)))]
    values = {t: rng.standard_normal(t.shape).astype(dtype) for t in (a, b, c)}
    want, _ = _run(fetches, values, 1, "reference")
    got, _ = _run(fetches, values, 2)
    close(got, want, dtype)


def test_non_finite_values_propagate(tiled_mode):
    """NaN and Inf in a row of A (or a column of B) reach exactly the entries numpy gives."""
    a = gc.placeholder(gc.float32, (13, 40), name="a")
    b = gc.placeholder(gc.float32, (40, 45), name="b")
    av = np.ones((13, 40), np.float32)
    bv = np.ones((40, 45), np.float32)
    av[2, 5], av[12, 0], av[7, 3] = np.nan, np.inf, -np.inf
    bv[3, 44] = 0.0  # -inf * 0 -> nan in row 7, column 44 only
    bv[9, 31] = np.inf
    (got,), _ = _run([a @ b], {a: av, b: bv}, 2)
    with np.errstate(invalid="ignore"):
        want = av.astype(np.float64) @ bv.astype(np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-6)


@pytest.mark.parametrize("ta,tb", [(False, False), (True, True)])
@pytest.mark.parametrize("m,n,k", [(9, 65, 31), (1, 33, 7)])
def test_operands_against_guard_pages(tiled_mode, ta, tb, m, n, k):
    """Edge tiles (rows past m, columns past n) never read or write outside the buffers."""
    rng = np.random.default_rng(k)
    a = gc.placeholder(gc.float32, (k, m) if ta else (m, k), name="a")
    b = gc.placeholder(gc.float32, (n, k) if tb else (k, n), name="b")
    y = (a.T if ta else a) @ (b.T if tb else b)
    fetches = [y, gc.sum(y, axis=0)]
    values = {a: rng.standard_normal(a.shape).astype(np.float32), b: rng.standard_normal(b.shape).astype(np.float32)}
    want, _ = _run(fetches, values, 1, "reference")
    guard = Guarded()
    for at_end in (True, False):
        feeds = {t: guard.array(v, at_end) for t, v in values.items()}
        for threads in (1, 2):
            got, _ = _run(fetches, feeds, threads)
            close(got, want, np.float32)


def _deep(dtype) -> int:
    """A k that takes three blocks of the packed panel, the last one shorter."""
    lanes, _, nr = tiled.blocking(dtype)
    return 2 * (tiled.KC_BYTES // (nr * np.dtype(dtype).itemsize)) + 37


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, True), (True, False)])
def test_k_in_several_blocks(tiled_mode, dtype, ta, tb):
    """k beyond one block of the panel: the first block writes C, the others add to it (a plain
    product, one with an epilogue, and an SGD update folded into the product)."""
    rng = np.random.default_rng(5)
    m, n, k = 19, 45, _deep(dtype)
    a = gc.placeholder(dtype, (k, m) if ta else (m, k), name="a")
    b = gc.placeholder(dtype, (n, k) if tb else (k, n), name="b")
    y = (a.T if ta else a) @ (b.T if tb else b)
    values = {a: (rng.standard_normal(a.shape) * 0.1).astype(dtype), b: rng.standard_normal(b.shape).astype(dtype)}
    want, _ = _run([y, gc.tanh(y)], values, 1, "reference")
    for threads in (1, 2):
        got, (prog,) = _run([y, gc.tanh(y)], values, threads)
        close(got, want, dtype)
    assert "graphc_tiled_" in prog.ir_text
    w0 = rng.standard_normal((m, n)).astype(dtype)
    results = []
    for backend in ("reference", "llvm"):
        with gc.Graph().as_default():
            ap = gc.placeholder(dtype, a.shape, name="a")
            bp = gc.placeholder(dtype, b.shape, name="b")
            w = gc.Variable(w0.copy(), name="w")
            step = gc.group(gc.assign_sub(w, 0.5 * ((ap.T if ta else ap) @ (bp.T if tb else bp))))
            with gc.Session(backend=backend, threads=2, options=SYMBOLIC) as sess:
                sess.run(step, {ap: values[a], bp: values[b]})
                results.append(sess.variable_value(w))
    close([results[1]], [results[0]], dtype)


@pytest.mark.parametrize("ta,tb", [(False, False), (True, True)])
def test_several_blocks_against_guard_pages(tiled_mode, ta, tb):
    """Every block of k reads only inside A and B (the prefetch ahead of A touches no memory)."""
    rng = np.random.default_rng(9)
    m, n, k = 9, 33, _deep(np.float32)
    a = gc.placeholder(gc.float32, (k, m) if ta else (m, k), name="a")
    b = gc.placeholder(gc.float32, (n, k) if tb else (k, n), name="b")
    y = (a.T if ta else a) @ (b.T if tb else b)
    values = {a: rng.standard_normal(a.shape).astype(np.float32), b: rng.standard_normal(b.shape).astype(np.float32)}
    want, _ = _run([y], values, 1, "reference")
    guard = Guarded()
    for at_end in (True, False):
        feeds = {t: guard.array(v, at_end) for t, v in values.items()}
        got, _ = _run([y], feeds, 2)
        close(got, want, np.float32)


def test_layer_gradients_match_reference(tiled_mode):
    """An MLP's forward and backward products on the kernel (pairs call it without the pool)."""
    rng = np.random.default_rng(11)
    x = gc.placeholder(gc.float32, (13, 21), name="x")
    w1 = gc.placeholder(gc.float32, (21, 19), name="w1")
    w2 = gc.placeholder(gc.float32, (19, 21), name="w2")
    loss = gc.sum(gc.tanh(gc.relu(x @ w1) @ w2) ** 2)
    fetches = [loss, *gc.gradients(loss, [x, w1, w2])]
    values = {t: (rng.standard_normal(t.shape) * 0.5).astype(np.float32) for t in (x, w1, w2)}
    want, _ = _run(fetches, values, 1, "reference")
    for threads in (1, 2):
        got, _ = _run(fetches, values, threads)
        close(got, want, np.float32)


def test_auto_rule(monkeypatch):
    """auto: any k, a whole panel, a small op(A) when A is transposed; GRAPHC_GEMM overrides it."""
    monkeypatch.delenv("GRAPHC_GEMM", raising=False)
    f4 = np.float32
    assert tiled.use_tiled(f4, 64, 256, 256, False)  # W4's forward product and input gradient
    assert tiled.use_tiled(f4, 256, 256, 64, True)  # W4's weight gradient
    assert tiled.use_tiled(f4, 256, 512, 784, False)
    assert not tiled.use_tiled(f4, 784, 512, 256, True)  # a large transposed A: the BLAS
    assert not tiled.use_tiled(f4, 256, 10, 512, False)  # narrower than a panel
    assert tiled.use_tiled(f4, 4, 64, 100_000, False)  # any k: the panel is packed a block of k at a time
    assert not tiled.use_tiled(np.int32, 4, 64, 4, False)
    monkeypatch.setenv("GRAPHC_GEMM", "tiled")
    assert tiled.use_tiled(f4, 784, 10, 256, True)
    monkeypatch.setenv("GRAPHC_GEMM", "blas")
    assert not tiled.use_tiled(f4, 64, 256, 256, False)
    monkeypatch.setenv("GRAPHC_GEMM", "fast")
    with pytest.raises(ValueError, match="GRAPHC_GEMM"):
        tiled.gemm_mode()


def test_narrow_products_choose_at_run_time(monkeypatch):
    """auto: a product narrower than a panel (nr / 4 <= n < nr) takes the kernel when m * k is
    at least NARROW_MIN_MK, decided when it runs: one symbolic-batch program serves a batch on
    each side of the bound (the forward product and the folded weight-gradient update), with the
    reference backend's values."""
    monkeypatch.delenv("GRAPHC_GEMM", raising=False)
    _, _, nr = tiled.blocking(np.float32)
    n, width = nr // 4 + 2, 512
    assert tiled.narrow(np.float32, 300, n, width) and not tiled.narrow(np.float32, 300, nr // 4 - 1, width)
    rng = np.random.default_rng(8)
    w0 = (rng.standard_normal((width, n)) * 0.05).astype(np.float32)
    xs = [rng.standard_normal((batch, width)).astype(np.float32)  # m * k above, then below the bound
          for batch in (tiled.NARROW_MIN_MK // width + 3, 5)]
    results = {}
    for backend in ("reference", "llvm"):
        with gc.Graph().as_default():
            x = gc.placeholder(gc.float32, (None, width), name="x")
            w = gc.Variable(w0.copy(), name="w")
            y = x @ w
            loss = gc.sum(gc.tanh(y) ** 2)
            step = gc.group(gc.assign_sub(w, 0.1 * gc.gradients(loss, [w])[0]))
            with gc.Session(backend=backend, threads=2, options=SYMBOLIC) as sess:
                for xv in xs:
                    results.setdefault(backend, []).extend(sess.run([y, loss], {x: xv}) + [sess.run(step, {x: xv})])
                    results[backend].append(sess.variable_value(w).copy())
                if backend == "llvm":  # one program per fetch list, for both batches
                    assert sess.stats()["symbolic"] == 2  # one program per fetch list, for both batches
                    for plan in sess._requests.values():
                        (exe,) = plan.programs.values()
                        assert "graphc_tiled_" in exe.program.ir_text and "graphc_sgemm" in exe.program.ir_text
    for got, want in zip(results["llvm"], results["reference"]):
        if want is not None:
            np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)


def test_small_transposed_a_rule(monkeypatch):
    """A transposed op(A) declined only for its size (a template's nominal k) is offered to the
    kernel at run time; not a product the kernel takes anyway, nor a narrow one."""
    monkeypatch.delenv("GRAPHC_GEMM", raising=False)
    f4, big = np.float32, (1 << 20) + 7
    assert tiled.small_transposed_a(f4, 784, 512, big, True)  # W2's x.T @ d at the nominal batch
    assert not tiled.small_transposed_a(f4, 784, 512, 32, True)  # the kernel takes it: no check needed
    assert not tiled.small_transposed_a(f4, 784, 512, big, False)
    assert not tiled.small_transposed_a(f4, 784, 10, big, True)
    monkeypatch.setenv("GRAPHC_GEMM", "blas")
    assert not tiled.small_transposed_a(f4, 784, 512, big, True)


@pytest.mark.parametrize("threads", [1, 2])
def test_symbolic_batch_takes_the_kernel_for_a_small_transposed_a(monkeypatch, threads):
    """A symbolic batch: the weight gradient x.T @ d (k the batch) takes the kernel when op(A)
    has at most AUTO_MAX_A elements at the fed batch (1, 5, 33) and the BLAS past it (300),
    one program, against the reference, its SGD update folded in, feeds against guard pages."""
    monkeypatch.delenv("GRAPHC_GEMM", raising=False)
    text = symbolic_sgd_steps_agree(threads, 64, (1, 5, 33, 300), lambda x, d, w: [x.T @ d, gc.tanh(d.T @ x)], seed=9)
    assert "graphc_tiled_" in text and "graphc_sgemm" in text


def _gemm_pieces(sess, fetches, feeds) -> int:
    """How many pieces the traced run's product step ran in (the kernel: a piece per panel range;
    the BLAS: one block per thread)."""
    meta = gc.RunMetadata()
    sess.run(fetches, feeds, options=gc.RunOptions(trace=True), run_metadata=meta)
    (step,) = [s for s in meta.step_stats if s.kind == "gemm"]
    return len(step.pieces)


def test_split_transposed_a_takes_the_kernel_up_to_split_max_a(monkeypatch):
    """auto: a transposed op(A) above AUTO_MAX_A takes the kernel when the product is split over
    the pool and m * k is at most SPLIT_MAX_A, decided at run time (one symbolic-batch program:
    batches on each side of the bound), the BLAS blocks past it and on one thread; with the SGD
    update folded in, against the reference and guard pages."""
    monkeypatch.delenv("GRAPHC_GEMM", raising=False)
    rng = np.random.default_rng(12)
    _, _, nr = tiled.blocking(np.float32)
    m, n = 300, 4 * nr + 5  # five panels, the last one partial: four pieces on the kernel
    inside, past = tiled.SPLIT_MAX_A // m, tiled.SPLIT_MAX_A // m + 9  # batches (k) on each side of the bound
    assert m * inside > tiled.AUTO_MAX_A
    x = gc.placeholder(gc.float32, (None, m), name="x")
    d = gc.placeholder(gc.float32, (None, n), name="d")
    w = gc.Variable((rng.standard_normal((m, n)) * 0.1).astype(np.float32), name="w")
    fetches = [x.T @ d]
    train = gc.assign_sub(w, 0.01 * (x.T @ d))
    guard = Guarded()
    for threads in (1, 2):
        with gc.Session(threads=threads, options=SYMBOLIC) as sess, gc.Session(backend="reference") as ref:
            for batch in (inside, past):
                values = {x: rng.standard_normal((batch, m)).astype(np.float32),
                          d: rng.standard_normal((batch, n)).astype(np.float32)}
                for at_end in (True, False):
                    feeds = {t: guard.array(v, at_end) for t, v in values.items()}
                    close(sess.run(fetches, feeds), ref.run(fetches, values), np.float32)
                    before = sess.variable_value(w)
                    sess.run(train, feeds)
                    np.testing.assert_allclose(sess.variable_value(w), before - 0.01 * (values[x].T @ values[d]),
                                               rtol=1e-4, atol=1e-4)
                pieces = _gemm_pieces(sess, fetches, values)
                on_kernel = threads == 2 and batch == inside
                assert pieces >= 4 if on_kernel else pieces <= 2, (threads, batch, pieces)
            assert sess.stats()["symbolic"] == 2  # one program per fetch list, for both batches
