"""One LLVM module per program: a function per step and the exported entry point.

The entry ``void graphc_entry(void** table)`` reads its buffers from a pointer table laid
out as [feeds..., variables..., outputs..., constants..., arena] and calls the steps in
order. GEMM steps loop over the broadcast batch dims and call BLAS per matrix, then run
their epilogue kernel, if any, over the product in place. LAPACK steps (`lapack.py`) loop
over the batch and call LAPACK per matrix; collective steps call MPI; host calls call the
host's callback and return from the entry when it refuses (`host.py`).
"""

from __future__ import annotations

import math
import platform
from collections.abc import Callable
from typing import Any

from llvmlite import ir

from ...passes.sizing import decide, empty, templating, unit_dim
from . import blas, host, pairs, tiled
from .emitter import intrinsic, mem_type
from .kernels import Call, KernelCodegen, kernel_buffers, kernel_key
from .loops import I8, I32, I64, PARALLEL_FOR_TYPE, PTR, FunctionBuilder, printed
from .pairs import Block, Items, Op, blocked, epilogue_ns, pair_items, pair_ops, work_ns
from .parallel import MIN_PARALLEL_NS, WARM_PARALLEL_NS, WARM_SPAN_NS, min_chunk_for
from .steps import (
    Buffer,
    Collective,
    CollectiveWait,
    Gemm,
    HostCall,
    Kernel,
    Lapack,
    Loop,
    Plan,
    blas_layout,
    numel,
    row_major_strides,
)

ENTRY = "graphc_entry"
TABLE_KINDS = ("feed", "variable", "output", "const")
# An entry of this many steps or more is compiled unoptimized (optnone): it is a list of calls, whose
# O3 took about 30 of W4's 63 ms of optimization (260 steps) and saved about 900 register moves per
# run, well under a microsecond (docs/backend.md). So is the function of a GEMM step without batch
# dims (table stores and a call or two): about 20 of the 180 ms of W2's template.
UNOPTIMIZED_ENTRY_STEPS = 128


def table_bases(plan: Plan) -> dict[str, int]:
    """Index of the first pointer of each kind in the entry's table.

    The arena comes after the constants, then the thread pool's ``parallel_for``
    (NULL: run every step on the calling thread), then the host callback and its context
    (read only by programs with host calls, `host.py`).
    """
    counts = {"feed": len(plan.feeds), "variable": len(plan.variables), "output": len(plan.outputs),
              "const": len(plan.consts)}
    bases, at = {}, 0
    for kind in TABLE_KINDS:
        bases[kind] = at
        at += counts[kind]
    bases["arena"] = at
    bases["parallel_for"] = at + 1
    bases["host"] = at + 2
    bases["size"] = at + 4
    return bases


def build_module(plan: Plan, probe: Any = None) -> ir.Module:
    """The program's LLVM module (not yet optimized).

    `probe` (the profiler's `graphc.backend.llvm.trace.Probe`) makes the traced variant:
    its `wrap` yields the steps and emits a timestamp around each one. Without it nothing
    of the profiler is emitted.
    """
    module = ir.Module(name="graphc_program")
    entry = emit_entry(module, ENTRY, plan, {}, probe, internal=False)
    if len(plan.steps) >= UNOPTIMIZED_ENTRY_STEPS:
        entry.attributes.add("noinline")
        entry.attributes.add("optnone")
    return module


def module_text(plan: Plan, probe: Any = None) -> str:
    """`build_module`'s LLVM IR text (the module is taken apart once printed: `loops.printed`)."""
    return printed(build_module(plan, probe))


def emit_entry(module: ir.Module, name: str, plan: Plan, emitted: dict[tuple, list], probe: Any = None,
               internal: bool = True) -> ir.Function:
    """``void name(void** table)`` running the plan's steps over the buffers of its table.

    The program's entry, and the function of each region a `Loop` step runs (control.py);
    `emitted` holds the functions of steps of equal structure, which every entry shares. A long
    entry (`UNOPTIMIZED_ENTRY_STEPS`, outside a template) calls a shared function for each of its
    pool calls and pairs of products (`_Calls.apart`).
    """
    entry = FunctionBuilder(module, name, [PTR], internal=internal)
    b = entry.b
    table = entry.args[0]
    bases = table_bases(plan)
    pointers: dict[Buffer, ir.Value] = {}
    arena: list[ir.Value] = []  # the arena's base, loaded once

    def table_entry(i: int) -> ir.Value:  # loaded in the entry block, which dominates every use
        top = entry.top
        return top.load(top.gep(table, [ir.Constant(I64, i)], source_etype=PTR), typ=PTR)

    def pointer(buf: Buffer) -> ir.Value:
        if buf not in pointers:
            if buf.kind == "arena":  # an offset from the arena's base
                if not arena:
                    arena.append(table_entry(bases["arena"]))
                pointers[buf] = entry.top.gep(arena[0], [ir.Constant(I64, buf.slot)], inbounds=True, source_etype=I8)
            else:
                pointers[buf] = table_entry(bases[buf.kind] + buf.slot)
        return pointers[buf]

    calls = _Calls(entry, pointer, table_entry(bases["parallel_for"]), emitted,
                   apart=len(plan.steps) >= UNOPTIMIZED_ENTRY_STEPS and not templating())
    parallel_for = calls.parallel_for
    hosts = 0  # host calls so far: the index the next one passes
    requests: dict[Buffer, ir.Value] = {}  # a started collective's result buffer -> its MPI request slot
    steps = list(plan.steps)
    paired = {i: i + 1 for i in plan.pairs} if probe is None else {}
    seconds = set(paired.values())
    # pairs that run the epilogue of the step before them (not in a long entry's shared pair functions)
    deferred = set(plan.deferred) if probe is None and not calls.apart else set()
    # the step before such a pair: whether its epilogue is still to run (it ran already when the product
    # before, paired, ran its epilogue in its item or one after the other), an i64 on the stack
    pending: dict[int, ir.Value] = {i - 1: entry.slot(I64) for i in deferred}
    for i, step in enumerate(steps if probe is None else probe.wrap(entry, table, steps)):
        if i in seconds:
            continue  # ran with the first product of its pair
        if i in paired:
            calls.pair((step, steps[paired[i]]), steps[i - 1].epilogue if i in deferred else None,
                       pending.get(i - 1), pending.get(i + 1))
            continue
        if i in pending:  # its epilogue runs with the pair that follows
            calls.gemm(step, epilogue=False)
            b.store(ir.Constant(I64, 1), pending[i])
            continue
        if isinstance(step, Kernel):
            calls.kernel(step)
            continue
        if not isinstance(step, Gemm):
            calls.idle = math.inf
        if isinstance(step, Loop):
            from .control import emit_loop  # loaded with the first program that has one (docs/architecture.md)

            emit_loop(entry, step, pointer, parallel_for,
                      lambda nm, body: (emit_entry(module, nm, body, emitted), table_bases(body)))
            continue
        if isinstance(step, Lapack):
            from .lapack import lapack_buffers, lapack_function  # loaded on first use (docs/architecture.md)

            if numel(step.node.shape):
                b.call(lapack_function(module, step), [pointer(x) for x in lapack_buffers(step)])
            continue
        if isinstance(step, Collective):
            from . import collective  # loaded with the first program that has one (docs/architecture.md)

            requests[step.out.buffer] = entry.slot(ir.ArrayType(I64, collective.REQUEST_BYTES // 8))
            collective.emit_start(module, b, step.node, numel(step.node.inputs[0].shape), pointer(step.src.buffer),
                                  pointer(step.out.buffer), requests[step.out.buffer])
            continue
        if isinstance(step, CollectiveWait):
            from . import collective

            collective.emit_wait(module, b, step.node, requests.pop(step.out.buffer))
            continue
        if isinstance(step, HostCall):
            host.emit_call(b, table_entry(bases["host"]), table_entry(bases["host"] + 1), hosts, step,
                           pointer(step.src.buffer))
            hosts += 1
            continue
        calls.gemm(step)
    entry.finish()
    return entry.fn


class _Calls:
    """The calls that run kernels, products and pairs of products, emitted into one function (an
    entry, or a pair's function below): `pointer` gives a buffer's pointer there, `parallel_for` the
    pool's (NULL: run on the calling thread). `idle` is the estimated one-thread work since the pool
    last ran a job: while it is short, the pool's workers are still watching for the next job
    (`WARM_SPAN_NS`), and a kernel is worth the pool in shorter pieces.

    `apart`: each pool call (table stores, the test for a pool, the call through it or the serial
    call) and each pair of products (the same, for both products and their epilogues) is a function
    of its own, shared by the calls of equal structure, which the function calls once. A long entry
    is compiled optnone, so this changes nothing it does but one call more per such step, and its IR
    holds one call where it held the sequence (W4: 63 pairs; docs/backend.md).
    """

    def __init__(self, fb: FunctionBuilder, pointer: Callable[[Buffer], ir.Value], parallel_for: ir.Value,
                 emitted: dict[tuple, list], apart: bool = False, idle: float = math.inf):
        self.fb, self.b, self.pointer, self.parallel_for, self.emitted = fb, fb.b, pointer, parallel_for, emitted
        self.module = fb.fn.module
        self.threaded = fb.b.icmp_unsigned("!=", parallel_for, ir.Constant(PTR, None))
        self.apart, self.idle = apart, idle

    def warm(self) -> bool:
        return decide("pool warm", self.idle < WARM_SPAN_NS)

    def kernel(self, step: Kernel, least_ns: float | None = None) -> None:
        if step.empty:
            return
        key = kernel_key(step)
        if key not in self.emitted:
            self.emitted[key] = KernelCodegen(self.module, step).emit()
        least_ns = least_ns or (WARM_PARALLEL_NS if self.warm() else MIN_PARALLEL_NS)
        for call in self.emitted[key]:
            args = [self.pointer(x) for x in kernel_buffers(step)]
            if not call.parallel_at(least_ns):
                self.b.call(call.fn, args + [ir.Constant(I64, 0), ir.Constant(I64, call.rows)])
                self.idle += call.rows * (call.ns_per_row or 0.0)
                continue
            if self.apart:
                self.b.call(_pool_call_function(call, len(args), least_ns), args + [self.parallel_for])
            else:
                _parallel_call(self.fb, call, args, self.threaded, self.parallel_for, least_ns)
            self.idle = 0.0

    def gemm_fn(self, step: Gemm, block: Block | None = None) -> ir.Function | None:
        key = (*gemm_key(step), block)
        if key not in self.emitted:
            self.emitted[key] = [gemm_function(self.module, step, block)]
        return self.emitted[key][0]

    def gemm(self, step: Gemm, epilogue: bool = True) -> None:
        fn = self.gemm_fn(step)
        if fn is not None:
            self.b.call(fn, [self.pointer(x) for x in gemm_buffers(step)] + [self.parallel_for])
        split = _split(step)
        self.idle = 0.0 if split else self.idle + work_ns(step)
        if step.epilogue is not None and epilogue:  # in place over the whole product, right after the product
            self.kernel(step.epilogue, WARM_PARALLEL_NS if split or self.warm() else MIN_PARALLEL_NS)

    def pair(self, pair: tuple[Gemm, Gemm], late: Kernel | None = None, pending: ir.Value | None = None,
             after: ir.Value | None = None) -> None:
        """Both products on the pool at once when there is one (one per thread, or in blocks:
        `pairs.pair_items`), else one after the other. `late`: the epilogue of the step before
        (`pairs.deferred_epilogues`), to run if the i64 at `pending` is not 0; `after`: where to
        say whether the second product's epilogue is still to run (the next pair runs it)."""
        items = pair_items(pair, epilogue_ns(late))
        if self.apart:
            bufs = _pair_buffers(pair)
            fn = _pair_run_function(self.module, pair, items, bufs, self.emitted, self.idle)
            self.b.call(fn, [self.pointer(x) for x in bufs] + [self.parallel_for])
            self.idle = 0.0
            return
        b = self.b
        # a template's pair runs as one when both products are worth a thread at the fed sizes
        both = b.and_(self.threaded, _emit_pair_check(self.fb, pair, items)) if templating() else self.threaded
        with b.if_else(both) as (then, otherwise):
            with then:
                _pair_call(self.fb, pair, pair_ops(items, late), self.emitted, self.pointer, self.parallel_for,
                           self.gemm_fn, pending)
                if after is not None:  # the second product's epilogue: in its item, after both blocks, or later
                    b.store(ir.Constant(I64, int(pair[1].epilogue is not None and blocked(pair[1], items))), after)
                for g in pair:  # the epilogue of a product cut in blocks, once both blocks ran
                    if g.epilogue is not None and blocked(g, items) and not (g is pair[1] and after is not None):
                        self.kernel(g.epilogue, WARM_PARALLEL_NS)
            with otherwise:
                if late is not None:
                    with b.if_then(b.icmp_signed("!=", b.load(pending, typ=I64), ir.Constant(I64, 0))):
                        self.kernel(late)
                for g in pair:
                    self.gemm(g)
                if after is not None:
                    b.store(ir.Constant(I64, 0), after)
        self.idle = 0.0


def _pool_call_function(call: Call, count: int, least_ns: float) -> ir.Function:
    """``void f(buffers..., parallel_for)``: `call` over the pool when there is one, else inline
    (`_parallel_call`), for a long entry (`_Calls.apart`); one per kernel function and least piece."""
    min_chunk = min_chunk_for(call.ns_per_row, least_ns)
    name = f"{call.fn.name}_pool{min_chunk}"
    existing = call.fn.module.globals.get(name)
    if existing is not None:
        return existing
    f = FunctionBuilder(call.fn.module, name, [PTR] * (count + 1))
    *args, parallel_for = f.args
    threaded = f.b.icmp_unsigned("!=", parallel_for, ir.Constant(PTR, None))
    _parallel_call(f, call, list(args), threaded, parallel_for, least_ns)
    f.finish()
    return f.fn


def _pair_run_function(module: ir.Module, pair: tuple[Gemm, Gemm], items: Items, bufs: list[Buffer],
                       emitted: dict[tuple, list], idle: float) -> ir.Function:
    """``void f(buffers..., parallel_for)`` running a pair (`_Calls.pair`) over its buffers
    (`_pair_buffers`) after `idle` of one-thread work, for a long entry (`_Calls.apart`); shared by
    pairs of equal structure."""
    position = {buf: i for i, buf in enumerate(bufs)}
    key = ("pair run", idle, *((gemm_key(g), g.epilogue and kernel_key(g.epilogue)) for g in pair),
           repr([[(g is pair[1], block) for g, block in item] for item in items]),
           repr([[position[x] for x in gemm_buffers(g) + (kernel_buffers(g.epilogue) if g.epilogue else [])]
                 for g in pair]))
    if key not in emitted:
        f = FunctionBuilder(module, f"run_pair_{pair[0].name}_{pair[1].name}", [PTR] * (len(bufs) + 1))
        args = dict(zip(bufs, f.args))
        _Calls(f, args.__getitem__, f.args[-1], emitted, idle=idle).pair(pair)
        f.finish()
        emitted[key] = [f.fn]
    return emitted[key][0]


def _emit_pair_check(entry: FunctionBuilder, pair: tuple[Gemm, Gemm], items: Items) -> ir.Value:
    """Whether each product of a template's pair has `PAIR_MIN_NS` of work at the fed sizes (a
    product cut in blocks `PAIR_CUT_MIN_NS`): the product of its dims and k computed by the code
    from the dims, stored to the stack (the builder would fold constants, and the template needs
    each as an affine literal)."""
    b = entry.b
    ok = ir.Constant(ir.IntType(1), 1)
    for g in pair:
        least_ns = pairs.PAIR_CUT_MIN_NS if blocked(g, items) else pairs.PAIR_MIN_NS
        least = ir.Constant(I64, round(least_ns * blas.GEMM_GFLOPS / 2))
        dims = [*g.node.shape, g.node.inputs[0].shape[-1]]
        slots = entry.slot(ir.ArrayType(I64, len(dims)))
        at = [b.gep(slots, [ir.Constant(I32, 0), ir.Constant(I32, i)]) for i in range(len(dims))]
        for p, value in zip(at, dims):
            b.store(ir.Constant(I64, value), p)
        work = b.load(at[0], typ=I64)
        for p in at[1:]:
            work = b.mul(work, b.load(p, typ=I64))
        ok = b.and_(ok, b.icmp_signed(">=", work, least))
    return ok


def _pair_call(entry: FunctionBuilder, pair: tuple[Gemm, Gemm], ops: list[list[Op]], emitted: dict[tuple, list],
               pointer: Callable[[Buffer], ir.Value], parallel_for: ir.Value,
               gemm_fn: Callable[[Gemm, Block | None], ir.Function | None], pending: ir.Value | None) -> None:
    """Hand the pair to the pool as a range of two items: item j runs `ops[j]` (`pairs.pair_ops`),
    each whole product followed by its epilogue; a deferred epilogue runs if the i64 at `pending`
    is not 0, then its thread raises a flag (on the entry's stack, cleared here) that the other
    thread waits for."""
    b = entry.b
    module = entry.fn.module
    late = [op[1] for item in ops for op in item if op[0] == "epilogue"]
    bufs = list(dict.fromkeys(_pair_buffers(pair) + [x for k in late for x in kernel_buffers(k)]))
    position = {buf: i for i, buf in enumerate(bufs)}

    def layout(op: Op) -> tuple:
        if op[0] == "gemm":
            g, block = op[1], op[2]
            return ("gemm", gemm_key(g), block, [position[x] for x in gemm_buffers(g)],
                    g.epilogue and block is None and (kernel_key(g.epilogue), [position[x] for x in
                                                                                kernel_buffers(g.epilogue)]))
        if op[0] == "epilogue":
            return ("epilogue", kernel_key(op[1]), [position[x] for x in kernel_buffers(op[1])])
        return op

    shape = [[layout(op) for op in item] for item in ops]
    key = ("pair", repr(shape))
    if key not in emitted:
        emitted[key] = [_pair_function(module, pair, ops, emitted, shape, len(bufs), gemm_fn)]
    table = entry.slot(ir.ArrayType(PTR, len(bufs) + 2))
    flag = entry.slot(I64)
    b.store(ir.Constant(I64, 0), flag)
    for i, p in enumerate([pointer(x) for x in bufs] + [flag, pending or ir.Constant(PTR, None)]):
        b.store(p, b.gep(table, [ir.Constant(I32, 0), ir.Constant(I32, i)]))
    fn = b.inttoptr(b.ptrtoint(parallel_for, I64), PARALLEL_FOR_TYPE.as_pointer())
    b.call(fn, [emitted[key][0], table, ir.Constant(I64, 2), ir.Constant(I64, 1)])


def _pair_buffers(pair: tuple[Gemm, Gemm]) -> list[Buffer]:
    return list(dict.fromkeys(buf for g in pair for buf in gemm_buffers(g) + (
        kernel_buffers(g.epilogue) if g.epilogue is not None else [])))


def _pair_function(module: ir.Module, pair: tuple[Gemm, Gemm], ops: list[list[Op]], emitted: dict[tuple, list],
                   shape: list[list[tuple]], count: int,
                   gemm_fn: Callable[[Gemm, Block | None], ir.Function | None]) -> ir.Function:
    """``void pair(void** buffers, i64 begin, i64 end)``: item j runs what `ops[j]` lists; the
    table's last two slots are the deferred epilogue's flag and whether it is still to run."""
    f = FunctionBuilder(module, f"pair_{pair[0].name}_{pair[1].name}", [PTR, I64, I64])
    table, begin, end = f.args
    b = f.b
    args = [b.load(b.gep(table, [ir.Constant(I64, i)], source_etype=PTR), typ=PTR) for i in range(count + 2)]
    flag, pending = args[count:]

    def run(k: Kernel, at: list[int]) -> None:
        if empty(k.shape):
            return
        key = kernel_key(k)
        if key not in emitted:
            emitted[key] = KernelCodegen(module, k).emit()
        for call in emitted[key]:
            b.call(call.fn, [args[i] for i in at] + [ir.Constant(I64, 0), ir.Constant(I64, call.rows)])

    with f.loop(begin, end, "item") as item_at:
        for j, item in enumerate(ops):
            with b.if_then(b.icmp_signed("==", item_at, ir.Constant(I64, j))):
                for op, place in zip(item, shape[j]):
                    if op[0] == "gemm":
                        fn = gemm_fn(op[1], op[2])
                        if fn is not None:  # serial: the pool is busy with this pair
                            b.call(fn, [args[i] for i in place[3]] + [ir.Constant(PTR, None)])
                        if place[4]:
                            run(op[1].epilogue, place[4][1])
                    elif op[0] == "epilogue":
                        with b.if_then(b.icmp_signed("!=", b.load(pending, typ=I64), ir.Constant(I64, 0))):
                            run(op[1], place[2])
                    elif op[0] == "signal":
                        b.atomic_rmw("xchg", flag, ir.Constant(I64, 1), "release")
                    else:
                        _emit_wait(f, flag)
    f.finish()
    return f.fn


def _emit_wait(f: FunctionBuilder, flag: ir.Value) -> None:
    """Spin until the i64 at `flag` is nonzero (a pause between looks on x86)."""
    b = f.b
    look = f.fn.append_basic_block("wait.look")
    pause = f.fn.append_basic_block("wait.pause")
    done = f.fn.append_basic_block("wait.done")
    b.branch(look)
    b.position_at_end(look)
    ready = b.icmp_signed("!=", b.load_atomic(flag, "acquire", 8, typ=I64), ir.Constant(I64, 0))
    b.cbranch(ready, done, pause)
    b.position_at_end(pause)
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        b.call(intrinsic(f.fn.module, "llvm.x86.sse2.pause", ir.VoidType(), []), [])
    b.branch(look)
    b.position_at_end(done)


def _split(g: Gemm) -> bool:
    """Does the product run over the pool (so that its workers are awake for its epilogue)?
    A product of at least two pieces of `blas.GEMM_MIN_PIECE_NS` (the tiled kernel's and the
    BLAS blocks' least piece), its work estimated as the code that runs it does (the tiled
    kernel's `tiled.work_ns` for a product the kernel may take)."""
    node = g.node
    m, n = node.shape[-2:]
    k = node.inputs[0].shape[-1]
    ta = blas_layout(g.a, node.inputs[0].shape)[0]
    work = work_ns(g)
    if tiled.blocking(node.dtype) is not None and (tiled.use_tiled(node.dtype, m, n, k, ta)
                                                   or tiled.narrow(node.dtype, m, n, k)):
        work = numel(node.shape[:-2]) * tiled.work_ns(node.dtype, m, n, k)
    return decide("split gemm", work >= 2 * blas.GEMM_MIN_PIECE_NS)


def _parallel_call(entry: FunctionBuilder, call: Call, args: list[ir.Value], threaded: ir.Value,
                   parallel_for: ir.Value, least_ns: float = MIN_PARALLEL_NS) -> None:
    """Run `call` through the pool's parallel_for (pieces of at least `least_ns`) when the table
    provides one, else inline."""
    b = entry.b
    chunk = _chunk_function(call)
    table = entry.slot(ir.ArrayType(PTR, len(args)))
    for i, a in enumerate(args):
        b.store(a, b.gep(table, [ir.Constant(I32, 0), ir.Constant(I32, i)]))
    with b.if_else(threaded) as (then, otherwise):
        with then:
            fn = b.inttoptr(b.ptrtoint(parallel_for, I64), PARALLEL_FOR_TYPE.as_pointer())
            b.call(fn, [chunk, table, ir.Constant(I64, call.rows),
                        ir.Constant(I64, decide("min chunk", min_chunk_for(call.ns_per_row, least_ns)))])
        with otherwise:
            b.call(call.fn, args + [ir.Constant(I64, 0), ir.Constant(I64, call.rows)])


def _chunk_function(call: Call) -> ir.Function:
    """``void chunk(void** buffers, i64 begin, i64 end)`` calling the kernel on rows [begin, end)."""
    existing = call.fn.module.globals.get(call.fn.name + "_chunk")
    if existing is not None:
        return existing
    f = FunctionBuilder(call.fn.module, call.fn.name + "_chunk", [PTR, I64, I64])
    b = f.b
    table, begin, end = f.args
    args = [b.load(b.gep(table, [ir.Constant(I64, i)], source_etype=PTR), typ=PTR) for i in range(len(call.buffers))]
    b.call(call.fn, args + [begin, end])
    f.finish()
    return f.fn


def gemm_buffers(g: Gemm) -> list[Buffer]:
    """The distinct buffers of a GEMM step, in parameter order."""
    return list(dict.fromkeys([g.a.buffer, g.b.buffer, g.out.buffer]))


def gemm_key(g: Gemm) -> tuple:
    """Everything a GEMM step's function depends on (not which buffers it gets)."""
    index = {buf: i for i, buf in enumerate(gemm_buffers(g))}
    views = tuple((index[v.buffer], v.offset, v.strides) for v in (g.a, g.b, g.out))
    return ("gemm", g.node.dtype.str, g.node.inputs[0].shape, g.node.inputs[1].shape, g.node.shape, views,
            g.alpha, g.update is not None)


def gemm_function(module: ir.Module, g: Gemm, block: Block | None = None) -> ir.Function | None:
    """A function computing one (batched) matrix product, or only a block of rows or columns
    of it, or None when the result is empty."""
    node = g.node
    a, b_in = node.inputs
    m, n = node.shape[-2:]
    k = a.shape[-1]
    if empty(node.shape):
        return None
    bufs = gemm_buffers(g)
    name = g.name if block is None else f"{g.name}_{'rows' if block[0] else 'cols'}{block[1]}_{block[2]}"
    f = FunctionBuilder(module, name, [PTR] * (len(bufs) + 1))
    f.fn.attributes.add("noinline")
    if not node.shape[:-2]:  # one product: call setup without a loop, not worth O3's time (as a long entry)
        f.fn.attributes.add("optnone")
    ptr = dict(zip(bufs, f.args))
    parallel_for = f.args[len(bufs)]
    bld = f.b
    out_ety = mem_type(node.dtype)
    if k == 0:  # an empty sum: the product is zeros (an accumulated product leaves `out` as it is)
        with f.loop(0, numel(node.shape) if g.update is None else 0, "z") as i:
            bld.store(ir.Constant(out_ety, 0.0), bld.gep(ptr[g.out.buffer], [i], inbounds=True, source_etype=out_ety))
        f.finish()
        return f.fn
    ta, lda = blas_layout(g.a, a.shape)
    tb, ldb = blas_layout(g.b, b_in.shape)
    batch = node.shape[:-2]

    def at(view, shape, idx: list[ir.Value]) -> ir.Value:
        off: ir.Value = ir.Constant(I64, view.offset)
        lead = len(batch) - (len(shape) - 2)
        for axis, stride in enumerate(view.strides[:-2]):
            if not unit_dim(shape[axis]) and stride:
                off = bld.add(off, bld.mul(idx[lead + axis], ir.Constant(I64, stride)))
        return bld.gep(ptr[view.buffer], [off], inbounds=True, source_etype=mem_type(view.buffer.dtype))

    def body(idx: list[ir.Value]) -> None:
        c_off = ir.Constant(I64, 0)
        for i, s in zip(idx, row_major_strides(batch)):
            c_off = bld.add(c_off, bld.mul(i, ir.Constant(I64, s * m * n)))
        c_ptr = bld.gep(ptr[g.out.buffer], [c_off], inbounds=True, source_etype=out_ety)
        a_ptr, b_ptr, rows, cols = at(g.a, a.shape, idx), at(g.b, b_in.shape, idx), m, n
        if block is not None:  # rows of C are rows of op(A), columns of C columns of op(B)
            by_rows, start, stop = block
            if by_rows:
                a_ptr, rows = _advance(bld, a_ptr, start * (1 if ta else lda), out_ety), stop - start
                c_ptr = _advance(bld, c_ptr, start * n, out_ety)
            else:
                b_ptr, cols = _advance(bld, b_ptr, start * (ldb if tb else 1), out_ety), stop - start
                c_ptr = _advance(bld, c_ptr, start, out_ety)
        args = (node.dtype, ta, tb, rows, cols, k, a_ptr, lda, b_ptr, ldb, c_ptr, n,
                g.alpha, 0.0 if g.update is None else 1.0)
        own = decide("tiled gemm", tiled.use_tiled(node.dtype, rows, cols, k, ta))
        narrow = decide("narrow gemm", tiled.narrow(node.dtype, rows, cols, k))
        # a transposed A too large for one thread's kernel: split over the pool, it takes the kernel up
        # to SPLIT_MAX_A; a template's, too large at the nominal sizes, may fit at the fed ones
        large_a = decide("large transposed a", tiled.small_transposed_a(node.dtype, rows, cols, k, ta))
        small_a = templating() and large_a

        def on_blas(split: bool) -> None:
            if narrow or small_a:  # decided by m * k at run time (a symbolic dim's value)
                check = tiled.emit_narrow_check(bld, rows, k) if narrow else tiled.emit_small_a_check(bld, rows, k)
                with bld.if_else(check) as (kernel, other):
                    with kernel:
                        tiled.emit_tiled_gemm(bld, parallel_for if split else None, *args)
                    with other:
                        on_blas_only(split)
            else:
                on_blas_only(split)

        def on_blas_only(split: bool) -> None:
            if split:
                blas.emit_gemm_parallel(bld, parallel_for, *args)
            else:
                blas.emit_gemm(bld, *args)

        with bld.if_else(bld.icmp_unsigned("!=", parallel_for, ir.Constant(PTR, None))) as (then, otherwise):
            with then:
                if own:
                    tiled.emit_tiled_gemm(bld, parallel_for, *args)
                elif large_a:
                    with bld.if_else(tiled.emit_split_a_check(bld, rows, k)) as (kernel, other):
                        with kernel:
                            tiled.emit_tiled_gemm(bld, parallel_for, *args)
                        with other:
                            on_blas_only(True)
                else:
                    on_blas(True)
            with otherwise:
                if own:
                    tiled.emit_tiled_gemm(bld, None, *args)
                else:
                    on_blas(False)

    f.nest(list(batch), body)
    f.finish()
    return f.fn


def _advance(b: ir.IRBuilder, p: ir.Value, elements: int, ety: ir.Type) -> ir.Value:
    return b.gep(p, [ir.Constant(I64, elements)], inbounds=True, source_etype=ety)

