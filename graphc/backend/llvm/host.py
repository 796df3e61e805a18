"""Host calls: how a compiled program hands a value to the host (gc.print, gc.check_numerics).

A `HostCall` step calls ``i32 host(ptr context, i64 index, i32 dtype, ptr data, i64 count)``
through the pointer table's ``host`` slot (`codegen.table_bases`) with the table's context
word; `index` numbers the program's host calls in step order (`steps.host_nodes`). A
nonzero result makes the entry return at once: the rest of the run, the assignments to
variables included, does not happen (`plan.build_steps` writes variables only at the end
in programs with host calls).

In process the callback is one cffi callback into Python for every program: the context
is the key under which the program registered its host nodes (`register`); it runs the
op's `host` rule on a numpy view of the data. An exception there (NumericsError, or
anything print raised) is kept for the calling thread and the callback returns 1; the
executable raises it after the native call (`raise_pending`). Exported libraries install
the C wrapper's own callback (`capi.py`).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence

import numpy as np
from _cffi_backend import FFI
from llvmlite import ir

from ...ir.graph import Tensor
from .loops import I32, I64, PTR
from .once import once

DTYPES = {"float32": 0, "float64": 1, "int32": 2, "int64": 3, "bool": 4}
_TYPE = ir.FunctionType(I32, [PTR, I64, I32, PTR, I64])
_ffi = FFI()
_programs: dict[int, tuple[Tensor, ...]] = {}  # registration key -> host nodes, in step order
_keys = itertools.count(1)
_pending = threading.local()  # .error: the exception a host call of this thread's run raised


def emit_call(b: ir.IRBuilder, callback: ir.Value, context: ir.Value, index: int, step, data: ir.Value) -> None:
    """Call the host for `step` (a `HostCall`); return from the entry when it answers nonzero."""
    node = step.node
    fn = b.inttoptr(b.ptrtoint(callback, I64), _TYPE.as_pointer())
    count = int(np.prod(node.shape, dtype=np.int64))
    rc = b.call(fn, [context, ir.Constant(I64, index), ir.Constant(I32, DTYPES[node.dtype.name]), data,
                     ir.Constant(I64, count)])
    with b.if_then(b.icmp_signed("!=", rc, ir.Constant(I32, 0)), likely=False):
        b.ret_void()


def register(nodes: Sequence[Tensor]) -> int:
    """A context key under which the callback finds a program's host nodes (`unregister` frees it)."""
    key = next(_keys)
    _programs[key] = tuple(nodes)
    return key


def unregister(key: int) -> None:
    _programs.pop(key, None)


@once
def callback_address() -> int:
    """The address of the in-process callback (made once per process, kept for its lifetime)."""
    return int(_ffi.cast("intptr_t", _callback()))


@once
def _callback():
    return _ffi.callback("int32_t(*)(void*, int64_t, int32_t, void*, int64_t)", _host, 1)


def _host(context, index: int, dtype: int, data, count: int) -> int:
    try:
        node = _programs[int(_ffi.cast("intptr_t", context))][index]
        if count:
            buffer = _ffi.buffer(data, count * node.dtype.itemsize)
            value = np.frombuffer(buffer, node.dtype).reshape(node.shape)
        else:
            value = np.empty(node.shape, node.dtype)
        node.opdef.host(node, value)
        return 0
    except BaseException as exc:  # noqa: BLE001  (raised again by the caller, after the native call)
        _pending.error = exc
        return 1


def raise_pending() -> None:
    """Raise what a host call of this thread's last run raised (and forget it)."""
    error = getattr(_pending, "error", None)
    if error is not None:
        _pending.error = None
        raise error
