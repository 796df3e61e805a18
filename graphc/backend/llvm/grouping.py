"""The first late stages: which nodes the program computes, in which kernels, in which order.

    Nodes --fusion--> Groups --schedule--> Units      (then plan.py: --steps--> Steps --memory--> Plan)

Each stage is an immutable value made by a pure function of the previous one, with
`as_text()` for `graphc passes --print-after`.

* `Nodes`: the nodes whose data the outputs read, in the memory-aware order of
  `graphc.passes.schedule`, with their readers.
* `Groups` (`group_kernels`): the set of nodes each kernel evaluates. First, an
  elementwise or (non-view) index node joins its only consumer when that consumer reads
  it once per element. Then kernels that share an elementwise producer merge when one
  loop nest can compute the union and the graph of kernels stays acyclic, and GEMMs take
  their elementwise consumers as epilogues.
* `Units` (`order_units`): kernels, GEMMs, views and sources in an order where inputs
  come first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ...dtypes import shape_str
from ...errors import GraphcError
from ...ir.graph import Tensor
from ...ops.registry import OpKind
from ...passes.schedule import schedule
from .steps import KernelMode, numel
from .views import FLAT, Flat, Immediate, Loaded, probe_gather

MERGE_SEARCH = 64  # units a fusion's cycle check may visit before it gives up (and does not fuse)


class _Stage:
    """What every late stage offers the pipeline driver besides `as_text` and `stats`."""

    nodes: Nodes

    def node_count(self) -> int:
        return len(self.nodes.order)

    def verify(self, after: str) -> None:
        """Stages are checked as they are built (`Plan.check`); nothing to do here."""


@dataclass(frozen=True, eq=False)
class Nodes(_Stage):
    """The nodes whose data the outputs read, in memory-aware order, and who reads each."""

    fetches: tuple[Tensor, ...]
    assigns: tuple[Tensor, ...]
    order: tuple[Tensor, ...]
    users: Mapping[Tensor, tuple[Tensor, ...]]  # data readers (not shape-only readers, not groups)
    outputs: tuple[Tensor, ...]  # the distinct valued fetches
    position: Mapping[Tensor, int]  # index in `order`

    @property
    def nodes(self) -> Nodes:
        return self

    def as_text(self) -> str:
        return "nodes:\n" + "".join(f"  {n.name}={n.op}\n" for n in self.order)

    def stats(self) -> dict[str, int]:
        return {}


def program_nodes(fetches: Sequence[Tensor], assigns: Sequence[Tensor] = ()) -> Nodes:
    """The `Nodes` of a program computing `fetches` (bound, static shapes) and applying `assigns`."""
    for n in list(fetches) + list(assigns):
        if n.dtype is not None and any(d is None for d in n.shape):
            raise GraphcError(f"{n.name} has unbound shape {shape_str(n.shape)}")
    roots = list(fetches) + list(assigns)
    needed = _needed(roots)
    order = tuple(n for n in schedule(roots, *_memory_model(roots)) if n in needed)
    users: dict[Tensor, list[Tensor]] = {n: [] for n in order}
    for n in order:
        for pos, i in enumerate(n.inputs):
            if pos not in n.opdef.shape_only and n.op != "group":
                users[i].append(n)
    outputs = tuple(dict.fromkeys(f for f in fetches if f.dtype is not None))
    return Nodes(tuple(fetches), tuple(assigns), order, {n: tuple(u) for n, u in users.items()}, outputs,
                 {n: i for i, n in enumerate(order)})


def _memory_model(roots: Sequence[Tensor]) -> tuple[Callable[[Tensor], int], Callable[[Tensor], Tensor | None]]:
    """(bytes of a node's own buffer, the node a view reads) for `schedule`: sources, outputs,
    views and immediates own no arena bytes, and a view keeps its base alive."""
    outputs = {r for r in roots if r.op != "assign"}  # (an assignment's value needs a buffer unless in place)
    probes: dict[Tensor, Loaded | Immediate | None] = {}

    def probe(n: Tensor) -> Loaded | Immediate | None:
        if n not in probes:
            probes[n] = probe_gather(n) if n.opdef.kind is OpKind.INDEX else None
        return probes[n]

    def size(n: Tensor) -> int:
        if n.dtype is None or n in outputs or n.opdef.kind is OpKind.SOURCE or probe(n) is not None:
            return 0
        return numel(n.shape) * n.dtype.itemsize

    def view_of(n: Tensor) -> Tensor | None:
        p = probe(n)
        return n.inputs[p.i] if isinstance(p, Loaded) else None
    return size, view_of


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


@dataclass(frozen=True, eq=False)
class Groups(_Stage):
    """Which kernel computes each computed node: `group` maps a node to its kernel's key node."""

    nodes: Nodes
    probes: Mapping[Tensor, Loaded | Flat | Immediate | None]  # index nodes: a view, an immediate, or computed (None)
    group: Mapping[Tensor, Tensor]
    members: Mapping[Tensor, tuple[Tensor, ...]]  # kernel key -> its nodes in order

    def as_text(self) -> str:
        lines = ["kernels:"]
        for root, members in self.members.items():
            lines.append(f"  {root.name}: " + ", ".join(f"{n.name}={n.op}" for n in members))
        return "\n".join(lines) + "\n"

    def stats(self) -> dict[str, int]:
        """Kernels: the groups that compute something, plus GEMMs outside any group."""
        computing = [n for n in self.members if any(m.opdef.kind is OpKind.MATMUL for m in self.members[n])
                     or numel(n.shape) > 0]
        gemms = [n for n in self.nodes.order if n.opdef.kind is OpKind.MATMUL and n not in self.group]
        return {"kernels": len(computing) + len(gemms)}

    @property
    def fused(self) -> int:
        """Nodes that joined another node's kernel."""
        return len(self.group) - len(self.members)


def group_kernels(nodes: Nodes) -> Groups:
    """The `Groups` of `nodes`: single-use inlining, sibling fusion, GEMM epilogues."""
    probes = _probes(nodes)
    group: dict[Tensor, Tensor] = {}
    members: dict[Tensor, int] = {}
    keeps_alive = _keeps_alive(nodes, probes, members)
    for n in reversed(nodes.order):
        if not _computed(n, probes):
            continue
        group[n] = n
        users = set(nodes.users[n])
        if n.opdef.kind in (OpKind.ELEMENTWISE, OpKind.INDEX) and n not in nodes.outputs and len(users) == 1:
            (c,) = users
            if c in group and _inlinable_into(n, c) and not keeps_alive(n, group[c]):
                group[n] = group[c]
        members[group[n]] = members.get(group[n], 0) + 1
    _merge_siblings(nodes, group)
    _attach_epilogues(nodes, group)
    members: dict[Tensor, list[Tensor]] = {}
    for n in nodes.order:
        if n in group:
            members.setdefault(group[n], []).append(n)
    return Groups(nodes, probes, group, {k: tuple(v) for k, v in members.items()})


def _keeps_alive(nodes: Nodes, probes: Mapping[Tensor, Loaded | Immediate | None],
                 members: Mapping[Tensor, int]) -> Callable[[Tensor, Tensor], bool]:
    """`keeps_alive(n, root)`: would computing `n` inside the kernel of `root` (which has
    `members[root]` nodes so far, all after n) keep more bytes alive across other steps
    that allocate than n's own buffer? Such a join saves n's buffer but holds the inputs
    that would otherwise die at n (through the producers that would join too): an
    accumulation chain ``((g20 + g19) + g18) + ...`` fused into one kernel kept all twenty
    terms alive until the last one."""
    position = nodes.position
    if any(m.opdef.kind is OpKind.COLLECTIVE for m in nodes.order):
        return lambda n, root: False  # (as the schedule: ranks with other shard shapes fuse alike)
    allocating = [0]  # allocating[k]: nodes with a buffer of their own before position k
    for m in nodes.order:
        allocating.append(allocating[-1] + (m.dtype is not None and _has_buffer(m, probes)))
    read_at: dict[Tensor, int] = {}  # when a reader reads: a view, when its last reader does
    for m in reversed(nodes.order):
        view = m.opdef.kind is OpKind.INDEX and isinstance(probes.get(m), Loaded)
        read_at[m] = max((read_at[u] for u in nodes.users[m]), default=position[m]) if view else position[m]

    def keeps_alive(n: Tensor, root: Tensor) -> bool:
        between = allocating[position[root]] - allocating[position[n] + 1] - (members[root] - 1)
        if between <= 0:
            return False
        stack, seen, held = [n], {n}, 0
        while stack and len(seen) <= MERGE_SEARCH:  # through inputs that will join n's kernel too
            m = stack.pop()
            for x in set(m.inputs):
                if x in seen or x not in position or not _has_buffer(x, probes):
                    continue
                seen.add(x)
                if nodes.users[x] == (m,) and x.opdef.kind is OpKind.ELEMENTWISE and x.shape == m.shape:
                    stack.append(x)
                elif max((read_at[u] for u in nodes.users[x] if u is not m), default=-1) < position[root]:
                    held += numel(x.shape) * x.dtype.itemsize
        return held > numel(n.shape) * n.dtype.itemsize  # what stays alive instead of n's own buffer
    return keeps_alive


def _has_buffer(n: Tensor, probes: Mapping[Tensor, Loaded | Immediate | None]) -> bool:
    """A node whose value occupies a buffer of the program's own (not a source, view or immediate)."""
    if n.opdef.kind is OpKind.SOURCE:
        return False
    return n.opdef.kind is not OpKind.INDEX or probes.get(n) is None


def _sets(nodes: Nodes, group: dict[Tensor, Tensor]) -> dict[Tensor, list[Tensor]]:
    sets: dict[Tensor, list[Tensor]] = {}
    for n in nodes.order:
        if n in group:
            sets.setdefault(group[n], []).append(n)
    return sets


def _attach_epilogues(nodes: Nodes, group: dict[Tensor, Tensor]) -> None:
    """Make each GEMM whose only readers (directly, or through one `row_major` reshape)
    form one elementwise kernel over exactly the product's index space (every member of
    the product's, or the reshape's, shape; a result of its dtype) a member of that
    kernel's group: the kernel is then emitted as the GEMM's epilogue,
    in place over the product, so the product needs no buffer of its own. Other inputs
    of the kernel (a bias) are read through their views as before. At most one GEMM per
    kernel.
    """
    sets = _sets(nodes, group)
    taken: set[Tensor] = set()  # groups that already have a GEMM
    for n in nodes.order:
        if n.opdef.kind is not OpKind.MATMUL or n in nodes.outputs or not nodes.users[n]:
            continue
        via = _reshaped(nodes, group, n)
        target = n if via is None else via
        owners = {group.get(u) for u in nodes.users[target]}
        if len(owners) != 1 or None in owners or owners <= taken:
            continue
        (root,) = owners
        members = sets[root]
        inside = set(members)
        results = [m for m in members if m in nodes.outputs or m.op == "assign"
                   or any(u not in inside for u in nodes.users[m])]
        if (any(r.dtype == n.dtype for r in results)
                and all(m.opdef.kind is OpKind.ELEMENTWISE and m.shape == target.shape for m in members)):
            group[n] = root
            if via is not None:
                group[via] = root
            taken.add(root)


def _reshaped(nodes: Nodes, group: Mapping[Tensor, Tensor], n: Tensor) -> Tensor | None:
    """The product's only reader when that is a `row_major` reshape of it (a convolution's
    (N*OH*OW, O) product seen as (N, OH, OW, O)) that nothing fetches: its readers can then be
    the epilogue, reading the product through the reshape's gather at their own index."""
    (r, *more) = nodes.users[n]
    if more or not r.opdef.row_major or r in group or r in nodes.outputs or not nodes.users[r]:
        return None
    return r


def _merge_siblings(nodes: Nodes, group: dict[Tensor, Tensor]) -> None:
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

    sets = _sets(nodes, group)
    for n in nodes.order:
        users = set(nodes.users[n])
        if n not in group or n.opdef.kind is not OpKind.ELEMENTWISE or len(users) < 2:
            continue
        users = {u for u in users if u in group}
        for u in sorted(users, key=nodes.position.get):  # each consumer's kernel that can join, joins
            reps = list(dict.fromkeys([find(group[n]), find(group[u])]))
            if len(reps) < 2:
                continue
            unit_of = lambda m: find(group[m]) if m in group else m  # noqa: E731
            if _fusable(nodes, sets[reps[0]] + sets[reps[1]]) and not _joins_a_cycle(nodes, reps, sets, unit_of):
                parent[reps[1]] = reps[0]
                sets[reps[0]] = sets[reps[0]] + sets.pop(reps[1])
    for n in group:
        group[n] = find(group[n])


def _joins_a_cycle(nodes: Nodes, reps: list[Tensor], sets: dict[Tensor, list[Tensor]],
                   unit_of: Callable[[Tensor], Tensor]) -> bool:
    """Would merging the kernels `reps` make the kernel graph cyclic (a path from one of
    them through other kernels or nodes back into another)? Other kernels count as
    whole units: reaching any member makes every member's consumers reachable. A search
    that grows past `MERGE_SEARCH` units answers yes (no merge), bounding compile time."""
    targets = set(reps)
    frontier = [unit_of(u) for r in reps for m in sets[r] for u in nodes.users[m]]
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
            for u in nodes.users[m]:
                owner = unit_of(u)
                if owner in targets:
                    return True
                frontier.append(owner)
    return False


def _fusable(nodes: Nodes, union: list[Tensor]) -> bool:
    """Can one loop nest compute these nodes (see `_merge_siblings`)?"""
    inside = set(union)
    reduces = [m for m in union if m.opdef.kind is OpKind.REDUCE]
    if any(m.opdef.kind not in (OpKind.ELEMENTWISE, OpKind.REDUCE) for m in union):
        return False
    space = reduces[0].inputs[0].shape if reduces else union[0].shape
    if any(m.shape != space for m in union if m.opdef.kind is OpKind.ELEMENTWISE):
        return False
    for r in reduces:
        if (r.inputs[0].shape != space or r.attrs["axis"] != reduces[0].attrs["axis"]
                or r.attrs.get("keepdims") != reduces[0].attrs.get("keepdims")
                or reduce_mode(r) is not KernelMode.REDUCE_INNER
                or any(u in inside for u in nodes.users[r])):
            return False
    return True


@dataclass(frozen=True, eq=False)
class Units(_Stage):
    """The groups' units (a kernel's members, or one other node) in dependency order."""

    groups: Groups
    units: tuple[tuple[Tensor, ...], ...]

    @property
    def nodes(self) -> Nodes:
        return self.groups.nodes

    def as_text(self) -> str:
        return "units:\n" + "".join("  " + ", ".join(f"{n.name}={n.op}" for n in unit) + "\n" for unit in self.units)

    def stats(self) -> dict[str, int]:
        return self.groups.stats()


def order_units(groups: Groups) -> Units:
    """Units in an order where inputs come first: taken in order of their last node in the
    topological order, each after the units it reads (merges never join kernels into a
    cycle, see `_joins_a_cycle`)."""
    group, position = groups.group, groups.nodes.position
    units: dict[Tensor, list[Tensor]] = {}
    for n in groups.nodes.order:
        units.setdefault(group.get(n, n), []).append(n)

    def deps(key: Tensor) -> list[Tensor]:
        found = (group.get(i, i) for m in units[key] for pos, i in enumerate(m.inputs)
                 if pos not in m.opdef.shape_only and i in position)
        return [d for d in dict.fromkeys(found) if d is not key]

    state: dict[Tensor, int] = {}  # 1: on the current path, 2: scheduled
    out: list[tuple[Tensor, ...]] = []
    for key in sorted(units, key=lambda k: position[units[k][-1]]):
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
                out.append(tuple(units[k]))
    return Units(groups, tuple(out))


def reduce_mode(node: Tensor) -> KernelMode:
    """reduce-inner when the innermost non-trivial input dim is reduced, else reduce-outer."""
    x = node.inputs[0]
    live = [k for k, d in enumerate(x.shape) if d != 1]
    if not live or live[-1] in node.attrs["axis"]:
        return KernelMode.REDUCE_INNER
    return KernelMode.REDUCE_OUTER


def _probes(nodes: Nodes) -> dict[Tensor, Loaded | Flat | Immediate | None]:
    """Each index node's view (`probe_gather`), or `FLAT` for a `row_major` op whose gather is not
    affine (a reshape merging dims) but whose input is dense: a source, a computed node (kernels,
    GEMMs, LAPACK and collectives write dense buffers), an immediate or itself such a flat view.
    """
    probes: dict[Tensor, Loaded | Flat | Immediate | None] = {}
    for n in nodes.order:
        if n.opdef.kind is not OpKind.INDEX:
            continue
        probes[n] = probe_gather(n)
        if probes[n] is None and n.opdef.row_major:
            src = n.inputs[0]
            if not isinstance(probes.get(src), Loaded):
                probes[n] = FLAT
    return probes


def _computed(n: Tensor, probes: Mapping[Tensor, Loaded | Flat | Immediate | None]) -> bool:
    kind = n.opdef.kind
    if kind is OpKind.INDEX:
        return probes[n] is None
    return kind in (OpKind.ELEMENTWISE, OpKind.REDUCE, OpKind.STATE)


def _inlinable_into(n: Tensor, c: Tensor) -> bool:
    """An elementwise or (non-view) index node computed inside its only consumer, once per element.

    Consumers are elementwise ops of the same shape (no broadcast re-reads), reductions
    and assignments; never index ops, whose gathers may read an element many times.
    """
    kind = c.opdef.kind
    if kind is OpKind.REDUCE:
        return True
    if kind is OpKind.STATE:
        return c.inputs[1] is n
    return kind is OpKind.ELEMENTWISE and n.shape == c.shape
