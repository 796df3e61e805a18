"""The host O3 pipeline, and the optimizer process that runs it for the JIT.

llvmlite (0.50) leaks about 55 KB per module optimized at O3: it never frees the
`PassInstrumentationCallbacks` of a pass builder, registers fresh callbacks into it on
every run, and building the per-module pipeline leaks too. Reusing a pass builder does not
help, and a module pass manager cannot run twice. So the JIT's cache misses are optimized
and emitted in a child process, `python optimizer.py`, which imports llvmlite only and is
replaced every `REQUESTS_PER_PROCESS` modules; the leak dies with it. If the process
cannot start or dies, compiles run in this process as before. ``GRAPHC_OPT_PROCESS=0``
keeps them in process.

Protocol over the child's stdin/stdout: a request is a frame of IR text; a reply is a frame
of ``b"O"`` plus object code, or ``b"E"`` plus an error message. A frame is a
little-endian uint64 length and that many bytes. EOF on stdin ends the child.

`Forked` compiles one module in a child forked from this process (no interpreter to start:
about 1 ms), whose IR the child makes too, so that a module compiles on another core while
this process compiles its own (llvmlite runs one LLVM call at a time per process). The
child sends one frame back over a pipe and exits with ``os._exit``; anything else (no
fork, a child that fails, dies or takes longer than `FORK_TIMEOUT_S`) gives None, and the
caller compiles in process. `may_fork` says when forking is safe.
"""

from __future__ import annotations

import os
import select
import signal
import struct
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn

if TYPE_CHECKING:
    import subprocess

SPEED_LEVEL = 3
RARE_CALL_PREFIX = "graphc.rare."  # functions of rarecall.py (imported lazily here: a child imports llvmlite only)
REQUESTS_PER_PROCESS = 200
FORK_TIMEOUT_S = 120.0  # a forked compile taking longer is killed (the caller compiles in process)
_LENGTH = struct.Struct("<Q")


def host_target_machine() -> Any:
    """A host target machine (CPU name and features, O3, JIT code model)."""
    from llvmlite import binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                        features=llvm.get_host_cpu_features().flatten(), opt=3, jit=True)


def optimize_module(mod: Any, tm: Any, running: Callable[[], None] | None = None) -> Any:
    """Verify `mod` (triple and layout already set for `tm`) and run the O3 pipeline on it (calling
    `running()` just before: the caller's other threads may take the GIL while it runs).

    A module with rare calls (rarecall.py) then gets the always-inliner, which puts their
    vector variants' mask tests, placed by the loop vectorizer, into the loops.
    """
    from llvmlite import binding as llvm

    mod.verify()
    pto = llvm.create_pipeline_tuning_options(speed_level=SPEED_LEVEL)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pb = llvm.create_pass_builder(tm, pto)
    pipeline = pb.getModulePassManager()
    if running is not None:
        running()
    pipeline.run(mod, pb)
    if any(fn.name.startswith(RARE_CALL_PREFIX) for fn in mod.functions):
        late = llvm.create_new_module_pass_manager()
        late.add_always_inliner_pass()
        late.run(mod, llvm.create_pass_builder(tm, pto))
    return mod


def object_code(ir_text: str, tm: Any) -> bytes:
    """IR text parsed, optimized for `tm` and emitted as an object file."""
    from llvmlite import binding as llvm

    mod = llvm.parse_assembly(ir_text)
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    return tm.emit_object(optimize_module(mod, tm))


def _read(stream: BinaryIO) -> bytes | None:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (n,) = _LENGTH.unpack(head)
    data = stream.read(n)
    return data if len(data) == n else None


def _write(stream: BinaryIO, data: bytes) -> None:
    stream.write(_LENGTH.pack(len(data)) + data)
    stream.flush()


class Process:
    """The child that optimizes; callers serialize requests (jit's lock)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._pid = 0
        self._served = 0
        self.broken = not sys.executable or in_process_only()  # embedded interpreters may have no executable

    def object_code(self, ir_text: str) -> bytes | None:
        """The object code of `ir_text` from the child; None when the child is unavailable."""
        if self.broken:
            return None
        if self._proc is not None and self._pid != os.getpid():  # a fork inherited the parent's child
            self._proc = None
        if self._proc is None or self._served >= REQUESTS_PER_PROCESS:
            self.stop()
            import subprocess  # here only: a process whose programs are all in the disk cache never starts one

            try:
                self._proc = subprocess.Popen([sys.executable, os.path.abspath(__file__)], stdin=subprocess.PIPE,
                                              stdout=subprocess.PIPE, env={**os.environ, "PYTHONSAFEPATH": "1"})
                self._pid = os.getpid()
            except OSError:
                self.broken = True
                return None
            self._served = 0
        try:
            _write(self._proc.stdin, ir_text.encode())
            reply = _read(self._proc.stdout)
        except OSError:
            reply = None
        self._served += 1
        if reply is None:  # the child died: compile in process from now on
            self.stop()
            self.broken = True
            return None
        if reply[:1] == b"E":
            raise RuntimeError(reply[1:].decode(errors="replace"))
        return reply[1:]

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()
                except OSError:  # a dead child: its pipe is broken
                    pass
            proc.wait()


def in_process_only() -> bool:
    """``GRAPHC_OPT_PROCESS=0``: compiles run in this process only (no optimizer process, no fork)."""
    return os.environ.get("GRAPHC_OPT_PROCESS", "1").strip().lower() in ("0", "false", "off", "no")


_NO_FORK_WITH = ("mpi4py.MPI", "jax")  # MPI libraries do not support fork; JAX warns at every fork


def may_fork() -> bool:
    """Whether `Forked` may fork now: on Linux, with one Python thread (a lock that another thread
    holds at the fork, an import's or llvmlite's, would stay held in the child), none of
    `_NO_FORK_WITH` loaded, and compiles not kept in process."""
    return (sys.platform.startswith("linux") and hasattr(os, "fork") and threading.active_count() == 1
            and not any(name in sys.modules for name in _NO_FORK_WITH) and not in_process_only())


class Forked:
    """The object code of the IR `text()` makes, compiled for `tm` in a child forked now (the
    caller checks `may_fork`); `object_code()` waits for it."""

    def __init__(self, text: Callable[[], str], tm: Any):
        self._parent = os.getpid()
        self._pid, self._fd = 0, -1
        self._reply: bytes | None = None
        self._done = False
        read, write = os.pipe()
        try:
            with warnings.catch_warnings():
                # Python 3.12+ warns at a fork while native threads (OpenBLAS's) exist; the child
                # runs only this thread's LLVM compile and leaves by os._exit.
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
        except OSError:
            os.close(read)
            os.close(write)
            return
        if pid == 0:
            _child(read, write, text, tm)
        os.close(write)
        self._pid, self._fd = pid, read

    def object_code(self) -> bytes | None:
        """The child's object code, or None (no child, it failed, died or timed out); the first
        call waits for the child and reaps it, later calls return the same."""
        if self._done or os.getpid() != self._parent:  # a fork of this process has no such child
            return self._reply
        self._done = True
        if not self._pid:
            return None
        blob, deadline = bytearray(), time.monotonic() + FORK_TIMEOUT_S
        try:
            while (left := deadline - time.monotonic()) > 0 and select.select([self._fd], [], [], left)[0]:
                chunk = os.read(self._fd, 1 << 20)
                if not chunk:
                    break
                blob += chunk
            else:  # timed out
                os.kill(self._pid, signal.SIGKILL)
                blob.clear()
        except OSError:
            blob.clear()
        finally:
            os.close(self._fd)
            try:
                status = os.waitpid(self._pid, 0)[1]
            except ChildProcessError:  # reaped elsewhere (SIGCHLD ignored): the frame's length tells
                status = 0
        if status == 0 and len(blob) > _LENGTH.size and _LENGTH.unpack_from(blob)[0] == len(blob) - _LENGTH.size:
            if blob[_LENGTH.size:_LENGTH.size + 1] == b"O":
                self._reply = bytes(blob[_LENGTH.size + 1:])
        return self._reply


def _child(read: int, write: int, text: Callable[[], str], tm: Any) -> NoReturn:
    """The forked child: compile, send one frame, exit without running the parent's exit handlers."""
    status = 1
    try:
        os.close(read)
        reply = b"O" + object_code(text(), tm)
        view = memoryview(_LENGTH.pack(len(reply)) + reply)
        while view:
            view = view[os.write(write, view):]
        status = 0
    except BaseException:  # noqa: BLE001, S110 (the parent sees the status and compiles in process)
        pass
    finally:
        os._exit(status)


def _serve(stdin: BinaryIO, stdout: BinaryIO) -> None:
    tm = host_target_machine()
    while (request := _read(stdin)) is not None:
        try:
            reply = b"O" + object_code(request.decode(), tm)
        except Exception as exc:  # noqa: BLE001 (reported to the compiling process, which raises it)
            reply = b"E" + str(exc).encode()
        _write(stdout, reply)


if __name__ == "__main__":
    _serve(sys.stdin.buffer, sys.stdout.buffer)
