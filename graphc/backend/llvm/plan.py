"""The last late stages: steps over buffers, then the arena: Units --steps--> Steps --memory--> Plan.

Every value the program touches lives in a `Buffer`: a feed, a session variable, a
constant held by Python, a fresh output array, or a slot of the arena (one block per
program, allocated once and reused; buffers whose lifetimes do not overlap share bytes,
placed by `graphc.passes.memory.place`). Nodes are read through `View`s (offset and
strides in elements), so index ops that only re-address memory (reshape, transpose,
broadcast, strided slices) cost nothing. Scalar constants are immediates baked into the code.

Steps (`steps.py`):

* `Kernel`: a loop nest that evaluates a group of nodes (`grouping.py`) and stores its
  results: the root and the `more` results. A kernel with no members copies a view into
  a dense buffer.
* `Gemm`: a (batched) matrix product through BLAS; operands that are transposed views
  are passed as BLAS transposes.
* `Lapack`: a linear-algebra op (kind LAPACK) through LAPACK, with a workspace in the arena.
* `Collective`: starts an MPI allreduce, allgather or broadcast from a dense operand into a
  dense buffer, called from the entry like a GEMM (`collective.py`); its `CollectiveWait`
  comes as late as is safe (`place_waits`), so the steps in between overlap the transfer.
* `HostCall`: a host op (print, check_numerics) hands a dense buffer to the host, which
  may stop the run (`host.py`); its value is that buffer.
* At the end, one copy kernel per assignment moves the new value into the variable,
  so every read in the run sees the value from the start of the run (unless the
  kernel can write the variable directly: nothing reads it afterwards, and the program
  has no host call, so a run the host stops has written no variable).

`build_steps` and `place_arena` are pure functions of their stage; `build_steps` uses a
private builder for the bookkeeping while it walks the units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from ...dtypes import float32, float64
from ...errors import GraphcError
from ...ir.graph import Tensor
from ...ops.registry import OpKind
from ...passes.memory import ALIGNMENT, Interval, place, place_in_order
from ...passes.sizing import same, templating
from .grouping import Units, _Stage
from .pairs import pair_steps
from .rows import after_reduction, reduce_mode, single_pass
from .steps import (
    Buffer,
    Collective,
    CollectiveWait,
    Extra,
    Gemm,
    HostCall,
    Kernel,
    KernelMode,
    Lapack,
    Loop,
    Plan,
    Step,
    View,
    blas_layout,
    numel,
    row_major_strides,
)
from .updates import fold_updates
from .views import Flat, Immediate, Loaded

if TYPE_CHECKING:
    from .control import LowerFn

SPLIT = 64  # parts of a split reduction (fixed, so results do not depend on the thread count)
SPLIT_MIN = 1 << 16


@dataclass(frozen=True, eq=False)
class Steps(_Stage):
    """The program's steps over its buffers; arena buffers are not placed yet (offset 0)."""

    units: Units
    draft: Plan  # the plan before arena placement (arena_bytes 0, arena slots 0)

    @property
    def nodes(self):
        return self.units.nodes

    def as_text(self) -> str:
        return self.draft.as_text()

    def stats(self) -> dict[str, int]:
        """Kernels, and the arena bytes without sharing (the sum of the arena buffers)."""
        arena = sum(-(-b.size * b.dtype.itemsize // ALIGNMENT) * ALIGNMENT for b in self.draft.buffers
                    if b.kind == "arena")
        return {"kernels": len(self.draft.steps), "peak_bytes": arena}


def build_steps(units: Units, lower: LowerFn) -> Steps:
    """Buffers, views and steps for the ordered units, then output copies and assignments;
    `lower(results, prefix)` is the `Plan` of a region op's body (the late passes again)."""
    b = _Builder(units, lower)
    for unit in units.units:
        b.unit(unit)
    nodes = units.nodes
    for o in nodes.outputs:
        if o not in b.written:
            b.copy(o, b.out_buffer(o))
    stoppable = any(isinstance(s, HostCall) for s in b.steps)
    for a in nodes.assigns:
        var = a.inputs[0]
        if stoppable or not b.assign_in_place(a):
            b.copy(a, View.dense(b.var_buffer[var], var.shape))
    steps, pairs, deferred = pair_steps(place_waits(fold_updates(b.steps)))
    draft = Plan(tuple(b.feeds), tuple(b.variables), nodes.outputs, tuple(b.consts), 0, steps, tuple(b.buffers),
                 pairs=pairs, deferred=deferred)
    return Steps(units, draft)


def place_waits(steps: Sequence[Step]) -> tuple[Step, ...]:
    """`steps` with a `CollectiveWait` for each collective started, as late as is safe: before
    the first later step that touches the collective's input or result buffer (the arena
    keeps both alive until the wait), or a host call (which may stop the run) or a region
    op, else at the end (right after the start with ``GRAPHC_MPI_OVERLAP=0``)."""
    out = list(steps)
    starts = [s for s in steps if isinstance(s, Collective)]
    if not starts:
        return tuple(out)
    from . import collective  # loaded with the first program that has one (docs/architecture.md)

    overlap = collective.overlap()
    for start in starts:
        i = out.index(start)
        held = {start.src.buffer, start.out.buffer}
        j = next((j for j in range(i + 1, len(out)) if not overlap or isinstance(out[j], (HostCall, Loop))
                  or held.intersection(out[j].buffers())), len(out))
        out.insert(j, CollectiveWait("w" + start.name[1:], start.node, start.src, start.out, start=start.name))
    return tuple(out)


def place_arena(steps: Steps) -> Plan:
    """The finished plan: arena buffers get offsets by liveness (buffers never live at the
    same step share bytes), and the table buffers are checked against their slots."""
    draft = steps.draft
    first: dict[Buffer, int] = {}
    last: dict[Buffer, int] = {}
    for i, step in zip(draft.times(), draft.steps):
        for buf in step.buffers():
            if buf.kind == "arena":
                first.setdefault(buf, i)
                last[buf] = i
    if templating():  # 8 bytes an element whatever the dtype: every offset a sum of affine sizes, 8-byte aligned
        offsets, arena = place_in_order([Interval(buf, buf.size * 8, first[buf], last[buf]) for buf in first])
    else:
        offsets, arena = place([Interval(buf, buf.size * buf.dtype.itemsize, first[buf], last[buf]) for buf in first])
    placed = {buf: replace(buf, slot=offset) for buf, offset in offsets.items()}
    plan = Plan(draft.feeds, draft.variables, draft.outputs, draft.consts, arena,
                tuple(s.with_buffers(placed) for s in draft.steps), tuple(placed.get(b, b) for b in draft.buffers),
                steps.node_count(), pairs=draft.pairs, deferred=draft.deferred)
    plan.check()
    return plan


class _Builder:
    """The bookkeeping of `build_steps` (private to one call): buffers, views, steps so far."""

    def __init__(self, units: Units, lower: LowerFn):
        self.nodes, self.groups, self.lower = units.nodes, units.groups, lower
        self.buffers: list[Buffer] = []
        self.counts = {"feed": 0, "variable": 0, "const": 0, "output": 0}
        self.consts: list[np.ndarray] = []
        self.view: dict[Tensor, View] = {}
        self.imm: dict[Tensor, Immediate] = {}
        self.steps: list[Step] = []
        self.feeds: list[Tensor] = []
        self.variables: list[Tensor] = []
        self.written: set[Tensor] = set()  # outputs computed straight into their arrays
        self.var_buffer: dict[Tensor, Buffer] = {}
        self.region_outs: dict[Tensor, tuple[View, ...]] = {}  # a region op's result views (control.py)

    def buffer(self, kind: str, dtype: np.dtype, size: int, name: str, slot: int | None = None) -> Buffer:
        """A new buffer; arena offsets are assigned by `place_arena`."""
        if kind == "arena":
            slot = 0
        elif slot is None:
            slot = self.counts[kind]
            self.counts[kind] += 1
        buf = Buffer(kind, slot, np.dtype(dtype), size, f"b{len(self.buffers)}")
        self.buffers.append(buf)
        return buf

    def const_buffer(self, arr: np.ndarray, name: str) -> Buffer:
        """A buffer of the program's constants holding `arr`."""
        self.consts.append(np.ascontiguousarray(arr))
        return self.buffer("const", arr.dtype, arr.size, name)

    def out_buffer(self, node: Tensor) -> View:
        """A dense buffer for a computed node: its output array when fetched, else arena."""
        outputs = self.nodes.outputs
        kind = "output" if node in outputs else "arena"
        slot = outputs.index(node) if kind == "output" else None
        view = View.dense(self.buffer(kind, node.dtype, numel(node.shape), node.name, slot), node.shape)
        if kind == "output":
            self.written.add(node)
        return view

    def unit(self, unit: tuple[Tensor, ...]) -> None:
        n = unit[0]
        kind = n.opdef.kind
        if n in self.groups.group:
            self.kernel(self.groups.members[self.groups.group[n]])  # a GEMM with an epilogue if it has a matmul
        elif kind is OpKind.REGION:
            from .control import region_step  # loaded with the first program that has one (docs/architecture.md)

            region_step(self, n, self.lower)
        elif n.op in ("placeholder", "param"):  # (a region's params are the feeds of its plan)
            self.view[n] = View.dense(self.buffer("feed", n.dtype, numel(n.shape), n.name), n.shape)
            self.feeds.append(n)
        elif n.op == "variable":
            self.var_buffer[n] = self.buffer("variable", n.dtype, numel(n.shape), n.name)
            self.view[n] = View.dense(self.var_buffer[n], n.shape)
            self.variables.append(n)
        elif n.op == "constant":
            arr = n.attrs["value"].array
            if arr.size == 1:
                self.imm[n] = Immediate(arr.reshape(()).item(), arr.dtype)
            else:
                self.view[n] = View.dense(self.const_buffer(arr, n.name), n.shape)
        elif kind is OpKind.INDEX:
            self.index_view(n, self.groups.probes[n])
        elif kind is OpKind.MATMUL:
            self.gemm(n)
        elif kind is OpKind.LAPACK:
            self.lapack(n)
        elif kind is OpKind.COLLECTIVE:
            self.collective(n)
        elif kind is OpKind.HOST:
            self.host_call(n)

    def assign_in_place(self, a: Tensor) -> bool:
        """Let the kernel computing assignment `a` write the variable directly, when safe.

        Safe when nothing after that kernel reads the variable (reads see start-of-run
        values) or the assignment's result, and the kernel reads the variable only at the
        element it writes, before writing it: a map's members read the variable itself
        (not a view of it), or the assignment follows a column reduction (`rows.after_reduction`),
        whose input loop reads everything before the loop over the output writes. A kernel
        may so write several variables (an optimizer's slots and its parameter): each
        element's results are all computed before any is stored.
        """
        var_buf = self.var_buffer[a.inputs[0]]
        found = [i for i, s in enumerate(self.steps) if (k := kernel_of(s)) is not None and k.members
                 and (k.root is a or any(e.node is a for e in k.more))]
        if not found or a in self.nodes.outputs:
            return False
        step = self.steps[found[0]]
        k = kernel_of(step)
        if k.mode is KernelMode.REDUCE_OUTER:
            late = after_reduction(k.members, k.reduction)
            if a not in late:
                return False
        elif k.mode is KernelMode.MAP and all(m.opdef.kind in (OpKind.ELEMENTWISE, OpKind.STATE) for m in k.members):
            late = set(k.members)
        else:
            return False
        for node, view in k.reads.items():
            if view.buffer is var_buf and (node is not a.inputs[0] or not same(node.shape, a.shape)) \
                    and any(node in m.inputs for m in late):
                return False
        result = self.view[a].buffer
        for later in self.steps[found[0] + 1:]:
            touched = [v.buffer for v in step_reads(later)]
            if var_buf in touched or result in touched:
                return False
        out = View.dense(var_buf, a.shape)
        if k.root is a:
            k = replace(k, out=out)
        else:
            k = replace(k, more=tuple(replace(e, out=out) if e.node is a else e for e in k.more))
        self.steps[found[0]] = replace(step, epilogue=k) if isinstance(step, Gemm) else k
        self.view[a] = out
        return True

    def index_view(self, n: Tensor, probe: Loaded | Flat | Immediate) -> None:
        if isinstance(probe, Immediate):
            self.imm[n] = probe
            return
        src = n.inputs[0 if isinstance(probe, Flat) else probe.i]
        if src in self.imm:
            self.imm[n] = self.imm[src]
            return
        base = self.view[src]
        if isinstance(probe, Flat):
            if not base.is_dense(src.shape):
                raise GraphcError(f"{n.op} {n.name}: a row-major view of a non-dense input {base}")
            self.view[n] = View.dense(base.buffer, n.shape)
            return
        offset = base.offset + sum(ix.const * s for ix, s in zip(probe.index, base.strides))
        strides = tuple(sum(ix.coef(k) * s for ix, s in zip(probe.index, base.strides)) for k in range(n.ndim))
        self.view[n] = View(base.buffer, offset, strides)

    def kernel(self, members: tuple[Tensor, ...]) -> None:
        """One kernel for a group: its roots are the members used outside it or fetched.

        A group with a GEMM member (an epilogue, see `grouping`) is that GEMM: its product
        goes to the buffer of the kernel's result, and the kernel runs in place over it.
        """
        users, outputs = self.nodes.users, self.nodes.outputs
        gemms = [m for m in members if m.opdef.kind is OpKind.MATMUL]
        members = tuple(m for m in members if m.opdef.kind is not OpKind.MATMUL)
        inside = set(members)
        roots = [m for m in members if m in outputs or any(u not in inside for u in users[m])
                 or m.op == "assign"] or [members[-1]]
        space = next((m for m in members if m.opdef.kind is OpKind.REDUCE), None)
        if space is not None and reduce_mode(space) is KernelMode.REDUCE_OUTER and space not in roots:
            roots.insert(0, space)  # a column reduction accumulates in its own buffer
        reduces = [r for r in roots if r.opdef.kind is OpKind.REDUCE]
        root = reduces[0] if reduces else roots[-1]
        if gemms:  # the result that overwrites the product: its dtype and size, not after a reduction
            late = after_reduction(members, space) if space is not None else set()
            root = [r for r in roots if r.dtype == gemms[0].dtype and numel(r.shape) == numel(gemms[0].shape)
                    and r not in late][-1]
        reads, imms = {}, {}
        for m in members:
            for pos, i in enumerate(m.inputs):
                if i in inside or pos in m.opdef.shape_only or i in gemms:
                    continue
                if i in self.imm:
                    imms[i] = self.imm[i]
                else:
                    reads[i] = self.view[i]
        if not reads and not gemms and roots == [root] and root not in outputs and root.ndim == 0 \
                and all(m.opdef.kind is OpKind.ELEMENTWISE and not m.opdef.effect for m in members):
            self.imm[root] = fold_scalar(members, imms)  # arithmetic on immediates only (1 / batch size)
            return
        mode, split = KernelMode.MAP, 0
        if space is not None:
            mode = reduce_mode(space)
            if mode is KernelMode.REDUCE_INNER and reduces and splittable(root) and single_pass(members):
                split = SPLIT
        scratch = self.root_scratch(root, mode, split)
        more = tuple(Extra(r, self.out_buffer(r), self.root_scratch(r, mode, split)) for r in roots if r is not root)
        if gemms:
            (g,) = gemms
            a, b = (self.dense_operand(i) for i in g.inputs)
            out = self.out_buffer(root)  # dense; the product may have another shape (read through a reshape)
            reads[g] = self.view[g] = View(out.buffer, out.offset, row_major_strides(g.shape))
            k = Kernel(f"k{len(self.steps)}", root, members, out, reads, imms, mode, scratch, more=more)
            self.steps.append(Gemm(f"g{len(self.steps)}", g, a, b, out, k))
        else:
            out = self.out_buffer(root)
            self.steps.append(Kernel(f"k{len(self.steps)}", root, members, out, reads, imms, mode, scratch,
                                     split, more))
        self.view[root] = out
        for extra in more:
            self.view[extra.node] = extra.out

    def root_scratch(self, root: Tensor, mode: KernelMode, split: int) -> Buffer | None:
        if root.opdef.kind is not OpKind.REDUCE:
            return None
        if mode is KernelMode.REDUCE_OUTER:
            return self.reduce_scratch(root)
        if split:
            return self.buffer("arena", partial_dtype(root), split, root.name + ".partial")
        return None

    def reduce_scratch(self, root: Tensor) -> Buffer | None:
        comb, x = root.opdef.reduce, root.inputs[0]
        if comb in ("sum", "prod") and x.dtype == float32:
            return self.buffer("arena", float64, numel(root.shape), root.name + ".acc")
        if comb in ("argmax", "argmin"):
            return self.buffer("arena", x.dtype, numel(root.shape), root.name + ".best")
        return None

    def copy(self, node: Tensor, out: View) -> None:
        reads = {} if node in self.imm else {node: self.view[node]}
        imms = {node: self.imm[node]} if node in self.imm else {}
        self.steps.append(Kernel(f"k{len(self.steps)}", node, (), out, reads, imms))
        if out.buffer.kind in ("output", "arena"):
            self.view[node] = out

    def dense_operand(self, node: Tensor) -> View:
        view = self.view.get(node)
        if view is None or blas_layout(view, node.shape) is None:
            out = View.dense(self.buffer("arena", node.dtype, numel(node.shape), node.name), node.shape)
            self.copy(node, out)
            view = out
        return view

    def lapack(self, n: Tensor) -> None:
        """A LAPACK step; inputs are read through their views (any strides), immediates copied."""
        inputs = []
        for i in n.inputs:
            if i not in self.view:
                self.copy(i, View.dense(self.buffer("arena", i.dtype, numel(i.shape), i.name), i.shape))
            inputs.append(self.view[i])
        from .lapack import workspace  # loaded with the first program that has one (docs/architecture.md)

        _, size = workspace(n)
        work = self.buffer("arena", np.float64, size, n.name + ".work")  # LAPACK computes in float64
        out = self.out_buffer(n)
        self.steps.append(Lapack(f"l{len(self.steps)}", n, tuple(inputs), out, work))
        self.view[n] = out

    def gemm(self, n: Tensor) -> None:
        a, b = (self.dense_operand(i) for i in n.inputs)
        out = self.out_buffer(n)
        self.steps.append(Gemm(f"g{len(self.steps)}", n, a, b, out))
        self.view[n] = out

    def dense_input(self, n: Tensor) -> View:
        """The view of n's input as one contiguous block (copied into the arena if it is not)."""
        x = n.inputs[0]
        src = self.view.get(x)
        if src is None or not src.is_dense(x.shape):
            src = View.dense(self.buffer("arena", x.dtype, numel(x.shape), x.name), x.shape)
            self.copy(x, src)
        return src

    def collective(self, n: Tensor) -> None:
        src = self.dense_input(n)  # MPI reads one contiguous block
        out = self.out_buffer(n)
        self.steps.append(Collective(f"c{len(self.steps)}", n, src, out))
        self.view[n] = out

    def host_call(self, n: Tensor) -> None:
        src = self.dense_input(n)
        self.steps.append(HostCall(f"h{len(self.steps)}", n, src))
        self.view[n] = src


def fold_scalar(members: tuple[Tensor, ...], imms: dict[Tensor, Immediate]) -> Immediate:
    """The value of a 0-d elementwise group over immediates, by the ops' numpy references
    (what the reference backend computes)."""
    values = {n: np.asarray(imm.value, dtype=imm.dtype) for n, imm in imms.items()}
    for m in members:
        args = [values[i] for pos, i in enumerate(m.inputs) if pos not in m.opdef.shape_only]
        values[m] = np.asarray(m.opdef.ref(*args, **m.params), dtype=m.dtype)
    root = members[-1]
    return Immediate(values[root].reshape(()).item(), root.dtype)


def kernel_of(step: Step) -> Kernel | None:
    """The kernel a step runs: itself, or a GEMM's epilogue."""
    return step if isinstance(step, Kernel) else step.epilogue if isinstance(step, Gemm) else None


def step_reads(step: Step) -> list[View]:
    """The views a step reads (a GEMM's operands and what its epilogue reads besides the product)."""
    if isinstance(step, Kernel):
        return list(step.reads.values())
    if isinstance(step, Lapack):
        return list(step.inputs)
    if isinstance(step, (Collective, HostCall)):
        return [step.src]
    if isinstance(step, CollectiveWait):
        return [step.src, step.out]
    if isinstance(step, Loop):
        return list(step.args)
    extra = [v for n, v in step.epilogue.reads.items() if n is not step.node] if step.epilogue else []
    return [step.a, step.b, *extra]


def splittable(node: Tensor) -> bool:
    """A long reduction of effectively one dim to one value: worth computing in parallel parts."""
    if templating():  # a symbolic-dim template never splits (`graphc.passes.sizing.templating`)
        return False
    x = node.inputs[0]
    live = [k for k, d in enumerate(x.shape) if d != 1]
    return (node.opdef.reduce in ("sum", "prod", "max", "min") and len(live) == 1
            and live[0] in node.attrs["axis"] and x.shape[live[0]] >= SPLIT_MIN)


def partial_dtype(node: Tensor) -> np.dtype:
    """The dtype partial results of a split reduction are kept in."""
    x = node.inputs[0]
    if node.opdef.reduce in ("sum", "prod"):
        return float64 if x.dtype.kind == "f" else np.dtype(np.int64)
    return x.dtype
