"""Reduction loop nests: functions of a `KernelCodegen` (`cg`), which calls them for reduce kernels.

* reduce-inner (the innermost live input dim is reduced): loops over the kept dims, an
  accumulator in registers, the reduced dims inside. Floating sums add blocks of `BLOCK`
  elements in the input type ('reassoc' lets them vectorize) and the block sums in
  float64, which keeps a float32 sum of 1e7 elements near 1e-8 relative error.
* split: a reduce-inner over one long dim to one value, computed as `Kernel.split`
  fixed parts (rows that threads may share) and combined in order by a second function.
* reduce-outer: loops over the input in memory order, accumulating into a buffer of
  the output's size (float64 scratch for float32 sums/products, a value scratch for
  argmax/argmin), so the innermost loop runs over contiguous kept elements.

max/min propagate NaN; argmax/argmin keep the first extreme or the first NaN (numpy).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from llvmlite import ir

from ...dtypes import bool_, float64, int64
from ...ir.graph import Tensor
from ...ops.registry import OpKind
from ...passes.sizing import decide, same, unit_dim
from .affine import Affine
from .emitter import LLVMEmitter, dtype_of_type, mem_type, reg_type
from .loops import I64, PTR, FunctionBuilder
from .rows import RowSpace, after_reduction, levels
from .steps import View, numel, row_major_strides

BLOCK = 1024
REASSOC = ("reassoc", "contract")


def reduce_parts(cg: Any) -> tuple[Tensor, tuple[int, ...], list[int], list[int]]:
    red = cg.k.reduction
    x = red.inputs[0]
    axes = red.attrs["axis"]
    kept = [a for a in range(x.ndim) if a not in axes]
    return x, axes, kept, list(axes)


def reduced_linear(cg: Any, idx: dict[int, Affine], x: Tensor, axes: tuple[int, ...]) -> Any:
    """Row-major position of the reduced coordinates (argmax/argmin results)."""
    strides = row_major_strides([x.shape[a] for a in axes])
    acc: Any = Affine(0)
    for a, s in zip(axes, strides):
        acc = cg.em.add(acc, cg.em.mul(idx[a], Affine(s)))
    return acc


def reduce_roots(cg: Any) -> list[tuple[Tensor, View, Any]]:
    """(node, out, scratch) of the kernel's reductions: its root and reducing extras."""
    k = cg.k
    more = [(e.node, e.out, e.scratch) for e in k.more if e.node.opdef.kind is OpKind.REDUCE]
    return [(k.root, k.out, k.scratch), *more]


def store_maps(cg: Any, ix: tuple) -> None:
    """Store the kernel's map results (extras over the iteration space) at index `ix`."""
    for extra in cg.k.more:
        if extra.node.opdef.kind is not OpKind.REDUCE:
            cg.store(extra.out, ix, extra.node.shape, cg.value(extra.node, ix))


def emit_reduce_inner(cg: Any) -> None:
    """Per row: one pass over the reduced dims per level (`rows.py`), then the row results."""
    f, k = cg.f, cg.k
    x, axes, kept, red = reduce_parts(cg)
    rs = RowSpace.of(k.reduction)
    level = levels(k.members)
    results = [(k.root, k.out), *((e.node, e.out) for e in k.more)]
    full = {n for n, _ in results if n.opdef.kind is not OpKind.REDUCE and same(n.shape, x.shape)}
    passes = []
    for p in range(1 + max(level.values())):
        reduces = [m for m in k.members if m.opdef.kind is OpKind.REDUCE and level.get(m.inputs[0], 0) == p]
        stores = [(n, out) for n, out in results if n in full and level[n] == p]
        if reduces or stores:
            passes.append((reduces, stores))
    live_red = [a for a in red if not unit_dim(x.shape[a])]
    block_vid = x.ndim

    def one_pass(idx: dict[int, Affine], reduces: list[Tensor], stores: list) -> None:
        accs = [Accumulator(cg, r.opdef.reduce, r.inputs[0].dtype) for r in reduces]
        blocked = any(a.block is not None for a in accs) and live_red and not unit_dim(x.shape[live_red[-1]])

        def element(i2: dict[int, Affine]) -> None:
            full = {**idx, **i2}
            ix = tuple(full[a] for a in range(x.ndim))
            for r, acc in zip(reduces, accs):
                acc.add(cg.value(r.inputs[0], ix), reduced_linear(cg, full, x, axes))
            for n, out in stores:
                cg.store(out, ix, n.shape, cg.value(n, ix))
            cg.forget()

        for acc in accs:
            acc.init()
        cg.forget()
        rest = [(a, x.shape[a]) for a in red if a != (live_red[-1] if blocked else None)]
        if blocked:
            cg.nest(rest, lambda i2: blocks({**idx, **i2}, accs, element), outer_range=False)
        else:
            cg.nest(rest, element, outer_range=False)
        for r, acc in zip(reduces, accs):
            cg.fixed[(r, rs.row_index(r.shape, idx))] = acc.result(r.dtype)

    def blocks(idx: dict[int, Affine], accs: list[Accumulator], element) -> None:
        last = live_red[-1]
        n = x.shape[last]
        nblocks = math.ceil(n / BLOCK)
        if decide("one block", nblocks == 1):
            for acc in accs:
                acc.start_block()
            cg.nest([(last, n)], lambda i3: element({**idx, **i3}), outer_range=False)
            for acc in accs:
                acc.end_block()
            return
        cg.ranges[block_vid] = nblocks
        # the count is computed by the code (LLVM folds it), so a symbolic-dim template's n stays affine
        count = f.b.sdiv(ir.Constant(I64, n + BLOCK - 1), ir.Constant(I64, BLOCK))
        with f.loop(0, count, "blk") as blk:
            cg.loopvars[block_vid] = blk
            start = f.b.mul(blk, ir.Constant(I64, BLOCK), flags=("nsw",))
            stop = f.b.add(start, ir.Constant(I64, BLOCK), flags=("nsw",))
            stop = f.b.select(f.b.icmp_signed("<", stop, ir.Constant(I64, n)), stop, ir.Constant(I64, n))
            for acc in accs:
                acc.start_block()
            cg.ranges[last] = n
            with f.loop(start, stop, "j") as j:
                cg.loopvars[last] = j
                element({**idx, last: Affine.var(last)})
            for acc in accs:
                acc.end_block()

    def per_row(idx: dict[int, Affine]) -> None:
        idx = {a: Affine(0) if unit_dim(x.shape[a]) else v for a, v in idx.items()}  # as operands index size-1 dims
        for reduces, stores in passes:
            one_pass(idx, reduces, stores)
        cg.forget()
        for n, out in results:
            if n not in full:
                ix = rs.row_index(n.shape, idx)
                cg.store(out, ix, n.shape, cg.value(n, ix))
        cg.fixed.clear()
        cg.forget()

    if kept:
        cg.nest([(a, x.shape[a]) for a in kept], per_row, outer_range=True)
    else:
        cg.guarded(lambda: per_row({}))


def emit_reduce_split(cg: Any) -> None:
    """Rows are the parts of one long reduced dim; each part's results go to scratch."""
    k, f = cg.k, cg.f
    x = k.root.inputs[0]
    (r,) = [a for a, d in enumerate(x.shape) if not unit_dim(d)]
    n, parts = x.shape[r], k.split
    roots = reduce_roots(cg)
    accs = [Accumulator(cg, node.opdef.reduce, node.inputs[0].dtype) for node, _, _ in roots]
    cg.ranges[r] = n
    with f.loop(cg.begin, cg.end, "part") as c:
        start = f.b.sdiv(f.b.mul(c, ir.Constant(I64, n)), ir.Constant(I64, parts))
        stop = f.b.sdiv(f.b.mul(f.b.add(c, ir.Constant(I64, 1)), ir.Constant(I64, n)), ir.Constant(I64, parts))
        for acc in accs:
            acc.init()

        def elements(lo: ir.Value, hi: ir.Value) -> None:
            with f.loop(lo, hi, "j") as j:
                cg.loopvars[r] = j
                ix = tuple(Affine.var(r) if a == r else Affine(0) for a in range(x.ndim))
                for (node, _, _), acc in zip(roots, accs):
                    acc.add(cg.value(node.inputs[0], ix), None)
                store_maps(cg, ix)
                cg.memo.clear()

        if all(acc.block is None for acc in accs):
            elements(start, stop)
        else:
            nblocks = f.b.sdiv(f.b.add(f.b.sub(stop, start), ir.Constant(I64, BLOCK - 1)), ir.Constant(I64, BLOCK))
            with f.loop(0, nblocks, "blk") as blk:
                lo = f.b.add(start, f.b.mul(blk, ir.Constant(I64, BLOCK)))
                hi = f.b.add(lo, ir.Constant(I64, BLOCK))
                hi = f.b.select(f.b.icmp_signed("<", hi, stop), hi, stop)
                for acc in accs:
                    acc.start_block()
                elements(lo, hi)
                for acc in accs:
                    acc.end_block()
        for (_, _, scratch), acc in zip(roots, accs):
            cg.store(View(scratch, 0, (1,)), (c,), (parts,), f.b.load(acc.slot))


def emit_split_combine(cg: Any) -> ir.Function:
    """Combine the parts of a split reduction (in part order) into the outputs."""
    k = cg.k
    g = FunctionBuilder(cg.fn.module, k.name + "_combine", [PTR] * len(cg.bufs) + [I64, I64])
    g.fn.attributes.add("noinline")
    ptr = dict(zip(cg.bufs, g.args))
    em = LLVMEmitter(g.b, {}, {})
    for node, out, scratch in reduce_roots(cg):
        dtype = scratch.dtype

        def part(i: ir.Value, scratch=scratch, dtype=dtype) -> ir.Value:
            ety = mem_type(dtype)
            v = g.b.load(g.b.gep(ptr[scratch], [i], inbounds=True, source_etype=ety), typ=ety)
            return g.b.icmp_unsigned("!=", v, ir.Constant(v.type, 0)) if dtype == bool_ else v

        total = g.slot(reg_type(dtype), part(ir.Constant(I64, 0)))
        with g.loop(1, k.split, "part") as c:
            g.b.store(em.value(Accumulator.combine(em, node.opdef.reduce, g.b.load(total), part(c))), total)
        out_dtype = out.buffer.dtype
        result = em.value(em.cast(g.b.load(total), out_dtype))
        if out_dtype == bool_:
            result = g.b.zext(result, mem_type(bool_))
        target = g.b.gep(ptr[out.buffer], [ir.Constant(I64, out.offset)], source_etype=mem_type(out_dtype))
        g.b.store(result, target)
    g.finish()
    return g.fn


def emit_reduce_outer(cg: Any) -> None:
    """Accumulate the reduction over the input in memory order into a buffer of its
    output's size, storing the maps over the input space as they are computed; then one
    loop over the output copies the accumulators out and computes the members after the
    reduction (`rows.after_reduction`: an optimizer's update of the reduced parameter)."""
    k, f = cg.k, cg.f
    x, axes, kept, _ = reduce_parts(cg)
    r = k.reduction
    rs = RowSpace.of(r)
    comb = r.opdef.reduce
    results = [(k.root, k.out, k.scratch), *((e.node, e.out, e.scratch) for e in k.more)]
    out, scratch = next((o, s) for n, o, s in results if n is r)
    after = after_reduction(k.members, r)
    n_out = numel(r.shape)
    flat_out = View(out.buffer, 0, (1,))
    acc_view = View(scratch, 0, (1,)) if scratch is not None else flat_out
    acc_dtype = scratch.dtype if scratch is not None else out.buffer.dtype
    if comb in ("argmax", "argmin"):
        acc_dtype = x.dtype
    init = Accumulator.initial(comb, acc_dtype)
    with f.loop(0, n_out, "o") as o:
        cg.store(acc_view, (o,), (n_out,), cg.em.const(init, acc_dtype))
        if comb in ("argmax", "argmin"):
            cg.store(flat_out, (o,), (n_out,), cg.em.const(0, int64))
    out_strides = row_major_strides(r.shape)

    def flat(ix: tuple) -> Affine:
        o = Affine(0)
        for pos, s in zip(ix, out_strides):
            o = o.add(pos.scale(s))
        return o

    def element(idx: dict[int, Affine]) -> None:
        ix = tuple(idx[a] for a in range(x.ndim))
        v = cg.value(x, ix)
        o = flat(rs.row_index(r.shape, idx))
        best = cg.load(acc_view, (o,), (n_out,))
        if comb in ("argmax", "argmin"):
            take = Accumulator.better(cg.em, comb, v, best)
            cg.store(acc_view, (o,), (n_out,), cg.em.select(take, v, best))
            old = cg.load(flat_out, (o,), (n_out,))
            cg.store(flat_out, (o,), (n_out,), cg.em.select(take, cg.em.value(
                reduced_linear(cg, idx, x, axes)), old))
        else:
            cg.store(acc_view, (o,), (n_out,), Accumulator.combine(cg.em, comb, best,
                                                                     cg.em.cast(v, acc_dtype)))
        for n, view, _ in results:  # maps over the input space (stored over a GEMM's product, in place)
            if n not in after:
                cg.store(view, ix, n.shape, cg.value(n, ix))
        cg.forget()

    cg.nest([(a, x.shape[a]) for a in range(x.ndim)], element, outer_range=False)
    copy = scratch is not None and comb in ("sum", "prod")
    if not copy and after == {r}:
        return

    def finish(idx: dict[int, Affine]) -> None:
        ix = tuple(idx[d] for d in range(r.ndim))
        o = flat(ix)
        if copy:
            cg.store(flat_out, (o,), (n_out,), cg.load(acc_view, (o,), (n_out,)))
        cg.fixed[(r, ix)] = cg.load(flat_out, (o,), (n_out,))
        cg.forget()
        for n, view, _ in results:
            if n in after and n is not r:
                cg.store(view, ix, n.shape, cg.value(n, ix))
        cg.fixed.clear()
        cg.forget()

    cg.nest(list(enumerate(r.shape)), finish, outer_range=False)


class Accumulator:
    """A reduction accumulator held in stack slots (promoted to registers by LLVM)."""

    def __init__(self, cg: Any, comb: str, in_dtype: np.dtype):
        self.cg, self.comb, self.in_dtype = cg, comb, in_dtype
        f = cg.f
        self.is_float = in_dtype.kind == "f"
        if comb in ("sum", "prod"):
            self.dtype = float64 if self.is_float else int64
        else:
            self.dtype = in_dtype
        self.slot = f.slot(reg_type(self.dtype))
        self.block = f.slot(reg_type(in_dtype)) if comb == "sum" and self.is_float else None
        self.index = f.slot(I64) if comb in ("argmax", "argmin") else None
        self.in_block = False

    @staticmethod
    def initial(comb: str, dtype: np.dtype) -> Any:
        if comb == "sum":
            return 0
        if comb == "prod":
            return 1
        if dtype.kind == "f":
            return -np.inf if comb in ("max", "argmax") else np.inf
        if dtype == bool_:
            return comb in ("min", "argmin")
        info = np.iinfo(dtype)
        return int(info.min if comb in ("max", "argmax") else info.max)

    @staticmethod
    def combine(em: LLVMEmitter, comb: str, acc: Any, v: Any) -> Any:
        if comb == "max":
            return em.maximum(acc, v)
        if comb == "min":
            return em.minimum(acc, v)
        acc, v = em.value(acc), em.value(v)
        if dtype_of_type(acc.type).kind == "f":
            op = em.b.fadd if comb == "sum" else em.b.fmul
            return op(acc, v, flags=REASSOC)
        return em.b.add(acc, v) if comb == "sum" else em.b.mul(acc, v)

    @staticmethod
    def better(em: LLVMEmitter, comb: str, v: Any, best: Any) -> ir.Value:
        """Does v replace best? Strictly better, or the first NaN (numpy's argmax/argmin)."""
        better = em.cmp("gt" if comb == "argmax" else "lt", v, best)
        if dtype_of_type(em.value(v).type).kind == "f":
            first_nan = em.and_(em.cmp("ne", v, v), em.cmp("eq", best, best))
            better = em.or_(better, first_nan)
        return better

    def init(self) -> None:
        em, b = self.cg.em, self.cg.f.b
        b.store(em.value(em.const(self.initial(self.comb, self.dtype), self.dtype)), self.slot)
        if self.index is not None:
            b.store(ir.Constant(I64, 0), self.index)

    def start_block(self) -> None:
        if self.block is None:
            return
        self.in_block = True
        self.cg.f.b.store(ir.Constant(reg_type(self.in_dtype), 0.0), self.block)

    def end_block(self) -> None:
        if self.block is None:
            return
        self.in_block = False
        b = self.cg.f.b
        total = self.cg.em.cast(b.load(self.block), float64)
        b.store(b.fadd(b.load(self.slot), total, flags=REASSOC), self.slot)

    def add(self, v: Any, ridx: Any) -> None:
        em, b = self.cg.em, self.cg.f.b
        if self.in_block:
            b.store(b.fadd(b.load(self.block), em.value(v), flags=REASSOC), self.block)
            return
        if self.index is not None:
            best = b.load(self.slot)
            take = self.better(em, self.comb, v, best)
            b.store(em.select(take, em.value(v), best), self.slot)
            b.store(b.select(take, em.value(ridx), b.load(self.index)), self.index)
            return
        b.store(em.value(self.combine(em, self.comb, b.load(self.slot), em.cast(v, self.dtype))), self.slot)

    def result(self, dtype: np.dtype) -> Any:
        b = self.cg.f.b
        if self.index is not None:
            return b.load(self.index)
        return self.cg.em.cast(b.load(self.slot), dtype)

