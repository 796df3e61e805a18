"""Region ops on the LLVM backend: a native loop around a body's kernels, a branch for cond.

Each region of a cond, scan or while_loop is planned like a program of its own (its
params are the feeds, its results the outputs, its arena a buffer inside the enclosing
arena) and emitted once as a function ``void body(void** table)``, whatever the trip
count: compile time and code size do not depend on it. The enclosing program's `Loop`
step fills the body's pointer table and calls it:

* scan: ``for t in range(n)`` (``n-1 .. 0`` when reversed), the carry alternating between
  two buffers, slice t of each scanned input and of each stacked output addressed in
  place (no copies); after the loop the carry is copied into its result;
* while_loop: the condition's function writes a flag, the body runs while it is set (the
  trip count is known only at run time);
* cond: the predicate picks which branch's function runs; it writes the results directly.

Operands are read dense (copied first when they are strided views or immediates), so a
body only ever addresses its own table's buffers, within their sizes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from llvmlite import ir

from ...errors import GraphcError
from ...ir.graph import Tensor
from ...ir.region import Region
from .emitter import mem_type
from .loops import I1, I8, I64, PTR, FunctionBuilder
from .steps import Buffer, CollectiveWait, Gemm, HostCall, Loop, Plan, View, numel

MAX_BYTES = 1 << 62  # a buffer (or a loop's total extent) larger than this is refused before codegen
LowerFn = Callable[[Sequence[Tensor], str], Plan]


# --- steps ---------------------------------------------------------------------------------------

def region_step(b: Any, n: Tensor, lower: LowerFn) -> None:
    """Add the `Loop` step of region op `n` (or the view of a `result` node) to builder `b`."""
    if n.op == "result":
        b.view[n] = b.region_outs[n.inputs[0]][n.attrs["index"]]
        return
    types = n.opdef.results(n.inputs, n.attrs)
    for shape, dtype in types:
        if numel(shape) * np.dtype(dtype).itemsize >= MAX_BYTES:
            raise GraphcError(f"{n.op} {n.name}: a result of {shape} elements is too large to address")
    args = tuple(_dense(b, i) for i in n.inputs)
    outs = tuple(View.dense(b.buffer("arena", d, numel(s), f"{n.name}.{k}"), s) for k, (s, d) in enumerate(types))
    regions = [n.attrs[name] for name in n.opdef.regions]
    bodies = tuple(lower(r.results, f"{n.name}_{k}_") for k, r in enumerate(regions))
    hosts = [s.node for body in bodies for s in body.all_steps() if isinstance(s, HostCall)]
    if hosts:
        raise GraphcError(f"{hosts[0].op} ({hosts[0].name}) inside a {n.op} body: the LLVM backend runs host "
                          f"callbacks at the top level of a program only; move it after the {n.op}, or use "
                          f"gc.Session(backend=\"reference\")\n  at {n.loc}")
    consts = tuple(tuple(b.const_buffer(arr, f"{n.name}.const") for arr in body.consts) for body in bodies)
    arenas = tuple(b.buffer("arena", np.int64, -(-body.arena_bytes // 8), f"{n.name}.arena{k}")
                   for k, body in enumerate(bodies))  # (in 8-byte words)
    carry_types = _carry_types(n)
    carry = tuple((b.buffer("arena", d, numel(s), f"{n.name}.carry{k}a"),
                   b.buffer("arena", d, numel(s), f"{n.name}.carry{k}b")) for k, (s, d) in enumerate(carry_types))
    flag = b.buffer("arena", np.bool_, 1, f"{n.name}.flag") if n.op == "while_loop" else None
    b.steps.append(Loop(f"r{len(b.steps)}", n, bodies, args, outs, carry, consts, arenas, flag))
    b.region_outs[n] = outs


def _carry_types(n: Tensor) -> list[tuple]:
    if n.op == "scan":
        nc, nk = n.attrs["num_consts"], n.attrs["num_carry"]
        return [(i.shape, i.dtype) for i in n.inputs[nc:nc + nk]]
    if n.op == "while_loop":
        skip = n.attrs["cond_nconsts"] + n.attrs["body_nconsts"]
        return [(i.shape, i.dtype) for i in n.inputs[skip:]]
    return []


def _dense(b: Any, node: Tensor) -> View:
    """A dense view of `node` (copied into a fresh arena buffer unless it already is one)."""
    view = b.view.get(node)
    if node in b.imm or view is None or not view.is_dense(node.shape):
        view = View.dense(b.buffer("arena", node.dtype, numel(node.shape), node.name), node.shape)
        b.copy(node, view)
    return view


def prefixed(plan: Plan, prefix: str) -> Plan:
    """The plan with its steps' (function) names prefixed, so plans share one module."""
    def rename(step: Any) -> Any:
        if isinstance(step, Gemm) and step.epilogue is not None:
            return replace(step, name=prefix + step.name, epilogue=rename(step.epilogue))
        if isinstance(step, Loop):  # (nested regions: their names are unique in their own graph only)
            return replace(step, name=prefix + step.name, bodies=tuple(prefixed(p, prefix) for p in step.bodies))
        if isinstance(step, CollectiveWait):
            return replace(step, name=prefix + step.name, start=prefix + step.start)
        return replace(step, name=prefix + step.name)
    return replace(plan, steps=tuple(rename(s) for s in plan.steps))


# --- code --------------------------------------------------------------------------------------

EntryFn = Callable[[str, Plan], tuple[ir.Function, dict[str, int]]]  # a region's function and its table layout


def emit_loop(f: FunctionBuilder, step: Loop, pointer: Callable[[Buffer], ir.Value], parallel_for: ir.Value,
              entry_of: EntryFn) -> None:
    """The code of a `Loop` step inside the function `f` being built (the program's entry or a body)."""
    regions = [step.node.attrs[name] for name in step.node.opdef.regions]
    fns, layouts = zip(*(entry_of(f"{step.name}_{k}", body) for k, body in enumerate(step.bodies)))
    tables = [_Table(f, body, bases, region, consts, pointer(arena), pointer, parallel_for)
              for region, body, bases, consts, arena in zip(regions, step.bodies, layouts, step.consts, step.arenas)]
    args = [pointer(v.buffer) for v in step.args]
    outs = [pointer(v.buffer) for v in step.outs]
    if step.node.op == "cond":
        _emit_cond(f, step, args, outs, fns, tables)
    elif step.node.op == "scan":
        _emit_scan(f, step, args, outs, fns[0], tables[0], pointer)
    else:
        _emit_while(f, step, args, outs, fns, tables, pointer)


class _Table:
    """The pointer table of one call of a region's function: [params, outputs, consts, arena, parallel_for]."""

    def __init__(self, f: FunctionBuilder, body: Plan, bases: dict[str, int], region: Region,
                 consts: Sequence[Buffer], arena: ir.Value, pointer: Callable[[Buffer], ir.Value],
                 parallel_for: ir.Value):
        self.f, self.body, self.bases = f, body, bases
        self.slots = f.slot(ir.ArrayType(PTR, self.bases["size"]))
        self.region = region
        for k, buf in enumerate(consts):
            self.set(self.bases["const"] + k, pointer(buf))
        self.set(self.bases["arena"], arena)
        self.set(self.bases["parallel_for"], parallel_for)

    def set(self, slot: int, value: ir.Value) -> None:
        b = self.f.b
        b.store(value, b.gep(self.slots, [ir.Constant(I64, 0), ir.Constant(I64, slot)]))

    def params(self, values: Sequence[ir.Value]) -> None:
        """Bind the region's params (in order) to `values`."""
        position = {p: k for k, p in enumerate(self.region.params)}
        for slot, p in enumerate(self.body.feeds):
            self.set(self.bases["feed"] + slot, values[position[p]])

    def results(self, values: Sequence[ir.Value]) -> list[tuple[int, int]]:
        """Point the outputs at `values` (one per region result); the (from, to) result pairs the
        call leaves to copy (a result listed twice is computed once)."""
        slot = {o: k for k, o in enumerate(self.body.outputs)}
        first: dict[Tensor, int] = {}
        copies = []
        for k, r in enumerate(self.region.results):
            if r in first:
                copies.append((first[r], k))
                continue
            first[r] = k
            self.set(self.bases["output"] + slot[r], values[k])
        return copies

    def call(self, fn: ir.Function) -> None:
        self.f.b.call(fn, [self.f.b.gep(self.slots, [ir.Constant(I64, 0), ir.Constant(I64, 0)])])


def _copy_bytes(f: FunctionBuilder, dst: ir.Value, src: ir.Value, nbytes: int | ir.Value) -> None:
    b = f.b
    with f.loop(0, nbytes, "copy") as i:
        b.store(b.load(b.gep(src, [i], inbounds=True, source_etype=I8), typ=I8),
                b.gep(dst, [i], inbounds=True, source_etype=I8))


def _nbytes(view: View, shape: Sequence[int]) -> int:
    return numel(shape) * view.buffer.dtype.itemsize


def _result_copies(f: FunctionBuilder, copies: list[tuple[int, int]], dests: Sequence[ir.Value],
                   sizes: Sequence[int]) -> None:
    for src, dst in copies:
        _copy_bytes(f, dests[dst], dests[src], sizes[dst])


def _at(f: FunctionBuilder, base: ir.Value, dtype: np.dtype, elements: ir.Value) -> ir.Value:
    return f.b.gep(base, [elements], inbounds=True, source_etype=mem_type(dtype))


def _emit_scan(f: FunctionBuilder, step: Loop, args: list[ir.Value], outs: list[ir.Value], fn: ir.Function,
               table: _Table, pointer: Callable[[Buffer], ir.Value]) -> None:
    n_node = step.node
    nc, nk = n_node.attrs["num_consts"], n_node.attrs["num_carry"]
    xs = list(n_node.inputs[nc + nk:])
    types = n_node.opdef.results(n_node.inputs, n_node.attrs)
    length = xs[0].shape[0] if xs else n_node.attrs["length"]
    ys = types[nk:]
    b = f.b
    carry_bytes = [numel(s) * np.dtype(d).itemsize for s, d in types[:nk]]
    for k in range(nk):
        _copy_bytes(f, pointer(step.carry[k][0]), args[nc + k], carry_bytes[k])
    x_slice = [numel(x.shape[1:]) for x in xs]
    y_slice = [numel(s[1:]) for s, _ in ys]
    with f.loop(0, length, "scan") as t:
        index = b.sub(ir.Constant(I64, length - 1), t) if n_node.attrs["reverse"] else t
        odd = b.trunc(t, I1)
        cur = [b.select(odd, pointer(p[1]), pointer(p[0])) for p in step.carry]
        nxt = [b.select(odd, pointer(p[0]), pointer(p[1])) for p in step.carry]
        slices = [_at(f, args[nc + nk + j], x.dtype, b.mul(index, ir.Constant(I64, x_slice[j])))
                  for j, x in enumerate(xs)]
        table.params(args[:nc] + cur + slices)
        y_ptrs = [_at(f, outs[nk + j], d, b.mul(index, ir.Constant(I64, y_slice[j]))) for j, (_, d) in enumerate(ys)]
        dests = nxt + y_ptrs
        copies = table.results(dests)
        table.call(fn)
        _result_copies(f, copies, dests, carry_bytes + [numel(s[1:]) * np.dtype(d).itemsize for s, d in ys])
    final = [p[length % 2] for p in step.carry]
    for k in range(nk):
        _copy_bytes(f, outs[k], pointer(final[k]), carry_bytes[k])


def _emit_while(f: FunctionBuilder, step: Loop, args: list[ir.Value], outs: list[ir.Value],
                fns: list[ir.Function], tables: list[_Table], pointer: Callable[[Buffer], ir.Value]) -> None:
    node = step.node
    ncc, nbc = node.attrs["cond_nconsts"], node.attrs["body_nconsts"]
    types = node.opdef.results(node.inputs, node.attrs)
    carry_bytes = [numel(s) * np.dtype(d).itemsize for s, d in types]
    b = f.b
    for k in range(len(types)):
        _copy_bytes(f, pointer(step.carry[k][0]), args[ncc + nbc + k], carry_bytes[k])
    counter = f.slot(I64, ir.Constant(I64, 0))
    head = f.fn.append_basic_block("while.head")
    body = f.fn.append_basic_block("while.body")
    done = f.fn.append_basic_block("while.done")
    b.branch(head)
    b.position_at_end(head)
    t = b.load(counter)
    odd = b.trunc(t, I1)
    cur = [b.select(odd, pointer(p[1]), pointer(p[0])) for p in step.carry]
    tables[0].params(args[:ncc] + cur)
    tables[0].results([pointer(step.flag)])
    tables[0].call(fns[0])
    flag = b.load(pointer(step.flag), typ=I8)
    b.cbranch(b.icmp_unsigned("!=", flag, ir.Constant(I8, 0)), body, done)
    b.position_at_end(body)
    nxt = [b.select(odd, pointer(p[0]), pointer(p[1])) for p in step.carry]
    tables[1].params(args[ncc:ncc + nbc] + cur)
    copies = tables[1].results(nxt)
    tables[1].call(fns[1])
    _result_copies(f, copies, nxt, carry_bytes)
    b.store(b.add(t, ir.Constant(I64, 1)), counter)
    b.branch(head)
    b.position_at_end(done)
    for k in range(len(types)):
        _copy_bytes(f, outs[k], cur[k], carry_bytes[k])


def _emit_cond(f: FunctionBuilder, step: Loop, args: list[ir.Value], outs: list[ir.Value],
               fns: list[ir.Function], tables: list[_Table]) -> None:
    b = f.b
    types = step.node.opdef.results(step.node.inputs, step.node.attrs)
    sizes = [numel(s) * np.dtype(d).itemsize for s, d in types]
    taken = b.icmp_unsigned("!=", b.load(args[0], typ=I8), ir.Constant(I8, 0))
    with b.if_else(taken) as (then, otherwise):
        for branch, (fn, table) in zip((then, otherwise), zip(fns, tables)):
            with branch:
                table.params(args[1:])
                copies = table.results(outs)
                table.call(fn)
                _result_copies(f, copies, outs, sizes)
