"""Compiling LLVM IR for the host CPU and loading it with MCJIT.

The module is parsed, optimized at O3 with the new pass builder for the host's CPU name
and features, and turned into an object file: the first `IN_PROCESS_FIRST` cache misses of
a process here, later ones in the optimizer process (`graphc.backend.llvm.optimizer`:
llvmlite's pipeline leaks about 55 KB per module, which that process absorbs; starting it,
a Python interpreter importing llvmlite, takes about as long as compiling a program, so a
process that compiles a few programs does not wait for it). The object (from the disk
cache when an entry for the same IR, toolchain and CPU exists) is loaded into its own
MCJIT engine, which stays alive as long as the `Compiled` that holds it. llvmlite
serializes LLVM calls behind one global lock, so threads do not compile in parallel; a
`Compiling` compiles on a thread of its own while the caller's thread runs Python (a
symbolic template's small probes, `symbolic.build_template`), and a shared kernel
(`compile_shared`) that is not in the disk cache compiles in a forked child
(`optimizer.Forked`), on another core, while the program that calls it compiles here: a
program's symbols are resolved on a thread of their own from the moment its O3 pipeline runs
(loading scipy's BLAS for them is Python, which then runs while LLVM does not need the GIL),
so it waits for the kernel only to link. The optimized module is printed only when asked for
(`Compiled.optimized_ir`, which optimizes the IR again).
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from llvmlite import binding as llvm

from . import cache
from .once import once
from .optimizer import SPEED_LEVEL, Forked, Process, host_target_machine, may_fork, optimize_module

__all__ = ["Compiled", "Compiling", "compile_ir", "compile_shared", "optimize_ir", "optimize_module", "target_machine"]

_lock = threading.Lock()
_optimizer = Process()
IN_PROCESS_FIRST = 4  # cache misses compiled in this process before the optimizer process takes over
_misses = 0
atexit.register(_optimizer.stop)
_running: set[threading.Thread] = set()  # threads of `Compiling`s not finished yet


@atexit.register  # registered after the optimizer's stop, so it runs before it
def _finish_compiles() -> None:
    for thread in list(_running):
        thread.join()


@once
def target_machine() -> llvm.TargetMachine:
    """The host target machine used to optimize and emit code (kept for the process)."""
    return new_target_machine()


def new_target_machine() -> llvm.TargetMachine:
    """A host target machine (CPU name and features, O3, JIT code model).

    An MCJIT engine takes ownership of the target machine it is created with, so each
    engine gets a fresh one.
    """
    return host_target_machine()


def _target_description() -> str:
    tm = target_machine()
    return f"triple={tm.triple}\nopt=O{SPEED_LEVEL}\ncodemodel=jitdefault"


def optimize_ir(ir_text: str, running: Callable[[], None] | None = None) -> llvm.ModuleRef:
    """Parse, verify and optimize IR for the host (O3, loop and SLP vectorization); `running()` is
    called just before the pipeline runs."""
    tm = target_machine()
    mod = llvm.parse_assembly(ir_text)
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    return optimize_module(mod, tm, running)


@dataclass(eq=False)
class Compiled:
    """Machine code for one module, loaded and alive; `address` is the entry function's."""

    ir_text: str
    engine: llvm.ExecutionEngine
    address: int
    from_cache: bool
    _objects: list = field(default_factory=list)
    _optimized: str | None = None

    def optimized_ir(self) -> str:
        if self._optimized is None:
            with _lock:
                self._optimized = str(optimize_ir(self.ir_text))
        return self._optimized

    def assembly(self) -> str:
        with _lock:
            mod = optimize_ir(self.ir_text)
            return target_machine().emit_assembly(mod)


Symbols = Mapping[str, int] | Callable[[], Mapping[str, int]]


def compile_ir(ir_text: str, entry: str, symbols: Symbols) -> Compiled:
    """Compile (or load from the disk cache) and link `ir_text`; `symbols` resolve externals (or a
    function giving them, called once: on a cache miss on a thread of its own while the module
    compiles, before linking; a program's shared kernels may still be compiling meanwhile)."""
    return _compile(cache.cache_key(ir_text, _target_description()), ir_text, entry, symbols)


def compile_shared(name: str, ir_text: Callable[[], str]) -> Compiling:
    """Start compiling (or loading) a module defining the function `name`, whose name ends in a digest
    of its IR (`shared`): the disk cache keys it by that name, so a hit needs no IR (`ir_text()` is
    called on a miss only; the `Compiled` then has it, else an empty text). It runs on a thread of
    its own; on a cache miss, when the process may fork (`optimizer.may_fork`), the IR is made and
    compiled in a forked child (`optimizer.Forked`), so that it compiles on another core while this
    process compiles its programs (the `Compiled` then has no IR either)."""
    key = cache.cache_key(name, _target_description() + "\nshared function")
    path = cache.entry_path(key)
    forked = None
    if (path is None or not path.exists()) and may_fork():
        forked = Forked(ir_text, target_machine())
    return Compiling(lambda: _compile(key, ir_text, name, {}, forked))


def _compile(key: str, source: str | Callable[[], str], entry: str, symbols: Symbols,
             forked: Forked | None = None) -> Compiled:
    """`source`: the IR text, or a function making it (called on a cache miss only, when `forked`,
    a child compiling it, gives no object code)."""
    obj = cache.load(key)
    ir_text = source if isinstance(source, str) else ""
    from_cache = obj is not None
    if obj is None and forked is not None and (obj := forked.object_code()) is not None:
        cache.store(key, obj)
    go = resolving = None
    if obj is None and callable(symbols):
        # resolved on a thread while LLVM optimizes and emits without the GIL (loading scipy's BLAS for
        # them is 40-100 ms of Python); it starts once the O3 runs: started before, it would hold the
        # GIL that this thread needs between its LLVM calls
        go = threading.Event()
        resolving = Compiling(lambda: go.wait() and symbols())
    if obj is None:
        if not isinstance(source, str):
            ir_text = source()
        try:
            obj = _object_code(ir_text, go.set if go is not None else None)
        finally:
            if go is not None:
                go.set()
        cache.store(key, obj)
    # may wait for a shared kernel: not under the lock
    links = resolving.result() if resolving is not None else symbols() if callable(symbols) else symbols
    with _lock:
        for name, address in links.items():
            llvm.add_symbol(name, address)
        engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), new_target_machine())
        objref = llvm.ObjectFileRef.from_data(obj)
        engine.add_object_file(objref)
        engine.finalize_object()
        address = engine.get_function_address(entry)
    if not address:
        raise RuntimeError(f"compiled module has no function {entry!r}")
    return Compiled(ir_text, engine, address, from_cache, [objref])


def _object_code(ir_text: str, running: Callable[[], None] | None) -> bytes:
    """The object code of `ir_text`: made here for a process's first `IN_PROCESS_FIRST` misses, then in
    the optimizer process (here when it is unavailable); `running()` is called once the LLVM work (or
    the wait for the optimizer process) starts."""
    global _misses
    with _lock:
        _misses += 1
        if _misses > IN_PROCESS_FIRST:
            if running is not None:
                running()
            obj = _optimizer.object_code(ir_text)
            if obj is not None:
                return obj
        return target_machine().emit_object(optimize_ir(ir_text, running))


class Compiling:
    """A compile (`make`, calling `compile_ir` or `compile_shared`) on a thread of its own, so the
    caller can do other work meanwhile (LLVM runs without the GIL); `result()` waits for it and
    returns its `Compiled` or raises its error. A process that exits first waits for it at exit
    (`_finish_compiles`): LLVM must not run while the process tears its libraries down."""

    def __init__(self, make: Callable[[], Compiled]):
        self._make = make
        self._outcome: tuple[Compiled | None, BaseException | None] = (None, None)
        self._thread = threading.Thread(target=self._run, name="graphc-compile", daemon=True)
        _running.add(self._thread)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._outcome = (self._make(), None)
        except BaseException as exc:  # noqa: BLE001 (raised by `result`)
            self._outcome = (None, exc)
        finally:
            _running.discard(threading.current_thread())

    def result(self) -> Compiled:
        self._thread.join()
        compiled, error = self._outcome
        if error is not None:
            raise error
        if compiled is None:  # the thread did not run here (a fork of the process that started it)
            self._outcome = (compiled := self._make(), None)
        return compiled
