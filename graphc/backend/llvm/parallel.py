"""A persistent native thread pool that runs chunk functions over an index range.

A chunk function has the C signature ``void f(void** args, int64_t begin, int64_t end)``
and processes items ``[begin, end)``. ``parallel_for(f, args, n, min_chunk)`` cuts ``[0, n)``
into contiguous pieces of at least `min_chunk` items (at most `PIECES_PER_THREAD` per
thread, a multiple of the thread count when there are more pieces than threads; a negative
`min_chunk` asks for pieces of at least ``-min_chunk`` items and at most one per thread, for
work whose every piece repeats a fixed cost, such as a split GEMM's packing), wakes the
workers, and the calling thread and the workers claim pieces until none is left (the
caller from the front of the range, the workers from its end, so that with both running
each thread gets the same half of a range from one call to the next, and finds its operands
in its core's cache); it returns when all have run. Claiming pieces rather than assigning
one per thread keeps a worker that is slow to wake (another process holds its core) from
holding up the run: the caller takes its share. No thread ever waits for a particular other
thread to *start*.

The pool is native code (`_POOL_IR`, compiled once per process at O0): the generated program
calls ``parallel_for`` directly, with no Python and no GIL between a step and its pieces.
Workers are Python threads that call the native worker loop through ctypes (so they hold
no GIL) and park on a condition variable. After a job a worker watches for the next one
for at most `WORKER_SPIN_TICKS` of the cycle counter (back-to-back steps then start
without a wake-up), then parks: an idle pool uses no CPU. The caller, once its pieces are
done, watches for the last piece for at most `CALLER_SPIN_TICKS`, then sleeps until the
worker that finishes it signals.

Waking a worker costs microseconds, so a range is split only into pieces of at least
`min_chunk` items; when that gives fewer than two, ``parallel_for`` calls ``f(args, 0, n)``
inline. Choose `min_chunk` with `min_chunk_for` from an estimate of nanoseconds per item.

Thread safety: any number of threads may call ``parallel_for`` at once. One call at a time
owns the workers; a call that finds them busy (another thread's, or a nested call from
inside a chunk) runs its range inline on its own thread, which is also where the core
it would have waited for is busy.
"""

from __future__ import annotations

import ctypes
import math
import os
import platform
import threading
import weakref

from .once import once

__all__ = ["CALLER_SPIN_TICKS", "MIN_PARALLEL_NS", "PIECES_PER_THREAD", "WARM_PARALLEL_NS", "WARM_SPAN_NS",
           "WORKER_SPIN_TICKS",
           "ThreadPool",
           "default_threads", "get_pool", "min_chunk_for"]

# The least work per piece worth handing out: ranges of two pieces (0.3 ms) and more get
# split (why this figure: docs/backend.md, "Threads"; bench/bench_threads.py).
MIN_PARALLEL_NS = 150_000
# The same for the epilogue of a product that ran over the pool: its workers are still
# watching for the next job (`WORKER_SPIN_TICKS`), so a piece needs no wake-up.
WARM_PARALLEL_NS = 15_000
# How much one-thread work (estimated) may separate a job from the next for the pool to count as
# still watching (`WORKER_SPIN_TICKS`): a kernel that soon follows a job on the pool is cut in pieces
# of `WARM_PARALLEL_NS`.
WARM_SPAN_NS = 100_000
# A range is cut into up to this many pieces per thread, claimed dynamically, so a thread
# that another process delays costs its share only while it actually runs a piece.
PIECES_PER_THREAD = 4
# How long (cycle-counter ticks, about 0.3-0.5 ns each: 0.4 ms at the reference Xeon's 2.6 GHz) a
# worker watches for the next job before parking, and the caller for the last piece before
# sleeping: long enough to span the one-thread part of a training step between its split
# products (W2: 0.25 ms), where a parked worker costs a wake-up (docs/backend.md, "Threads").
WORKER_SPIN_TICKS = 1_000_000
CALLER_SPIN_TICKS = 1_000_000

CHUNK_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
PARALLEL_FOR_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
_POOL_FOR_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                ctypes.c_int64)
_WORKER_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)

# The pool's state: int64 words, then a mutex and two condition variables (128 bytes each
# reserved: pthread's types are at most 64 bytes on the platforms Python supports).
TICKET, UNFINISHED, OWNER, FN, ARGS, N, GEN, STOP, THREADS, WORKER_SPIN, CALLER_SPIN, PIECES = range(12)
MUTEX, WORK_COND, DONE_COND, STATE_BYTES = 128, 256, 384, 512
_LOCK, _UNLOCK, _WAIT, _BROADCAST, _SIGNAL = (f"graphc_pool_{n}" for n in ("lock", "unlock", "wait", "broadcast",
                                                                           "signal"))
_PTHREAD = {_LOCK: "pthread_mutex_lock", _UNLOCK: "pthread_mutex_unlock", _WAIT: "pthread_cond_wait",
            _BROADCAST: "pthread_cond_broadcast", _SIGNAL: "pthread_cond_signal"}

# ticket = generation << 32 | end << 16 | next: pieces [next, end) are left. A piece is claimed
# by one compare-and-swap on it, the caller's from the front (next + 1), the workers' from
# the end (end - 1), so a worker that wakes late can never claim a piece of a later job with
# the bounds of an earlier one (the job's fields are read only after the claim). With both
# threads running, the caller runs the first half of every range and the worker the second,
# step after step: the operands a thread touched in the previous step (the same columns of a
# weight matrix in the forward product and in its gradient's update) are still in its core's
# cache.
_POOL_IR = r"""
declare i32 @graphc_pool_lock(ptr)
declare i32 @graphc_pool_unlock(ptr)
declare i32 @graphc_pool_wait(ptr, ptr)
declare i32 @graphc_pool_broadcast(ptr)
declare i32 @graphc_pool_signal(ptr)
declare i64 @llvm.readcyclecounter()
PAUSE_DECL

define internal ptr @word(ptr %s, i64 %i) alwaysinline {
  %p = getelementptr i64, ptr %s, i64 %i
  ret ptr %p
}

define internal ptr @byte(ptr %s, i64 %i) alwaysinline {
  %p = getelementptr i8, ptr %s, i64 %i
  ret ptr %p
}

; Waiting: a waiter watches `ready(state, arg)` for a while (`watch`), then sleeps on a
; condition variable until it holds (`sleep`), checking it under the mutex that its setters
; hold when they signal, so no wake-up is lost.

; whether `ready(%s, %arg)` held within %spin cycle-counter ticks (a pause between looks)
define internal i1 @watch(ptr %s, ptr %ready, i64 %arg, i64 %spin) {
entry:
  %t0 = call i64 @llvm.readcyclecounter()
  br label %look
look:
  %r = call i1 %ready(ptr %s, i64 %arg)
  br i1 %r, label %yes, label %pause
pause:
  PAUSE_CALL
  %t = call i64 @llvm.readcyclecounter()
  %dt = sub i64 %t, %t0
  %patient = icmp ult i64 %dt, %spin
  br i1 %patient, label %look, label %no
yes:
  ret i1 true
no:
  ret i1 false
}

; sleep on the condition variable at byte %cond of the state until `ready(%s, %arg)`
define internal void @sleep(ptr %s, ptr %ready, i64 %arg, i64 %cond) {
entry:
  %m = call ptr @byte(ptr %s, i64 128)
  %c = call ptr @byte(ptr %s, i64 %cond)
  call i32 @graphc_pool_lock(ptr %m)
  br label %check
check:
  %r = call i1 %ready(ptr %s, i64 %arg)
  br i1 %r, label %done, label %wait
wait:
  call i32 @graphc_pool_wait(ptr %c, ptr %m)
  br label %check
done:
  call i32 @graphc_pool_unlock(ptr %m)
  ret void
}

; the caller's wait: every piece of its job has run
define internal i1 @finished(ptr %s, i64 %unused) {
  %unf = call ptr @word(ptr %s, i64 1)
  %u = load atomic i64, ptr %unf seq_cst, align 8
  %done = icmp eq i64 %u, 0
  ret i1 %done
}

; a working worker's watch: the ticket shows a job later than generation %seen
define internal i1 @announced(ptr %s, i64 %seen) {
  %tk = load atomic i64, ptr %s seq_cst, align 8
  %tg = lshr i64 %tk, 32
  %new = icmp ne i64 %tg, %seen
  ret i1 %new
}

; a parked worker's wait: the pool stops, or a job later than generation %seen is published
define internal i1 @called(ptr %s, i64 %seen) {
  %stopp = call ptr @word(ptr %s, i64 7)
  %stop = load atomic i64, ptr %stopp seq_cst, align 8
  %stopping = icmp ne i64 %stop, 0
  %genp = call ptr @word(ptr %s, i64 6)
  %g = load atomic i64, ptr %genp seq_cst, align 8
  %new = icmp ne i64 %g, %seen
  %wake = or i1 %stopping, %new
  ret i1 %wake
}

; claim and run pieces of job %g until none is left (or a later job has started): the caller
; (%back 0) from the front of the range, the workers (%back 1) from its end
define internal void @work(ptr %s, i64 %g, i1 %back) {
entry:
  %unf = call ptr @word(ptr %s, i64 1)
  br label %claim
claim:
  %t = load atomic i64, ptr %s seq_cst, align 8
  %tg = lshr i64 %t, 32
  %same = icmp eq i64 %tg, %g
  br i1 %same, label %check, label %done
check:
  %next = and i64 %t, 65535
  %e16 = lshr i64 %t, 16
  %end = and i64 %e16, 65535
  %left = icmp ult i64 %next, %end
  br i1 %left, label %cas, label %done
cas:
  %front = add i64 %t, 1
  %shrunk = sub i64 %t, 65536
  %t1 = select i1 %back, i64 %shrunk, i64 %front
  %last_one = sub i64 %end, 1
  %i = select i1 %back, i64 %last_one, i64 %next
  %r = cmpxchg ptr %s, i64 %t, i64 %t1 seq_cst seq_cst
  %ok = extractvalue {i64, i1} %r, 1
  br i1 %ok, label %run, label %claim
run:
  %fnp = call ptr @word(ptr %s, i64 3)
  %fn = load ptr, ptr %fnp
  %argp = call ptr @word(ptr %s, i64 4)
  %args = load ptr, ptr %argp
  %np = call ptr @word(ptr %s, i64 5)
  %n = load i64, ptr %np
  %pp = call ptr @word(ptr %s, i64 11)
  %p = load i64, ptr %pp
  %ni = mul i64 %n, %i
  %begin = udiv i64 %ni, %p
  %i1 = add i64 %i, 1
  %ni1 = mul i64 %n, %i1
  %stop = udiv i64 %ni1, %p
  call void %fn(ptr %args, i64 %begin, i64 %stop)
  %old = atomicrmw sub ptr %unf, i64 1 seq_cst
  %last = icmp eq i64 %old, 1
  br i1 %last, label %signal, label %claim
signal:
  %m = call ptr @byte(ptr %s, i64 128)
  %dc = call ptr @byte(ptr %s, i64 384)
  call i32 @graphc_pool_lock(ptr %m)
  call i32 @graphc_pool_signal(ptr %dc)
  call i32 @graphc_pool_unlock(ptr %m)
  br label %claim
done:
  ret void
}

define void @graphc_pool_parallel_for(ptr %s, ptr %f, ptr %args, i64 %n, i64 %min_chunk) {
entry:
  %pos = icmp sgt i64 %n, 0
  br i1 %pos, label %size, label %ret
size:
  %thp = call ptr @word(ptr %s, i64 8)
  %threads = load i64, ptr %thp
  %neg = icmp slt i64 %min_chunk, 0
  %flipped = sub i64 0, %min_chunk
  %least = select i1 %neg, i64 %flipped, i64 %min_chunk
  %mcpos = icmp sgt i64 %least, 1
  %mc = select i1 %mcpos, i64 %least, i64 1
  %byn = sdiv i64 %n, %mc
  %per_thread = select i1 %neg, i64 1, i64 PIECES_PER_THREAD
  %cap0 = mul i64 %threads, %per_thread
  %capbig = icmp ugt i64 %cap0, 65535
  %cap = select i1 %capbig, i64 65535, i64 %cap0
  %fewer = icmp slt i64 %byn, %cap
  %pieces0 = select i1 %fewer, i64 %byn, i64 %cap
  %many = icmp sgt i64 %pieces0, %threads
  %rem = srem i64 %pieces0, %threads
  %rounded = sub i64 %pieces0, %rem
  %pieces = select i1 %many, i64 %rounded, i64 %pieces0
  %two_threads = icmp sge i64 %threads, 2
  %two_pieces = icmp sge i64 %pieces, 2
  %split = and i1 %two_threads, %two_pieces
  br i1 %split, label %try, label %inline
try:
  %ownp = call ptr @word(ptr %s, i64 2)
  %own = cmpxchg ptr %ownp, i64 0, i64 1 seq_cst seq_cst
  %owned = extractvalue {i64, i1} %own, 1
  br i1 %owned, label %publish, label %inline
inline:
  call void %f(ptr %args, i64 0, i64 %n)
  br label %ret
publish:
  %fnp = call ptr @word(ptr %s, i64 3)
  store ptr %f, ptr %fnp
  %argp = call ptr @word(ptr %s, i64 4)
  store ptr %args, ptr %argp
  %np = call ptr @word(ptr %s, i64 5)
  store i64 %n, ptr %np
  %pp = call ptr @word(ptr %s, i64 11)
  store i64 %pieces, ptr %pp
  %unf = call ptr @word(ptr %s, i64 1)
  store atomic i64 %pieces, ptr %unf seq_cst, align 8
  %old = load atomic i64, ptr %s seq_cst, align 8
  %oldg = lshr i64 %old, 32
  %g1 = add i64 %oldg, 1
  %g = and i64 %g1, 4294967295
  %gs = shl i64 %g, 32
  %ps = shl i64 %pieces, 16
  %ticket = or i64 %gs, %ps
  store atomic i64 %ticket, ptr %s seq_cst, align 8
  %m = call ptr @byte(ptr %s, i64 128)
  %wc = call ptr @byte(ptr %s, i64 256)
  call i32 @graphc_pool_lock(ptr %m)
  %genp = call ptr @word(ptr %s, i64 6)
  store atomic i64 %g, ptr %genp seq_cst, align 8
  call i32 @graphc_pool_broadcast(ptr %wc)
  call i32 @graphc_pool_unlock(ptr %m)
  call void @work(ptr %s, i64 %g, i1 false)
  %spinp = call ptr @word(ptr %s, i64 10)
  %spin = load i64, ptr %spinp
  %quick = call i1 @watch(ptr %s, ptr @finished, i64 0, i64 %spin)
  br i1 %quick, label %release, label %sleep
sleep:
  call void @sleep(ptr %s, ptr @finished, i64 0, i64 384)
  br label %release
release:
  store atomic i64 0, ptr %ownp seq_cst, align 8
  br label %ret
ret:
  ret void
}

; a worker: park until a job (or stop), help with it, then with each next job announced while it watches
define void @graphc_pool_worker(ptr %s) {
entry:
  %genp = call ptr @word(ptr %s, i64 6)
  %stopp = call ptr @word(ptr %s, i64 7)
  %spinp = call ptr @word(ptr %s, i64 9)
  %seen = alloca i64
  store i64 0, ptr %seen  ; the state's generation before its first job: never miss that job
  br label %park
park:
  %old = load i64, ptr %seen
  call void @sleep(ptr %s, ptr @called, i64 %old, i64 256)
  %stop = load atomic i64, ptr %stopp seq_cst, align 8
  %stopping = icmp ne i64 %stop, 0
  br i1 %stopping, label %quit, label %take
take:
  %g = load atomic i64, ptr %genp seq_cst, align 8
  store i64 %g, ptr %seen
  call void @work(ptr %s, i64 %g, i1 true)
  br label %watching
watching:  ; after every job, the next one's too
  %done = load i64, ptr %seen
  %spin = load i64, ptr %spinp
  %next = call i1 @watch(ptr %s, ptr @announced, i64 %done, i64 %spin)
  br i1 %next, label %join, label %park
join:
  %tk = load atomic i64, ptr %s seq_cst, align 8
  %tg = lshr i64 %tk, 32
  store i64 %tg, ptr %seen
  call void @work(ptr %s, i64 %tg, i1 true)
  br label %watching
quit:
  ret void
}
"""


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


def min_chunk_for(ns_per_item: float, least_ns: float = MIN_PARALLEL_NS) -> int:
    """The smallest chunk worth handing to another thread, for a kernel's cost per item (pieces
    of at least `least_ns`)."""
    return max(1, math.ceil(least_ns / max(ns_per_item, 1e-3)))


def _pool_ir() -> str:
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
    return (_POOL_IR.replace("PIECES_PER_THREAD", str(PIECES_PER_THREAD))
            .replace("PAUSE_DECL", "declare void @llvm.x86.sse2.pause()" if x86 else "")
            .replace("PAUSE_CALL", "call void @llvm.x86.sse2.pause()" if x86 else ""))


def _jit(text: str, names: tuple[str, ...], symbols: dict[str, int]) -> tuple[object, list[int]]:
    """(engine, addresses of `names`) for a small hand-written module: no optimizer, no disk
    cache, O0 code generation (the code is control flow around calls, where optimization
    gains nothing measurable; compile time in docs/backend.md, "Threads")."""
    from llvmlite import binding as llvm

    from .jit import _lock

    with _lock:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        for name, address in symbols.items():
            llvm.add_symbol(name, address)
        machine = llvm.Target.from_triple(llvm.get_process_triple()).create_target_machine(
            cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=0, jit=True)
        engine = llvm.create_mcjit_compiler(llvm.parse_assembly(text), machine)
        engine.finalize_object()
        return engine, [engine.get_function_address(name) for name in names]


@once
def _native() -> tuple[object, int, int]:
    """(the compiled pool module, address of graphc_pool_parallel_for, of graphc_pool_worker)."""
    libc = ctypes.CDLL(None)
    symbols = {ours: ctypes.cast(getattr(libc, theirs), ctypes.c_void_p).value for ours, theirs in _PTHREAD.items()}
    engine, (parallel_for, worker) = _jit(_pool_ir(), ("graphc_pool_parallel_for", "graphc_pool_worker"), symbols)
    return engine, parallel_for, worker


@once
def _pool_for() -> ctypes._CFuncPtr:
    return _POOL_FOR_FN(_native()[1])


def _thunk(state: int) -> tuple[object, int]:
    """A native ``parallel_for(f, args, n, min_chunk)`` bound to one pool's state."""
    text = f"""
define void @parallel_for(ptr %f, ptr %a, i64 %n, i64 %c) {{
  %s = inttoptr i64 {state} to ptr
  %g = inttoptr i64 {_native()[1]} to ptr
  call void %g(ptr %s, ptr %f, ptr %a, i64 %n, i64 %c)
  ret void
}}
"""
    engine, (address,) = _jit(text, ("parallel_for",), {})
    return engine, address


class ThreadPool:
    """`threads` - 1 persistent native workers plus the calling thread.

    Workers start on first use and live until `close`; sessions share one pool per thread
    count through `get_pool` rather than creating their own.
    """

    def __init__(self, threads: int | None = None):
        self.threads = default_threads() if threads is None else int(threads)
        if self.threads < 1:
            raise ValueError(f"a thread pool needs at least one thread, not {threads}")
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._closed = False
        self._state = ctypes.create_string_buffer(STATE_BYTES + 64)
        self._address = -(-ctypes.addressof(self._state) // 64) * 64
        self._reset()
        self._engine, self._parallel_for = _thunk(self._address)
        self._finalizer = weakref.finalize(self, _stop, self._address, self._state)
        _live_pools.add(self)

    def _reset(self) -> None:
        """Fresh state (a new pool, or the child of a fork, where no worker thread exists)."""
        ctypes.memset(self._address, 0, STATE_BYTES)
        words = (ctypes.c_int64 * 16).from_address(self._address)
        words[THREADS] = 1 if self._closed else self.threads
        words[WORKER_SPIN], words[CALLER_SPIN] = WORKER_SPIN_TICKS, CALLER_SPIN_TICKS
        libc = ctypes.CDLL(None)
        libc.pthread_mutex_init(ctypes.c_void_p(self._address + MUTEX), None)
        for offset in (WORK_COND, DONE_COND):
            libc.pthread_cond_init(ctypes.c_void_p(self._address + offset), None)
        self._workers = []

    def _start_workers(self) -> None:
        with self._lock:
            if self._closed or len(self._workers) >= self.threads - 1:
                return
            worker = _WORKER_FN(_native()[2])
            while len(self._workers) < self.threads - 1:
                # the thread holds the state buffer: it outlives a pool collected without `close`
                thread = threading.Thread(target=_work, args=(worker, self._state, self._address),
                                          name="graphc-worker", daemon=True)
                thread.start()
                self._workers.append(thread)

    def run(self, fn_address: int, args_pointer: int, n: int, min_chunk: int = 1) -> None:
        """Run the chunk function at `fn_address` over ``[0, n)`` with `args_pointer` (GIL released)."""
        self._start_workers()
        _pool_for()(self._address, fn_address, args_pointer or None, n, min_chunk)

    @property
    def parallel_for_address(self) -> int:
        """Address of ``void parallel_for(void* f, void** args, int64_t n, int64_t min_chunk)``."""
        self._start_workers()
        return self._parallel_for

    def close(self) -> None:
        """Stop the workers; later calls run inline."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers, self._workers = self._workers, []
        self._finalizer()
        for thread in workers:
            thread.join()

    def __enter__(self) -> ThreadPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _work(worker: ctypes._CFuncPtr, state: ctypes.Array, address: int) -> None:
    worker(address)  # returns when the pool stops; `state` stays alive until then


def _stop(address: int, state: ctypes.Array) -> None:
    """Make every later call run inline and wake the workers to exit."""
    words = (ctypes.c_int64 * 16).from_address(address)
    libc = ctypes.CDLL(None)
    mutex = ctypes.c_void_p(address + MUTEX)
    libc.pthread_mutex_lock(mutex)
    words[THREADS] = 1
    words[STOP] = 1
    libc.pthread_cond_broadcast(ctypes.c_void_p(address + WORK_COND))
    libc.pthread_mutex_unlock(mutex)


_pools: dict[int, ThreadPool] = {}
_pools_lock = threading.Lock()
_live_pools: weakref.WeakSet[ThreadPool] = weakref.WeakSet()


def _after_fork() -> None:
    """In a forked child no worker exists and the state's lock may be held: start afresh."""
    global _pools_lock
    _pools_lock = threading.Lock()
    for pool in list(_live_pools):
        pool._lock = threading.Lock()
        pool._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def get_pool(threads: int | None = None) -> ThreadPool:
    """The process-wide pool with `threads` threads (default: `default_threads`), shared by sessions."""
    count = default_threads() if threads is None else int(threads)
    with _pools_lock:
        pool = _pools.get(count)
        if pool is None:
            pool = _pools[count] = ThreadPool(count)
        return pool
