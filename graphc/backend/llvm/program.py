"""A compiled program: optimised graph, plan, machine code, and how to call it.

The fetches and assignments are bound to the fed shapes and optimised by the pass
pipeline of the options' opt level (graphc.compiler.optimize) before planning.

The program describes its calling sequence (the entry address, the pointer table's
layout and fixed words, which slot each feed, variable and output takes); running it is
the executable layer's job (`graphc.runtime.executable`).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ...compiler import optimize
from ...errors import GraphcError
from ...ir.graph import Tensor
from ...ir.printer import as_text
from ...ir.traverse import toposort
from ...options import CompileOptions
from ...runtime.counters import count_compile
from . import blas, host, shared
from .backend import LLVM
from .codegen import ENTRY, module_text, table_bases
from .collector import fewer_collections
from .jit import Compiling, compile_ir
from .parallel import default_threads, get_pool
from .steps import Collective, Gemm, Lapack, Plan, host_nodes

STAGES = ("graph", "kernels", "llvm", "llvm-opt", "asm")


def external_symbols(plan: Plan) -> dict[str, int]:
    """The BLAS, LAPACK and MPI routines the plan's steps call, by the names generated code uses."""
    symbols = {}
    steps = plan.all_steps()
    if any(isinstance(s, Gemm) for s in steps):
        symbols.update(blas.gemm_symbols())
    if any(isinstance(s, Lapack) for s in steps):
        from . import lapack  # loaded with the first program that has one (docs/architecture.md)

        symbols.update(lapack.lapack_symbols())
    if any(isinstance(s, Collective) for s in steps):
        from . import collective  # loaded with the first program that has one (docs/architecture.md)

        symbols.update(collective.symbols())
    return symbols


def link_symbols(plan: Plan, ir_text: str) -> dict[str, int]:
    """What a program's module links to: `external_symbols` and the shared functions it declares."""
    return external_symbols(plan) | shared.symbols(ir_text)


_pool_started: set[int] = set()  # thread counts whose pool `prepare_pool` started making


def prepare_pool(options: CompileOptions) -> None:
    """Start making the process's thread pool for the options' thread count on a thread of its own,
    unless it was started before: its native code compiles in LLVM (about 10 ms, without the GIL)
    while the program is planned, instead of after (`get_pool` then waits for it if need be)."""
    threads = default_threads() if options.threads is None else options.threads
    if threads > 1 and threads not in _pool_started:
        _pool_started.add(threads)
        Compiling(lambda: get_pool(threads))


class LLVMProgram:
    """Fetches plus assignments of one graph, compiled for one set of feed shapes."""

    @fewer_collections
    def __init__(self, fetches: Sequence[Tensor], assigns: Sequence[Tensor],
                 feed_shapes: Mapping[Tensor, tuple[int, ...]] | None, options: CompileOptions | None = None,
                 instrument: Any = None, built: tuple | None = None, compiling: Compiling | None = None):
        """`built`: the (optimized, plan, ir_text) of the program when made elsewhere (symbolic templates);
        `compiling`: its IR's compile, when started already."""
        self.options = options or CompileOptions()
        fetches, assigns = list(fetches), list(assigns)
        if built is None:
            shared.prepare_for(toposort(fetches + assigns))  # the GEMM kernel compiles while this plans
            prepare_pool(self.options)  # and so does the thread pool's native code
            optimized = optimize(fetches + assigns, feed_shapes, self.options, instrument, backend=LLVM)
            bound = list(optimized.module.outputs)
            plan, _ = LLVM.lower(bound[:len(fetches)], bound[len(fetches):])
            built = (optimized, plan, module_text(plan))
        self.optimized, self.plan, self.ir_text = built
        self.consts = self.plan.consts  # the plan keeps the constants alive
        bound, mapping = list(self.optimized.module.outputs), self.optimized.mapping
        self.fetches, self.assigns = bound[:len(fetches)], bound[len(fetches):]
        collectives = [s.node for s in self.plan.steps if isinstance(s, Collective)]
        if collectives:  # every rank must have compiled the same collectives (checked at the first run)
            from ...runtime.mpi_check import check_program

            check_program(collectives)
        self.uses_mpi = bool(collectives)  # gc.distributed collectives: MPI calls
        self.compiled = (compiling.result() if compiling is not None
                         else compile_ir(self.ir_text, ENTRY, lambda: link_symbols(self.plan, self.ir_text)))
        count_compile()
        self.entry = self.compiled.address
        original = {new: old for old, new in mapping.items() if old.op in ("placeholder", "variable")}
        self.bases = bases = table_bases(self.plan)
        self.feed_slots = [(original[p], bases["feed"] + i) for i, p in enumerate(self.plan.feeds)]
        self.var_slots = [(original[v], bases["variable"] + i) for i, v in enumerate(self.plan.variables)]
        self.variables = [var for var, _ in self.var_slots]  # the session variables a run reads or writes
        self.writes = bool(self.assigns)
        self.out_slots = [(o.shape, o.dtype, bases["output"] + i) for i, o in enumerate(self.plan.outputs)]
        position = {o: i for i, o in enumerate(self.plan.outputs)}
        self.fetch_index = [position.get(f) for f in self.fetches]
        used = [i for i in self.fetch_index if i is not None]
        self._unique = len(used) == len(set(used))
        self.threads = default_threads() if self.options.threads is None else self.options.threads
        self._pool_ref = get_pool(self.threads) if self.threads > 1 else None
        self.hosts = host_nodes(self.plan)  # gc.print / gc.check_numerics: the run calls back
        self._host_key = host.register(self.hosts) if self.hosts else 0
        if self.hosts:
            weakref.finalize(self, host.unregister, self._host_key)
        self.checks_after_run = bool(self.hosts) or self.uses_mpi

    def template(self) -> list[int]:
        """The pointer table's fixed words: constants and the thread pool's ``parallel_for``
        (0 for the slots each run fills: feeds, variables, outputs, arena)."""
        words = [0] * self.bases["size"]
        for i, c in enumerate(self.consts):
            words[self.bases["const"] + i] = c.ctypes.data
        if self._pool_ref is not None:
            words[self.bases["parallel_for"]] = self._pool_ref.parallel_for_address
        if self.hosts:
            words[self.bases["host"]] = host.callback_address()
            words[self.bases["host"] + 1] = self._host_key
        return words

    def after_run(self) -> None:
        """Called after each native run (when `checks_after_run`): raises what the run recorded
        (a host call's error, which stopped it; a failed collective)."""
        if self.hosts:
            host.raise_pending()
        if self.uses_mpi:
            from . import collective

            collective.check_after_run()

    def fetch_values(self, outs: list[np.ndarray]) -> list:
        """The fetches' values from the output arrays of a run (None for ops; repeats copied)."""
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
        """Saved residuals, recomputed nodes and FLOPs of the checkpoint policy, the arena size, and the
        kernel count: every step (a kernel, a GEMM with its epilogue, a LAPACK or MPI call) by kind."""
        return self.report_of(self.checkpoint_report(), self.plan)

    def checkpoint_report(self) -> Any:
        """The checkpoint pass's report for this program's policy (graphc.passes.checkpoint)."""
        opts = self.options
        return self.optimized.checkpoint_report(f"budget {opts.memory_budget} B" if opts.memory_budget
                                                else opts.checkpoint)

    @staticmethod
    def report_of(checkpoint: Any, plan: Plan) -> str:
        """`report`'s text from a checkpoint report and a plan."""
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(plan.step_kinds().items()))
        return (f"{checkpoint.as_text()}\nplanned peak (arena): {plan.arena_bytes} bytes in {len(plan.steps)} steps\n"
                f"kernels: {len(plan.steps)} ({kinds})\n")

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
