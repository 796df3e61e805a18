"""Calling a compiled program with numpy arrays, without looking up their pointers in Python.

Getting an array's data pointer in Python costs 0.15 us or more per array (``ffi.from_buffer``),
and each integer argument of a cffi call about 0.04 us: together more than a tiny program
runs. Instead the caller passes two tuples by address, ``id(inputs)`` and ``id(rest)``
(variables then outputs), to one native routine that reads the arrays' numpy structs
(``PyArrayObject_fields``: type, data, nd, dimensions, descr, flags) through the tuples'
item arrays, checks each array against a spec, builds the program's pointer table on its
own stack and calls the program's entry point::

    int64 graphc_array_call(int64* spec, void* arena, intptr inputs, intptr rest)

`spec` holds a header (the ndarray type's address, field offsets, the C-contiguous flag
bit, the tuple item offset, argument counts, the table size, the arena's table slot and
bytes, the program's entry address, whether to check), a table template (constants,
thread pool), then per argument ``slot, ndim, descr address, dims...`` (slot -1: check
only). Every argument of a cffi call costs time, so everything fixed per caller is in
the spec. The routine returns 0 after the program has run, or k + 1 when argument k is
not an exact C-contiguous ndarray of the spec's dtype object and dims (then nothing has
run). With check = 0 the fields are trusted. A NULL `arena` puts the arena on the native
stack (arenas up to `STACK_ARENA` bytes).

The offsets come from ``object.__basicsize__`` and ``tuple.__basicsize__`` and are
verified at first use on sample objects (`struct_layout`); where they do not hold,
`struct_layout` returns None and callers use ``ffi.from_buffer``. The tuples must stay
referenced by the caller during the call: the routine reads them without the GIL (cffi
releases it).
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from llvmlite import ir

from ...passes.memory import ALIGNMENT
from .jit import compile_ir

__all__ = ["NAME", "STACK_ARENA", "array_call_address", "build_caller", "spec_words", "struct_layout"]

NAME = "graphc_array_call"
STACK_ARENA = 32 * 1024  # larger arenas come from the caller (a pool of arrays)
_C_CONTIGUOUS = 0x1  # NPY_ARRAY_C_CONTIGUOUS
# spec header: ndarray type; offsets of type, data, nd, dimensions, descr, flags; C-contiguous
# bit; tuple items offset; number of inputs; number of arguments; table size; arena slot, bytes;
# the program's entry; check (1) or trust (0) the arguments
_HEADER = 16
_I8 = ir.IntType(8)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_PTR = ir.PointerType()
_keep: list = []  # the compiled routine stays loaded for the process


@functools.cache
def struct_layout() -> tuple[int, ...] | None:
    """The first 9 spec words for this process, or None when numpy's or CPython's structs
    are not laid out as expected."""
    head = object.__basicsize__  # PyObject_HEAD; ob_type is its last word
    words = (id(np.ndarray), head - 8, head, head + 8, head + 16, head + 40, head + 48, _C_CONTIGUOUS,
             tuple.__basicsize__)
    _, off_type, off_data, off_nd, off_dims, off_descr, off_flags, bit, off_items = words

    def word(addr: int) -> int | None:
        return ctypes.c_void_p.from_address(addr).value

    base = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    samples = (base, base[:, ::2], np.zeros((), np.int64), np.ones(5, np.float64))
    if tuple.__itemsize__ != 8 or any(word(id(samples) + off_items + 8 * i) != id(a) for i, a in enumerate(samples)):
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
               args: Sequence[tuple[int, np.dtype, tuple[int, ...]]], entry: int, check: bool) -> list[int]:
    """The spec of a call of the program at `entry`: its table template and arena, its
    arguments as (slot, dtype, shape), the first `inputs` of them taken from the inputs
    tuple, and whether the call checks them.

    Needs `struct_layout()`. The check compares dtype objects by identity: give the object
    the arrays carry (``np.dtype(...)`` for arrays numpy makes; an equal but distinct dtype
    object does not match).
    """
    layout = struct_layout()
    if layout is None:
        raise RuntimeError("numpy's array struct is not laid out as expected")
    words = [*layout, inputs, len(args), len(template), arena_slot, arena_bytes, entry, int(check), *template]
    for slot, dtype, shape in args:
        words += [slot, len(shape), id(np.dtype(dtype)), *shape]
    return words


@functools.cache
def array_call_address() -> int:
    """Address of `graphc_array_call` (compiled once per process; the disk cache keeps it)."""
    compiled = compile_ir(str(_module()), NAME, {})
    _keep.append(compiled)
    return compiled.address


def _module() -> ir.Module:
    module = ir.Module(name=NAME)
    fn = ir.Function(module, ir.FunctionType(_I64, [_PTR, _PTR, _I64, _I64]), NAME)
    spec, arena_arg, inputs_tuple, rest_tuple = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    blocks = {x: fn.append_basic_block(x) for x in ("copy.head", "copy.body", "arena", "on.stack", "table",
                                                     "head", "body", "checks", "dims.head", "dims.body",
                                                     "dims.next", "store", "fail", "done")}

    def const(v: int) -> ir.Constant:
        return ir.Constant(_I64, v)

    def word(i: ir.Value | int) -> ir.Value:
        return b.load(b.gep(spec, [const(i) if isinstance(i, int) else i], source_etype=_I64), typ=_I64)

    def field(base: ir.Value, offset: ir.Value, ty: ir.Type) -> ir.Value:
        return b.load(b.gep(base, [offset], source_etype=_I8), typ=ty)

    def goto(block: str) -> None:
        b.position_at_end(blocks[block])

    k_var, pos_var, d_var, arena_var = b.alloca(_I64), b.alloca(_I64), b.alloca(_I64), b.alloca(_PTR)
    array_type, off_type, off_data, off_nd, off_dims, off_descr, off_flags, bit, off_items = (
        word(i) for i in range(9))
    n_inputs, n_args, size, arena_slot, arena_bytes, entry_fn, check = (word(i) for i in range(9, _HEADER))
    table = b.alloca(_PTR, size=size)
    b.store(const(0), k_var)
    b.branch(blocks["copy.head"])

    goto("copy.head")  # the table template onto the stack
    k = b.load(k_var)
    b.cbranch(b.icmp_signed("<", k, size), blocks["copy.body"], blocks["arena"])
    goto("copy.body")
    b.store(b.inttoptr(word(b.add(k, const(_HEADER))), _PTR), b.gep(table, [k], source_etype=_PTR))
    b.store(b.add(k, const(1)), k_var)
    b.branch(blocks["copy.head"])

    goto("arena")  # the caller's arena, or a block of this stack frame
    b.store(arena_arg, arena_var)
    needs_stack = b.and_(b.icmp_unsigned("==", arena_arg, ir.Constant(_PTR, None)),
                         b.icmp_signed(">", arena_bytes, const(0)))
    b.cbranch(needs_stack, blocks["on.stack"], blocks["table"])
    goto("on.stack")
    raw = b.ptrtoint(b.alloca(_I8, size=b.add(arena_bytes, const(ALIGNMENT))), _I64)
    b.store(b.inttoptr(b.and_(b.add(raw, const(ALIGNMENT - 1)), const(-ALIGNMENT)), _PTR), arena_var)
    b.branch(blocks["table"])
    goto("table")
    b.store(b.load(arena_var), b.gep(table, [arena_slot], source_etype=_PTR))
    b.store(const(0), k_var)
    b.store(b.add(size, const(_HEADER)), pos_var)
    b.branch(blocks["head"])

    goto("head")  # per argument: check it (when asked), store its data pointer in the table
    k = b.load(k_var)
    b.cbranch(b.icmp_signed("<", k, n_args), blocks["body"], blocks["done"])
    goto("body")
    pos = b.load(pos_var)
    is_input = b.icmp_signed("<", k, n_inputs)
    holder = b.inttoptr(b.select(is_input, inputs_tuple, rest_tuple), _PTR)
    item = b.select(is_input, k, b.sub(k, n_inputs))
    obj = field(holder, b.add(off_items, b.mul(item, const(8))), _PTR)
    slot, ndim, descr = word(pos), word(b.add(pos, const(1))), word(b.add(pos, const(2)))
    b.store(const(0), d_var)
    b.cbranch(b.icmp_signed("!=", check, const(0)), blocks["checks"], blocks["store"])
    goto("checks")
    ok = b.icmp_unsigned("==", b.ptrtoint(field(obj, off_type, _PTR), _I64), array_type)
    ok = b.and_(ok, b.icmp_unsigned("==", b.ptrtoint(field(obj, off_descr, _PTR), _I64), descr))
    ok = b.and_(ok, b.icmp_signed("==", b.sext(field(obj, off_nd, _I32), _I64), ndim))
    flags = b.sext(field(obj, off_flags, _I32), _I64)
    ok = b.and_(ok, b.icmp_unsigned("!=", b.and_(flags, bit), const(0)))
    b.cbranch(ok, blocks["dims.head"], blocks["fail"])
    goto("dims.head")
    d = b.load(d_var)
    b.cbranch(b.icmp_signed("<", d, ndim), blocks["dims.body"], blocks["store"])
    goto("dims.body")
    got = b.load(b.gep(field(obj, off_dims, _PTR), [d], source_etype=_I64), typ=_I64)
    b.cbranch(b.icmp_signed("==", got, word(b.add(pos, b.add(d, const(3))))), blocks["dims.next"], blocks["fail"])
    goto("dims.next")
    b.store(b.add(d, const(1)), d_var)
    b.branch(blocks["dims.head"])
    goto("store")
    with b.if_then(b.icmp_signed(">=", slot, const(0))):
        b.store(field(obj, off_data, _PTR), b.gep(table, [slot], source_etype=_PTR))
    b.store(b.add(pos, b.add(ndim, const(3))), pos_var)
    b.store(b.add(k, const(1)), k_var)
    b.branch(blocks["head"])

    goto("fail")
    b.ret(b.add(b.load(k_var), const(1)))
    goto("done")
    callee = b.inttoptr(entry_fn, ir.FunctionType(ir.VoidType(), [_PTR]).as_pointer())
    b.call(callee, [table])
    b.ret(const(0))
    return module


def build_caller(ffi: Any, spec: Any, inputs: int, outputs: Sequence[tuple[tuple[int, ...], np.dtype]],
                 order: Sequence[int] | None, single: bool, miss: object, arena: tuple | None = None,
                 variables: tuple | None = None, after: Callable[[], None] | None = None,
                 feed_keys: Sequence[Any] | None = None, as_tuple: bool = False) -> Callable[..., Any]:
    """A Python function ``call(*arrays)`` for one program, generated for its argument counts.

    It allocates the outputs, makes one native call and returns the outputs (one array if
    `single`, else a list of the outputs in `order`, None for a None entry, copying repeats), or `miss` when the
    argument count differs or, when the spec checks, an argument does not match it.
    `arena`: (pop, push, new) of a pool of ``(array, aligned pointer)`` for arenas too big
    for the stack. `variables`: (values, keys, lock, write): the arrays ``values[key]`` come
    before the outputs, read while `lock` (a `graphc.runtime.executable.ReadWriteLock`) is
    held, alone if `write`. `after()` runs after the native call (it raises what the run recorded).
    With `feed_keys` the function is ``call(feed_dict)`` and takes its arrays from
    ``feed_dict[key]`` (Session.run's plans); `as_tuple` returns a tuple instead of a list.

    The function is generated from argument counts only (as `dataclasses` generates
    methods): a fixed sequence of statements per call is what keeps a tiny call near
    numpy's own overhead.
    """
    keys = variables[1] if variables else ()
    rest = [f"v{i}" for i in range(len(keys))] + [f"o{i}" for i in range(len(outputs))]
    env: dict[str, Any] = {"MISS": miss, "NULL": ffi.NULL, "empty": np.empty, "spec": spec,
                           "native": ffi.cast("int64_t(*)(int64_t*, void*, intptr_t, intptr_t)", array_call_address())}
    call = f"rc = native(spec, {'ar[1]' if arena else 'NULL'}, id(args), id(rest))"
    body = [f"rest = ({''.join(x + ', ' for x in rest)})", call]
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
    for i, (shape, dtype) in enumerate(outputs):
        env[f"S{i}"], env[f"D{i}"] = shape, dtype
        lines.append(f"    o{i} = empty(S{i}, D{i})")
    lines += ["    " + line for line in body]
    lines += ["    if rc:", "        return MISS"]
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
