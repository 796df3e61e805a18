"""The traced variant of a compiled program (the profiler's LLVM side).

`TracedProgram` compiles the same plan a second time with a `Probe`: the entry reads the
monotonic clock (``clock_gettime``, the clock of Python's ``time.monotonic_ns``) before
and after every step, and every parallel region runs each of its pieces through a
generated wrapper that reads the clock around the piece and records it with the thread
that ran it (``pthread_self``, which is Python's ``threading.get_ident``). The untraced
program is never touched: its module is built without a probe.

The trace buffer, an int64 array that the run passes in one extra table slot:

    [0] pieces recorded so far (atomic)   [1] capacity in pieces   [2] step now running
    [3] the pool's real parallel_for
    [HEADER + 2*i], [HEADER + 2*i + 1]    start and end of step i (calling thread)
    [pieces + 4*j ...]                    piece j: step, thread, start, end

A piece past the capacity is counted but not stored (the generated code never writes
outside the buffer); the next run gets a larger buffer. The wrapper finds the buffer
through a module global set by the entry, so traced runs of one program take turns.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from ...ir.graph import Tensor
from ...ops.registry import OpKind
from ...passes.cost import flops, nbytes
from ...profiler.records import NodeInfo, StepFacts
from .codegen import ENTRY, module_text, table_bases
from .jit import compile_ir
from .loops import CHUNK_TYPE, I32, I64, PARALLEL_FOR_TYPE, PTR, FunctionBuilder
from .parallel import PIECES_PER_THREAD
from .program import LLVMProgram, link_symbols
from .steps import Collective, CollectiveWait, Gemm, HostCall, Kernel, KernelMode, Lapack, Loop, Step, View, numel

COUNT, CAPACITY, CURRENT, PARALLEL_FOR = 0, 1, 2, 3
HEADER = 4
TRAMPOLINE = "graphc_trace_parallel_for"
CLOCK = "graphc_trace_clock"
THREAD = "graphc_trace_thread"
TIMING_SYMBOLS = (CLOCK, THREAD)


def timing_symbols() -> dict[str, int]:
    """Addresses of the libc functions the traced code calls."""
    libc = ctypes.CDLL(None)
    return {CLOCK: ctypes.cast(libc.clock_gettime, ctypes.c_void_p).value,
            THREAD: ctypes.cast(libc.pthread_self, ctypes.c_void_p).value}


class Probe:
    """Emits the timing code of the traced variant into a module being built."""

    def __init__(self, steps: int, slot: int):
        self.steps, self.slot = steps, slot
        self.pieces = HEADER + 2 * steps  # where the piece records start

    def wrap(self, entry: FunctionBuilder, table: ir.Value, steps: Sequence[Step]) -> Iterator[Step]:
        """Yield the steps; the code emitted for each is bracketed by clock reads."""
        module, b = entry.fn.module, entry.b
        self._define(module)
        state = b.load(b.gep(table, [ir.Constant(I64, self.slot)], source_etype=PTR), typ=PTR)
        b.store(state, self._state)
        for i, step in enumerate(steps):
            b.store(ir.Constant(I64, i), self._word(b, state, CURRENT))
            b.store(b.call(self._now, []), self._word(b, state, HEADER + 2 * i))
            yield step
            b.store(b.call(self._now, []), self._word(b, state, HEADER + 2 * i + 1))

    @staticmethod
    def _word(b: ir.IRBuilder, state: ir.Value, index: int | ir.Value) -> ir.Value:
        index = index if isinstance(index, ir.Value) else ir.Constant(I64, index)
        return b.gep(state, [index], source_etype=I64)

    def _define(self, module: ir.Module) -> None:
        self._state = ir.GlobalVariable(module, PTR, "graphc_trace_state")
        self._state.linkage = "internal"
        self._state.initializer = ir.Constant(PTR, None)
        self._now = self._define_now(module)
        chunk = self._define_chunk(module)
        f = FunctionBuilder(module, TRAMPOLINE, [PTR, PTR, I64, I64], internal=False)
        b = f.b
        fn, args, n, min_chunk = f.args
        state = b.load(self._state, typ=PTR)
        ctx = f.slot(ir.ArrayType(PTR, 3))
        for i, v in enumerate((fn, args, state)):
            b.store(v, b.gep(ctx, [ir.Constant(I32, 0), ir.Constant(I32, i)]))
        real = b.inttoptr(b.load(self._word(b, state, PARALLEL_FOR), typ=I64), PARALLEL_FOR_TYPE.as_pointer())
        b.call(real, [chunk, ctx, n, min_chunk])
        f.finish()

    @staticmethod
    def _define_now(module: ir.Module) -> ir.Function:
        clock = ir.Function(module, ir.FunctionType(I32, [I32, PTR]), CLOCK)
        now = ir.Function(module, ir.FunctionType(I64, []), "graphc_trace_now")
        now.linkage = "internal"
        b = ir.IRBuilder(now.append_basic_block("entry"))
        ts = b.alloca(ir.ArrayType(I64, 2))
        b.call(clock, [ir.Constant(I32, time.CLOCK_MONOTONIC), ts])
        zero = ir.Constant(I32, 0)
        sec = b.load(b.gep(ts, [zero, zero]), typ=I64)
        nsec = b.load(b.gep(ts, [zero, ir.Constant(I32, 1)]), typ=I64)
        b.ret(b.add(b.mul(sec, ir.Constant(I64, 1_000_000_000)), nsec))
        return now

    def _define_chunk(self, module: ir.Module) -> ir.Function:
        """``void chunk(void** [f, args, state], i64 begin, i64 end)``: f's piece, timed and recorded."""
        thread = ir.Function(module, ir.FunctionType(I64, []), THREAD)
        f = FunctionBuilder(module, "graphc_trace_chunk", [PTR, I64, I64])
        b = f.b
        ctx, begin, end = f.args
        fn, args, state = (b.load(b.gep(ctx, [ir.Constant(I64, i)], source_etype=PTR), typ=PTR) for i in range(3))
        t0 = b.call(self._now, [])
        b.call(b.inttoptr(b.ptrtoint(fn, I64), CHUNK_TYPE.as_pointer()), [args, begin, end])
        t1 = b.call(self._now, [])
        j = b.atomic_rmw("add", self._word(b, state, COUNT), ir.Constant(I64, 1), "monotonic")
        with f.when(b.icmp_signed("<", j, b.load(self._word(b, state, CAPACITY), typ=I64))):
            at = b.add(ir.Constant(I64, self.pieces), b.mul(j, ir.Constant(I64, 4)))
            values = (b.load(self._word(b, state, CURRENT), typ=I64), b.call(thread, []), t0, t1)
            for k, v in enumerate(values):
                b.store(v, self._word(b, state, b.add(at, ir.Constant(I64, k))))
        f.finish()
        return f.fn


@dataclass
class RawTrace:
    """One traced run as the generated code recorded it (monotonic ns)."""

    steps: np.ndarray  # (steps, 2): start and end of each step, on the calling thread
    pieces: np.ndarray  # (pieces, 4): step, thread, start, end
    dropped: int
    thread: int  # the calling thread


class TracedProgram(LLVMProgram):
    """The traced variant of an `LLVMProgram`: same plan and slots, its own machine code.

    Built from a compiled program (its optimised graph and plan are reused, not rebuilt);
    `run_traced` runs it (through an executable of it) and returns the outputs with the
    `RawTrace`.
    """

    def __init__(self, program: LLVMProgram):
        self.__dict__.update(program.__dict__)
        slot = table_bases(self.plan)["size"]
        self.ir_text = module_text(self.plan, Probe(len(self.plan.steps), slot))
        symbols = timing_symbols() | link_symbols(self.plan, self.ir_text)
        self.compiled = compile_ir(self.ir_text, ENTRY, symbols)
        self.entry = self.compiled.address
        self._trampoline = self.compiled.engine.get_function_address(TRAMPOLINE)
        self._trace_slot = slot
        self._turn = threading.Lock()
        self._buffer = self._new_buffer(PIECES_PER_THREAD * self.threads * max(16, len(self.plan.steps)))

    def _new_buffer(self, capacity: int) -> np.ndarray:
        buf = np.zeros(HEADER + 2 * len(self.plan.steps) + 4 * capacity, np.int64)
        buf[CAPACITY] = capacity
        if self._pool_ref is not None:
            buf[PARALLEL_FOR] = self._pool_ref.parallel_for_address
        return buf

    def template(self) -> list[int]:
        """The program's fixed words plus the trace buffer; ``parallel_for`` is the recording
        trampoline, which calls the pool's."""
        words = super().template() + [self._buffer.ctypes.data]
        if self._pool_ref is not None:
            words[self.bases["parallel_for"]] = self._trampoline
        return words

    def run_traced(self, run: Callable[[], list], stale: Callable[[], None]) -> tuple[list, RawTrace]:
        """The outputs of `run()` (one run of this program) and what it recorded. When the
        buffer overflowed it is replaced, and `stale()` drops the tables that point at it."""
        with self._turn:
            buf = self._buffer
            buf[COUNT] = 0
            outputs = run()
            steps = len(self.plan.steps)
            count, capacity = int(buf[COUNT]), int(buf[CAPACITY])
            kept = min(count, capacity)
            pieces = buf[HEADER + 2 * steps:HEADER + 2 * steps + 4 * kept].reshape(kept, 4).copy()
            raw = RawTrace(buf[HEADER:HEADER + 2 * steps].reshape(steps, 2).copy(), pieces, count - kept,
                           threading.get_ident())
            if count > capacity:  # the next run records every piece
                self._buffer = self._new_buffer(2 * count)
                stale()
        return outputs, raw


def step_facts(program: LLVMProgram) -> list[StepFacts]:
    """Kind, nodes, FLOPs and bytes of each step of `program` (the profiler's per-step facts).

    Nodes are named as the user's graph names them: a pass that rebuilds a node in the
    same graph gets a fresh name (``matmul_2`` becomes ``matmul_2_1``), so a name is traced
    back through such suffixes to the user's node of the same op.
    """
    user = program.optimized.user_names

    def name(n: Tensor) -> str:
        base = n.name
        while (base, n.op) not in user:
            head, _, tail = base.rpartition("_")
            if not head or not tail.isdigit():
                return n.name
            base = head
        return user[base, n.op]

    return [_facts(step, name) for step in program.plan.steps]


def _facts(step: Step, name: Callable[[Tensor], str]) -> StepFacts:
    if isinstance(step, Loop):  # its bodies' steps run inside it, untraced one by one
        moved = sum(_view_bytes(v, i) for v, i in zip(step.args, step.node.inputs))
        return StepFacts(step.name, step.node.op, _infos((step.node,), name), 0, moved)
    if isinstance(step, Lapack):
        moved = sum(_view_bytes(v, i) for v, i in zip(step.inputs, step.node.inputs)) + nbytes(step.node)
        return StepFacts(step.name, "lapack", _infos((step.node,), name), flops(step.node), moved)
    if isinstance(step, Collective):  # MPI moves the input in and the result out (until its wait)
        moved = nbytes(step.node.inputs[0]) + nbytes(step.node)
        return StepFacts(step.name, "collective", _infos((step.node,), name), 0, moved)
    if isinstance(step, CollectiveWait):
        return StepFacts(step.name, "collective wait", _infos((step.node,), name), 0, 0)
    if isinstance(step, HostCall):  # the host reads the value
        return StepFacts(step.name, "host call", _infos((step.node,), name), 0, nbytes(step.node))
    if isinstance(step, Gemm):
        a, b = step.node.inputs
        members = (step.node,) + (step.epilogue.members if step.epilogue is not None else ()) + (
            step.update.members if step.update is not None else ())
        moved = _view_bytes(step.a, a) + _view_bytes(step.b, b) + nbytes(step.node) * (2 if step.update else 1)
        if step.epilogue is not None:
            moved += _kernel_bytes(step.epilogue)
        return StepFacts(step.name, "gemm", _infos(members, name), sum(flops(m) for m in members), moved)
    members = step.members or (step.root,)
    if not step.members or all(m.opdef.kind is OpKind.INDEX for m in step.members):
        kind = "copy"
    else:
        kind = "map" if step.mode is KernelMode.MAP else "reduce"
    return StepFacts(step.name, kind, _infos(members, name), sum(flops(m) for m in step.members), _kernel_bytes(step))


def _kernel_bytes(k: Kernel) -> int:
    written = nbytes(k.root) + sum(nbytes(e.node) for e in k.more)
    return written + sum(_view_bytes(view, node) for node, view in k.reads.items())


def _view_bytes(view: View, node: Tensor) -> int:
    """Distinct bytes of `node` read through `view` (a broadcast dim, stride 0, is read once)."""
    elements = numel([d for d, s in zip(node.shape, view.strides) if s != 0])
    return min(elements, view.buffer.size) * node.dtype.itemsize


def _infos(nodes: Sequence[Tensor], name: Callable[[Tensor], str]) -> tuple[NodeInfo, ...]:
    return tuple(NodeInfo(name(n), n.op, n.loc, n.shape) for n in nodes)
