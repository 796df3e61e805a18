"""A persistent thread pool that runs native chunk functions over an index range.

A chunk function has the C signature ``void f(void** args, int64_t begin, int64_t end)``
and processes items ``[begin, end)``. `ThreadPool.run` cuts ``[0, n)`` into contiguous
pieces of at least `min_chunk` items (at most `PIECES_PER_THREAD` per thread), wakes the
workers, and the calling thread and the workers claim pieces until none is left; it returns
when all have run. Claiming pieces rather than assigning one per thread keeps a worker that
is slow to wake (another process holds its core) from holding up the run: the caller takes
its share. Workers call through ctypes, which releases the GIL for the native call, so
pieces run truly in parallel.

Waking a worker costs tens of microseconds, so a range is split only into pieces of at
least `min_chunk` items; when that gives fewer than two, `run` calls ``f(args, 0, n)``
inline. Choose `min_chunk` with `min_chunk_for` from an estimate of nanoseconds per item.

Generated code can also call a pool directly: `ThreadPool.parallel_for_address` is a C
function ``void parallel_for(void* f, void** args, int64_t n, int64_t min_chunk)`` with the
same behaviour as `run` (it takes the GIL while it hands out work).

Thread safety: any number of Python threads may call `run` at once. One call at a time
owns the workers; a call that finds them busy (another thread's, or a nested call from
inside a chunk) runs its range inline on its own thread, which is also where the core
it would have waited for is busy.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import threading

__all__ = ["MIN_PARALLEL_NS", "PIECES_PER_THREAD", "ThreadPool", "default_threads", "get_pool", "min_chunk_for"]

# The least work per piece worth handing out: ranges of two pieces (0.3 ms) and more get
# split (why this figure: docs/backend.md, "Threads"; bench/bench_threads.py).
MIN_PARALLEL_NS = 150_000
# A range is cut into up to this many pieces per thread, claimed dynamically, so a thread
# that another process delays costs its share only while it actually runs a piece.
PIECES_PER_THREAD = 4

CHUNK_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
PARALLEL_FOR_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)


def default_threads() -> int:
    """``GRAPHC_THREADS`` if set, else the number of CPUs this process may run on."""
    value = os.environ.get("GRAPHC_THREADS", "").strip()
    if value:
        threads = int(value)
        if threads < 1:
            raise ValueError(f"GRAPHC_THREADS must be a positive integer, not {value!r}")
        return threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def min_chunk_for(ns_per_item: float) -> int:
    """The smallest chunk worth handing to another thread, for a kernel's cost per item."""
    return max(1, math.ceil(MIN_PARALLEL_NS / max(ns_per_item, 1e-3)))


@functools.lru_cache(maxsize=1024)
def _chunk_function(address: int) -> ctypes._CFuncPtr:
    return CHUNK_FN(address)


class _Job:
    """One `run`: the range cut into pieces, which threads claim one at a time."""

    def __init__(self, fn: ctypes._CFuncPtr, args: int, bounds: list[int]):
        self.fn, self.args, self.bounds = fn, args, bounds
        self._lock = threading.Lock()
        self._next = 0
        self._unfinished = len(bounds) - 1
        self._finished = threading.Lock()
        self._finished.acquire()

    def work(self) -> None:
        """Claim and run pieces until none is left."""
        last = len(self.bounds) - 1
        while True:
            with self._lock:
                i = self._next
                if i >= last:
                    return
                self._next = i + 1
            try:
                self.fn(self.args, self.bounds[i], self.bounds[i + 1])
            finally:
                with self._lock:
                    self._unfinished -= 1
                    if self._unfinished == 0:
                        self._finished.release()

    def wait(self) -> None:
        """Until every piece has run (not until every thread has woken)."""
        self._finished.acquire()


class _Worker:
    """A daemon thread that joins the pool's current job whenever it is woken."""

    def __init__(self, pool: ThreadPool):
        self._pool = pool
        self._wake = threading.Lock()  # a binary semaphore: held = nothing to do
        self._wake.acquire()
        self._thread = threading.Thread(target=self._loop, name="graphc-worker", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            self._wake.acquire()
            if self._pool._stopping:
                return
            job = self._pool._job
            if job is not None:
                job.work()

    def wake(self) -> None:
        """Only the pool's owner calls this; an unconsumed wake-up is not repeated."""
        if self._wake.locked():
            self._wake.release()

    def stop(self) -> None:
        self.wake()
        self._thread.join()


class ThreadPool:
    """`threads` - 1 persistent workers plus the calling thread.

    Workers start on the first split and live until `close`; sessions share one pool per
    thread count through `get_pool` rather than creating their own.
    """

    def __init__(self, threads: int | None = None):
        self.threads = default_threads() if threads is None else int(threads)
        if self.threads < 1:
            raise ValueError(f"a thread pool needs at least one thread, not {threads}")
        self._owner = threading.Lock()
        self._workers: list[_Worker] = []
        self._job: _Job | None = None
        self._stopping = False
        self._pid = os.getpid()
        self._parallel_for = PARALLEL_FOR_FN(self._native_parallel_for)

    def run(self, fn_address: int, args_pointer: int, n: int, min_chunk: int = 1) -> None:
        """Run the chunk function at `fn_address` over ``[0, n)`` with `args_pointer`."""
        if n <= 0:
            return
        fn = _chunk_function(fn_address)
        pieces = min(self.threads * PIECES_PER_THREAD, n // max(1, min_chunk))
        if self.threads < 2 or pieces < 2 or self._stopping or not self._owner.acquire(blocking=False):
            fn(args_pointer, 0, n)
            return
        try:
            job = self._job = _Job(fn, args_pointer, [n * i // pieces for i in range(pieces + 1)])
            for worker in self._ready_workers()[:pieces - 1]:
                worker.wake()
            job.work()
            job.wait()
        finally:
            self._job = None
            self._owner.release()

    @property
    def parallel_for_address(self) -> int:
        """Address of ``void parallel_for(void* f, void** args, int64_t n, int64_t min_chunk)``."""
        return ctypes.cast(self._parallel_for, ctypes.c_void_p).value

    def _native_parallel_for(self, fn_address: int, args_pointer: int, n: int, min_chunk: int) -> None:
        self.run(fn_address, args_pointer or 0, n, min_chunk)

    def _ready_workers(self) -> list[_Worker]:
        if self._pid != os.getpid():  # forked: the parent's worker threads do not exist here
            self._workers, self._pid = [], os.getpid()
        while len(self._workers) < self.threads - 1:
            self._workers.append(_Worker(self))
        return self._workers

    def close(self) -> None:
        """Stop the workers; later `run` calls execute inline."""
        with self._owner:
            self._stopping = True
            if self._pid == os.getpid():
                for worker in self._workers:
                    worker.stop()
            self._workers = []

    def __enter__(self) -> ThreadPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_pools: dict[int, ThreadPool] = {}
_pools_lock = threading.Lock()


def get_pool(threads: int | None = None) -> ThreadPool:
    """The process-wide pool with `threads` threads (default: `default_threads`), shared by sessions."""
    count = default_threads() if threads is None else int(threads)
    with _pools_lock:
        pool = _pools.get(count)
        if pool is None:
            pool = _pools[count] = ThreadPool(count)
        return pool
