"""Program planning: a bound graph becomes ordered steps over buffers.

Every value the program touches lives in a `Buffer`: a feed, a session variable, a
constant held by Python, a fresh output array, or a slot of the arena (one block per
program, allocated once and reused; buffers whose lifetimes do not overlap share bytes,
placed by `graphc.passes.memory.plan`). Nodes are read through `View`s (offset and strides
in elements), so index ops that only re-address memory (reshape, transpose, broadcast,
strided slices) cost nothing. Scalar constants are immediates baked into the code.

Steps (`steps.py`):

* `Kernel`: a loop nest that evaluates a group of nodes (`grouping.py`: single-use
  producers inlined, kernels sharing a producer fused) and stores its results: the
  root and the `more` results. A kernel with no members copies a view into a dense buffer.
* `Gemm`: a (batched) matrix product through BLAS; operands that are transposed views
  are passed as BLAS transposes.
* At the end, one copy kernel per assignment moves the new value into the variable,
  so every read in the run sees the value from the start of the run (unless the
  kernel can write the variable directly: nothing reads it afterwards).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...dtypes import float32, float64, shape_str
from ...errors import GraphcError
from ...ir.graph import Tensor
from ...ops.registry import OpKind
from ...passes.manager import Instrumentation, register_late_pass, run_late_passes
from ...passes.memory import ALIGNMENT, Interval
from ...passes.memory import plan as place_intervals
from ...passes.pipeline import LATE_PIPELINE
from ...passes.schedule import schedule
from .grouping import GroupingMixin, reduce_mode
from .steps import Buffer, Extra, Gemm, Kernel, KernelMode, Plan, Step, View, blas_layout, numel
from .views import Immediate, Loaded, probe_gather

ARENA_ALIGN = ALIGNMENT  # arena slots (placed by graphc.passes.memory.plan) start on cache lines
SPLIT = 64  # parts of a split reduction (fixed, so results do not depend on the thread count)
SPLIT_MIN = 1 << 16


class _Planner(GroupingMixin):
    def __init__(self, fetches: Sequence[Tensor], assigns: Sequence[Tensor]):
        self.fetches = list(fetches)
        self.assigns = list(assigns)
        roots = self.fetches + self.assigns
        needed = _needed(roots)
        self.order = [n for n in schedule(roots) if n in needed]  # memory-aware order
        self._index = {n: i for i, n in enumerate(self.order)}
        self.users: dict[Tensor, list[Tensor]] = {n: [] for n in self.order}
        for n in self.order:
            for pos, i in enumerate(n.inputs):
                if pos not in n.opdef.shape_only and n.op != "group":
                    self.users[i].append(n)
        self.outputs = list(dict.fromkeys(f for f in self.fetches if f.dtype is not None))
        self.buffers: list[Buffer] = []
        self.counts = {"feed": 0, "variable": 0, "const": 0, "output": 0}
        self.arena = 0
        self.consts: list[np.ndarray] = []
        self.view: dict[Tensor, View] = {}
        self.imm: dict[Tensor, Immediate] = {}
        self.steps: list[Step] = []
        self.feeds: list[Tensor] = []
        self.variables: list[Tensor] = []
        self.written: set[Tensor] = set()  # outputs computed straight into their arrays
        self.var_buffer: dict[Tensor, Buffer] = {}
        self.probes: dict[Tensor, Loaded | Immediate | None] = {}  # set by the stages, in order:
        self.group: dict[Tensor, Tensor] = {}  # fusion: computed node -> its kernel's key
        self.members: dict[Tensor, list[Tensor]] = {}  # fusion: kernel key -> its nodes in order
        self.units: list[list[Tensor]] | None = None  # schedule
        self.result: Plan | None = None  # memory

    # --- buffers -----------------------------------------------------------------------------
    def buffer(self, kind: str, dtype: np.dtype, size: int, name: str, slot: int | None = None) -> Buffer:
        """A new buffer; arena offsets are assigned at the end by `place_arena`."""
        if kind == "arena":
            slot = 0
        elif slot is None:
            slot = self.counts[kind]
            self.counts[kind] += 1
        buf = Buffer(kind, slot, np.dtype(dtype), size, f"b{len(self.buffers)}")
        self.buffers.append(buf)
        return buf

    def out_buffer(self, node: Tensor) -> View:
        """A dense buffer for a computed node: its output array when fetched, else arena."""
        kind = "output" if node in self.outputs else "arena"
        slot = self.outputs.index(node) if kind == "output" else None
        view = View.dense(self.buffer(kind, node.dtype, numel(node.shape), node.name, slot), node.shape)
        if kind == "output":
            self.written.add(node)
        return view

    # --- the stages (late passes, registered below) ---------------------------------------
    def fuse(self) -> int:
        """Group the computed nodes into kernels; returns how many nodes joined another's kernel."""
        self.probes = {n: probe_gather(n) for n in self.order if n.opdef.kind is OpKind.INDEX}
        self.group = self.groups(self.probes)
        self.members = {}
        for n in self.order:
            if n in self.group:
                self.members.setdefault(self.group[n], []).append(n)
        return len(self.group) - len(self.members)

    def order_steps(self) -> int:
        """Order the units (kernels, GEMMs, views, sources) by their dependencies."""
        self.units = self.order_units(self.group)
        return len(self.units)

    def lower(self) -> int:
        """Buffers, views and steps for the ordered units, then output copies and assignments."""
        for unit in self.units:
            n = unit[0]
            kind = n.opdef.kind
            if n in self.group:
                self.kernel(self.members[self.group[n]])  # a GEMM with an epilogue when it has a matmul member
            elif n.op == "placeholder":
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
                    self.consts.append(np.ascontiguousarray(arr))
                    self.view[n] = View.dense(self.buffer("const", arr.dtype, arr.size, n.name), n.shape)
            elif kind is OpKind.INDEX:
                self.index_view(n, self.probes[n])
            elif kind is OpKind.MATMUL:
                self.gemm(n)
        for o in self.outputs:
            if o not in self.written:
                self.copy(o, self.out_buffer(o))
        for a in self.assigns:
            var = a.inputs[0]
            if not self.assign_in_place(a):
                self.copy(a, View.dense(self.var_buffer[var], var.shape))
        return len(self.steps)

    def finish(self) -> int:
        """Place the arena and check the finished plan; returns the arena buffers placed."""
        placed = self.place_arena()
        self.result = Plan(self.feeds, self.variables, self.outputs, self.consts, self.arena, self.steps,
                           self.buffers)
        self.result.check()
        return placed

    # --- what the instrumentation sees -------------------------------------------------------
    def node_count(self) -> int:
        return len(self.order)

    def stats(self) -> dict[str, int]:
        """Kernels (steps, or compute units before steps exist) and arena bytes so far.

        Before the arena is placed, peak bytes is the sum of the arena buffers (no sharing).
        """
        if self.result is not None:
            return {"kernels": len(self.steps), "peak_bytes": self.arena}
        if self.steps:
            arena = sum(-(-b.size * b.dtype.itemsize // ARENA_ALIGN) * ARENA_ALIGN for b in self.buffers
                        if b.kind == "arena")
            return {"kernels": len(self.steps), "peak_bytes": arena}
        computing = [n for n in self.members if any(m.opdef.kind is OpKind.MATMUL for m in self.members[n])
                     or numel(n.shape) > 0]
        gemms = [n for n in self.order if n.opdef.kind is OpKind.MATMUL and n not in self.group]
        return {"kernels": len(computing) + len(gemms)}

    def as_text(self) -> str:
        """The program so far: the kernel groups, then the unit order, then the steps."""
        if self.steps or self.result is not None:
            plan = self.result or Plan(self.feeds, self.variables, self.outputs, self.consts, 0, self.steps,
                                       self.buffers)
            return plan.as_text()
        lines = []
        if self.units is not None:
            lines.append("units:")
            for unit in self.units:
                lines.append("  " + ", ".join(f"{n.name}={n.op}" for n in unit))
            return "\n".join(lines) + "\n"
        lines.append("kernels:")
        for root, members in self.members.items():
            lines.append(f"  {root.name}: " + ", ".join(f"{n.name}={n.op}" for n in members))
        return "\n".join(lines) + "\n"

    def place_arena(self) -> int:
        """Give arena buffers offsets by liveness: buffers never live at the same step may share bytes."""
        first: dict[Buffer, int] = {}
        last: dict[Buffer, int] = {}
        for i, step in enumerate(self.steps):
            for buf in step.buffers():
                if buf.kind == "arena":
                    first.setdefault(buf, i)
                    last[buf] = i
        intervals = [Interval(buf, buf.size * buf.dtype.itemsize, first[buf], last[buf]) for buf in first]
        offsets, self.arena = place_intervals(intervals)
        for buf, offset in offsets.items():
            buf.slot = offset
        return len(offsets)

    def assign_in_place(self, a: Tensor) -> bool:
        """Let the kernel computing assignment `a` write the variable directly, when safe.

        Safe when nothing after that kernel reads the variable (reads see start-of-run
        values) or the kernel's own result, and the kernel reads the variable only at the
        element it writes (elementwise members, the variable itself, not a view of it).
        """
        var_buf = self.var_buffer[a.inputs[0]]
        found = [i for i, s in enumerate(self.steps) if isinstance(s, Kernel) and s.members and s.root is a]
        if not found or a in self.outputs:
            return False
        k = self.steps[found[0]]
        if any(m.opdef.kind not in (OpKind.ELEMENTWISE, OpKind.STATE) for m in k.members):
            return False
        for node, view in k.reads.items():
            if view.buffer is var_buf and (node is not a.inputs[0] or node.shape != a.shape):
                return False
        for later in self.steps[found[0] + 1:]:
            touched = [v.buffer for v in step_reads(later)]
            if var_buf in touched or k.out.buffer in touched:
                return False
        k.out = View.dense(var_buf, a.shape)
        self.view[a] = k.out
        return True

    def index_view(self, n: Tensor, probe: Loaded | Immediate) -> None:
        if isinstance(probe, Immediate):
            self.imm[n] = probe
            return
        src = n.inputs[probe.i]
        if src in self.imm:
            self.imm[n] = self.imm[src]
            return
        base = self.view[src]
        offset = base.offset + sum(ix.const * s for ix, s in zip(probe.index, base.strides))
        strides = tuple(sum(ix.coef(k) * s for ix, s in zip(probe.index, base.strides)) for k in range(n.ndim))
        self.view[n] = View(base.buffer, offset, strides)

    def kernel(self, members: list[Tensor]) -> None:
        """One kernel for a group: its roots are the members used outside it or fetched.

        A group with a GEMM member (`attach_epilogues`) is that GEMM: its product goes to the
        buffer of the kernel's result, and the kernel, its epilogue, runs in place over it.
        """
        gemms = [m for m in members if m.opdef.kind is OpKind.MATMUL]
        members = [m for m in members if m.opdef.kind is not OpKind.MATMUL]
        inside = set(members)
        roots = [m for m in members if m in self.outputs or any(u not in inside for u in self.users[m])
                 or m.op == "assign"] or [members[-1]]
        reduces = [r for r in roots if r.opdef.kind is OpKind.REDUCE]
        root = reduces[0] if reduces else roots[-1]
        if gemms:  # the result that overwrites the product has the product's dtype
            root = [r for r in roots if r.dtype == gemms[0].dtype][-1]
        reads, imms = {}, {}
        for m in members:
            for pos, i in enumerate(m.inputs):
                if i in inside or pos in m.opdef.shape_only or i in gemms:
                    continue
                if i in self.imm:
                    imms[i] = self.imm[i]
                else:
                    reads[i] = self.view[i]
        mode, split = KernelMode.MAP, 0
        if reduces:
            mode = reduce_mode(root)
            if mode is KernelMode.REDUCE_INNER and splittable(root):
                split = SPLIT
        scratch = self.root_scratch(root, mode, split)
        more = tuple(Extra(r, self.out_buffer(r), self.root_scratch(r, mode, split)) for r in roots if r is not root)
        if gemms:
            (g,) = gemms
            a, b = (self.dense_operand(i) for i in g.inputs)
            out = self.out_buffer(root)
            reads[g] = self.view[g] = out
            k = Kernel(f"k{len(self.steps)}", root, tuple(members), out, reads, imms, more=more)
            self.steps.append(Gemm(f"g{len(self.steps)}", g, a, b, out, k))
        else:
            out = self.out_buffer(root)
            self.steps.append(Kernel(f"k{len(self.steps)}", root, tuple(members), out, reads, imms, mode, scratch,
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

    def gemm(self, n: Tensor) -> None:
        a, b = (self.dense_operand(i) for i in n.inputs)
        out = self.out_buffer(n)
        self.steps.append(Gemm(f"g{len(self.steps)}", n, a, b, out))
        self.view[n] = out


def step_reads(step: Step) -> list[View]:
    """The views a step reads (a GEMM's operands and what its epilogue reads besides the product)."""
    if isinstance(step, Kernel):
        return list(step.reads.values())
    extra = [v for n, v in step.epilogue.reads.items() if n is not step.node] if step.epilogue else []
    return [step.a, step.b, *extra]


def splittable(node: Tensor) -> bool:
    """A long reduction of effectively one dim to one value: worth computing in parallel parts."""
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


def _needed(roots: Sequence[Tensor]) -> set[Tensor]:
    """Nodes whose data the roots read (inputs read only for their shape are skipped)."""
    seen: set[Tensor] = set()
    stack = list(roots)
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        stack.extend(i for pos, i in enumerate(n.inputs) if pos not in n.opdef.shape_only)
    return seen


@register_late_pass("fusion", "kernel grouping: inline single-use producers, fuse siblings, attach GEMM epilogues")
def fusion(p: _Planner, options=None) -> tuple[_Planner, int]:
    return p, p.fuse()


@register_late_pass("schedule", "order kernels, GEMMs and views by dependencies, in memory-aware node order")
def schedule_units(p: _Planner, options=None) -> tuple[_Planner, int]:
    return p, p.order_steps()


@register_late_pass("steps", "buffers, views and steps for the units; output copies; in-place assignments")
def steps(p: _Planner, options=None) -> tuple[_Planner, int]:
    return p, p.lower()


@register_late_pass("memory", "arena placement by liveness over the steps (buffers with disjoint lifetimes share)")
def memory(p: _Planner, options=None) -> tuple[_Planner, int]:
    return p, p.finish()


def make_plan(fetches: Sequence[Tensor], assigns: Sequence[Tensor] = (), instrument: Instrumentation | None = None,
              first: int = 1) -> Plan:
    """Plan a program computing `fetches` (bound, static shapes) and applying `assigns`.

    The late passes of `LATE_PIPELINE` run in order on the plan in progress; their
    records (time, kernels, bytes) are kept in `Plan.records`. `instrument` prints and
    dumps them like graph passes (dump files numbered from `first`).
    """
    for n in list(fetches) + list(assigns):
        if n.dtype is not None and any(d is None for d in n.shape):
            raise GraphcError(f"{n.name} has unbound shape {shape_str(n.shape)}")
    planner, records = run_late_passes(_Planner(fetches, assigns), LATE_PIPELINE, None, instrument, first)
    if planner.result is None:
        raise GraphcError("internal: the late pipeline did not finish the plan")
    planner.result.records = records
    return planner.result

