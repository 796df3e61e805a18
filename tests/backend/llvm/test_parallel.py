"""The kernel thread pool: JIT-compiled chunk functions split over 1, 2 and 4 threads."""

from __future__ import annotations

import ctypes
import os
import threading
import time

import numpy as np
import pytest
from llvmlite import binding as llvm

from graphc.backend.llvm import parallel
from graphc.backend.llvm.parallel import ThreadPool


def _store_loop(label: str, before: str, ty: str, value: str, after: str, compute: str = "") -> str:
    """IR block `label`: out[i] = value for i in [%b, %e), then `after` (compute: lines making value)."""
    return (f"{label}:\n  %i = phi i64 [%b, %{before}], [%next, %{label}]\n{compute}"
            f"  %p = getelementptr {ty}, ptr %out, i64 %i\n  store {ty} {value}, ptr %p\n"
            f"  %next = add i64 %i, 1\n  %more = icmp slt i64 %next, %e\n"
            f"  br i1 %more, label %{label}, label %{after}\n")


def _chunk_function(name: str, ty: str, value: str, compute: str = "") -> str:
    """A chunk function @name(args, b, e) storing value at out[i] = args[0][i] over [b, e)."""
    return (f"define void @{name}(ptr noalias %args, i64 %b, i64 %e) {{\nentry:\n"
            "  %out = load ptr, ptr %args\n  %empty = icmp sge i64 %b, %e\n"
            "  br i1 %empty, label %done, label %loop\n"
            + _store_loop("loop", "entry", ty, value, "done", compute) + "done:\n  ret void\n}\n")


# fill: out[i] = 0.5 * i + (i % 7)   mark: out[i] = begin of the chunk that wrote i
# entry: calls the pool's parallel_for on fill, as generated code would.
_FILL = """  %f = sitofp i64 %i to double
  %half = fmul double %f, 0.5
  %r = srem i64 %i, 7
  %rf = sitofp i64 %r to double
  %v = fadd double %half, %rf
"""
_IR = _chunk_function("fill", "double", "%v", _FILL) + _chunk_function("mark", "i64", "%b") + r"""
declare i64 @pthread_self()

; who: out[i] = id of the thread running the piece. The first piece to finish puts its
; thread's id in the flag and waits (bounded) until a piece of another thread finishes and sets
; the flag to 1, so a pool that ran every piece on one thread shows it (flag != 1), whichever
; end of the range each thread claims from.
define void @who(ptr noalias %args, i64 %b, i64 %e) {
entry:
  %out = load ptr, ptr %args
  %flag_slot = getelementptr ptr, ptr %args, i64 1
  %flag = load ptr, ptr %flag_slot
  %tid = call i64 @pthread_self()
  br label %fill
""" + _store_loop("fill", "entry", "i64", "%tid", "filled") + r"""filled:
  %claim = cmpxchg ptr %flag, i64 0, i64 %tid seq_cst seq_cst
  %first = extractvalue {i64, i1} %claim, 1
  br i1 %first, label %spin, label %other
spin:
  %k = phi i64 [0, %filled], [%k1, %spin]
  %seen = load atomic i64, ptr %flag monotonic, align 8
  %k1 = add i64 %k, 1
  %waiting = icmp ne i64 %seen, 1
  %patient = icmp slt i64 %k1, 2000000000
  %again = and i1 %waiting, %patient
  br i1 %again, label %spin, label %done
other:
  %holder = extractvalue {i64, i1} %claim, 0
  %mine = icmp eq i64 %holder, %tid
  br i1 %mine, label %done, label %signal
signal:
  store atomic i64 1, ptr %flag monotonic, align 8
  br label %done
done:
  ret void
}

define void @entry(ptr %parallel_for, ptr %fn, ptr %args, i64 %n, i64 %min_chunk) {
  call void %parallel_for(ptr %fn, ptr %args, i64 %n, i64 %min_chunk)
  ret void
}
"""

N = 1_000_000


@pytest.fixture(scope="module")
def kernels():
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    tm = target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                      features=llvm.get_host_cpu_features().flatten(), opt=2, jit=True)
    mod = llvm.parse_assembly(_IR)
    mod.triple, mod.data_layout = tm.triple, str(tm.target_data)
    engine = llvm.create_mcjit_compiler(mod, tm)
    engine.finalize_object()
    addresses = {name: engine.get_function_address(name) for name in ("fill", "mark", "who", "entry")}
    yield addresses
    del engine


def _args(out: np.ndarray) -> tuple[ctypes.Array, int]:
    table = (ctypes.c_void_p * 1)(out.ctypes.data)
    return table, ctypes.addressof(table)


def _expected(n: int) -> np.ndarray:
    i = np.arange(n)
    return 0.5 * i + (i % 7)


@pytest.fixture(params=[1, 2, 4])
def pool(request):
    with ThreadPool(request.param) as p:
        yield p


def test_same_result_for_any_thread_count(kernels, pool):
    out = np.full(N, np.nan)
    keep, args = _args(out)
    pool.run(kernels["fill"], args, N, min_chunk=1000)
    np.testing.assert_array_equal(out, _expected(N))


@pytest.mark.parametrize("threads", [2, 4])
def test_pieces_run_on_several_threads(kernels, threads):
    n = 64
    ids, flag = np.zeros(n, np.int64), np.zeros(1, np.int64)
    table = (ctypes.c_void_p * 2)(ids.ctypes.data, flag.ctypes.data)
    with ThreadPool(threads) as pool:
        pool.run(kernels["who"], ctypes.addressof(table), n, 1)
    assert flag[0] == 1 and len(np.unique(ids)) >= 2


@pytest.mark.parametrize("threads", [2, 4])
def test_caller_runs_the_front_and_workers_the_end(kernels, threads):
    """The caller claims pieces from the front of the range, the workers from its end: the
    caller's items are a prefix (empty when the workers took every piece first), so with two
    threads each keeps its half step after step. (`who`'s first piece to finish waits until
    another thread's finishes, so both run pieces: claimed from the front by everyone, the
    caller's would interleave with theirs.)"""
    libc = ctypes.CDLL(None)
    libc.pthread_self.restype = ctypes.c_uint64
    caller = libc.pthread_self()
    n = 64
    for _ in range(5):
        ids, flag = np.zeros(n, np.uint64), np.zeros(1, np.int64)
        table = (ctypes.c_void_p * 2)(ids.ctypes.data, flag.ctypes.data)
        with ThreadPool(threads) as pool:
            pool.run(kernels["who"], ctypes.addressof(table), n, 1)
        mine = ids == caller
        assert flag[0] == 1 and mine[:int(mine.sum())].all() and not mine[-1], ids


def test_chunks_are_contiguous_and_balanced(kernels, pool):
    marks = np.full(N, -1, np.int64)
    keep, args = _args(marks)
    pool.run(kernels["mark"], args, N, min_chunk=1000)
    begins = np.unique(marks)
    expected = 1 if pool.threads == 1 else pool.threads * parallel.PIECES_PER_THREAD
    assert len(begins) == expected and begins[0] == 0
    bounds = np.append(begins, N)
    sizes = np.diff(bounds)
    assert sizes.max() - sizes.min() <= 1
    for b, e in zip(bounds[:-1], bounds[1:]):
        assert np.all(marks[b:e] == b)


@pytest.mark.parametrize("n,min_chunk,chunks", [(0, 1, 0), (1, 1, 1), (3, 1, 2), (5, 1, 4), (100, 1, 8),
                                                (1999, 1000, 1), (2000, 1000, 2), (3000, 1000, 2), (10**6, 10**6, 1)])
def test_piece_count(kernels, n, min_chunk, chunks):
    """Pieces of at least min_chunk items, at most PIECES_PER_THREAD per thread, a multiple of
    the thread count when more than the threads (3 pieces on 2 threads would leave one idle
    for a third of the time), else inline."""
    marks = np.full(max(n, 1), -1, np.int64)
    keep, args = _args(marks)
    with ThreadPool(2) as pool:
        pool.run(kernels["mark"], args, n, min_chunk)
    assert len(np.unique(marks[:n])) == chunks
    if n == 0:
        assert marks[0] == -1


@pytest.mark.parametrize("threads,n,min_chunk,chunks", [(2, 100, -1, 2), (4, 100, -1, 4), (4, 100, -30, 3),
                                                        (2, 100, -60, 1), (3, 10, -1, 3)])
def test_negative_min_chunk_is_one_piece_per_thread(kernels, threads, n, min_chunk, chunks):
    marks = np.full(n, -1, np.int64)
    keep, args = _args(marks)
    with ThreadPool(threads) as pool:
        pool.run(kernels["mark"], args, n, min_chunk)
    assert len(np.unique(marks)) == chunks and marks.min() == 0


def test_concurrent_callers(kernels):
    """Four Python threads share one pool; each gets its own, correct result."""
    pool = ThreadPool(2)
    outs = [np.full(N, np.nan) for _ in range(4)]
    errors = []

    def work(out: np.ndarray) -> None:
        try:
            keep, args = _args(out)
            for _ in range(3):
                out[:] = np.nan
                pool.run(kernels["fill"], args, N, min_chunk=1000)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(out,)) for out in outs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pool.close()
    assert errors == []
    expected = _expected(N)
    for out in outs:
        np.testing.assert_array_equal(out, expected)


def test_parallel_for_from_generated_code(kernels):
    entry = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                             ctypes.c_int64)(kernels["entry"])
    with ThreadPool(2) as pool:
        marks = np.full(N, -1, np.int64)
        keep, args = _args(marks)
        entry(pool.parallel_for_address, kernels["mark"], args, N, 1000)
        assert len(np.unique(marks)) == 2 * parallel.PIECES_PER_THREAD
        out = np.full(N, np.nan)
        keep, args = _args(out)
        entry(pool.parallel_for_address, kernels["fill"], args, N, 1000)
        np.testing.assert_array_equal(out, _expected(N))


def test_caller_finishes_alone_when_workers_never_wake(kernels, monkeypatch):
    """A worker kept off its core (simulated: never started) must not hold up the run."""
    monkeypatch.setattr(ThreadPool, "_start_workers", lambda self: None)
    with ThreadPool(4) as pool:
        out = np.full(N, np.nan)
        keep, args = _args(out)
        pool.run(kernels["fill"], args, N, min_chunk=1000)
        np.testing.assert_array_equal(out, _expected(N))
        marks = np.full(N, -1, np.int64)
        keep, args = _args(marks)
        pool.run(kernels["mark"], args, N, min_chunk=1000)
        assert len(np.unique(marks)) == 4 * parallel.PIECES_PER_THREAD  # split, all run by the caller


def test_jobs_without_watching_sleep_and_wake(kernels):
    """With no spin at all, the caller sleeps until the last piece signals and the workers park
    after every job: both condition-variable waits lose no wake-up."""
    with ThreadPool(3) as pool:
        words = (ctypes.c_int64 * 16).from_address(pool._address)
        words[parallel.WORKER_SPIN] = words[parallel.CALLER_SPIN] = 0
        n = 24_000
        out = np.full(n, np.nan)
        keep, args = _args(out)
        for _ in range(20):
            out[:] = np.nan
            pool.run(kernels["fill"], args, n, min_chunk=1000)
            np.testing.assert_array_equal(out, _expected(n))


def test_idle_workers_park(kernels):
    """After a job the workers stop watching for the next one: an idle pool uses no CPU."""
    with ThreadPool(2) as pool:
        out = np.full(N, np.nan)
        keep, args = _args(out)
        pool.run(kernels["fill"], args, N, min_chunk=1000)
        time.sleep(0.05)  # far longer than WORKER_SPIN_TICKS
        before = time.process_time()
        time.sleep(0.3)
        used = time.process_time() - before
    assert used < 0.05, f"the idle pool used {used:.3f} s of CPU in 0.3 s"


def test_fork_child_runs_with_fresh_workers(kernels):
    """A forked child has none of the parent's worker threads: its pool starts its own."""
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    pool = parallel.get_pool(2)
    out = np.full(N, np.nan)
    keep, args = _args(out)
    pool.run(kernels["fill"], args, N, min_chunk=1000)
    pid = os.fork()
    if pid == 0:  # the child: any failure or hang shows as its exit status
        code = 1
        try:
            ids, flag = np.zeros(64, np.int64), np.zeros(1, np.int64)
            table = (ctypes.c_void_p * 2)(ids.ctypes.data, flag.ctypes.data)
            pool.run(kernels["who"], ctypes.addressof(table), 64, 1)
            code = 0 if flag[0] == 1 and len(np.unique(ids)) >= 2 else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_closed_pool_runs_inline(kernels):
    pool = ThreadPool(2)
    pool.close()
    marks = np.full(1000, -1, np.int64)
    keep, args = _args(marks)
    pool.run(kernels["mark"], args, 1000, 1)
    assert np.all(marks == 0)


def test_thread_counts(monkeypatch):
    monkeypatch.setenv("GRAPHC_THREADS", "3")
    assert parallel.default_threads() == 3
    assert ThreadPool().threads == 3
    assert parallel.get_pool() is parallel.get_pool(3)
    assert parallel.get_pool(1).threads == 1
    monkeypatch.setenv("GRAPHC_THREADS", "0")
    with pytest.raises(ValueError, match="GRAPHC_THREADS"):
        parallel.default_threads()
    monkeypatch.delenv("GRAPHC_THREADS")
    assert parallel.default_threads() >= 1
    with pytest.raises(ValueError, match="at least one thread"):
        ThreadPool(0)


def test_min_chunk_for():
    assert parallel.min_chunk_for(1.0) == parallel.MIN_PARALLEL_NS
    assert parallel.min_chunk_for(parallel.MIN_PARALLEL_NS * 10) == 1
    assert parallel.min_chunk_for(0) >= 1
