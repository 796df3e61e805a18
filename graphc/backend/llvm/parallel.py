"""A persistent thread pool that runs native chunk functions over an index range.

A chunk function has the C signature ``void f(void** args, int64_t begin, int64_t end)``
and processes items ``[begin, end)``. `ThreadPool.run` splits ``[0, n)`` into contiguous
chunks, one per thread, runs one on the calling thread and the others on the pool's
workers, and returns when all are done. Workers call through ctypes, which releases the
GIL for the duration of the native call, so chunks run truly in parallel.

Waking a worker costs tens of microseconds, so a range is split only when each chunk gets
at least `min_chunk` items; below that `run` calls ``f(args, 0, n)`` inline. Choose
`min_chunk` with `min_chunk_for` from an estimate of the nanoseconds per item.

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
import os
import threading

__all__ = ["MIN_PARALLEL_NS", "ThreadPool", "default_threads", "get_pool", "min_chunk_for"]

# Below this much work per chunk, splitting costs more than it gains: waking a worker
# and joining it takes about 30-60 us on the 2-core reference machine (see
# docs/benchmarks.md); 150 us per chunk keeps that overhead under ~30%.
MIN_PARALLEL_NS = 150_000

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
    return max(1, int(MIN_PARALLEL_NS / max(ns_per_item, 1e-3)))


@functools.lru_cache(maxsize=1024)
def _chunk_function(address: int) -> ctypes._CFuncPtr:
    return CHUNK_FN(address)


class _Worker:
    """One daemon thread that runs handed-over chunks; two locks act as semaphores."""

    def __init__(self) -> None:
        self._start = threading.Lock()
        self._done = threading.Lock()
        self._start.acquire()
        self._done.acquire()
        self._task: tuple | None = None
        self._thread = threading.Thread(target=self._loop, name="graphc-worker", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            self._start.acquire()
            task = self._task
            if task is None:
                return
            fn, args, begin, end = task
            try:
                fn(args, begin, end)
            finally:
                self._done.release()

    def submit(self, fn: ctypes._CFuncPtr, args: int, begin: int, end: int) -> None:
        self._task = (fn, args, begin, end)
        self._start.release()

    def wait(self) -> None:
        self._done.acquire()

    def stop(self) -> None:
        self._task = None
        self._start.release()
        self._thread.join()


class ThreadPool:
    """`threads` - 1 persistent workers plus the calling thread."""

    def __init__(self, threads: int | None = None):
        self.threads = default_threads() if threads is None else int(threads)
        if self.threads < 1:
            raise ValueError(f"a thread pool needs at least one thread, not {threads}")
        self._owner = threading.Lock()
        self._workers: list[_Worker] = []
        self._pid = os.getpid()
        self._closed = False
        self._parallel_for = PARALLEL_FOR_FN(self._native_parallel_for)

    def run(self, fn_address: int, args_pointer: int, n: int, min_chunk: int = 1) -> None:
        """Run the chunk function at `fn_address` over ``[0, n)`` with `args_pointer`."""
        if n <= 0:
            return
        fn = _chunk_function(fn_address)
        chunks = min(self.threads, n // max(1, min_chunk))
        if chunks < 2 or self._closed or not self._owner.acquire(blocking=False):
            fn(args_pointer, 0, n)
            return
        try:
            workers = self._ready_workers()[:chunks - 1]
            bounds = [n * i // chunks for i in range(chunks + 1)]
            for i, worker in enumerate(workers, start=1):
                worker.submit(fn, args_pointer, bounds[i], bounds[i + 1])
            try:
                fn(args_pointer, bounds[0], bounds[1])
            finally:
                for worker in workers:
                    worker.wait()
        finally:
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
            self._workers.append(_Worker())
        return self._workers

    def close(self) -> None:
        """Stop the workers; later `run` calls execute inline."""
        with self._owner:
            self._closed = True
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
