"""Collective steps (allreduce, allgather, broadcast) in compiled programs: start, then wait.

A program starts a collective with ``i32 graphc_collective_start_<impl>(i32 kind, i32 dtype,
ptr send, ptr recv, i64 count, i64 root, ptr request)`` and finishes it, as late as the plan
allows (`plan.place_waits`), with ``i32 graphc_collective_wait_<impl>(ptr request)``; the
request lives in a `REQUEST_BYTES` stack slot of the program. Two implementations resolve
those symbols:

* ``c`` (the default): small LLVM functions, compiled once per process, that call MPI's C
  ABI directly: ``MPI_Iallreduce`` / ``MPI_Iallgather`` / ``MPI_Ibcast`` on the mpi4py
  library's ``MPI_COMM_WORLD``; the wait polls ``MPI_Test`` (yielding the CPU every
  `POLLS_BEFORE_YIELD` polls, for oversubscribed machines) until the request completes
  or ``MPI_Wtime`` passes the timeout.
* ``callback``: cffi callbacks into Python that do the same through mpi4py
  (`graphc.runtime.mpi`).

``GRAPHC_MPI_CALL=c|callback`` picks one (measured in docs/distributed.md); ``GRAPHC_MPI_OVERLAP=0``
puts every wait right after its start. Either records
a timeout or MPI error in a flag instead of stopping the program; the program's caller
raises `DistributedError` after the run (`check_after_run`), and later collectives return
at once, so a run waits for at most one timeout.
"""

from __future__ import annotations

import ctypes
import hashlib
import os

import numpy as np
from _cffi_backend import FFI
from llvmlite import ir

from ...errors import GraphcError
from .loops import I8, I32, I64, PTR
from .once import once

KINDS = {"allreduce": 0, "allgather": 1, "broadcast": 2}
DTYPES = {"float32": 0, "float64": 1, "int32": 2, "int64": 3}
BYTES = 4  # dtype code: raw bytes (allgather and broadcast move bytes)
IMPLS = ("c", "callback")
MAX_COUNT = 2**31 - 1
REQUEST_BYTES = 16  # a stack slot that holds any MPI library's MPI_Request (an int in MPICH, a pointer elsewhere)
POLLS_BEFORE_YIELD = 1000  # MPI_Test polls between sched_yield calls (as MPICH's own waits spin, then yield)
_START = ir.FunctionType(I32, [I32, I32, PTR, PTR, I64, I64, PTR, PTR, I64])
_WAIT = ir.FunctionType(I32, [PTR, PTR, I64])
WHAT_BYTES = 512  # the failing collective's description is kept up to this many bytes
IN_PROGRAM = " (a collective of a compiled program)"
_ffi = FFI()


def impl() -> str:
    """The implementation compiled programs call (``GRAPHC_MPI_CALL``, default "c")."""
    name = os.environ.get("GRAPHC_MPI_CALL", "c")
    if name not in IMPLS:
        raise GraphcError(f"GRAPHC_MPI_CALL must be one of {', '.join(IMPLS)}, got {name!r}")
    return name


def overlap() -> bool:
    """Whether waits come as late as is safe (``GRAPHC_MPI_OVERLAP``, default 1) or right after
    their start (0: blocking collectives, to measure what the overlap gains)."""
    value = os.environ.get("GRAPHC_MPI_OVERLAP", "1")
    if value not in ("0", "1"):
        raise GraphcError(f"GRAPHC_MPI_OVERLAP must be 0 or 1, got {value!r}")
    return value == "1"


def symbol(which: str) -> str:
    """The name of the "start" or "wait" function programs call."""
    return f"graphc_collective_{which}_{impl()}"


def call_args(node, count: int) -> tuple[int, int, int, int]:
    """(kind, dtype code, element or byte count, root) of a collective node over `count` input elements."""
    kind = KINDS[node.op]
    if kind == KINDS["allreduce"]:
        code, n = DTYPES[node.dtype.name], count
    else:
        code, n = BYTES, count * node.dtype.itemsize
    if n > MAX_COUNT:
        raise GraphcError(f"{node.op} {node.name}: {n} elements exceed MPI's count limit {MAX_COUNT}")
    return kind, code, n, int(node.attrs.get("root", 0))


def emit_start(module: ir.Module, b: ir.IRBuilder, node, count: int, send: ir.Value, recv: ir.Value,
               request: ir.Value) -> None:
    """Start the collective for `node` from the program's entry; `request` is its `REQUEST_BYTES` slot."""
    kind, code, n, root = call_args(node, count)
    b.call(_declare(module, "start", _START), [ir.Constant(I32, kind), ir.Constant(I32, code), send, recv,
                                               ir.Constant(I64, n), ir.Constant(I64, root), request,
                                               *_what(module, node)])


def emit_wait(module: ir.Module, b: ir.IRBuilder, node, request: ir.Value) -> None:
    """Wait for the collective for `node` started with `request`."""
    b.call(_declare(module, "wait", _WAIT), [request, *_what(module, node)])


def _what(module: ir.Module, node) -> tuple[ir.Value, ir.Constant]:
    """(pointer, length) of a constant string naming the collective, which a failure reports."""
    from ...runtime.mpi_check import describe

    text = describe(node).encode()
    name = "graphc_what_" + hashlib.sha256(text).hexdigest()[:16]
    g = module.globals.get(name)
    if g is None:
        ty = ir.ArrayType(I8, len(text))
        g = ir.GlobalVariable(module, ty, name)
        g.initializer = ir.Constant(ty, bytearray(text))
        g.global_constant = True
        g.linkage = "private"
    return g, ir.Constant(I64, len(text))


def _declare(module: ir.Module, which: str, ty: ir.FunctionType) -> ir.Function:
    name = symbol(which)
    return module.globals.get(name) or ir.Function(module, ty, name)


def symbols() -> dict[str, int]:
    """Symbol -> address for the JIT (compiles the C-ABI helper on first use)."""
    addresses = _c_helper()[0] if impl() == "c" else _callback_addresses()
    return {symbol(which): address for which, address in addresses.items()}


def check_after_run() -> None:
    """Raise DistributedError if a collective of the last run failed."""
    from ...runtime import mpi as comm

    comm.check()


# --- the C-ABI helper ----------------------------------------------------------------------

_HELPER = """
@graphc_mpi_timeout = global double {timeout}
@graphc_mpi_failed = global i32 0
@graphc_mpi_code = global i32 0
@graphc_mpi_what = global [{what_bytes} x i8] zeroinitializer

declare i32 @MPI_Iallreduce(ptr, ptr, i32, {dt}, {op}, {comm}, ptr)
declare i32 @MPI_Iallgather(ptr, i32, {dt}, ptr, i32, {dt}, {comm}, ptr)
declare i32 @MPI_Ibcast(ptr, i32, {dt}, i32, {comm}, ptr)
declare i32 @MPI_Test(ptr, ptr, ptr)
declare double @MPI_Wtime()
declare i32 @sched_yield()
declare void @llvm.memcpy.p0.p0.i64(ptr, ptr, i64, i1)

; record a failure (1: timeout, 2: MPI error `code`) of the collective named by `what`; returns `failed`
define internal i32 @graphc_mpi_fail(i32 %failed, i32 %code, ptr %what, i64 %len) {{
entry:
  %long = icmp ugt i64 %len, {what_max}
  %n = select i1 %long, i64 {what_max}, i64 %len
  call void @llvm.memcpy.p0.p0.i64(ptr @graphc_mpi_what, ptr %what, i64 %n, i1 false)
  %end = getelementptr i8, ptr @graphc_mpi_what, i64 %n
  store i8 0, ptr %end
  store i32 %code, ptr @graphc_mpi_code
  store i32 %failed, ptr @graphc_mpi_failed
  ret i32 %failed
}}

define i32 @graphc_collective_start_c(i32 %kind, i32 %dtype, ptr %send, ptr %recv, i64 %count, i64 %root,
                                      ptr %req, ptr %what, i64 %what_len) {{
entry:
  store {rq} {request_null}, ptr %req
{return_if_failed}
  %n = trunc i64 %count to i32
  %r = trunc i64 %root to i32
  %is0 = icmp eq i32 %dtype, 0
  %is1 = icmp eq i32 %dtype, 1
  %is2 = icmp eq i32 %dtype, 2
  %is3 = icmp eq i32 %dtype, 3
  %d3 = select i1 %is3, {dt} {int64}, {dt} {byte}
  %d2 = select i1 %is2, {dt} {int32}, {dt} %d3
  %d1 = select i1 %is1, {dt} {double}, {dt} %d2
  %dt = select i1 %is0, {dt} {float}, {dt} %d1
  switch i32 %kind, label %bcast [i32 0, label %ar
                                  i32 1, label %ag]
ar:
  %rc0 = call i32 @MPI_Iallreduce(ptr %send, ptr %recv, i32 %n, {dt} %dt, {op} {sum}, {comm} {world}, ptr %req)
  br label %started
ag:
  %rc1 = call i32 @MPI_Iallgather(ptr %send, i32 %n, {dt} %dt, ptr %recv, i32 %n, {dt} %dt, {comm} {world}, ptr %req)
  br label %started
bcast:
  call void @llvm.memcpy.p0.p0.i64(ptr %recv, ptr %send, i64 %count, i1 false)
  %rc2 = call i32 @MPI_Ibcast(ptr %recv, i32 %n, {dt} %dt, i32 %r, {comm} {world}, ptr %req)
  br label %started
started:
  %rc = phi i32 [%rc0, %ar], [%rc1, %ag], [%rc2, %bcast]
  %err = icmp ne i32 %rc, 0
  br i1 %err, label %mpierr, label %ok
ok:
  ret i32 0
mpierr:
  store {rq} {request_null}, ptr %req
  %e = call i32 @graphc_mpi_fail(i32 2, i32 %rc, ptr %what, i64 %what_len)
  ret i32 %e
}}

define i32 @graphc_collective_wait_c(ptr %req, ptr %what, i64 %what_len) {{
entry:
  %flag = alloca i32, align 4
  %status = alloca [{status_bytes} x i8], align 8
{return_if_failed}
  %t0 = call double @MPI_Wtime()
  %limit = load double, ptr @graphc_mpi_timeout
  %deadline = fadd double %t0, %limit
  br label %poll
poll:
  %polls = phi i32 [0, %checked], [%polls1, %clock], [0, %yield]
  %polls1 = add i32 %polls, 1
  %rct = call i32 @MPI_Test(ptr %req, ptr %flag, ptr %status)
  %errt = icmp ne i32 %rct, 0
  br i1 %errt, label %mpierr, label %test
test:
  %fl = load i32, ptr %flag
  %done = icmp ne i32 %fl, 0
  br i1 %done, label %ok, label %clock
clock:
  %now = call double @MPI_Wtime()
  %late = fcmp ogt double %now, %deadline
  %spun = icmp uge i32 %polls1, {polls_before_yield}
  %go = or i1 %late, %spun
  br i1 %go, label %late_or_spun, label %poll
late_or_spun:
  br i1 %late, label %timeout, label %yield
yield:
  %y = call i32 @sched_yield()
  br label %poll
ok:
  ret i32 0
timeout:
  %e1 = call i32 @graphc_mpi_fail(i32 1, i32 0, ptr %what, i64 %what_len)
  ret i32 %e1
mpierr:
  %e2 = call i32 @graphc_mpi_fail(i32 2, i32 %rct, ptr %what, i64 %what_len)
  ret i32 %e2
}}
"""
# The start of both entry points: a collective that failed earlier in the run fails every later one at once.
_RETURN_IF_FAILED = """  %f = load i32, ptr @graphc_mpi_failed
  %bad = icmp ne i32 %f, 0
  br i1 %bad, label %early, label %checked
early:
  ret i32 %f
checked:"""


def helper_ir(MPI) -> str:
    """The C-ABI helper's IR for this MPI library's handle sizes and values."""
    if MPI._sizeof(MPI.Request) > REQUEST_BYTES:
        raise GraphcError(f"this MPI library's MPI_Request takes {MPI._sizeof(MPI.Request)} bytes, more than "
                          f"the {REQUEST_BYTES} graphc reserves; use GRAPHC_MPI_CALL=callback")

    def int_type(kind) -> str:
        return f"i{8 * MPI._sizeof(kind)}"

    return _HELPER.format(
        return_if_failed=_RETURN_IF_FAILED, timeout=_llvm_double(60.0), polls_before_yield=POLLS_BEFORE_YIELD,
        what_bytes=WHAT_BYTES,
        what_max=WHAT_BYTES - 1,
        dt=int_type(MPI.Datatype), op=int_type(MPI.Op), comm=int_type(MPI.Comm),
        rq=int_type(MPI.Request), request_null=MPI.REQUEST_NULL.handle, status_bytes=MPI._sizeof(MPI.Status),
        float=MPI.FLOAT.handle, double=MPI.DOUBLE.handle, int32=MPI.INT32_T.handle, int64=MPI.INT64_T.handle,
        byte=MPI.BYTE.handle, sum=MPI.SUM.handle, world=MPI.COMM_WORLD.handle)


def _llvm_double(value: float) -> str:
    return "0x" + np.float64(value).tobytes()[::-1].hex().upper()


@once
def _c_helper() -> tuple[dict[str, int], object, ctypes.c_double, ctypes.c_int, ctypes.c_int]:
    """({"start", "wait"}: address, compiled helper, its timeout, failed flag and MPI error code as ctypes views)."""
    from ...runtime import mpi as comm
    from .jit import compile_ir

    MPI = comm.mpi()
    lib = ctypes.CDLL(MPI.__file__)  # dlsym searches the extension's dependencies: libmpi
    libc = ctypes.CDLL(None)
    names = ["MPI_Iallreduce", "MPI_Iallgather", "MPI_Ibcast", "MPI_Test", "MPI_Wtime"]
    syms = {name: ctypes.cast(getattr(lib, name), ctypes.c_void_p).value for name in names}
    syms["sched_yield"] = ctypes.cast(libc.sched_yield, ctypes.c_void_p).value
    compiled = compile_ir(helper_ir(MPI), "graphc_collective_start_c", syms)
    engine = compiled.engine
    addresses = {"start": compiled.address, "wait": engine.get_function_address("graphc_collective_wait_c")}
    timeout = ctypes.c_double.from_address(engine.get_global_value_address("graphc_mpi_timeout"))
    failed = ctypes.c_int.from_address(engine.get_global_value_address("graphc_mpi_failed"))
    code = ctypes.c_int.from_address(engine.get_global_value_address("graphc_mpi_code"))
    what = engine.get_global_value_address("graphc_mpi_what")
    comm.add_timeout_hook(lambda seconds: setattr(timeout, "value", seconds))
    comm.add_fail_hook(lambda: _c_failure(MPI, failed.value, code.value, ctypes.string_at(what)))
    return addresses, compiled, timeout, failed, code


def _c_failure(MPI, failed: int, code: int, what: bytes) -> str | None:
    from ...runtime import mpi as comm

    what = what.decode(errors="replace") + IN_PROGRAM
    if failed == 1:
        return (f"{what}: rank {comm.rank()} waited {comm.timeout():g} s for the other ranks (a rank died, hung or "
                "left the collective); set the limit with gc.distributed.set_timeout")
    if failed == 2:
        return f"{what}: MPI error on rank {comm.rank()}: {MPI.Get_error_string(code)}"
    return None


# --- the host callback ---------------------------------------------------------------------

_NP = {v: np.dtype(k) for k, v in DTYPES.items()} | {BYTES: np.dtype(np.uint8)}
_PENDING: dict[int, tuple] = {}  # request slot address -> (mpi4py request, what) of a started collective


def _callback_start(kind: int, dtype: int, send, recv, count: int, root: int, request, what, what_len: int) -> int:
    from ...errors import DistributedError
    from ...runtime import mpi as comm

    dt = _NP[dtype]
    nbytes = count * dt.itemsize
    x = np.frombuffer(_ffi.buffer(send, nbytes), dt)
    out = np.frombuffer(_ffi.buffer(recv, nbytes * (comm.size() if kind == KINDS["allgather"] else 1)), dt)
    slot = int(_ffi.cast("uintptr_t", request))
    _PENDING.pop(slot, None)
    text = _ffi.string(_ffi.cast("char*", what), what_len).decode(errors="replace") + IN_PROGRAM
    try:
        if kind == KINDS["allreduce"]:
            started = comm.start_allreduce_sum(x, out, text)
        elif kind == KINDS["allgather"]:
            started = comm.start_allgather(x, out, text)
        else:
            out[:] = x
            started = comm.start_broadcast(out, root, text)
    except DistributedError:
        return 1  # recorded by comm.fail; the caller raises after the run
    _PENDING[slot] = started
    return 0


def _callback_wait(request, what, what_len: int) -> int:
    from ...errors import DistributedError
    from ...runtime import mpi as comm

    started = _PENDING.pop(int(_ffi.cast("uintptr_t", request)), None)
    if started is None:  # the start failed (recorded)
        return 1
    try:
        comm.wait(*started)
    except DistributedError:
        return 1
    return 0


@once
def _callback_addresses() -> dict[str, int]:
    start = _ffi.callback("int(*)(int, int, void*, void*, int64_t, int64_t, void*, void*, int64_t)", _callback_start,
                          error=2)
    wait = _ffi.callback("int(*)(void*, void*, int64_t)", _callback_wait, error=2)
    _KEEP.extend([start, wait])
    return {"start": int(_ffi.cast("uintptr_t", start)), "wait": int(_ffi.cast("uintptr_t", wait))}


_KEEP: list = []
