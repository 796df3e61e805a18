"""Loop-nest code for one `Kernel` (maps and copies here; reductions in `reductions`).

A kernel function takes one ``noalias`` pointer per buffer it touches and a row range
``[begin, end)`` of its outermost loop (the entry passes the whole range, or hands the
rows to the thread pool). Each element is computed by evaluating the group's op
declarations with `LLVMEmitter`: elementwise ops through their `scalar` forms (inputs
read at the broadcast index), index ops through their `gather` forms, nodes outside the
group through their views. Data-dependent indices are clamped into their dims.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llvmlite import ir

from ...dtypes import bool_
from ...ir.graph import Tensor, attr_key
from ...ops.registry import OpKind
from ...ops.shape import broadcast_index
from ...passes.sizing import SizesDivergedError, decide, unit_dim
from . import reductions
from .affine import Affine
from .emitter import LLVMEmitter, mem_type
from .loops import I64, PTR, FunctionBuilder
from .parallel import MIN_PARALLEL_NS
from .rows import levels
from .steps import Buffer, Kernel, KernelMode, View, numel


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
        return self.parallel_at(MIN_PARALLEL_NS)

    def parallel_at(self, least_ns: float) -> bool:
        """Worth offering to the pool when a piece must have at least `least_ns` of work."""
        return decide("parallel call", self.ns_per_row is not None and self.rows >= 2
                      and self.rows * self.ns_per_row >= 2 * least_ns)


def element_ns(k: Kernel) -> float:
    """A rough cost per element of the kernel's loop body, in nanoseconds (vectorized code)."""
    ns = 0.1 * (len(k.reads) + 1)
    for m in k.members:
        kind = m.opdef.kind
        ns += 1.5 if m.opdef.heavy else 1.0 if kind in (OpKind.INDEX, OpKind.REDUCE) and m is not k.root else 0.15
    return ns


def kernel_buffers(k: Kernel) -> list[Buffer]:
    """The distinct buffers a kernel touches, in parameter order."""
    return list(dict.fromkeys(k.buffers()))


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
        attrs = tuple((name, attr_key(v)) for name, v in sorted(m.params.items()))
        members.append((m.op, attrs, m.shape, m.dtype.str, args))
        local[m] = pos
    def place(view: View, scratch: Buffer | None) -> tuple:
        kept = None if scratch is None else (index[scratch], scratch.dtype.str, scratch.size)
        return index[view.buffer], view.offset, view.strides, view.buffer.dtype.str, kept

    more = tuple((ref(e.node), place(e.out, e.scratch)) for e in k.more)
    return ("kernel", k.mode, k.split, k.root.shape, tuple(members), ref(k.root), place(k.out, k.scratch), more)


def kernel_rows(k: Kernel) -> int:
    """The trip count of the kernel's outermost (row) loop."""
    if k.mode is KernelMode.MAP:
        return k.shape[0] if k.shape else 1
    red = k.reduction
    kept = [d for a, d in enumerate(red.inputs[0].shape) if a not in red.attrs["axis"]]
    return kept[0] if kept else 1


class Memo(dict):
    """Values memoised by (node, index). Whether an index was seen is a size decision
    (`graphc.passes.sizing`): ``x[N - 1]`` and ``x[0]`` are one element at N = 1 but two at a
    template's nominal build, whose code the template keeps."""

    def __contains__(self, key: object) -> bool:
        seen = dict.__contains__(self, key)
        if decide("memoised", seen) == seen:
            return seen
        if not seen:
            raise SizesDivergedError("a value memoised at the nominal build is not at these dims")
        return False  # one value here, two at the nominal build: computed again, as there


class KernelCodegen:
    """Emits the function(s) for one kernel."""

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
        self.memo: dict[tuple, Any] = Memo()
        self.fixed: dict[tuple, Any] = {}  # values kept for a whole row (a row kernel's reductions)

    @property
    def fn(self) -> ir.Function:
        return self.f.fn

    def emit(self) -> list[Call]:
        """Emit the kernel's function(s); returns the calls the entry makes, in order."""
        k = self.k
        rows = kernel_rows(k)
        space = k.shape if k.mode is KernelMode.MAP else k.reduction.inputs[0].shape
        passes = 1 if k.mode is KernelMode.MAP else 1 + max(levels(k.members).values())
        per_row = element_ns(k) * numel(space) * passes / max(rows, 1)
        if k.split:
            reductions.emit_reduce_split(self)
            self.f.finish()
            combine = reductions.emit_split_combine(self)
            return [Call(self.fn, self.bufs, k.split, per_row * rows / k.split), Call(combine, self.bufs, 1, None)]
        if k.mode is KernelMode.MAP:
            self.emit_map()
        elif k.mode is KernelMode.REDUCE_INNER:
            reductions.emit_reduce_inner(self)
        else:
            reductions.emit_reduce_outer(self)
        self.f.finish()
        return [Call(self.fn, self.bufs, rows, None if k.mode is KernelMode.REDUCE_OUTER else per_row)]

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
    def forget(self) -> None:
        """Drop the memoised values of one element; values `fixed` for the row stay."""
        self.memo.clear()
        self.memo.update(self.fixed)

    def value(self, node: Tensor, idx: tuple) -> Any:
        """The value of `node` at index `idx` (a tuple of Affine or i64 values).

        Elementwise and state members are evaluated from an explicit stack, operands first
        (left to right), so a fused chain of any length does not recurse in Python.
        """
        key = (node, idx)
        if key in self.memo:
            return self.memo[key]
        stack = [(node, idx, False)]
        while stack:
            n, ix, ready = stack.pop()
            if (n, ix) in self.memo:
                continue
            if not ready and n in self.members and n.opdef.kind in (OpKind.ELEMENTWISE, OpKind.STATE):
                stack.append((n, ix, True))
                stack.extend((i, j, False) for i, j in reversed(self._operands(n, ix)) if (i, j) not in self.memo)
                continue
            self.memo[(n, ix)] = self._compute(n, ix)
        return self.memo[key]

    def _operands(self, node: Tensor, idx: tuple) -> list[tuple[Tensor, tuple]]:
        """The (input, index) pairs an elementwise or state member reads at `idx`."""
        if node.opdef.kind is OpKind.STATE:
            return [(node.inputs[1], idx)]
        return [(i, broadcast_index(self.em, idx, i.shape)) for i in node.inputs]

    def _compute(self, node: Tensor, idx: tuple) -> Any:
        """The value of `node` at `idx`; the operands of elementwise and state members are memoised."""
        k, em = self.k, self.em
        if node in k.immediates:
            imm = k.immediates[node]
            v = em.const(imm.value, imm.dtype)
        elif node not in self.members:
            if numel(node.shape) == 0:  # (not a decision: a gather may read an input that is empty)
                v = em.const(0, node.dtype)
            else:
                v = self.load(k.reads[node], idx, node.shape)
        else:
            kind = node.opdef.kind
            if kind is OpKind.ELEMENTWISE or kind is OpKind.STATE:
                args = [self.memo[operand] for operand in self._operands(node, idx)]
                v = node.opdef.scalar(em, *args, **node.params) if kind is OpKind.ELEMENTWISE else args[0]
            else:
                v = node.opdef.gather(em, idx, lambda i, ix: self.value(node.inputs[i], tuple(ix)), node)
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
            elif unit_dim(size):
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
            # every result is computed before any store: a GEMM epilogue overwrites its input
            values = [self.value(k.root, ix), *(self.value(extra.node, ix) for extra in k.more)]
            for view, v in zip([k.out, *(extra.out for extra in k.more)], values):
                self.store(view, ix, shape, v)
            self.memo.clear()

        if not shape:
            self.guarded(lambda: body({}))
        else:
            self.nest(list(enumerate(shape)), body, outer_range=True)
