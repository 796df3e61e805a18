"""One LLVM module per program: a function per step and the exported entry point.

The entry ``void graphc_entry(void** table)`` reads its buffers from a pointer table laid
out as [feeds..., variables..., outputs..., constants..., arena] and calls the steps in
order. GEMM steps loop over the broadcast batch dims and call BLAS per matrix.
"""

from __future__ import annotations

from collections.abc import Callable

from llvmlite import ir

from . import blas
from .emitter import I8, mem_type
from .kernels import KernelCodegen, kernel_buffers, kernel_rows
from .loops import I64, PTR, FunctionBuilder
from .plan import Buffer, Gemm, Kernel, Plan, blas_layout, numel

ENTRY = "graphc_entry"
TABLE_KINDS = ("feed", "variable", "output", "const")


def table_bases(plan: Plan) -> dict[str, int]:
    """Index of the first pointer of each buffer kind in the entry's table (arena last)."""
    counts = {"feed": len(plan.feeds), "variable": len(plan.variables), "output": len(plan.outputs),
              "const": len(plan.consts)}
    bases, at = {}, 0
    for kind in TABLE_KINDS:
        bases[kind] = at
        at += counts[kind]
    bases["arena"] = at
    return bases


def build_module(plan: Plan) -> ir.Module:
    """The program's LLVM module (not yet optimized)."""
    module = ir.Module(name="graphc_program")
    calls: list[tuple[ir.Function, list[Buffer], tuple[int, ...]]] = []
    for step in plan.steps:
        if isinstance(step, Kernel):
            if numel(step.shape) == 0:
                continue
            fn = KernelCodegen(module, step).emit()
            calls.append((fn, kernel_buffers(step), (0, kernel_rows(step))))
        else:
            made = gemm_function(module, step)
            if made is not None:
                calls.append((made[0], made[1], ()))
    entry = FunctionBuilder(module, ENTRY, [PTR], internal=False)
    b = entry.b
    table = entry.args[0]
    bases = table_bases(plan)
    pointers: dict[Buffer, ir.Value] = {}

    def pointer(buf: Buffer) -> ir.Value:
        if buf not in pointers:
            if buf.kind == "arena":
                arena = b.load(b.gep(table, [ir.Constant(I64, bases["arena"])], source_etype=PTR), typ=PTR)
                pointers[buf] = b.gep(arena, [ir.Constant(I64, buf.slot)], inbounds=True, source_etype=I8)
            else:
                slot = b.gep(table, [ir.Constant(I64, bases[buf.kind] + buf.slot)], source_etype=PTR)
                pointers[buf] = b.load(slot, typ=PTR)
        return pointers[buf]

    for fn, bufs, extra in calls:
        b.call(fn, [pointer(x) for x in bufs] + [ir.Constant(I64, v) for v in extra])
    entry.finish()
    return module


def gemm_function(module: ir.Module, g: Gemm) -> tuple[ir.Function, list[Buffer]] | None:
    """A function computing one (batched) matrix product, or None when the result is empty."""
    node = g.node
    a, b_in = node.inputs
    m, n = node.shape[-2:]
    k = a.shape[-1]
    if m * n == 0 or numel(node.shape) == 0:
        return None
    bufs = list(dict.fromkeys([g.a.buffer, g.b.buffer, g.out.buffer]))
    f = FunctionBuilder(module, g.name, [PTR] * len(bufs))
    f.fn.attributes.add("noinline")
    ptr = dict(zip(bufs, f.args))
    bld = f.b
    out_ety = mem_type(node.dtype)
    if k == 0:
        with f.loop(0, numel(node.shape), "z") as i:
            bld.store(ir.Constant(out_ety, 0.0), bld.gep(ptr[g.out.buffer], [i], inbounds=True, source_etype=out_ety))
        f.finish()
        return f.fn, bufs
    ta, lda = blas_layout(g.a, a.shape)
    tb, ldb = blas_layout(g.b, b_in.shape)
    batch = node.shape[:-2]

    def at(view, shape, idx: list[ir.Value]) -> ir.Value:
        off: ir.Value = ir.Constant(I64, view.offset)
        lead = len(batch) - (len(shape) - 2)
        for axis, stride in enumerate(view.strides[:-2]):
            if shape[axis] != 1 and stride:
                off = bld.add(off, bld.mul(idx[lead + axis], ir.Constant(I64, stride)))
        return bld.gep(ptr[view.buffer], [off], inbounds=True, source_etype=mem_type(view.buffer.dtype))

    def body(idx: list[ir.Value]) -> None:
        c_off = ir.Constant(I64, 0)
        for i, s in zip(idx, _strides(batch)):
            c_off = bld.add(c_off, bld.mul(i, ir.Constant(I64, s * m * n)))
        c_ptr = bld.gep(ptr[g.out.buffer], [c_off], inbounds=True, source_etype=out_ety)
        blas.emit_gemm(bld, node.dtype, ta, tb, m, n, k, at(g.a, a.shape, idx), lda,
                       at(g.b, b_in.shape, idx), ldb, c_ptr, n)

    _nest(f, list(batch), body)
    f.finish()
    return f.fn, bufs


def _strides(shape: tuple[int, ...]) -> list[int]:
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return out[::-1]


def _nest(f: FunctionBuilder, dims: list[int], body: Callable[[list[ir.Value]], None]) -> None:
    def go(level: int, idx: list[ir.Value]) -> None:
        if level == len(dims):
            body(idx)
            return
        with f.loop(0, dims[level], f"batch{level}") as i:
            go(level + 1, idx + [i])
    go(0, [])
