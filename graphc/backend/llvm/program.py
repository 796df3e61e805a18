"""A compiled program: optimised graph, plan, machine code, and the run-time calling sequence.

The fetches and assignments are bound to the fed shapes and optimised by the pass
pipeline of the options' opt level (graphc.compiler.optimize) before planning.

A run fills a pointer table (feeds, variables, fresh outputs; constants and the arena
are filled once per table) and makes one native call through cffi, which releases the
GIL. Each table comes with its own arena; tables wait in a small pool, so concurrent runs
on one program never share an arena (a run that finds the pool empty makes a new table).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from _cffi_backend import FFI  # cffi's C-level FFI: no C parser needed (saves ~50 ms of import)

from ...compiler import optimize
from ...errors import GraphcError
from ...ir.graph import Tensor
from ...ir.printer import as_text
from ...options import CompileOptions
from ...passes.memory import ALIGNMENT
from . import blas, collective, lapack
from .backend import LLVM
from .codegen import ENTRY, build_module, table_bases
from .jit import compile_ir
from .parallel import default_threads, get_pool
from .steps import Collective, Gemm, Lapack, Plan

_ffi = FFI()
STAGES = ("graph", "kernels", "llvm", "llvm-opt", "asm")
POOL_SIZE = 4  # idle pointer tables (each with its arena) kept per program


def external_symbols(plan: Plan) -> dict[str, int]:
    """The BLAS, LAPACK and MPI routines the plan's steps call, by the names generated code uses."""
    symbols = {}
    if any(isinstance(s, Gemm) for s in plan.steps):
        symbols.update(blas.gemm_symbols())
    if any(isinstance(s, Lapack) for s in plan.steps):
        symbols.update(lapack.lapack_symbols())
    if any(isinstance(s, Collective) for s in plan.steps):
        symbols.update(collective.symbols())
    return symbols


class LLVMProgram:
    """Fetches plus assignments of one graph, compiled for one set of feed shapes."""

    def __init__(self, fetches: Sequence[Tensor], assigns: Sequence[Tensor],
                 feed_shapes: Mapping[Tensor, tuple[int, ...]], options: CompileOptions | None = None,
                 instrument: Any = None):
        self.options = options or CompileOptions()
        fetches, assigns = list(fetches), list(assigns)
        self.optimized = optimize(fetches + assigns, feed_shapes, self.options, instrument, backend=LLVM)
        bound, mapping = list(self.optimized.module.outputs), self.optimized.mapping
        self.fetches, self.assigns = bound[:len(fetches)], bound[len(fetches):]
        self.plan, _ = LLVM.lower(self.fetches, self.assigns)
        self.ir_text = str(build_module(self.plan))
        collectives = [s.node for s in self.plan.steps if isinstance(s, Collective)]
        if collectives:  # every rank must have compiled the same collectives (checked at the first run)
            from ...runtime.mpi_check import check_program

            check_program(collectives)
        self.uses_mpi = bool(collectives)  # gc.distributed collectives: MPI calls
        self.compiled = compile_ir(self.ir_text, ENTRY, external_symbols(self.plan))
        self._fn = _ffi.cast("void(*)(void**)", self.compiled.address)
        original = {new: old for old, new in mapping.items() if old.op in ("placeholder", "variable")}
        bases = table_bases(self.plan)
        self.feed_slots = [(original[p], bases["feed"] + i) for i, p in enumerate(self.plan.feeds)]
        self.var_slots = [(original[v], bases["variable"] + i) for i, v in enumerate(self.plan.variables)]
        self.out_slots = [(o.shape, o.dtype, bases["output"] + i) for i, o in enumerate(self.plan.outputs)]
        position = {o: i for i, o in enumerate(self.plan.outputs)}
        self.fetch_index = [position.get(f) for f in self.fetches]
        used = [i for i in self.fetch_index if i is not None]
        self._unique = len(used) == len(set(used))
        self._const_base = bases["const"]
        self._arena_slot = bases["arena"]
        self._parallel_slot = bases["parallel_for"]
        self._size = bases["size"]
        self.threads = default_threads() if self.options.threads is None else self.options.threads
        self._pool_ref = get_pool(self.threads) if self.threads > 1 else None
        self._pool: list[list] = []

    def _table(self) -> list:
        """A new pointer table with its own arena: [table, held objects, cached variable arrays]."""
        table = _ffi.new("void*[]", self._size)
        keep = [np.empty(self.plan.arena_bytes + ALIGNMENT, np.uint8)]
        arena = _ffi.from_buffer(keep[0])
        table[self._arena_slot] = arena + (-int(_ffi.cast("uintptr_t", arena)) % ALIGNMENT)
        keep.append(arena)
        for i, c in enumerate(self.plan.consts):
            buf = _ffi.from_buffer(c)
            table[self._const_base + i] = buf
            keep.append(buf)
        if self._pool_ref is not None:
            table[self._parallel_slot] = _ffi.cast("void*", self._pool_ref.parallel_for_address)
        nv, nf = len(self.var_slots), len(self.feed_slots)
        return [table, keep, [None] * nv, [None] * nv, [None] * nf, [None] * nf]

    def run(self, feeds: Mapping[Tensor, np.ndarray], variables: Mapping[Tensor, np.ndarray]) -> list:
        """Values of the fetches (None for ops); variables are updated in place.

        Feeds must be C-contiguous arrays of the bound shapes and dtypes (the session
        checks them); variable arrays must stay alive and unmoved while the run lasts.
        """
        pool = self._pool
        item = pool.pop() if pool else self._table()
        table, _, var_arrays, var_bufs, feed_arrays, feed_bufs = item
        frombuf = _ffi.from_buffer
        for k, (ph, slot) in enumerate(self.feed_slots):
            arr = feeds[ph]
            if arr is not feed_arrays[k]:  # the last feed of each slot stays referenced, so `is` is safe
                feed_bufs[k] = buf = frombuf(arr)
                feed_arrays[k] = arr
                table[slot] = buf
        hold = []
        for k, (var, slot) in enumerate(self.var_slots):
            arr = variables[var]
            if arr is not var_arrays[k]:  # pointers of session-owned arrays are kept per table
                var_bufs[k] = buf = frombuf(arr, require_writable=True)
                var_arrays[k] = arr
                table[slot] = buf
        outs = []
        for shape, dtype, slot in self.out_slots:
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
        if self.uses_mpi:
            collective.check_after_run()
        if self._unique:
            return [outs[i] if i is not None else None for i in self.fetch_index]
        results, seen = [], set()
        for i in self.fetch_index:
            if i is None:
                results.append(None)
            elif i in seen:
                results.append(outs[i].copy())
            else:
                seen.add(i)
                results.append(outs[i])
        return results

    def report(self) -> str:
        """Saved residuals, recomputed nodes and FLOPs of the checkpoint policy, and the arena size."""
        from ...passes.checkpoint import report

        opts = self.options
        policy = f"budget {opts.memory_budget} B" if opts.memory_budget else opts.checkpoint
        text = report(self.optimized.module, policy).as_text()
        return f"{text}\nplanned peak (arena): {self.plan.arena_bytes} bytes in {len(self.plan.steps)} steps\n"

    def as_text(self, stage: str = "kernels") -> str:
        """The program at one stage: graph, kernels, llvm (generated IR), llvm-opt, asm."""
        if stage == "graph":
            return as_text(self.fetches + self.assigns)
        if stage == "kernels":
            return self.plan.as_text()
        if stage == "llvm":
            return self.ir_text
        if stage == "llvm-opt":
            return self.compiled.optimized_ir()
        if stage == "asm":
            return self.compiled.assembly()
        raise GraphcError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
