"""`Module`: the unit graph-level passes transform — the DAG reachable from some outputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from ..ir.graph import Tensor
from ..ir.printer import as_text
from ..ir.region import Region, regions_of
from ..ir.traverse import toposort
from .verify import verify_nodes


@dataclass(frozen=True)
class Module:
    """Outputs (fetches, then assignments) of one program; everything else is derived.

    Nodes unreachable from the outputs are not part of the module, so dead code
    disappears as soon as a pass stops referring to it. `adjoint` holds the nodes
    autodiff built (the backward part), carried through rewrites.
    """

    outputs: tuple[Tensor, ...]
    adjoint: frozenset[Tensor] = field(default=frozenset())

    @cached_property
    def nodes(self) -> list[Tensor]:
        return toposort(self.outputs)

    def as_text(self) -> str:
        return as_text(self.outputs)

    def node_count(self) -> int:
        return len(self.nodes)

    def stats(self) -> dict[str, int]:
        """A graph measures nothing itself (a backend's `measure` can: `Instrumentation.measure`)."""
        return {}

    def verify(self, after: str = "?") -> None:
        """Raise VerifyError if a pass left the module ill-formed (see `graphc.passes.verify`)."""
        verify_nodes(self.nodes, after)

    def remap(self, mapping: dict[Tensor, Tensor]) -> Module:
        """The module whose outputs are mapped through `mapping`.

        Adjoint tags follow a node to its replacement, unless the replacement is a node the
        module already had untagged (``g * 1 -> g`` must not make a forward value backward).
        """
        outputs = tuple(mapping.get(o, o) for o in self.outputs)
        before = set(self.nodes)
        adjoint = set()
        for n in self.adjoint:
            m = mapping.get(n, n)
            if m not in before or m in self.adjoint:
                adjoint.add(m)
        return Module(outputs, frozenset(adjoint))


def rebuild(module: Module, rewrite: Callable[[Tensor], Tensor | None]) -> tuple[Module, int]:
    """Rebuild every node inputs-first, offering each to `rewrite` (None = keep).

    Returns the new module and how many nodes were replaced. A replacement must have the
    node's shape and dtype; a rewrite is repeated on its own result (capped) so one
    walk applies chains of rules. The rewrite runs inside regions (loop bodies, branches) too.
    """
    mapping, changes = _rebuild_nodes(module.nodes, rewrite)
    return module.remap(mapping), changes


def _rebuild_nodes(order: list[Tensor], rewrite: Callable[[Tensor], Tensor | None],
                   mapping: dict[Tensor, Tensor] | None = None) -> tuple[dict[Tensor, Tensor], int]:
    """`rebuild` over nodes in topological order; a region op's regions are rebuilt first (the
    same rewrite runs inside every body, whose params stay as they are)."""
    mapping = {} if mapping is None else mapping
    changes = 0
    for node in order:
        if node in mapping:  # a region's params
            continue
        new_inputs = tuple(mapping[i] for i in node.inputs)
        attrs = node.attrs
        for key, region in regions_of(node):
            inner, n = _rebuild_nodes(toposort(region.results, set(region.params)), rewrite,
                                      {p: p for p in region.params})
            if n:
                attrs = {**attrs, key: Region(region.params, [inner[r] for r in region.results])}
                changes += n
        current = node
        if new_inputs != node.inputs or attrs is not node.attrs:
            current = node.graph.make(node.op, new_inputs, attrs, name=node.name, loc=node.loc)
        for _ in range(16):
            replacement = rewrite(current)
            if replacement is None or replacement is current:
                break
            if replacement.shape != current.shape or replacement.dtype != current.dtype:
                raise AssertionError(f"rewrite of {current!r} changed its type to {replacement!r}")
            current = replacement
            changes += 1
        mapping[node] = current
    return mapping, changes
