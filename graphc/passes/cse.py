"""Common-subexpression elimination.

Interning already merges structurally equal nodes as they are built; this pass adds the
one equivalence interning cannot see: operands of commutative ops in a canonical order
(by creation), so a + b and b + a become one node.
"""

from __future__ import annotations

from ..ir.graph import Tensor
from .manager import register_pass
from .module import Module, rebuild


def _canonical_order(node: Tensor) -> Tensor | None:
    if not node.opdef.commutative or len(node.inputs) != 2:
        return None
    a, b = node.inputs
    if a.uid <= b.uid:
        return None
    return node.graph.make(node.op, (b, a), node.attrs, name=node.name, loc=node.loc)


@register_pass("cse", "merge equal subexpressions (commutative operands in canonical order)")
def cse(module: Module, options: object = None) -> tuple[Module, int]:
    before = len(module.nodes)
    out, _ = rebuild(module, _canonical_order)
    return out, before - len(out.nodes)
