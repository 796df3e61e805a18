"""Loop-nest code for one `Kernel`: maps, reductions and copies.

A kernel function takes one ``noalias`` pointer per buffer it touches and a row range
``[begin, end)`` of its outermost loop (the entry passes the whole range). Each element
is computed by evaluating the group's op declarations with `LLVMEmitter`:
elementwise ops through their `scalar` forms (inputs read at the broadcast index),
index ops through their `gather` forms, nodes outside the group through their views.

Reductions:

* reduce-inner (the innermost live input dim is reduced): loops over the kept dims,
  an accumulator in registers, the reduced dims inside. Floating sums add blocks of
  `BLOCK` elements in the input type ('reassoc' lets them vectorize) and the block sums
  in float64, which keeps a float32 sum of 1e7 elements near 1e-8 relative error.
* reduce-outer: loops over the input in memory order, accumulating into a buffer of
  the output's size (float64 scratch for float32 sums/products, a value scratch for
  argmax/argmin), so the innermost loop runs over contiguous kept elements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from llvmlite import ir

from ...dtypes import bool_, float64, int64
from ...ir.graph import Tensor
from ...ops.shape import broadcast_index
from .affine import Affine
from .emitter import I64, LLVMEmitter, dtype_of_type, mem_type, reg_type
from .loops import PTR, FunctionBuilder
from .parallel import MIN_PARALLEL_NS
from .plan import Buffer, Kernel, View, numel, row_major_strides

BLOCK = 1024
REASSOC = ("reassoc", "contract")
HEAVY_OPS = frozenset({"exp", "expm1", "log", "log1p", "tanh", "erf", "sin", "cos", "power", "sigmoid",
                       "softplus", "gelu"})


@dataclass(eq=False)
class Call:
    """One call the entry makes: `fn(buffers..., begin, end)` over `rows` rows.

    `ns_per_row` estimates the cost of a row when rows are independent (the call may be
    split across threads); None means the call must run as a whole.
    """

    fn: ir.Function
    buffers: list[Buffer]
    rows: int
    ns_per_row: float | None

    @property
    def parallel(self) -> bool:
        """Worth offering to the thread pool: at least two chunks of `MIN_PARALLEL_NS`."""
        return self.ns_per_row is not None and self.rows >= 2 and self.rows * self.ns_per_row >= 2 * MIN_PARALLEL_NS


def element_ns(k: Kernel) -> float:
    """A rough cost per element of the kernel's loop body, in nanoseconds (vectorized code)."""
    ns = 0.1 * (len(k.reads) + 1)
    for m in k.members:
        kind = m.opdef.kind
        ns += 1.5 if m.op in HEAVY_OPS else 1.0 if kind in ("index", "reduce") and m is not k.root else 0.15
    return ns


def kernel_buffers(k: Kernel) -> list[Buffer]:
    """The distinct buffers a kernel touches, in parameter order."""
    bufs = [k.out.buffer] + [v.buffer for v in k.reads.values()]
    if k.scratch is not None:
        bufs.append(k.scratch)
    return list(dict.fromkeys(bufs))


def kernel_key(k: Kernel) -> tuple:
    """Everything a kernel's code depends on, but not which buffers it gets.

    Kernels with equal keys share one function (a deep network repeats the same layer
    kernels many times): members by op, attributes, types and local input references;
    reads by shape, dtype, parameter position, offset and strides; immediates by value.
    """
    index = {buf: i for i, buf in enumerate(kernel_buffers(k))}
    local: dict[Tensor, int] = {}

    def ref(n: Tensor) -> tuple:
        if n in local:
            return ("m", local[n])
        if n in k.immediates:
            imm = k.immediates[n]
            return ("i", repr(imm.value), imm.dtype.str)
        v = k.reads[n]
        return ("r", n.shape, n.dtype.str, index[v.buffer], v.offset, v.strides)

    members = []
    for pos, m in enumerate(k.members):
        args = tuple(("s", x.shape, x.dtype.str) if i in m.opdef.shape_only else ref(x) for i, x in enumerate(m.inputs))
        attrs = tuple((a, v) for a, v in sorted(m.attrs.items()) if a != "uid")
        members.append((m.op, attrs, m.shape, m.dtype.str, args))
        local[m] = pos
    out = (index[k.out.buffer], k.out.offset, k.out.strides, k.out.buffer.dtype.str)
    scratch = None if k.scratch is None else (index[k.scratch], k.scratch.dtype.str, k.scratch.size)
    return ("kernel", k.mode, k.split, k.root.shape, tuple(members), ref(k.root), out, scratch)


def kernel_rows(k: Kernel) -> int:
    """The trip count of the kernel's outermost (row) loop."""
    if k.mode == "map":
        return k.shape[0] if k.shape else 1
    kept = [d for a, d in enumerate(k.root.inputs[0].shape) if a not in k.root.attrs["axis"]]
    return kept[0] if kept else 1


class KernelCodegen:
    """Emits the function for one kernel."""

    def __init__(self, module: ir.Module, k: Kernel):
        self.k = k
        self.bufs = kernel_buffers(k)
        self.f = FunctionBuilder(module, k.name, [PTR] * len(self.bufs) + [I64, I64])
        self.f.fn.attributes.add("noinline")
        for arg in self.f.args[:len(self.bufs)]:
            arg.add_attribute("noalias")
            arg.add_attribute("captures(none)")
        self.ptr = dict(zip(self.bufs, self.f.args))
        self.begin, self.end = self.f.args[len(self.bufs):]
        self.members = set(k.members)
        self.loopvars: dict[int, ir.Value] = {}
        self.ranges: dict[int, int] = {}
        self.em = LLVMEmitter(self.f.b, self.loopvars, self.ranges)
        self.memo: dict[tuple, Any] = {}

    @property
    def fn(self) -> ir.Function:
        return self.f.fn

    def emit(self) -> list[Call]:
        """Emit the kernel's function(s); returns the calls the entry makes, in order."""
        k = self.k
        rows = kernel_rows(k)
        per_row = element_ns(k) * numel(k.root.inputs[0].shape if k.mode != "map" else k.shape) / max(rows, 1)
        if k.split:
            self.emit_reduce_split()
            self.f.finish()
            combine = self.emit_split_combine()
            return [Call(self.fn, self.bufs, k.split, per_row * rows / k.split), Call(combine, self.bufs, 1, None)]
        if k.mode == "map":
            self.emit_map()
        elif k.mode == "reduce-inner":
            self.emit_reduce_inner()
        else:
            self.emit_reduce_outer()
        self.f.finish()
        return [Call(self.fn, self.bufs, rows, None if k.mode == "reduce-outer" else per_row)]

    # --- memory -------------------------------------------------------------------------
    def address(self, view: View, idx: tuple, shape: tuple) -> ir.Value:
        em, b = self.em, self.f.b
        off: Any = Affine(view.offset)
        for ix, stride, dim in zip(idx, view.strides, shape):
            if not isinstance(ix, Affine):
                ix = self.clamp(ix, dim)
            off = em.add(off, em.mul(ix, Affine(stride)))
        ety = mem_type(view.buffer.dtype)
        return b.gep(self.ptr[view.buffer], [em.value(off)], inbounds=True, source_etype=ety)

    def clamp(self, ix: ir.Value, dim: int) -> ir.Value:
        """A data-dependent index forced into [0, dim): generated code never leaves its buffers."""
        b = self.f.b
        if ix.type != I64:
            ix = b.sext(ix, I64) if ix.type.width > 1 else b.zext(ix, I64)
        zero, top = ir.Constant(I64, 0), ir.Constant(I64, max(dim - 1, 0))
        ix = b.select(b.icmp_signed("<", ix, zero), zero, ix)
        return b.select(b.icmp_signed(">", ix, top), top, ix)

    def load(self, view: View, idx: tuple, shape: tuple) -> ir.Value:
        dtype = view.buffer.dtype
        v = self.f.b.load(self.address(view, idx, shape), typ=mem_type(dtype), align=dtype.itemsize)
        if dtype == bool_:
            return self.f.b.icmp_unsigned("!=", v, ir.Constant(v.type, 0))
        return v

    def store(self, view: View, idx: tuple, shape: tuple, value: Any) -> None:
        dtype = view.buffer.dtype
        value = self.em.value(self.em.cast(value, dtype))
        if dtype == bool_:
            value = self.f.b.zext(value, mem_type(dtype))
        self.f.b.store(value, self.address(view, idx, shape), align=dtype.itemsize)

    # --- evaluation ---------------------------------------------------------------------
    def value(self, node: Tensor, idx: tuple) -> Any:
        """The value of `node` at index `idx` (a tuple of Affine or i64 values)."""
        key = (node, idx)
        if key in self.memo:
            return self.memo[key]
        k, em = self.k, self.em
        if node in k.immediates:
            imm = k.immediates[node]
            v = em.const(imm.value, imm.dtype)
        elif node not in self.members:
            if numel(node.shape) == 0:
                v = em.const(0, node.dtype)
            else:
                v = self.load(k.reads[node], idx, node.shape)
        else:
            kind = node.opdef.kind
            if kind == "elementwise":
                args = [self.value(i, broadcast_index(em, idx, i.shape)) for i in node.inputs]
                attrs = {a: x for a, x in node.attrs.items() if a != "uid"}
                v = node.opdef.scalar(em, *args, **attrs)
            elif kind == "state":
                v = self.value(node.inputs[1], idx)
            else:
                v = node.opdef.gather(em, idx, lambda i, ix: self.value(node.inputs[i], tuple(ix)), node)
        self.memo[key] = v
        return v

    # --- loop nests ---------------------------------------------------------------------
    def nest(self, dims: list[tuple[int, int]], body, outer_range: bool) -> None:
        """Loops over (var id, size) pairs, outermost first; size-1 dims are no loop."""
        def go(level: int, idx: dict[int, Affine]) -> None:
            if level == len(dims):
                body(idx)
                return
            vid, size = dims[level]
            self.ranges[vid] = size
            if level == 0 and outer_range:
                with self.f.loop(self.begin, self.end, f"d{vid}") as i:
                    self.loopvars[vid] = i
                    go(level + 1, {**idx, vid: Affine.var(vid)})
            elif size == 1:
                go(level + 1, {**idx, vid: Affine(0)})
            else:
                with self.f.loop(0, size, f"d{vid}") as i:
                    self.loopvars[vid] = i
                    go(level + 1, {**idx, vid: Affine.var(vid)})
        go(0, {})

    def guarded(self, body) -> None:
        """Run `body` once if the row range is non-empty (0-d outputs)."""
        with self.f.when(self.f.b.icmp_signed("<", self.begin, self.end)):
            body()

    def emit_map(self) -> None:
        k = self.k
        shape = k.shape

        def body(idx: dict[int, Affine]) -> None:
            ix = tuple(idx[d] for d in range(len(shape)))
            self.store(k.out, ix, shape, self.value(k.root, ix))
            self.memo.clear()

        if not shape:
            self.guarded(lambda: body({}))
        else:
            self.nest(list(enumerate(shape)), body, outer_range=True)

    # --- reductions ---------------------------------------------------------------------
    def reduce_parts(self) -> tuple[Tensor, tuple[int, ...], list[int], list[int]]:
        root = self.k.root
        x = root.inputs[0]
        axes = root.attrs["axis"]
        kept = [a for a in range(x.ndim) if a not in axes]
        return x, axes, kept, list(axes)

    def out_index(self, idx: dict[int, Affine], kept: list[int], axes: tuple[int, ...]) -> tuple:
        """The output index for an input index (keepdims puts 0 at reduced dims)."""
        if self.k.root.attrs.get("keepdims"):
            return tuple(Affine(0) if a in axes else idx[a] for a in range(self.k.root.inputs[0].ndim))
        return tuple(idx[a] for a in kept)

    def reduced_linear(self, idx: dict[int, Affine], x: Tensor, axes: tuple[int, ...]) -> Any:
        """Row-major position of the reduced coordinates (argmax/argmin results)."""
        strides = row_major_strides([x.shape[a] for a in axes])
        acc: Any = Affine(0)
        for a, s in zip(axes, strides):
            acc = self.em.add(acc, self.em.mul(idx[a], Affine(s)))
        return acc

    def emit_reduce_inner(self) -> None:
        k, f = self.k, self.f
        x, axes, kept, red = self.reduce_parts()
        comb = k.root.opdef.reduce
        acc = Accumulator(self, comb, x.dtype)
        live_red = [a for a in red if x.shape[a] != 1]
        blocked = comb == "sum" and x.dtype.kind == "f" and live_red and x.shape[live_red[-1]] > 1
        block_vid = x.ndim

        def element(idx: dict[int, Affine]) -> None:
            ix = tuple(idx[a] for a in range(x.ndim))
            acc.add(self.value(x, ix), self.reduced_linear(idx, x, axes))
            self.memo.clear()

        def inner(idx: dict[int, Affine]) -> None:
            rest = [(a, x.shape[a]) for a in red if a != (live_red[-1] if blocked else None)]
            if not blocked:
                self.nest(rest, lambda i2: element({**idx, **i2}), outer_range=False)
                return
            last = live_red[-1]
            n = x.shape[last]

            def blocks(i2: dict[int, Affine]) -> None:
                nblocks = math.ceil(n / BLOCK)
                if nblocks == 1:
                    acc.start_block()
                    self.nest([(last, n)], lambda i3: element({**idx, **i2, **i3}), outer_range=False)
                    acc.end_block()
                    return
                self.ranges[block_vid] = nblocks
                with f.loop(0, nblocks, "blk") as blk:
                    self.loopvars[block_vid] = blk
                    start = f.b.mul(blk, ir.Constant(I64, BLOCK), flags=("nsw",))
                    stop = f.b.add(start, ir.Constant(I64, BLOCK), flags=("nsw",))
                    stop = f.b.select(f.b.icmp_signed("<", stop, ir.Constant(I64, n)), stop, ir.Constant(I64, n))
                    acc.start_block()
                    self.ranges[last] = n
                    with f.loop(start, stop, "j") as j:
                        self.loopvars[last] = j
                        element({**idx, **i2, last: Affine.var(last)})
                    acc.end_block()
            self.nest(rest, blocks, outer_range=False)

        def per_output(idx: dict[int, Affine]) -> None:
            acc.init()
            inner(idx)
            self.store(k.out, self.out_index(idx, kept, axes), k.shape, acc.result(k.root.dtype))

        if kept:
            self.nest([(a, x.shape[a]) for a in kept], per_output, outer_range=True)
        else:
            self.guarded(lambda: per_output({}))

    def emit_reduce_split(self) -> None:
        """Rows are the parts of one long reduced dim; each part's result goes to scratch."""
        k, f = self.k, self.f
        x = k.root.inputs[0]
        (r,) = [a for a, d in enumerate(x.shape) if d != 1]
        n, parts = x.shape[r], k.split
        acc = Accumulator(self, k.root.opdef.reduce, x.dtype)
        self.ranges[r] = n
        with f.loop(self.begin, self.end, "part") as c:
            start = f.b.sdiv(f.b.mul(c, ir.Constant(I64, n)), ir.Constant(I64, parts))
            stop = f.b.sdiv(f.b.mul(f.b.add(c, ir.Constant(I64, 1)), ir.Constant(I64, n)), ir.Constant(I64, parts))
            acc.init()

            def elements(lo: ir.Value, hi: ir.Value) -> None:
                with f.loop(lo, hi, "j") as j:
                    self.loopvars[r] = j
                    ix = tuple(Affine.var(r) if a == r else Affine(0) for a in range(x.ndim))
                    acc.add(self.value(x, ix), None)
                    self.memo.clear()

            if acc.block is None:
                elements(start, stop)
            else:
                nblocks = f.b.sdiv(f.b.add(f.b.sub(stop, start), ir.Constant(I64, BLOCK - 1)), ir.Constant(I64, BLOCK))
                with f.loop(0, nblocks, "blk") as blk:
                    lo = f.b.add(start, f.b.mul(blk, ir.Constant(I64, BLOCK)))
                    hi = f.b.add(lo, ir.Constant(I64, BLOCK))
                    hi = f.b.select(f.b.icmp_signed("<", hi, stop), hi, stop)
                    acc.start_block()
                    elements(lo, hi)
                    acc.end_block()
            self.store(View(k.scratch, 0, (1,)), (c,), (parts,), f.b.load(acc.slot))

    def emit_split_combine(self) -> ir.Function:
        """Combine the parts of a split reduction (in part order) into the output."""
        k = self.k
        comb = k.root.opdef.reduce
        g = FunctionBuilder(self.fn.module, k.name + "_combine", [PTR] * len(self.bufs) + [I64, I64])
        g.fn.attributes.add("noinline")
        ptr = dict(zip(self.bufs, g.args))
        em = LLVMEmitter(g.b, {}, {})
        dtype = k.scratch.dtype

        def part(i: ir.Value) -> ir.Value:
            v = g.b.load(g.b.gep(ptr[k.scratch], [i], inbounds=True, source_etype=mem_type(dtype)), typ=mem_type(dtype))
            return g.b.icmp_unsigned("!=", v, ir.Constant(v.type, 0)) if dtype == bool_ else v

        total = g.slot(reg_type(dtype), part(ir.Constant(I64, 0)))
        with g.loop(1, k.split, "part") as c:
            g.b.store(em.value(Accumulator.combine(em, comb, g.b.load(total), part(c))), total)
        result = em.value(em.cast(g.b.load(total), k.out.buffer.dtype))
        if k.out.buffer.dtype == bool_:
            result = g.b.zext(result, mem_type(bool_))
        g.b.store(result, g.b.gep(ptr[k.out.buffer], [ir.Constant(I64, k.out.offset)], source_etype=mem_type(
            k.out.buffer.dtype)))
        g.finish()
        return g.fn

    def emit_reduce_outer(self) -> None:
        k, f = self.k, self.f
        x, axes, kept, _ = self.reduce_parts()
        comb = k.root.opdef.reduce
        n_out = numel(k.shape)
        flat_out = View(k.out.buffer, 0, (1,))
        acc_view = View(k.scratch, 0, (1,)) if k.scratch is not None else flat_out
        acc_dtype = k.scratch.dtype if k.scratch is not None else k.out.buffer.dtype
        if comb in ("argmax", "argmin"):
            acc_dtype = x.dtype
        init = Accumulator.initial(comb, acc_dtype)
        with f.loop(0, n_out, "o") as o:
            self.store(acc_view, (o,), (n_out,), self.em.const(init, acc_dtype))
            if comb in ("argmax", "argmin"):
                self.store(flat_out, (o,), (n_out,), self.em.const(0, int64))
        out_strides = row_major_strides(k.shape)

        def element(idx: dict[int, Affine]) -> None:
            ix = tuple(idx[a] for a in range(x.ndim))
            v = self.value(x, ix)
            o = Affine(0)
            for pos, s in zip(self.out_index(idx, kept, axes), out_strides):
                o = o.add(pos.scale(s))
            best = self.load(acc_view, (o,), (n_out,))
            if comb in ("argmax", "argmin"):
                take = Accumulator.better(self.em, comb, v, best)
                self.store(acc_view, (o,), (n_out,), self.em.select(take, v, best))
                old = self.load(flat_out, (o,), (n_out,))
                self.store(flat_out, (o,), (n_out,), self.em.select(take, self.em.value(
                    self.reduced_linear(idx, x, axes)), old))
            else:
                self.store(acc_view, (o,), (n_out,), Accumulator.combine(self.em, comb, best,
                                                                         self.em.cast(v, acc_dtype)))
            self.memo.clear()

        self.nest([(a, x.shape[a]) for a in range(x.ndim)], element, outer_range=False)
        if k.scratch is not None and comb in ("sum", "prod"):
            with f.loop(0, n_out, "o") as o:
                self.store(flat_out, (o,), (n_out,), self.load(acc_view, (o,), (n_out,)))


class Accumulator:
    """A reduction accumulator held in stack slots (promoted to registers by LLVM)."""

    def __init__(self, cg: KernelCodegen, comb: str, in_dtype: np.dtype):
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
        self.in_block = True
        self.cg.f.b.store(ir.Constant(reg_type(self.in_dtype), 0.0), self.block)

    def end_block(self) -> None:
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

