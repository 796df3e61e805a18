"""The executable layer: a program bound to the variables it reads; the one way graphc runs one.

Who owns what (docs/runtime.md):

* `VariableStore` (one per `Session`): the variables' arrays, made on first use from
  their initial values and never replaced (runs update them in place), and the
  reader-writer lock runs hold while they use them (`ReadWriteLock`; closing the store
  shuts it).
* `Executable` (one per compiled program): the pool of pointer tables, each with its own
  arena, so concurrent runs never share one; the native call (one per run, the GIL
  released); the lock taken around it; for `gc.function`, the generated callers that
  check and pass arrays natively (`caller`, over `backend/llvm/arraycall.py`).
* The program only describes itself: an LLVM program its entry address, table layout
  (`bases`, `template()`) and slots; an interpreted program (the reference backend, an
  exported library loaded with ctypes) a ``run(feeds, values, workspace)`` method.

`Session.run`, `gc.function` and `gc.load_exported` are front ends over `Executable`.
This module imports no llvmlite (`caller` loads arraycall, which does, on first use).
"""

from __future__ import annotations

import itertools
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from _cffi_backend import FFI  # cffi's C-level FFI: no C parser needed

from ..errors import GraphcError
from ..ir.graph import Tensor
from ..passes.memory import ALIGNMENT, RECYCLE_BYTES

__all__ = ["Executable", "ReadWriteLock", "VariableStore"]

POOL_SIZE = 4  # idle pointer tables (each with its arena) kept per executable
_ffi = FFI()
_NO_VALUES: dict = {}


class ReadWriteLock:
    """Many readers or one writer (runs that assign variables are the writers); `shut` refuses
    every later acquire with GraphcError("this session is closed").

    Readers take no mutex: a reader counts itself in (``enter()``, a C-level counter step,
    atomic under the GIL), then checks `gate`; when the gate is closed (a writer holds or
    waits for the lock, or it is shut) it counts itself out and waits on the slow path. A
    writer closes the gate under the mutex, then waits until every counted reader has left
    (``enter`` and ``leave`` counts equal). Generated callers inline this reader protocol
    (`graphc.backend.llvm.arraycall.build_caller`): a read costs two counter steps and two
    attribute reads. Waiting writers keep new readers out, so writers do not starve.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        entered, left = itertools.count(), itertools.count()
        self._entered, self._left = entered, left
        self.enter, self.leave = entered.__next__, left.__next__  # readers count themselves in and out
        self.gate = False  # closed: a writer holds or awaits the lock, or the lock is shut
        self._writer = False
        self._writers_waiting = 0
        self._shut = False

    def read(self) -> _Held:
        return _Held(self, False)

    def write(self) -> _Held:
        return _Held(self, True)

    def _readers(self) -> int:
        """Readers counted in and not yet out, or more (a writer asks, holding the mutex). The
        leaves are read first: every leave counted has its enter counted too."""
        left = _count(self._left)
        return _count(self._entered) - left

    def acquire(self, write: bool) -> None:
        if not write:
            self.enter()
            if not self.gate:
                return
            self.leave()
            self.wake()
            self.acquire_read_slow()
            return
        with self._cond:
            if self._shut:
                raise GraphcError("this session is closed")
            self._writers_waiting += 1
            self.gate = True
            acquired = False
            try:
                while (self._writer or self._readers()) and not self._shut:
                    self._cond.wait()
                acquired = not self._shut
            finally:
                self._writers_waiting -= 1
                if not acquired:  # shut, or interrupted while waiting: open the gate again if no one else closes it
                    self.gate = self._shut or self._writer or self._writers_waiting > 0
                    self._cond.notify_all()
            if not acquired:
                raise GraphcError("this session is closed")
            self._writer = True

    def acquire_read_slow(self) -> None:
        """A reader's wait while the gate is closed (it has counted itself out)."""
        with self._cond:
            while (self._writer or self._writers_waiting) and not self._shut:
                self._cond.wait()
            if self._shut:
                raise GraphcError("this session is closed")
            self.enter()

    def release(self, write: bool) -> None:
        if not write:
            self.leave()
            if self.gate:
                self.wake()
            return
        with self._cond:
            self._writer = False
            self.gate = self._shut or self._writers_waiting > 0
            self._cond.notify_all()

    def wake(self) -> None:
        """Wake the waiters (a reader left while the gate was closed)."""
        with self._cond:
            self._cond.notify_all()

    def shut(self) -> None:
        """Refuse every later acquire, then wait until the runs holding the lock release it."""
        with self._cond:
            self._shut = True
            self.gate = True
            self._cond.notify_all()
            while self._writer or self._readers():
                self._cond.wait()


def _count(counter: itertools.count) -> int:
    """The next value of an itertools.count, without taking it."""
    return int(repr(counter)[6:-1])


class _Held:
    __slots__ = ("lock", "write")

    def __init__(self, lock: ReadWriteLock, write: bool):
        self.lock, self.write = lock, write

    def __enter__(self) -> None:
        self.lock.acquire(self.write)

    def __exit__(self, *exc: Any) -> None:
        self.lock.release(self.write)


class VariableStore:
    """Variable values (keyed by variable, or by name for an exported library's state) and their lock.

    An array is made on first use (`arrays`) from the variable's initial value; it is never
    replaced, so compiled code may keep its pointer. `values` is read by executables only
    while they hold `lock`.
    """

    def __init__(self, values: dict | None = None):
        self.values: dict[Any, np.ndarray] = {} if values is None else values
        self.lock = ReadWriteLock()
        self._mutex = threading.Lock()  # guards creating arrays

    def arrays(self, variables: Iterable[Tensor]) -> list[np.ndarray]:
        """The arrays of `variables`, made from their initial values where missing."""
        with self._mutex:
            return [self._array(v) for v in variables]

    def _array(self, var: Tensor) -> np.ndarray:
        value = self.values.get(var)
        if value is None:  # created after the session started
            value = self.values[var] = var.attrs["initial"].array.copy()
        return value

    def value(self, var: Tensor) -> np.ndarray:
        """A copy of `var`'s current value (waits for runs that assign variables)."""
        with self.lock.read(), self._mutex:
            return self._array(var).copy()

    def assign(self, var: Tensor, value: np.ndarray) -> None:
        """Copy `value` (checked by the caller) into `var`'s array (waits for running steps)."""
        with self.lock.write(), self._mutex:
            np.copyto(self._array(var), value, casting="same_kind")

    def close(self) -> None:
        """Refuse later runs, wait for those in flight, drop the arrays."""
        self.lock.shut()
        with self._mutex:
            self.values.clear()


def new_arena(nbytes: int) -> tuple[np.ndarray, Any]:
    """(array, its first 64-byte aligned address as a cdata pointer) with room for `nbytes`."""
    array = np.empty(nbytes + ALIGNMENT, np.uint8)
    pointer = _ffi.from_buffer(array)
    return array, pointer + (-int(_ffi.cast("uintptr_t", pointer)) % ALIGNMENT)


class Executable:
    """A program bound to a `VariableStore` (None when it reads no variables): runs it.

    `run(feeds)` takes the lock (shared, or alone when the program assigns variables) and
    calls `call`; `call(feeds, values)` runs with the lock already held. An LLVM program
    runs through a pointer table from the pool; an interpreted one through its `run`.
    """

    def __init__(self, program: Any, store: VariableStore | None):
        self.program, self.store = program, store
        self.variables: list[Tensor] = list(program.variables)
        self.writes: bool = bool(program.writes)
        if self.variables:
            if store is None:
                raise GraphcError("internal: a program that reads variables needs a variable store")
            store.arrays(self.variables)  # every array exists before any run
        entry = getattr(program, "entry", None)
        self._fn = None if entry is None else _ffi.cast("void(*)(void**)", entry)
        self._tables: list[list] = []
        self._workspaces: list[np.ndarray] = []
        self._callers: dict[tuple, tuple] = {}
        # per output slot: a list holding the last array returned when it had RECYCLE_BYTES or
        # more, reused when nothing else holds it any more and the run's shape is the same
        self._spares: list[list] = [[] for _ in getattr(program, "out_slots", ())]

    def sibling(self, program: Any) -> Executable:
        """An executable of another program over the same store (the traced variant)."""
        return Executable(program, self.store)

    def program_for(self, feeds: Mapping[Any, np.ndarray]) -> Any:
        """The program as these feeds run it (`Session.compile`)."""
        return self.program

    def clear(self) -> None:
        """Forget the pooled tables (the program's table template changed)."""
        self._tables = []

    def run(self, feeds: Mapping[Any, np.ndarray], traced: Callable[..., list] | None = None) -> list:
        """The fetches' values for checked `feeds` (C-contiguous arrays of the bound shapes and
        dtypes). `traced(executable, feeds, values)` replaces `call` for a traced run (graphc.profiler)."""
        call: Callable[..., list] = self.call
        if traced is not None:
            call = lambda f, v: traced(self, f, v)  # noqa: E731
        if not self.variables:
            return call(feeds, _NO_VALUES)
        lock, write = self.store.lock, self.writes
        lock.acquire(write)
        try:
            return call(feeds, self.store.values)
        finally:
            lock.release(write)

    def call(self, feeds: Mapping[Any, np.ndarray], values: Mapping[Any, np.ndarray]) -> list:
        """One run with the lock held: the fetches' values (None for ops); variables updated in place."""
        if self._fn is None:
            return self._interpret(feeds, values)
        program = self.program
        pool = self._tables
        item = pool.pop() if pool else self._table()
        table, _, var_arrays, var_bufs, feed_arrays, feed_bufs = item
        frombuf = _ffi.from_buffer
        for k, (ph, slot) in enumerate(program.feed_slots):
            arr = feeds[ph]
            if arr is not feed_arrays[k]:  # the last feed of each slot stays referenced, so `is` is safe
                feed_bufs[k] = buf = frombuf(arr)
                feed_arrays[k] = arr
                table[slot] = buf
        for k, (var, slot) in enumerate(program.var_slots):
            arr = values[var]
            if arr is not var_arrays[k]:  # pointers of store-owned arrays are kept per table
                var_bufs[k] = buf = frombuf(arr, require_writable=True)
                var_arrays[k] = arr
                table[slot] = buf
        outs, hold = [], []
        for (shape, dtype, slot), spare in zip(program.out_slots, self._spares):
            arr = spare.pop() if spare else None  # pop() is atomic: no two runs take one array
            if arr is None or sys.getrefcount(arr) != 2 or arr.shape != shape:  # held still, or resized
                arr = np.empty(shape, dtype)
            buf = frombuf(arr)
            table[slot] = buf
            hold.append(buf)
            outs.append(arr)
        try:
            self._fn(table)
        finally:
            if len(pool) < POOL_SIZE:
                pool.append(item)
        for arr, spare in zip(outs, self._spares):
            if not spare and arr.nbytes >= RECYCLE_BYTES:
                spare.append(arr)
        if program.checks_after_run:
            program.after_run()
        return program.fetch_values(outs)

    def _interpret(self, feeds: Mapping[Any, np.ndarray], values: Mapping[Any, np.ndarray]) -> list:
        pool = self._workspaces
        workspace = pool.pop() if pool else np.empty(self.program.workspace_bytes, np.uint8)
        try:
            return self.program.run(feeds, values, workspace)
        finally:
            pool.append(workspace)

    def _table(self) -> list:
        """A new pointer table with its own arena: [table, held objects, cached variable arrays and
        pointers, cached feed arrays and pointers]."""
        program = self.program
        words = program.template()
        table = _ffi.new("void*[]", len(words))
        for i, w in enumerate(words):
            if w:
                table[i] = _ffi.cast("void*", w)
        arena = new_arena(program.plan.arena_bytes)
        table[program.bases["arena"]] = arena[1]
        nv, nf = len(program.var_slots), len(program.feed_slots)
        return [table, arena, [None] * nv, [None] * nv, [None] * nf, [None] * nf]

    def callers(self, inputs: Sequence[Tensor], shapes: Sequence[tuple[int, ...]], picks: Sequence[int | None],
                single: bool, miss: object, keys: Sequence[Any] | None = None,
                as_tuple: bool = False) -> tuple[Callable[..., Any], Callable[..., Any]]:
        """(checked, trusted): functions ``call(*arrays)`` for positional `inputs` of `shapes` that
        return the program's outputs at `picks` (one array if `single`, else a list, or a tuple
        `as_tuple`; None for a None pick; a repeated output is copied) or `miss` when an
        argument is not an exact C-contiguous array of its input's dtype and shape (`checked`;
        then nothing ran). With `keys` they are ``call(feed_dict)`` and take input i from
        ``feed_dict[keys[i]]`` (Session.run's cached callables). Each makes one native call (`arraycall`)
        that checks the arrays and builds the table on its stack, with a pooled arena when
        the stack is too small."""
        keys = None if keys is None else tuple(keys)
        key = (tuple(inputs), tuple(map(tuple, shapes)), tuple(picks), single, miss, keys, as_tuple)
        made = self._callers.get(key)
        if made is None:
            made = self._callers[key] = self._make_callers(inputs, shapes, picks, single, miss, keys, as_tuple)
        return made

    def _make_callers(self, inputs: Sequence[Tensor], shapes: Sequence[tuple[int, ...]], picks: Sequence[int | None],
                      single: bool, miss: object, keys: tuple | None,
                      as_tuple: bool) -> tuple[Callable[..., Any], Callable[..., Any]]:
        from ..backend.llvm import arraycall

        program = self.program
        plan, bases = program.plan, program.bases
        held = self.store.arrays(self.variables) if self.variables else []
        variables = (self.store.values, self.variables, self.store.lock, self.writes) if self.variables else None
        slot_of = dict(program.feed_slots)
        args = [(slot_of.get(ph, -1), np.dtype(ph.dtype), tuple(s)) for ph, s in zip(inputs, shapes)]
        # a store's arrays are never replaced: check them against their own dtype objects
        args += [(slot, a.dtype, var.shape) for (var, slot), a in zip(program.var_slots, held)]
        args += [(slot, np.dtype(dtype), shape) for shape, dtype, slot in program.out_slots]
        outputs = [(shape, np.dtype(dtype)) for shape, dtype, _ in program.out_slots]
        order = None if list(picks) == list(range(len(picks))) else list(picks)
        template = program.template()
        if arraycall.struct_layout() is None:
            fallback = _BufferCaller(self, args, outputs, order, single, template, miss, keys, as_tuple)
            return fallback.checked, fallback.trusted
        arena = None
        if plan.arena_bytes > arraycall.STACK_ARENA:
            pool: list = []
            arena = (pool.pop, pool.append, lambda: new_arena(plan.arena_bytes))
        natives = [arraycall.native_function(arraycall.spec_words(len(inputs), template, bases["arena"],
                                                                  plan.arena_bytes, args, program.entry, check, miss,
                                                                  arena is not None))
                   for check in (True, False)]  # the constants the specs point at are kept by the program's plan
        after = program.after_run if program.checks_after_run else None
        rest = (len(inputs), outputs, order, single, miss, arena, variables, after, keys, as_tuple)
        callers = tuple(arraycall.build_caller(native, *rest) for native in natives)
        for caller in callers:  # its native call runs the program's code: a caller in use keeps the program
            caller.program = program  # (a cached callable in flight while the LRU evicts it, or close drops it)
        return callers


class _BufferCaller:
    """`Executable.callers` through ``ffi.from_buffer`` where numpy's struct layout is unknown."""

    def __init__(self, exe: Executable, args: list, outputs: list, order: list | None, single: bool,
                 template: list[int], miss: object, keys: tuple | None, as_tuple: bool):
        self.exe, self.args, self.outputs, self.order, self.single = exe, args, outputs, order, single
        self.n = len(args) - len(exe.program.var_slots) - len(outputs)
        self.template, self.miss, self.keys, self.as_tuple = template, miss, keys, as_tuple

    def checked(self, *arrays: Any) -> Any:
        return self._call(arrays, True)

    def trusted(self, *arrays: Any) -> Any:
        return self._call(arrays, False)

    def _call(self, arrays: tuple, check: bool) -> Any:
        if self.keys is not None:  # call(feed_dict)
            arrays = tuple((arrays[0] or {})[k] for k in self.keys)
        if len(arrays) != self.n:
            return self.miss
        if check:
            for a, (_, dtype, shape) in zip(arrays, self.args):
                if type(a) is not np.ndarray or a.dtype is not dtype or a.shape != shape or not a.flags.c_contiguous:
                    return self.miss
        exe = self.exe
        table = _ffi.new("void*[]", [_ffi.cast("void*", w) for w in self.template])
        outs = [np.empty(shape, dtype) for shape, dtype in self.outputs]
        arena = new_arena(exe.program.plan.arena_bytes)
        table[exe.program.bases["arena"]] = arena[1]
        if exe.variables:
            store = exe.store
            store.lock.acquire(exe.writes)
            try:
                self._run(table, list(arrays) + [store.values[k] for k in exe.variables] + outs)
            finally:
                store.lock.release(exe.writes)
        else:
            self._run(table, list(arrays) + outs)
        if exe.program.checks_after_run:
            exe.program.after_run()
        picks = self.order if self.order is not None else list(range(len(outs)))
        result = [None if i is None else outs[i].copy() if i in picks[:k] else outs[i] for k, i in enumerate(picks)]
        return result[0] if self.single else tuple(result) if self.as_tuple else result

    def _run(self, table: Any, arrays: list[np.ndarray]) -> None:
        hold = [_ffi.from_buffer(a) for a in arrays]
        for (slot, _, _), buf in zip(self.args, hold):
            if slot >= 0:
                table[slot] = buf
        self.exe._fn(table)
