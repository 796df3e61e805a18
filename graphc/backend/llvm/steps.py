"""What a program's `Plan` is made of: buffers, views, kernels, GEMM and LAPACK calls (see `plan`). All immutable."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum

import numpy as np

from ...errors import GraphcError
from ...ir.graph import Tensor
from ...ir.printer import type_str, type_str_of
from ...ops.registry import OpKind
from ...passes.sizing import decide, empty, unit_dim
from .views import Immediate


def row_major_strides(shape: Sequence[int]) -> tuple[int, ...]:
    """Element strides of a dense row-major array of `shape`."""
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= max(d, 1)
    return tuple(reversed(strides))


def numel(shape: Sequence[int]) -> int:
    return int(math.prod(shape))  # not np.prod: the late passes call this thousands of times per compile


class KernelMode(str, Enum):
    """How a kernel's loop nest runs (a `str` enum: ``KernelMode.MAP == "map"``)."""

    MAP = "map"  # one output element per iteration
    REDUCE_INNER = "reduce-inner"  # the innermost live input dim is reduced: a row-wise accumulation
    REDUCE_OUTER = "reduce-outer"  # outer dims are reduced: accumulate whole rows into scratch

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, eq=False)
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

    def with_buffers(self, new: Mapping[Buffer, Buffer]) -> View:
        return replace(self, buffer=new.get(self.buffer, self.buffer))

    def is_dense(self, shape: Sequence[int]) -> bool:
        """Row-major from the buffer's start (size-1 dims may have any stride)."""
        live = [(s, d) for s, d in zip(self.strides, shape) if not unit_dim(d)]
        return self.offset == 0 and all(s == t for (s, d), t in zip(live, row_major_strides([d for _, d in live])))

    def __str__(self) -> str:
        extra = "" if self.offset == 0 else f"+{self.offset}"
        return f"{self.buffer.name}{extra}[strides {','.join(map(str, self.strides))}]"


@dataclass(frozen=True, eq=False)
class Extra:
    """A further result of a kernel: a map over the kernel's iteration space, or a reduction
    like the kernel's root (same input shape, axes and keepdims); `scratch` for split parts."""

    node: Tensor
    out: View
    scratch: Buffer | None = None


@dataclass(frozen=True, eq=False)
class Kernel:
    """A loop nest computing `root` and the `more` results (from `members`, in topological
    order) into `out` and the extras' buffers."""

    name: str
    root: Tensor
    members: tuple[Tensor, ...]
    out: View
    reads: dict[Tensor, View]
    immediates: dict[Tensor, Immediate]
    mode: KernelMode = KernelMode.MAP
    scratch: Buffer | None = None
    split: int = 0  # reduce-inner over one long dim: partial results per chunk, then combined
    more: tuple[Extra, ...] = ()

    @property
    def shape(self) -> tuple[int, ...]:
        return self.root.shape

    @property
    def reduction(self) -> Tensor | None:
        """The first reduction member: its input shape and axes are a reduce kernel's loop space."""
        return next((m for m in self.members if m.opdef.kind is OpKind.REDUCE), None)

    @property
    def empty(self) -> bool:
        """No result has an element (the kernel does nothing)."""
        return all(empty(n.shape) for n in (self.root, *(e.node for e in self.more)))

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

    def with_buffers(self, new: Mapping[Buffer, Buffer]) -> Kernel:
        """The kernel with its buffers replaced by `new` (the arena's placed buffers)."""
        swap = lambda b: None if b is None else new.get(b, b)  # noqa: E731
        return replace(self, out=self.out.with_buffers(new),
                       reads={n: v.with_buffers(new) for n, v in self.reads.items()}, scratch=swap(self.scratch),
                       more=tuple(replace(e, out=e.out.with_buffers(new), scratch=swap(e.scratch)) for e in self.more))


@dataclass(frozen=True, eq=False)
class Gemm:
    """out = a @ b (batched, batch dims broadcast) through BLAS or graphc's tiled kernel, then
    the `epilogue`, if any: a map kernel over the product's index space that reads the
    product from `out` and writes its result over it, element by element (a bias add, an
    activation, ...). With an `update` (`updates.fold_updates`), out += alpha * (a @ b)
    instead: `out` is a variable and `update` the parameter-update kernel this replaced
    (kept for reports; it is not run)."""

    name: str
    node: Tensor
    a: View
    b: View
    out: View
    epilogue: Kernel | None = None
    alpha: float = 1.0
    update: Kernel | None = None

    def buffers(self) -> list[Buffer]:
        """Every buffer the step touches (operands, output, the epilogue's), possibly repeated."""
        bufs = [self.a.buffer, self.b.buffer, self.out.buffer]
        return bufs + (self.epilogue.buffers() if self.epilogue is not None else [])

    def with_buffers(self, new: Mapping[Buffer, Buffer]) -> Gemm:
        """The call with its buffers replaced by `new` (the arena's placed buffers)."""
        epilogue = None if self.epilogue is None else self.epilogue.with_buffers(new)
        return replace(self, a=self.a.with_buffers(new), b=self.b.with_buffers(new), out=self.out.with_buffers(new),
                       epilogue=epilogue)


@dataclass(frozen=True, eq=False)
class Lapack:
    """A linear-algebra op through LAPACK (`lapack.py`): per matrix of the batch, the inputs
    are copied into `work` column-major, LAPACK runs there, the results go to `out`."""

    name: str
    node: Tensor
    inputs: tuple[View, ...]
    out: View
    work: Buffer

    def buffers(self) -> list[Buffer]:
        return [*(v.buffer for v in self.inputs), self.out.buffer, self.work]

    def with_buffers(self, new: Mapping[Buffer, Buffer]) -> Lapack:
        """The call with its buffers replaced by `new` (the arena's placed buffers)."""
        return replace(self, inputs=tuple(v.with_buffers(new) for v in self.inputs), out=self.out.with_buffers(new),
                       work=new.get(self.work, self.work))


@dataclass(eq=False)
class _Transfer:
    """What a collective's two steps share: node `node` moves the dense `src` into the dense `out`."""

    name: str
    node: Tensor
    src: View
    out: View

    def buffers(self) -> list[Buffer]:
        return [self.src.buffer, self.out.buffer]

    def with_buffers(self, new: Mapping[Buffer, Buffer]) -> _Transfer:
        """The step with its buffers replaced by `new` (the arena's placed buffers)."""
        return replace(self, src=self.src.with_buffers(new), out=self.out.with_buffers(new))


@dataclass(eq=False)
class Collective(_Transfer):
    """Starts an MPI collective (allreduce, allgather, broadcast) from `src` into `out`
    (`graphc.backend.llvm.collective`); the `CollectiveWait` naming it finishes it."""


@dataclass(eq=False)
class CollectiveWait(_Transfer):
    """Waits until the collective started by the step named `start` has finished (`plan.place_waits`
    puts it before the first step that touches `src` or `out`: until then both stay untouched)."""

    start: str




@dataclass(frozen=True, eq=False)
class Loop:
    """A region op (`graphc.backend.llvm.control`): the plans of its regions, each emitted
    once as a function over a pointer table, run by one native loop (scan, while_loop) or
    branch (cond). `args` are the op's operands (dense), `outs` one dense view per result;
    `carry` holds two buffers per loop carry (the iterations alternate between them);
    `consts[i]` are the buffers of `bodies[i]`'s constants among the program's, `arenas[i]`
    its arena inside the program's; `flag` receives a while_loop's condition."""

    name: str
    node: Tensor
    bodies: tuple[Plan, ...]  # one per node.opdef.regions
    args: tuple[View, ...]
    outs: tuple[View, ...]
    carry: tuple[tuple[Buffer, Buffer], ...]
    consts: tuple[tuple[Buffer, ...], ...]
    arenas: tuple[Buffer, ...]
    flag: Buffer | None = None

    def buffers(self) -> list[Buffer]:
        bufs = [*(v.buffer for v in self.args), *(v.buffer for v in self.outs), *self.arenas]
        bufs += [b for pair in self.carry for b in pair] + [b for cs in self.consts for b in cs]
        return bufs + ([self.flag] if self.flag is not None else [])

    def with_buffers(self, new: Mapping[Buffer, Buffer]) -> Loop:
        """The step with its buffers replaced by `new` (the arena's placed buffers)."""
        swap = lambda b: new.get(b, b)  # noqa: E731
        return replace(self, args=tuple(v.with_buffers(new) for v in self.args),
                       outs=tuple(v.with_buffers(new) for v in self.outs),
                       carry=tuple((swap(a), swap(b)) for a, b in self.carry),
                       consts=tuple(tuple(map(swap, cs)) for cs in self.consts),
                       arenas=tuple(map(swap, self.arenas)), flag=None if self.flag is None else swap(self.flag))




@dataclass(eq=False)
class HostCall:
    """A host op (kind HOST: print, check_numerics): the program hands the dense `src` to the
    host callback (`graphc.backend.llvm.host`) and returns at once if it refuses; the node's
    value is `src` itself."""

    name: str
    node: Tensor
    src: View

    def buffers(self) -> list[Buffer]:
        return [self.src.buffer]

    def with_buffers(self, new: Mapping[Buffer, Buffer]) -> HostCall:
        """The call with its buffer replaced by `new` (the arena's placed buffers)."""
        return replace(self, src=self.src.with_buffers(new))


Step = Kernel | Gemm | Lapack | Collective | CollectiveWait | HostCall | Loop


def host_nodes(plan: Plan) -> list[Tensor]:
    """The host ops of a plan, in step order: a host call passes its index in this list."""
    return [s.node for s in plan.steps if isinstance(s, HostCall)]


@dataclass(frozen=True, eq=False)
class Plan:
    """Everything the LLVM backend needs to emit one program: the last late stage."""

    feeds: tuple[Tensor, ...]
    variables: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    consts: tuple[np.ndarray, ...]
    arena_bytes: int
    steps: tuple[Step, ...]
    buffers: tuple[Buffer, ...] = ()
    nodes: int = 0  # how many nodes the program was lowered from (the late stages' node count)
    records: tuple = ()  # the late passes that built it (PassRecord)
    pairs: tuple[int, ...] = ()  # steps i that run at the same time as step i + 1 (`pairs.py`)
    deferred: tuple[int, ...] = ()  # pairs i that run the epilogue of step i - 1 (`pairs.deferred_epilogues`)

    def times(self) -> list[int]:
        """The liveness time of each step: its index, but the second step of a pair has the
        first's, and a pair that runs the epilogue of the step before it has that step's, so
        that no buffer of one shares arena bytes with a buffer of another that runs with it."""
        joined = {i + 1 for i in self.pairs} | set(self.deferred)
        out: list[int] = []
        for i in range(len(self.steps)):
            out.append(out[-1] if i in joined else i)
        return out

    def node_count(self) -> int:
        return self.nodes

    def all_steps(self) -> list[Step]:
        """The steps, with those of the region plans inside loops (nested)."""
        out: list[Step] = []
        for step in self.steps:
            out.append(step)
            if isinstance(step, Loop):
                out += [s for body in step.bodies for s in body.all_steps()]
        return out

    def stats(self) -> dict[str, int]:
        return {"kernels": len(self.steps), "peak_bytes": self.arena_bytes}

    def verify(self, after: str) -> None:
        """Checked as it is built (`check`, by `plan.place_arena`)."""

    def step_kinds(self) -> dict[str, int]:
        """How many steps of each kind: kernel modes (map, reduce-inner, ...), gemm, lapack, collective ops."""
        counts: dict[str, int] = {}
        for step in self.steps:
            kind = (str(step.mode) if isinstance(step, Kernel) else "gemm" if isinstance(step, Gemm)
                    else "lapack" if isinstance(step, Lapack) else "wait" if isinstance(step, CollectiveWait)
                    else step.node.op)
            counts[kind] = counts.get(kind, 0) + 1
        return counts

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


def describe_step(step: Step) -> list[str]:
    if isinstance(step, Loop):
        args = ", ".join(map(str, step.args))
        lines = [f"{step.name} = {step.node.op} <- {args} -> " + ", ".join(map(str, step.outs))]
        for body, plan in zip(step.node.opdef.regions, step.bodies):
            lines.append(f"    {body}: {len(plan.steps)} steps, arena {plan.arena_bytes} bytes")
            lines += ["      " + line for s in plan.steps for line in describe_step(s)]
        return lines
    if isinstance(step, Lapack):
        reads = ", ".join(map(str, step.inputs))
        return [f"{step.name} = lapack {step.node.op} {type_str(step.node)} <- {reads} -> {step.out} "
                f"(work {step.work.name})"]
    if isinstance(step, Collective):
        return [f"{step.name} = start {step.node.op} {type_str(step.node)} <- {step.src} -> {step.out}"]
    if isinstance(step, CollectiveWait):
        return [f"{step.name} = wait {step.start} ({step.node.op} -> {step.out})"]
    if isinstance(step, HostCall):
        return [f"{step.name} = host {step.node.op} {type_str(step.node)} <- {step.src}"]
    if isinstance(step, Gemm):
        n = step.node
        lines = [f"{step.name} = gemm {type_str(n)} <- {step.a}, {step.b} -> {step.out}"]
        if step.update is not None:
            lines[0] += f" (accumulated, alpha {step.alpha!r})"
            lines += [f"    update {m.name} = {m.op}({', '.join(i.name for i in m.inputs)}) : {type_str(m)}"
                      for m in step.update.members]
        if step.epilogue is not None:
            lines += ["    epilogue " + line.strip() for line in describe_step(step.epilogue)[:1]]
            lines += ["    " + line for line in describe_step(step.epilogue)[1:]]
        return lines
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


def blas_layout(view: View, shape: Sequence[int]) -> tuple[bool, int] | None:
    """(transposed, leading dim) when the last two dims of `view` suit BLAS, else None."""
    rows, cols = shape[-2], shape[-1]
    rs, cs = view.strides[-2], view.strides[-1]
    if decide("blas layout", (cs == 1 or cols == 1) and (rs >= max(1, cols) or rows == 1)):
        return False, max(cols if unit_dim(rows) else rs, 1)
    if decide("blas layout", (rs == 1 or rows == 1) and (cs >= max(1, rows) or cols == 1)):
        return True, max(rows if unit_dim(cols) else cs, 1)
    return None
