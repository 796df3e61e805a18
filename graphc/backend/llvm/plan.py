"""Program planning: a bound graph becomes ordered steps over buffers.

Every value the program touches lives in a `Buffer`: a feed, a session variable, a
constant held by Python, a fresh output array, or a slot of the arena (one block per
program, allocated once and reused; buffers whose lifetimes do not overlap share bytes,
placed by `graphc.passes.memory.plan`). Nodes are read through `View`s (offset and strides
in elements), so index ops that only re-address memory (reshape, transpose, broadcast,
strided slices) cost nothing. Scalar constants are immediates baked into the code.

Steps:

* `Kernel`: a loop nest over the root's index space that evaluates a group of nodes
  (the root plus the single-use elementwise and index producers inlined into it). A
  kernel with no members copies the root's view into a dense buffer.
* `Gemm`: a (batched) matrix product through BLAS; operands that are transposed views
  are passed as BLAS transposes.
* At the end, one copy kernel per assignment moves the new value into the variable,
  so every read in the run sees the value from the start of the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ...dtypes import float32, float64, shape_str
from ...errors import GraphcError
from ...ir.graph import Tensor
from ...ir.printer import type_str
from ...passes.memory import ALIGNMENT, Interval
from ...passes.memory import plan as place_intervals
from ...passes.schedule import schedule
from .views import Immediate, Loaded, probe_gather

ARENA_ALIGN = ALIGNMENT  # arena slots (placed by graphc.passes.memory.plan) start on cache lines
SPLIT = 64  # parts of a split reduction (fixed, so results do not depend on the thread count)
SPLIT_MIN = 1 << 16
MERGE_SEARCH = 64  # units a fusion's cycle check may visit before it gives up (and does not fuse)


def row_major_strides(shape: Sequence[int]) -> tuple[int, ...]:
    """Element strides of a dense row-major array of `shape`."""
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= max(d, 1)
    return tuple(reversed(strides))


def numel(shape: Sequence[int]) -> int:
    return int(np.prod(shape, dtype=np.int64))


@dataclass(eq=False)
class Buffer:
    """Memory the program reads or writes; `slot` is the table index or the arena byte offset."""

    kind: str  # feed | variable | const | output | arena
    slot: int
    dtype: np.dtype
    size: int
    name: str

    def __repr__(self) -> str:
        where = f"arena+{self.slot}" if self.kind == "arena" else f"{self.kind}[{self.slot}]"
        return f"{where} {type_str_of(self.dtype, (self.size,))}"


@dataclass(frozen=True)
class View:
    """A node's elements in a buffer: element (i0, i1, ...) is at offset + sum(i_k * strides[k])."""

    buffer: Buffer
    offset: int
    strides: tuple[int, ...]

    @staticmethod
    def dense(buffer: Buffer, shape: Sequence[int]) -> View:
        return View(buffer, 0, row_major_strides(shape))

    def is_dense(self, shape: Sequence[int]) -> bool:
        live = [(s, d) for s, d in zip(self.strides, shape) if d != 1]
        return self.offset == 0 and all(s == t for (s, d), t in zip(live, row_major_strides([d for _, d in live])))

    def __str__(self) -> str:
        extra = "" if self.offset == 0 else f"+{self.offset}"
        return f"{self.buffer.name}{extra}[strides {','.join(map(str, self.strides))}]"


@dataclass(eq=False)
class Extra:
    """A further result of a kernel: a map over the kernel's iteration space, or a reduction
    like the kernel's root (same input shape, axes and keepdims); `scratch` for split parts."""

    node: Tensor
    out: View
    scratch: Buffer | None = None


@dataclass(eq=False)
class Kernel:
    """A loop nest computing `root` and the `more` results (from `members`, in topological
    order) into `out` and the extras' buffers."""

    name: str
    root: Tensor
    members: tuple[Tensor, ...]
    out: View
    reads: dict[Tensor, View]
    immediates: dict[Tensor, Immediate]
    mode: str = "map"  # map | reduce-inner | reduce-outer
    scratch: Buffer | None = None
    split: int = 0  # reduce-inner over one long dim: partial results per chunk, then combined
    more: tuple[Extra, ...] = ()

    @property
    def shape(self) -> tuple[int, ...]:
        return self.root.shape

    def buffers(self) -> list[Buffer]:
        """Every buffer the kernel touches (outputs, reads, scratch), possibly repeated."""
        bufs = [self.out.buffer, *(v.buffer for v in self.reads.values())]
        if self.scratch is not None:
            bufs.append(self.scratch)
        for extra in self.more:
            bufs.append(extra.out.buffer)
            if extra.scratch is not None:
                bufs.append(extra.scratch)
        return bufs


@dataclass(eq=False)
class Gemm:
    """out = a @ b (batched, batch dims broadcast) through BLAS."""

    name: str
    node: Tensor
    a: View
    b: View
    out: View


Step = Kernel | Gemm


@dataclass(eq=False)
class Plan:
    """Everything a backend needs to emit one program."""

    feeds: list[Tensor]
    variables: list[Tensor]
    outputs: list[Tensor]
    consts: list[np.ndarray]
    arena_bytes: int
    steps: list[Step]
    buffers: list[Buffer] = field(default_factory=list)

    def check(self) -> None:
        """Every table buffer matches the array the run will pass for its slot."""
        slots = {"feed": self.feeds, "variable": self.variables, "output": self.outputs}
        for buf in self.buffers:
            if buf.kind in slots:
                node = slots[buf.kind][buf.slot]
                expected = (node.dtype, numel(node.shape))
            elif buf.kind == "const":
                expected = (self.consts[buf.slot].dtype, self.consts[buf.slot].size)
            else:
                continue
            if (buf.dtype, buf.size) != expected:
                raise GraphcError(f"internal: buffer {buf.name} does not match its {buf.kind} slot {buf.slot}")

    def as_text(self) -> str:
        """A readable listing of buffers and steps."""
        lines = ["buffers:"]
        lines += [f"  {b.name}: {b!r}" for b in self.buffers]
        lines.append(f"arena: {self.arena_bytes} bytes")
        lines.append("steps:")
        for step in self.steps:
            lines += ["  " + line for line in describe_step(step)]
        return "\n".join(lines) + "\n"


def type_str_of(dtype: np.dtype, shape: Sequence[int]) -> str:
    short = {"float32": "f32", "float64": "f64", "int32": "i32", "int64": "i64", "bool": "bool"}
    return short[np.dtype(dtype).name] + shape_str(tuple(shape)).replace(" ", "").replace(",)", ")")


def describe_step(step: Step) -> list[str]:
    if isinstance(step, Gemm):
        n = step.node
        return [f"{step.name} = gemm {type_str(n)} <- {step.a}, {step.b} -> {step.out}"]
    k = step
    head = f"{k.name} = {k.mode} {type_str(k.root)} -> {k.out}"
    if k.scratch is not None:
        head += f" (scratch {k.scratch.name})"
    if k.split:
        head += f" in {k.split} parts"
    lines = [head]
    for extra in k.more:
        lines.append(f"    also {extra.node.name}: {type_str(extra.node)} -> {extra.out}")
    for node, view in k.reads.items():
        lines.append(f"    read {node.name}: {type_str(node)} from {view}")
    for node, imm in k.immediates.items():
        lines.append(f"    immediate {node.name} = {imm.value!r}")
    if not k.members:
        lines.append(f"    copy {k.root.name}")
    for m in k.members:
        args = ", ".join(i.name for i in m.inputs)
        lines.append(f"    {m.name} = {m.op}({args}) : {type_str(m)}")
    return lines


class _Planner:
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

    # --- classification ----------------------------------------------------------------------
    def groups(self, probes: dict[Tensor, Loaded | Immediate | None]) -> dict[Tensor, Tensor]:
        """Map each computed node to the root of the kernel that computes it."""
        group: dict[Tensor, Tensor] = {}
        for n in reversed(self.order):
            if not _computed(n, probes):
                continue
            group[n] = n
            users = set(self.users[n])
            if n.opdef.kind not in ("elementwise", "index") or n in self.outputs or len(users) != 1:
                continue
            (c,) = users
            if c in group and _inlinable_into(n, c):
                group[n] = group[c]
        self.merge_siblings(group)
        return group

    def merge_siblings(self, group: dict[Tensor, Tensor]) -> None:
        """Fuse the kernels that share an elementwise producer over one iteration space.

        An elementwise node read by several kernels (``tanh(x)`` in a loss and in its
        gradient) joins each of them into its own kernel when the union is computable in one
        loop nest (maps of one shape S plus reductions of S over the same axes, no member
        reading a reduction of the union) and the kernel graph stays acyclic. Each node is
        still computed once; a member read by a kernel that could not join is stored too.
        """
        parent: dict[Tensor, Tensor] = {}

        def find(r: Tensor) -> Tensor:
            root = r
            while parent.get(root, root) is not root:
                root = parent[root]
            while r is not root:  # path compression
                parent[r], r = root, parent[r]
            return root

        sets: dict[Tensor, list[Tensor]] = {}
        for n in self.order:
            if n in group:
                sets.setdefault(group[n], []).append(n)
        for n in self.order:
            users = set(self.users[n])
            if n not in group or n.opdef.kind != "elementwise" or len(users) < 2:
                continue
            users = {u for u in users if u in group}
            for u in sorted(users, key=self._index.get):  # each consumer's kernel that can join, joins
                reps = list(dict.fromkeys([find(group[n]), find(group[u])]))
                if len(reps) < 2:
                    continue
                unit_of = lambda m: find(group[m]) if m in group else m  # noqa: E731
                if self.fusable(sets[reps[0]] + sets[reps[1]]) and not self.joins_a_cycle(reps, sets, unit_of):
                    parent[reps[1]] = reps[0]
                    sets[reps[0]] = sets[reps[0]] + sets.pop(reps[1])
        for n in group:
            group[n] = find(group[n])

    def joins_a_cycle(self, reps: list[Tensor], sets: dict[Tensor, list[Tensor]], unit_of) -> bool:
        """Would merging the kernels `reps` make the kernel graph cyclic (a path from one of
        them through other kernels or nodes back into another)? Other kernels count as
        whole units: reaching any member makes every member's consumers reachable. A search
        that grows past `MERGE_SEARCH` units answers yes (no merge), bounding compile time."""
        targets = set(reps)
        frontier = [unit_of(u) for r in reps for m in sets[r] for u in self.users[m]]
        frontier = [u for u in frontier if u not in targets]
        seen: set[Tensor] = set()
        while frontier:
            unit = frontier.pop()
            if unit in seen:
                continue
            if len(seen) >= MERGE_SEARCH:
                return True
            seen.add(unit)
            for m in sets.get(unit, [unit]):
                for u in self.users[m]:
                    owner = unit_of(u)
                    if owner in targets:
                        return True
                    frontier.append(owner)
        return False

    def fusable(self, union: list[Tensor]) -> bool:
        """Can one loop nest compute these nodes (see `merge_siblings`)?"""
        inside = set(union)
        reduces = [m for m in union if m.opdef.kind == "reduce"]
        if any(m.opdef.kind not in ("elementwise", "reduce") for m in union):
            return False
        space = reduces[0].inputs[0].shape if reduces else union[0].shape
        if any(m.shape != space for m in union if m.opdef.kind == "elementwise"):
            return False
        for r in reduces:
            if (r.inputs[0].shape != space or r.attrs["axis"] != reduces[0].attrs["axis"]
                    or r.attrs.get("keepdims") != reduces[0].attrs.get("keepdims") or reduce_mode(r) != "reduce-inner"
                    or any(u in inside for u in self.users[r])):
                return False
        return True

    def schedule(self, group: dict[Tensor, Tensor]) -> list[list[Tensor]]:
        """Units (a kernel's members, or one other node) in an order where inputs come first.

        Units are taken in order of their last node in the topological order, each after
        the units it reads (merges never join kernels into a cycle, see `joins_a_cycle`).
        """
        units: dict[Tensor, list[Tensor]] = {}
        for n in self.order:
            units.setdefault(group.get(n, n), []).append(n)

        def deps(key: Tensor) -> list[Tensor]:
            found = (group.get(i, i) for m in units[key] for pos, i in enumerate(m.inputs)
                     if pos not in m.opdef.shape_only and i in self._index)
            return [d for d in dict.fromkeys(found) if d is not key]

        state: dict[Tensor, int] = {}  # 1: on the current path, 2: scheduled
        out: list[list[Tensor]] = []
        for key in sorted(units, key=lambda k: self._index[units[k][-1]]):
            if state.get(key):
                continue
            state[key] = 1
            stack = [(key, iter(deps(key)))]
            while stack:
                k, pending = stack[-1]
                for d in pending:
                    if state.get(d) == 1:
                        raise GraphcError("internal: the kernel groups depend on each other in a cycle")
                    if not state.get(d):
                        state[d] = 1
                        stack.append((d, iter(deps(d))))
                        break
                else:
                    stack.pop()
                    state[k] = 2
                    out.append(units[k])
        return out

    def plan(self) -> Plan:
        probes = {n: probe_gather(n) for n in self.order if n.opdef.kind == "index"}
        group = self.groups(probes)
        members: dict[Tensor, list[Tensor]] = {}
        for n in self.order:
            if n in group:
                members.setdefault(group[n], []).append(n)
        for unit in self.schedule(group):
            n = unit[0]
            kind = n.opdef.kind
            if n in group:
                self.kernel(members[group[n]])
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
            elif kind == "index":
                self.index_view(n, probes[n])
            elif kind == "matmul":
                self.gemm(n)
        for o in self.outputs:
            if o not in self.written:
                self.copy(o, self.out_buffer(o))
        for a in self.assigns:
            var = a.inputs[0]
            if not self.assign_in_place(a):
                self.copy(a, View.dense(self.var_buffer[var], var.shape))
        self.place_arena()
        plan = Plan(self.feeds, self.variables, self.outputs, self.consts, self.arena, self.steps, self.buffers)
        plan.check()
        return plan

    def place_arena(self) -> None:
        """Give arena buffers offsets by liveness: buffers never live at the same step may share bytes."""
        first: dict[Buffer, int] = {}
        last: dict[Buffer, int] = {}
        for i, step in enumerate(self.steps):
            touched = [step.a.buffer, step.b.buffer, step.out.buffer] if isinstance(step, Gemm) else step.buffers()
            for buf in touched:
                if buf.kind == "arena":
                    first.setdefault(buf, i)
                    last[buf] = i
        intervals = [Interval(buf, buf.size * buf.dtype.itemsize, first[buf], last[buf]) for buf in first]
        offsets, self.arena = place_intervals(intervals)
        for buf, offset in offsets.items():
            buf.slot = offset

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
        if any(m.opdef.kind not in ("elementwise", "state") for m in k.members):
            return False
        for node, view in k.reads.items():
            if view.buffer is var_buf and (node is not a.inputs[0] or node.shape != a.shape):
                return False
        for later in self.steps[found[0] + 1:]:
            touched = [later.a.buffer, later.b.buffer] if isinstance(later, Gemm) else \
                [v.buffer for v in later.reads.values()]
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
        """One kernel for a group: its roots are the members used outside it or fetched."""
        inside = set(members)
        roots = [m for m in members if m in self.outputs or any(u not in inside for u in self.users[m])
                 or m.op == "assign"] or [members[-1]]
        reduces = [r for r in roots if r.opdef.kind == "reduce"]
        root = reduces[0] if reduces else roots[-1]
        reads, imms = {}, {}
        for m in members:
            for pos, i in enumerate(m.inputs):
                if i in inside or pos in m.opdef.shape_only:
                    continue
                if i in self.imm:
                    imms[i] = self.imm[i]
                else:
                    reads[i] = self.view[i]
        mode, split = "map", 0
        if reduces:
            mode = reduce_mode(root)
            if mode == "reduce-inner" and splittable(root):
                split = SPLIT
        scratch = self.root_scratch(root, mode, split)
        more = tuple(Extra(r, self.out_buffer(r), self.root_scratch(r, mode, split)) for r in roots if r is not root)
        out = self.out_buffer(root)
        self.steps.append(Kernel(f"k{len(self.steps)}", root, tuple(members), out, reads, imms, mode, scratch,
                                 split, more))
        self.view[root] = out
        for extra in more:
            self.view[extra.node] = extra.out

    def root_scratch(self, root: Tensor, mode: str, split: int) -> Buffer | None:
        if root.opdef.kind != "reduce":
            return None
        if mode == "reduce-outer":
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


def blas_layout(view: View, shape: Sequence[int]) -> tuple[bool, int] | None:
    """(transposed, leading dim) when the last two dims of `view` suit BLAS, else None."""
    rows, cols = shape[-2], shape[-1]
    rs, cs = view.strides[-2], view.strides[-1]
    if (cs == 1 or cols == 1) and (rs >= max(1, cols) or rows == 1):
        return False, max(rs if rows > 1 else cols, 1)
    if (rs == 1 or rows == 1) and (cs >= max(1, rows) or cols == 1):
        return True, max(cs if cols > 1 else rows, 1)
    return None


def reduce_mode(node: Tensor) -> str:
    """reduce-inner when the innermost non-trivial input dim is reduced, else reduce-outer."""
    x = node.inputs[0]
    live = [k for k, d in enumerate(x.shape) if d != 1]
    if not live or live[-1] in node.attrs["axis"]:
        return "reduce-inner"
    return "reduce-outer"


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


def _computed(n: Tensor, probes: dict) -> bool:
    kind = n.opdef.kind
    if kind == "index":
        return probes[n] is None
    return kind in ("elementwise", "reduce", "state")


def _inlinable_into(n: Tensor, c: Tensor) -> bool:
    """An elementwise or (non-view) index node computed inside its only consumer, once per element.

    Consumers are elementwise ops of the same shape (no broadcast re-reads), reductions
    and assignments; never index ops, whose gathers may read an element many times.
    """
    kind = c.opdef.kind
    if kind == "reduce":
        return True
    if kind == "state":
        return c.inputs[1] is n
    return kind == "elementwise" and n.shape == c.shape


def plan_stats(module) -> dict[str, int]:
    """Kernel count and arena bytes of the plan for a module (outputs: fetches, then assignments)."""
    outputs = list(module.outputs)
    plan = make_plan([o for o in outputs if o.op != "assign"], [o for o in outputs if o.op == "assign"])
    kernels = sum(1 for s in plan.steps if isinstance(s, Gemm) or numel(s.shape) > 0)
    return {"kernels": kernels, "peak_bytes": plan.arena_bytes}


def make_plan(fetches: Sequence[Tensor], assigns: Sequence[Tensor] = ()) -> Plan:
    """Plan a program computing `fetches` (bound, static shapes) and applying `assigns`."""
    for n in list(fetches) + list(assigns):
        if n.dtype is not None and any(d is None for d in n.shape):
            raise GraphcError(f"{n.name} has unbound shape {shape_str(n.shape)}")
    return _Planner(fetches, assigns).plan()

