"""Which nodes a kernel computes: single-use inlining, then sibling fusion (see `plan`).

A group is the set of nodes one kernel evaluates. First, an elementwise or (non-view)
index node joins its only consumer when that consumer reads it once per element. Then
kernels that share an elementwise producer merge when one loop nest can compute the
union and the graph of kernels stays acyclic, and GEMMs take their elementwise
consumers as epilogues. `order_units` orders the resulting units.
"""

from __future__ import annotations

from ...errors import GraphcError
from ...ir.graph import Tensor
from ...ops.registry import OpKind
from .steps import KernelMode
from .views import Immediate, Loaded

MERGE_SEARCH = 64  # units a fusion's cycle check may visit before it gives up (and does not fuse)


class GroupingMixin:
    """Grouping and unit scheduling; the host class provides order, users, outputs, _index."""

    def groups(self, probes: dict[Tensor, Loaded | Immediate | None]) -> dict[Tensor, Tensor]:
        """Map each computed node to the root of the kernel that computes it."""
        group: dict[Tensor, Tensor] = {}
        for n in reversed(self.order):
            if not _computed(n, probes):
                continue
            group[n] = n
            users = set(self.users[n])
            if n.opdef.kind not in (OpKind.ELEMENTWISE, OpKind.INDEX) or n in self.outputs or len(users) != 1:
                continue
            (c,) = users
            if c in group and _inlinable_into(n, c):
                group[n] = group[c]
        self.merge_siblings(group)
        self.attach_epilogues(group)
        return group

    def attach_epilogues(self, group: dict[Tensor, Tensor]) -> None:
        """Make each GEMM whose only readers form one elementwise kernel over exactly the
        product's index space (every member of the product's shape, a result of its dtype)
        a member of that kernel's group: the planner then emits the kernel as the GEMM's
        epilogue, in place over the product, so the product needs no buffer of its own.
        Other inputs of the kernel (a bias) are read through their views as before. At
        most one GEMM per kernel.
        """
        sets: dict[Tensor, list[Tensor]] = {}
        for n in self.order:
            if n in group:
                sets.setdefault(group[n], []).append(n)
        taken: set[Tensor] = set()  # groups that already have a GEMM
        for n in self.order:
            if n.opdef.kind is not OpKind.MATMUL or n in self.outputs or not self.users[n]:
                continue
            owners = {group.get(u) for u in self.users[n]}
            if len(owners) != 1 or None in owners or owners <= taken:
                continue
            (root,) = owners
            members = sets[root]
            inside = set(members)
            results = [m for m in members if m in self.outputs or m.op == "assign"
                       or any(u not in inside for u in self.users[m])]
            if (any(r.dtype == n.dtype for r in results)
                    and all(m.opdef.kind is OpKind.ELEMENTWISE and m.shape == n.shape for m in members)):
                group[n] = root
                taken.add(root)

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
            if n not in group or n.opdef.kind is not OpKind.ELEMENTWISE or len(users) < 2:
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
                    or any(u in inside for u in self.users[r])):
                return False
        return True

    def order_units(self, group: dict[Tensor, Tensor]) -> list[list[Tensor]]:
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


def reduce_mode(node: Tensor) -> KernelMode:
    """reduce-inner when the innermost non-trivial input dim is reduced, else reduce-outer."""
    x = node.inputs[0]
    live = [k for k, d in enumerate(x.shape) if d != 1]
    if not live or live[-1] in node.attrs["axis"]:
        return KernelMode.REDUCE_INNER
    return KernelMode.REDUCE_OUTER


def _computed(n: Tensor, probes: dict) -> bool:
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
