"""The MPI world behind gc.distributed and the collective ops: mpi4py on first use, bounded waits.

Every collective this module or a compiled program starts is non-blocking (``MPI_I...``)
and is then polled until it completes or the timeout passes (`set_timeout`, default
``GRAPHC_DIST_TIMEOUT`` seconds or 60). A timeout or an MPI error marks the world
*failed*: later collectives fail at once, and the process exits with status 1 without
``MPI_Finalize`` (which could wait forever for the lost rank). Otherwise ``MPI_Finalize``
runs at exit under a watchdog (`_finalize_within_timeout`).
"""

from __future__ import annotations

import atexit
import faulthandler
import os
import sys
import time
from typing import Any

import numpy as np

from ..errors import DistributedError

INSTALL_HINT = ("gc.distributed needs MPI: install graphc's extra with  pip install 'graphc[mpi]'  "
                "(it brings the mpi4py and mpich packages), then launch with  mpiexec -n 2 python script.py")
DEFAULT_TIMEOUT = 60.0
FINALIZE_GRACE = 5.0  # seconds MPI_Finalize may wait at exit beyond twice the timeout

_MPI: Any = None
_timeout: float | None = None  # set_timeout's value, else GRAPHC_DIST_TIMEOUT, else DEFAULT_TIMEOUT
_failure: str | None = None
_fail_hooks: list = []  # callables that report a failure recorded in native code (or None)
_timeout_hooks: list = []  # callables told the timeout (native code keeps its own copy)


def mpi() -> Any:
    """The mpi4py ``MPI`` module (imported, and MPI initialized, on the first call)."""
    global _MPI
    if _MPI is None:
        try:
            from mpi4py import MPI
        except ImportError as exc:
            raise DistributedError(f"{INSTALL_HINT} ({type(exc).__name__}: {exc})") from None
        MPI.COMM_WORLD.Set_errhandler(MPI.ERRORS_RETURN)
        _MPI = MPI
        atexit.register(_finalize_within_timeout)
    return _MPI


def world() -> Any:
    return mpi().COMM_WORLD


def rank() -> int:
    """This process's rank in the world (0 .. size-1)."""
    return world().Get_rank()


def size() -> int:
    """The number of processes in the world (1 when started without mpiexec)."""
    return world().Get_size()


def timeout() -> float:
    """Seconds any collective may wait for the other ranks."""
    if _timeout is None:
        text = os.environ.get("GRAPHC_DIST_TIMEOUT", str(DEFAULT_TIMEOUT))
        try:
            set_timeout(float(text))
        except (ValueError, DistributedError):
            raise DistributedError(f"GRAPHC_DIST_TIMEOUT must be a positive number of seconds, got {text!r}") from None
    return _timeout


def set_timeout(seconds: float) -> None:
    """How long any collective may wait for the other ranks before raising DistributedError."""
    global _timeout
    if not seconds > 0:
        raise DistributedError(f"the timeout must be a positive number of seconds, got {seconds!r}")
    _timeout = float(seconds)
    for hook in _timeout_hooks:
        hook(_timeout)


def add_timeout_hook(hook) -> None:
    """`hook(seconds)` is called now and whenever the timeout changes."""
    _timeout_hooks.append(hook)
    hook(timeout())


def add_fail_hook(hook) -> None:
    """`hook()` returns the failure message native code recorded, or None (checked by `check`)."""
    _fail_hooks.append(hook)


def fail(message: str) -> DistributedError:
    """Record the world as failed (first message wins) and return the error to raise."""
    global _failure
    if _failure is None:
        _failure = message
        atexit.register(_exit_without_finalize)
    return DistributedError(message)


def check() -> None:
    """Raise DistributedError if a collective failed (here or in compiled code)."""
    if _failure is None:
        for hook in _fail_hooks:
            message = hook()
            if message is not None:
                raise fail(message)
        return
    raise DistributedError(f"the distributed world failed earlier: {_failure}")


def _finalize_within_timeout() -> None:
    """At exit: ``MPI_Finalize``, which waits for every rank, under a watchdog that ends the
    process (status 1, with a traceback saying where it waited) after twice the timeout plus
    `FINALIZE_GRACE` seconds: a rank that died or left would make it wait forever, and the
    longer limit lets a peer blocked in a collective hit its own timeout and report first
    (under plain mpiexec, this rank's exit without finalizing makes the launcher kill it)."""
    if _MPI.Is_finalized():
        return
    faulthandler.dump_traceback_later(2 * timeout() + FINALIZE_GRACE, exit=True)
    _MPI.Finalize()
    faulthandler.cancel_dump_traceback_later()


def _exit_without_finalize() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def wait(request: Any, what: str) -> None:
    """Poll `request` until it completes; DistributedError on an MPI error or the timeout."""
    MPI = mpi()
    deadline = time.monotonic() + timeout()
    try:
        while not request.Test():
            if time.monotonic() > deadline:
                raise fail(f"{what}: rank {rank()} waited {_timeout:g} s for the other ranks (a rank died, "
                           "hung or left the collective); set the limit with gc.distributed.set_timeout")
            time.sleep(0)
    except MPI.Exception as exc:
        raise fail(f"{what}: MPI error on rank {rank()}: {exc}") from None


def _start(what: str) -> Any:
    check()
    return world()


def start_allreduce_sum(x: np.ndarray, out: np.ndarray, what: str = "allreduce") -> tuple[Any, str]:
    """Start the elementwise sum of `x` over the ranks into `out` (same shape); `wait(*started)` finishes it."""
    return _start(what).Iallreduce(x, out, op=mpi().SUM), what


def start_allgather(x: np.ndarray, out: np.ndarray, what: str = "allgather") -> tuple[Any, str]:
    """Start gathering the ranks' `x` (C-contiguous, one shape and dtype) into `out`, in rank order."""
    return _start(what).Iallgather(_bytes(x), _bytes(out)), what


def start_broadcast(out: np.ndarray, root: int, what: str = "broadcast") -> tuple[Any, str]:
    """Start sending rank `root`'s `out` (C-contiguous) into every rank's `out`."""
    return _start(what).Ibcast(_bytes(out), root=root), what


def allreduce_sum(x: np.ndarray, what: str = "allreduce") -> np.ndarray:
    """Elementwise sum of `x` over the ranks."""
    send = np.asarray(x, order="C")
    out = np.empty_like(send)
    wait(*start_allreduce_sum(send, out, what))
    return out


def allgather(x: np.ndarray, what: str = "allgather") -> np.ndarray:
    """The ranks' arrays (all of one shape and dtype) stacked along a new first axis, in rank order."""
    send = np.asarray(x, order="C")
    out = np.empty((size(),) + send.shape, send.dtype)
    wait(*start_allgather(send, out, what))
    return out


def broadcast(x: np.ndarray, root: int, what: str = "broadcast") -> np.ndarray:
    """Rank `root`'s `x` on every rank (same shape and dtype everywhere)."""
    out = np.array(x, copy=True, order="C")
    wait(*start_broadcast(out, root, what))
    return out


def _bytes(a: np.ndarray) -> np.ndarray:
    """The bytes of a C-contiguous array, as a writable uint8 view (MPI moves them as MPI_BYTE)."""
    return a.reshape(-1).view(np.uint8)


def allgather_bytes(data: bytes, what: str) -> list[bytes]:
    """Every rank's byte string, in rank order (lengths may differ)."""
    lengths = allgather(np.array([len(data)], np.int64), what)[:, 0]
    padded = np.zeros(int(lengths.max()), np.uint8)
    padded[:len(data)] = np.frombuffer(data, np.uint8)
    rows = allgather(padded, what)
    return [bytes(row[:n]) for row, n in zip(rows, lengths)]


def barrier() -> None:
    """Wait until every rank calls barrier (bounded by the timeout)."""
    wait(_start("barrier").Ibarrier(), "barrier")
