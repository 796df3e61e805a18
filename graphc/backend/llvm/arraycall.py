"""Calling a compiled program with numpy arrays, without looking up their pointers in Python.

Getting an array's data pointer in Python (``ffi.from_buffer``) and a cffi call with
arguments (through libffi) together cost more than a tiny program runs (figures:
docs/export.md, "How a call stays cheap"). Instead one
native routine, made a Python builtin function (``METH_FASTCALL``, through
``PyCFunction_NewEx``), receives the arrays themselves: ``native(inputs, *rest)``, where
`inputs` is the tuple of the input arrays and `rest` the variables, the outputs and,
when the arena is too big for the stack, an arena array::

    PyObject* graphc_array_call(PyObject* spec, PyObject* const* args, Py_ssize_t nargs)

Its ``self`` is the caller's spec, an int64 numpy array: a header (the ndarray type's
address, field offsets, the C-contiguous flag bit, the tuple item offset, argument
counts, the table size, the arena's table slot and bytes, the program's entry address,
whether to check, the objects returned on success and on a mismatch, the addresses of
``PyEval_SaveThread`` and ``PyEval_RestoreThread``, whether the last argument is the
arena), a table template (constants, thread pool), then per argument ``slot, ndim, descr
address, dims...`` (slot -1: check only). It reads the arrays' numpy structs
(``PyArrayObject_fields``: type, data, nd, dimensions, descr, flags), checks each array
against the spec, builds the program's pointer table on its own stack and calls the
program's entry point with the GIL released. It returns the success object after the
program has run, or the mismatch object (the caller's MISS) when the argument count
differs or, checking, an argument is not an exact C-contiguous ndarray of the spec's
dtype object and dims (then nothing has run). A stack arena holds arenas up to
`STACK_ARENA` bytes.

The offsets come from ``object.__basicsize__`` and ``tuple.__basicsize__`` and are
verified at first use on sample objects, with the reference count at offset 0 and a GIL
(`struct_layout`); where they do not hold, `struct_layout` returns None and callers use
``ffi.from_buffer``.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from llvmlite import ir

from ...passes.memory import ALIGNMENT, RECYCLE_BYTES
from .jit import compile_ir
from .loops import I8, I32, I64, PTR
from .once import once

__all__ = ["NAME", "STACK_ARENA", "build_caller", "native_function", "spec_words", "struct_layout"]


NAME = "graphc_array_call"
STACK_ARENA = 32 * 1024  # larger arenas come from the caller (a pool of arrays)
_C_CONTIGUOUS = 0x1  # NPY_ARRAY_C_CONTIGUOUS
_METH_FASTCALL = 0x0080
# spec header: ndarray type; offsets of type, data, nd, dimensions, descr, flags; C-contiguous
# bit; tuple items offset; number of inputs; number of arguments after the inputs tuple; table
# size; arena slot, bytes; the program's entry; check (1) or trust (0) the arguments; the
# objects returned on success and on a mismatch; PyEval_SaveThread, PyEval_RestoreThread;
# whether an arena array follows the arguments
_HEADER = 21
DONE = object()  # what a native call returns after the program ran


class _MethodDef(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("meth", ctypes.c_void_p), ("flags", ctypes.c_int),
                ("doc", ctypes.c_char_p)]


@functools.cache
def struct_layout() -> tuple[int, ...] | None:
    """The first 9 spec words for this process, or None when numpy's or CPython's structs
    are not laid out as expected (or the interpreter has no GIL)."""
    if not getattr(sys, "_is_gil_enabled", lambda: True)():
        return None
    head = object.__basicsize__  # PyObject_HEAD; ob_type is its last word
    words = (id(np.ndarray), head - 8, head, head + 8, head + 16, head + 40, head + 48, _C_CONTIGUOUS,
             tuple.__basicsize__)
    _, off_type, off_data, off_nd, off_dims, off_descr, off_flags, bit, off_items = words

    def word(addr: int) -> int | None:
        return ctypes.c_void_p.from_address(addr).value

    base = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    samples = (base, base[:, ::2], np.zeros((), np.int64), np.ones(5, np.float64))
    refcount = ctypes.c_ssize_t.from_address(id(base)).value  # what the routine increments for its result
    if (tuple.__itemsize__ != 8 or head != 16 or refcount != sys.getrefcount(base) - 1
            or any(word(id(samples) + off_items + 8 * i) != id(a) for i, a in enumerate(samples))):
        return None
    for a in samples:
        addr = id(a)
        nd = ctypes.c_int32.from_address(addr + off_nd).value
        dims = ctypes.cast(word(addr + off_dims), ctypes.POINTER(ctypes.c_int64))
        flags = ctypes.c_int32.from_address(addr + off_flags).value
        if (word(addr + off_type) != id(np.ndarray) or word(addr + off_data) != a.ctypes.data
                or nd != a.ndim or any(dims[i] != a.shape[i] for i in range(nd))
                or word(addr + off_descr) != id(a.dtype) or bool(flags & bit) != a.flags.c_contiguous):
            return None
    return words


def spec_words(inputs: int, template: Sequence[int], arena_slot: int, arena_bytes: int,
               args: Sequence[tuple[int, np.dtype, tuple[int, ...]]], entry: int, check: bool,
               miss: object, arena_arg: bool = False) -> list[int]:
    """The spec of a call of the program at `entry`: its table template and arena, its
    arguments as (slot, dtype, shape), the first `inputs` of them taken from the inputs
    tuple, whether the call checks them, the object it returns on a mismatch (`miss`; kept
    alive by the caller), and whether an arena array follows the arguments (`arena_arg`).

    Needs `struct_layout()`. The check compares dtype objects by identity: give the object
    the arrays carry (``np.dtype(...)`` for arrays numpy makes; an equal but distinct dtype
    object does not match).
    """
    layout = struct_layout()
    if layout is None:
        raise RuntimeError("numpy's array struct is not laid out as expected")
    api = ctypes.pythonapi
    threads = [ctypes.cast(f, ctypes.c_void_p).value for f in (api.PyEval_SaveThread, api.PyEval_RestoreThread)]
    words = [*layout, inputs, len(args) - inputs, len(template), arena_slot, arena_bytes, entry, int(check),
             id(DONE), id(miss), *threads, int(arena_arg), *template]
    for slot, dtype, shape in args:
        words += [slot, len(shape), id(np.dtype(dtype)), *shape]
    return words


def native_function(words: Sequence[int]) -> Callable[..., object]:
    """The builtin ``native(inputs, *rest)`` for a spec (`spec_words`): it holds the spec."""
    spec = np.array(words, np.int64)
    return _new_function()(ctypes.addressof(_method()), spec, None)


@once
def _method() -> _MethodDef:
    """The method definition every native function shares (kept for the process)."""
    return _MethodDef(NAME.encode(), _compiled().address, _METH_FASTCALL, None)


@functools.cache
def _new_function() -> Any:
    new = ctypes.pythonapi.PyCFunction_NewEx
    new.restype = ctypes.py_object
    new.argtypes = [ctypes.c_void_p, ctypes.py_object, ctypes.py_object]
    return new


@once
def _compiled() -> Any:
    """`graphc_array_call` compiled once per process (the disk cache keeps it); kept loaded."""
    return compile_ir(str(_module(struct_layout()[2])), NAME, {})


def _module(off_data: int) -> ir.Module:
    module = ir.Module(name=NAME)
    fn = ir.Function(module, ir.FunctionType(PTR, [PTR, PTR, I64]), NAME)
    self_obj, argv, nargs = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    blocks = {x: fn.append_basic_block(x) for x in ("copy.head", "copy.body", "arena", "from.arg", "on.stack",
                                                     "table", "head", "body", "checks", "dims.head", "dims.body",
                                                     "dims.next", "store", "fail", "done")}

    def const(v: int) -> ir.Constant:
        return ir.Constant(I64, v)

    def field(base: ir.Value, offset: ir.Value, ty: ir.Type) -> ir.Value:
        return b.load(b.gep(base, [offset], source_etype=I8), typ=ty)

    spec = field(self_obj, const(off_data), PTR)  # the spec array's data

    def word(i: ir.Value | int) -> ir.Value:
        return b.load(b.gep(spec, [const(i) if isinstance(i, int) else i], source_etype=I64), typ=I64)

    def goto(block: str) -> None:
        b.position_at_end(blocks[block])

    def give(address: ir.Value) -> None:
        """Return the object at `address` as a new reference (the GIL is held)."""
        obj = b.inttoptr(address, PTR)
        b.store(b.add(b.load(obj, typ=I64), const(1)), obj)
        b.ret(obj)

    k_var, pos_var, d_var, arena_var = b.alloca(I64), b.alloca(I64), b.alloca(I64), b.alloca(PTR)
    array_type, off_type, off_data_w, off_nd, off_dims, off_descr, off_flags, bit, off_items = (
        word(i) for i in range(9))
    n_inputs, n_rest, size, arena_slot, arena_bytes, entry_fn, check = (word(i) for i in range(9, 16))
    done_obj, miss_obj, save_thread, restore_thread, arena_arg = (word(i) for i in range(16, _HEADER))
    n_args = b.add(n_inputs, n_rest)
    inputs_tuple = b.load(argv, typ=PTR)
    wanted = b.add(b.add(n_rest, const(1)), arena_arg)
    table = b.alloca(PTR, size=size)
    b.store(const(0), k_var)
    b.cbranch(b.icmp_signed("==", nargs, wanted), blocks["copy.head"], blocks["fail"])

    goto("copy.head")  # the table template onto the stack
    k = b.load(k_var)
    b.cbranch(b.icmp_signed("<", k, size), blocks["copy.body"], blocks["arena"])
    goto("copy.body")
    b.store(b.inttoptr(word(b.add(k, const(_HEADER))), PTR), b.gep(table, [k], source_etype=PTR))
    b.store(b.add(k, const(1)), k_var)
    b.branch(blocks["copy.head"])

    goto("arena")  # the caller's arena array, or a block of this stack frame
    b.store(ir.Constant(PTR, None), arena_var)
    b.cbranch(b.icmp_signed("!=", arena_arg, const(0)), blocks["from.arg"], blocks["on.stack"])
    goto("from.arg")
    arena_obj = b.load(b.gep(argv, [b.add(n_rest, const(1))], source_etype=PTR), typ=PTR)
    raw = b.ptrtoint(field(arena_obj, off_data_w, PTR), I64)
    b.store(b.inttoptr(b.and_(b.add(raw, const(ALIGNMENT - 1)), const(-ALIGNMENT)), PTR), arena_var)
    b.branch(blocks["table"])
    goto("on.stack")
    with b.if_then(b.icmp_signed(">", arena_bytes, const(0))):
        raw = b.ptrtoint(b.alloca(I8, size=b.add(arena_bytes, const(ALIGNMENT))), I64)
        b.store(b.inttoptr(b.and_(b.add(raw, const(ALIGNMENT - 1)), const(-ALIGNMENT)), PTR), arena_var)
    b.branch(blocks["table"])
    goto("table")
    b.store(b.load(arena_var), b.gep(table, [arena_slot], source_etype=PTR))
    b.store(const(0), k_var)
    b.store(b.add(size, const(_HEADER)), pos_var)
    b.branch(blocks["head"])

    goto("head")  # per argument: check it (when asked), store its data pointer in the table
    k = b.load(k_var)
    b.cbranch(b.icmp_signed("<", k, n_args), blocks["body"], blocks["done"])
    goto("body")
    pos = b.load(pos_var)
    is_input = b.icmp_signed("<", k, n_inputs)
    from_tuple = b.gep(inputs_tuple, [b.add(off_items, b.mul(k, const(8)))], source_etype=I8)
    from_argv = b.gep(argv, [b.add(b.sub(k, n_inputs), const(1))], source_etype=PTR)
    obj = b.load(b.select(is_input, from_tuple, from_argv), typ=PTR)
    slot, ndim, descr = word(pos), word(b.add(pos, const(1))), word(b.add(pos, const(2)))
    b.store(const(0), d_var)
    b.cbranch(b.icmp_signed("!=", check, const(0)), blocks["checks"], blocks["store"])
    goto("checks")
    ok = b.icmp_unsigned("==", b.ptrtoint(field(obj, off_type, PTR), I64), array_type)
    ok = b.and_(ok, b.icmp_unsigned("==", b.ptrtoint(field(obj, off_descr, PTR), I64), descr))
    ok = b.and_(ok, b.icmp_signed("==", b.sext(field(obj, off_nd, I32), I64), ndim))
    flags = b.sext(field(obj, off_flags, I32), I64)
    ok = b.and_(ok, b.icmp_unsigned("!=", b.and_(flags, bit), const(0)))
    b.cbranch(ok, blocks["dims.head"], blocks["fail"])
    goto("dims.head")
    d = b.load(d_var)
    b.cbranch(b.icmp_signed("<", d, ndim), blocks["dims.body"], blocks["store"])
    goto("dims.body")
    got = b.load(b.gep(field(obj, off_dims, PTR), [d], source_etype=I64), typ=I64)
    b.cbranch(b.icmp_signed("==", got, word(b.add(pos, b.add(d, const(3))))), blocks["dims.next"], blocks["fail"])
    goto("dims.next")
    b.store(b.add(d, const(1)), d_var)
    b.branch(blocks["dims.head"])
    goto("store")
    with b.if_then(b.icmp_signed(">=", slot, const(0))):
        b.store(field(obj, off_data_w, PTR), b.gep(table, [slot], source_etype=PTR))
    b.store(b.add(pos, b.add(ndim, const(3))), pos_var)
    b.store(b.add(k, const(1)), k_var)
    b.branch(blocks["head"])

    goto("fail")
    give(miss_obj)
    goto("done")  # the program runs with the GIL released
    state = b.call(b.inttoptr(save_thread, ir.FunctionType(PTR, []).as_pointer()), [])
    b.call(b.inttoptr(entry_fn, ir.FunctionType(ir.VoidType(), [PTR]).as_pointer()), [table])
    b.call(b.inttoptr(restore_thread, ir.FunctionType(ir.VoidType(), [PTR]).as_pointer()), [state])
    give(done_obj)
    return module


def build_caller(native: Callable[..., object], inputs: int, outputs: Sequence[tuple[tuple[int, ...], np.dtype]],
                 order: Sequence[int] | None, single: bool, miss: object, arena: tuple | None = None,
                 variables: tuple | None = None, after: Callable[[], None] | None = None,
                 feed_keys: Sequence[Any] | None = None, as_tuple: bool = False) -> Callable[..., Any]:
    """A Python function ``call(*arrays)`` for one program, generated for its argument counts.

    It allocates the outputs (an output of `RECYCLE_BYTES` (graphc.passes.memory) or more reuses the array it
    returned last time when nothing else holds that array any more), makes one native call
    (`native`, from `native_function`) and
    returns the outputs (one array if `single`, else a list of the outputs in `order`, None
    for a None entry, copying repeats), or `miss` when the argument count differs or, when
    the spec checks, an argument does not match it.
    `arena`: (pop, push, new) of a pool of ``(array, aligned pointer)`` for arenas too big
    for the stack (the spec's `arena_arg`). `variables`: (values, keys, lock, write): the arrays ``values[key]`` come
    before the outputs, read while `lock` (a `graphc.runtime.executable.ReadWriteLock`) is
    held, alone if `write`. `after()` runs after the native call (it raises what the run recorded).
    With `feed_keys` the function is ``call(feed_dict)`` and takes its arrays from
    ``feed_dict[key]`` (Session.run's plans); `as_tuple` returns a tuple instead of a list.

    The function is generated from argument counts only (as `dataclasses` generates
    methods): a fixed sequence of statements per call is what keeps a tiny call near
    numpy's own overhead.
    """
    keys = variables[1] if variables else ()
    rest = [f"v{i}" for i in range(len(keys))] + [f"o{i}" for i in range(len(outputs))] + (["ar[0]"] if arena else [])
    env: dict[str, Any] = {"MISS": miss, "DONE": DONE, "empty": np.empty, "native": native}
    body = [f"rc = native(args, {', '.join(rest)})"]
    if after is not None:
        env["after"] = after
        body.append("after()")
    if variables:
        env["values"], _, lock, write = variables
        env.update({f"V{i}": key for i, key in enumerate(keys)})
        reads = [f"v{i} = values[V{i}]" for i in range(len(keys))]
        if write:
            env["acquire"], env["release"] = lock.acquire, lock.release
            take, give = ["acquire(True)"], ["release(True)"]
        else:  # the lock's reader protocol, inline (graphc.runtime.executable.ReadWriteLock)
            env.update(lock=lock, enter=lock.enter, leave=lock.leave, wake=lock.wake, slow=lock.acquire_read_slow)
            take = ["enter()", "if lock.gate:", "    leave()", "    wake()", "    slow()"]
            give = ["leave()", "if lock.gate:", "    wake()"]
        body = take + ["try:"] + ["    " + line for line in reads + body] + ["finally:"] + ["    " + g for g in give]
    if arena:
        env["pop"], env["push"], env["new"] = arena
        body = (["try:", "    ar = pop()", "except IndexError:", "    ar = new()", "try:"]
                + ["    " + line for line in body] + ["finally:", "    push(ar)"])
    if feed_keys is None:
        lines = ["def call(*args):", f"    if len(args) != {inputs}:", "        return MISS"]
    else:  # the native routine reads `inputs` items of args: one key per input, always
        if len(feed_keys) != inputs:
            raise ValueError(f"internal: {len(feed_keys)} feed keys for {inputs} inputs")
        env.update({f"K{i}": key for i, key in enumerate(feed_keys)})
        lines = ["def call(feed_dict):", f"    args = ({''.join(f'feed_dict[K{i}], ' for i in range(len(feed_keys)))})"]
    recycled = []
    for i, (shape, dtype) in enumerate(outputs):
        env[f"S{i}"], env[f"D{i}"] = shape, dtype
        if int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize < RECYCLE_BYTES:
            lines.append(f"    o{i} = empty(S{i}, D{i})")
            continue
        # the last result of this output, if only this list held it: the caller dropped it
        # (refcount 2: the local name and getrefcount's argument); pop() is atomic, so two
        # threads never take the same array
        env[f"R{i}"], env["refs"] = [], sys.getrefcount
        lines += [f"    o{i} = R{i}.pop() if R{i} else None", f"    if o{i} is None or refs(o{i}) != 2:",
                  f"        o{i} = empty(S{i}, D{i})"]
        recycled.append(i)
    lines += ["    " + line for line in body]
    lines += ["    if rc is not DONE:", "        return MISS"]
    lines += [f"    if not R{i}:\n        R{i}.append(o{i})" for i in recycled]
    picks = list(order) if order is not None else list(range(len(outputs)))
    items = ["None" if i is None else f"o{i}.copy()" if i in picks[:k] else f"o{i}" for k, i in enumerate(picks)]
    if single:
        lines.append(f"    return {items[0]}")
    elif as_tuple:
        lines.append(f"    return ({''.join(i + ', ' for i in items)})")
    else:
        lines.append(f"    return [{', '.join(items)}]")
    exec("\n".join(lines), env)
    return env["call"]
