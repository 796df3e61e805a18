"""The first late stages: which nodes the program computes, in which kernels, in which order.

    Nodes --fusion--> Groups --schedule--> Units      (then plan.py: --steps--> Steps --memory--> Plan)

Each stage is an immutable value made by a pure function of the previous one, with
`as_text()` for `graphc passes --print-after`.

* `Nodes`: the nodes whose data the outputs read, in the memory-aware order of
  `graphc.passes.schedule`, with their readers.
* `Groups` (`group_kernels`): the set of nodes each kernel evaluates. First, an
  elementwise or (non-view) index node joins its only consumer when that consumer reads
  it once per element. Then kernels that share an elementwise producer merge, and a
  kernel merges with the kernels reading its results (row kernels, `rows.py`), when one
  loop nest can compute the union and the graph of kernels stays acyclic; GEMMs take
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
from ...ir.traverse import toposort
from ...ops.registry import OpKind
from ...passes.schedule import schedule
from ...passes.sizing import same, size_free
from .rows import after_reduction, outer_fusable, reduce_mode, row_fusable
from .steps import KernelMode, numel
from .views import FLAT, Flat, Immediate, Loaded, probe_gather

Probes = Mapping[Tensor, Loaded | Flat | Immediate | None]  # index node -> view, flat view, immediate, or computed
MERGE_SEARCH = 64  # units a fusion's cycle check may visit before it gives up (and does not fuse)
# Ops one kernel may hold (inlined or merged): LLVM's optimizer and instruction selection grow faster than
# linearly in a function's size, so an unbounded chain (10,000 single-use maps) never finished.
MAX_INLINED = 128


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
    updates = _update_chains(roots)
    probes: dict[Tensor, Loaded | Immediate | None] = {}

    def probe(n: Tensor) -> Loaded | Immediate | None:
        if n not in probes:
            probes[n] = probe_gather(n) if n.opdef.kind is OpKind.INDEX else None
        return probes[n]

    def size(n: Tensor) -> int:
        if n.dtype is None or n in outputs or n in updates or n.opdef.kind is OpKind.SOURCE or probe(n) is not None:
            return 0
        return numel(n.shape) * n.dtype.itemsize

    def view_of(n: Tensor) -> Tensor | None:
        p = probe(n)
        return n.inputs[p.i] if isinstance(p, Loaded) else None
    return size, view_of


def _update_chains(roots: Sequence[Tensor]) -> set[Tensor]:
    """The assignments and, back from each, the maps read by nothing else, down to one product:
    `W - lr * (a @ b)` becomes one kernel writing the variable in place (`assign_in_place`),
    or a product that updates it (`updates.fold_updates`), so the chain needs no arena bytes.
    Counted at full size, an SGD step's weight-gradient products looked dearer than the
    input gradients they free, and the schedule put them all last, every layer's output
    gradient alive until then (a 64-layer chain's arena doubled, and checkpointing could
    not lower it)."""
    readers: dict[Tensor, int] = {}
    for n in toposort(roots):
        for i in set(n.inputs):
            readers[i] = readers.get(i, 0) + 1
    chains: set[Tensor] = set()
    stack = [r.inputs[1] for r in roots if r.op == "assign" and len(r.inputs) > 1]
    chains.update(r for r in roots if r.op == "assign")
    while stack:
        n = stack.pop()
        if n in chains or readers.get(n, 0) != 1 or n.opdef.kind not in (OpKind.ELEMENTWISE, OpKind.MATMUL):
            continue
        chains.add(n)
        if n.opdef.kind is OpKind.ELEMENTWISE:
            stack.extend(n.inputs)
    return chains


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
    probes: Probes  # index nodes: a view, an immediate, or computed (None)
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
    """The `Groups` of `nodes`: single-use inlining, sibling and row fusion, GEMM epilogues."""
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
            if (c in group and _inlinable_into(n, c) and members[group[c]] < MAX_INLINED
                    and not keeps_alive(n, group[c])):
                group[n] = group[c]
        members[group[n]] = members.get(group[n], 0) + 1
    merger = _Merger(nodes, group, probes, keeps_alive, members)
    _merge_siblings(merger)
    _merge_rows(merger)
    merger.outer = True  # a second round, so that row kernels claim their maps first
    _merge_rows(merger)
    merger.finish()
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
    if size_free(nodes.order):
        return lambda n, root: False  # (as the schedule: collectives, symbolic-dim templates; `sizing`)
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
                if nodes.users[x] == (m,) and x.opdef.kind is OpKind.ELEMENTWISE and same(x.shape, m.shape):
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
    of the kernel (a bias) are read through their views as before. The kernel may also
    hold a column reduction over the product and the maps after it (`rows.outer_fusable`:
    the ReLU gradient, the bias gradient and the bias update in one pass). At most one
    GEMM per kernel.
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
        reduces = [m for m in members if m.opdef.kind is OpKind.REDUCE]
        after: set[Tensor] = set()
        if reduces:  # a column reduction over the product (a bias gradient) and what follows it
            if via is not None or len(reduces) > 1 or reduce_mode(reduces[0]) is not KernelMode.REDUCE_OUTER \
                    or not same(reduces[0].inputs[0].shape, n.shape):
                continue
            after = after_reduction(members, reduces[0])
        if (any(r.dtype == n.dtype and same(r.shape, target.shape) and r not in after for r in results)
                and all(m.opdef.kind is OpKind.ELEMENTWISE and same(m.shape, target.shape)
                        for m in members if m not in after)):
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


class _Merger:
    """Kernels being merged: each member's kernel key (`unit`), and each kernel's nodes (`sets`)."""

    def __init__(self, nodes: Nodes, group: dict[Tensor, Tensor], probes: Probes,
                 keeps_alive: Callable[[Tensor, Tensor], bool], members: dict[Tensor, int]):
        self.nodes, self.group, self.probes, self.outer = nodes, group, probes, False
        self.keeps_alive, self.members = keeps_alive, members
        self.unit: dict[Tensor, Tensor] = dict(group)  # member -> the key of the kernel it is in now
        self.sets = _sets(nodes, group)

    def unit_of(self, m: Tensor) -> Tensor:
        return self.unit.get(m, m)

    def try_merge(self, a: Tensor, b: Tensor) -> bool:
        """Merge the kernels of members `a` and `b` (and the views linking them) when one
        loop nest can compute the union and the kernel graph stays acyclic."""
        reps = list(dict.fromkeys([self.unit_of(a), self.unit_of(b)]))
        if len(reps) < 2:
            return False
        union = self.sets[reps[0]] + self.sets[reps[1]]
        if len(union) > MAX_INLINED:
            return False
        views = self._linking_views(union)
        if views is None:
            return False
        union = sorted(union + views, key=self.nodes.position.get)
        if not _fusable(union, self.probes, self.outer) or self._holds_inputs(reps):
            return False
        for v in views:  # the views belong to the merged kernel for the cycle check
            self.group[v] = self.unit[v] = reps[0]
        self.sets[reps[0]], kept = union, self.sets[reps[0]]
        if _joins_a_cycle(self.nodes, reps, self.sets, self.unit):
            for v in views:
                del self.group[v], self.unit[v]
            self.sets[reps[0]] = kept
            return False
        for m in self.sets.pop(reps[1]):
            self.unit[m] = reps[0]
        return True

    def _holds_inputs(self, reps: list[Tensor]) -> bool:
        """Would running the earlier kernel where the later one runs keep more bytes alive
        across the allocating steps in between than it saves (`_keeps_alive`)? Only when
        the later kernel is its only reader: a kernel whose results other units read runs
        when they need it (the units are scheduled by their dependencies), not later."""
        position = self.nodes.position
        earlier, later = sorted(reps, key=lambda r: position[max(self.sets[r], key=position.get)])
        inside = set(self.sets[earlier]) | set(self.sets[later])
        if any(u not in inside for m in self.sets[earlier] for u in self.nodes.users[m]):
            return False
        first, second = (max(self.sets[r], key=position.get) for r in (earlier, later))
        self.members[second] = len(self.sets[later])
        return self.keeps_alive(first, second)

    def _linking_views(self, union: list[Tensor]) -> list[Tensor] | None:
        """The views (not computed by any kernel) through which a member reads another
        member; None when one of them is also read outside the union (it would have to
        be stored)."""
        inside, views = set(union), []
        stack = list(union)
        while stack:
            m = stack.pop()
            for pos, i in enumerate(m.inputs):
                if i in inside or pos in m.opdef.shape_only or not self._is_view(i):
                    continue
                chain = [i]
                while self._is_view(chain[-1].inputs[self.probes[chain[-1]].i]):
                    chain.append(chain[-1].inputs[self.probes[chain[-1]].i])
                if chain[-1].inputs[self.probes[chain[-1]].i] in inside:
                    views += chain
                    inside.update(chain)
                    stack += chain
        if any(u not in inside for v in views for u in self.nodes.users[v]):
            return None
        return views

    def _is_view(self, n: Tensor) -> bool:
        return n not in self.group and isinstance(self.probes.get(n), Loaded)

    def finish(self) -> None:
        for n in self.group:
            self.group[n] = self.unit[n]


def _merge_siblings(merger: _Merger) -> None:
    """Fuse the kernels that share an elementwise producer over one iteration space.

    An elementwise node read by several kernels (``tanh(x)`` in a loss and in its
    gradient) joins each of them into its own kernel when the union is computable in one
    loop nest (`_fusable`) and the kernel graph stays acyclic. Each node is still
    computed in one kernel; a member read by a kernel that could not join is stored too.
    """
    nodes, group = merger.nodes, merger.group
    for n in nodes.order:
        users = set(nodes.users[n])
        if n not in group or n.opdef.kind is not OpKind.ELEMENTWISE or len(users) < 2:
            continue
        for u in sorted((u for u in users if u in group), key=nodes.position.get):
            merger.try_merge(n, u)


def _merge_rows(merger: _Merger) -> None:
    """Fuse each kernel with the kernels that read its results, directly or through views,
    when one loop nest computes the union (`_fusable`: a map over one space, or a row
    kernel, `rows.py`) and the kernel graph stays acyclic: softmax's max, exp-sum and
    division become one kernel, a cross-entropy's forward and backward over the logits another.
    With `merger.outer` (a second round, so that row kernels claim their maps first),
    column reductions also merge with the maps before and after them."""
    nodes, group = merger.nodes, merger.group
    for n in nodes.order:
        if n not in group:
            continue
        stack = list(nodes.users[n])
        while stack:
            u = stack.pop()
            if u in group:
                merger.try_merge(n, u)
            elif merger._is_view(u):
                stack.extend(nodes.users[u])


def _joins_a_cycle(nodes: Nodes, reps: list[Tensor], sets: dict[Tensor, list[Tensor]],
                   unit: Mapping[Tensor, Tensor]) -> bool:
    """Would merging the kernels `reps` make the kernel graph cyclic (a path from one of
    them through other kernels or nodes back into another)? Other kernels count as
    whole units (`unit`: a member's kernel key; a node in none is its own unit): reaching
    any member makes every member's consumers reachable. A search that grows past
    `MERGE_SEARCH` units, or `8 * MERGE_SEARCH` of their nodes, answers yes (no merge),
    bounding compile time. (The answer does not depend on the order of the search: no, exactly
    when the units reachable from the kernels' readers are at most that many, and none reads
    a member of theirs.)"""
    targets, users, owner = set(reps), nodes.users, unit.get
    frontier = list({owner(u, u) for r in reps for m in sets[r] for u in users[m]} - targets)
    seen: set[Tensor] = set()
    visited = 0
    while frontier:
        current = frontier.pop()
        if current in seen:
            continue
        members = sets.get(current, (current,))
        visited += len(members)
        if len(seen) >= MERGE_SEARCH or visited > MERGE_SEARCH * 8:
            return True
        seen.add(current)
        for m in members:
            for u in users[m]:
                o = owner(u, u)
                if o in targets:
                    return True
                if o not in seen:  # (a seen unit would be skipped when popped)
                    frontier.append(o)
    return False


def _fusable(union: list[Tensor], probes: Probes, outer: bool) -> bool:
    """Can one loop nest compute these nodes: maps (and assignments) over one shape, a row
    kernel, or a column reduction with the maps before and after it (`rows.py`)?"""
    red = next((m for m in union if m.opdef.kind is OpKind.REDUCE), None)
    if red is not None:
        if reduce_mode(red) is KernelMode.REDUCE_OUTER:
            return outer and outer_fusable(union)
        return row_fusable(union, probes)
    return all(m.opdef.kind in (OpKind.ELEMENTWISE, OpKind.STATE) and same(m.shape, union[0].shape) for m in union)


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
    return Units(groups, _defer_assignments(groups, out))


def _defer_assignments(groups: Groups, units: list[tuple[Tensor, ...]]) -> tuple[tuple[Tensor, ...], ...]:
    """Move each kernel that assigns a variable still read by later units (an SGD update
    scheduled before the input gradient that reads the old weights) to just after the last
    such reader, when no unit in between reads the kernel's results: the kernel can then
    write the variable in place (`plan.assign_in_place`) instead of a buffer copied at the
    end. The value the kernel reads live that much longer; the new value no longer does."""
    out = list(units)
    for unit in [u for u in units if any(m.op == "assign" for m in u)]:
        i = out.index(unit)
        aliases = {m.inputs[0] for m in unit if m.op == "assign"}
        for n in groups.nodes.order:  # views of the variables read their memory too
            probe = groups.probes.get(n)
            src = n.inputs[probe.i] if isinstance(probe, Loaded) else n.inputs[0] if probe is FLAT else None
            if src in aliases and n not in groups.group:
                aliases.add(n)
        users = groups.nodes.users
        readers = {r for m in unit for r in users[m]}
        alias_readers = {r for a in aliases for r in users[a]} - aliases
        last = None
        for j in range(i + 1, len(out)):
            if readers.intersection(out[j]):
                last = None
                break
            if alias_readers.intersection(out[j]):
                last = j
        if last is not None:
            out.insert(last, out.pop(i))
        _sink_update_product(out, out.index(unit), users)
    return tuple(out)


def _sink_update_product(out: list[tuple[Tensor, ...]], at: int, users: Mapping[Tensor, tuple[Tensor, ...]]) -> None:
    """Move the product whose results only the update unit ``out[at]`` reads (a weight gradient)
    to just before that unit, so that the GEMM can fold the update (`updates.fold_updates`:
    nothing between them may read the variable, and the input gradient that reads the old
    weights often does). Its operands live that much longer, its result no longer."""
    unit = set(out[at])
    for j in range(at - 1, -1, -1):
        members = out[j]
        if any(m.opdef.kind is OpKind.MATMUL for m in members) and unit.intersection(
                r for m in members for r in users[m]):
            if all(r in unit for m in members for r in users[m]):
                out.insert(at - 1, out.pop(j))
            return


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


def _computed(n: Tensor, probes: Probes) -> bool:
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
    return kind is OpKind.ELEMENTWISE and same(n.shape, c.shape)
