"""Dead-code elimination.

A module holds only what its outputs reach, so unreferenced nodes vanish by construction.
What remains dead is work a `group` asks for without any effect: pure values grouped into
a control op. This pass drops them, keeping assignments and nested groups.
"""

from __future__ import annotations

from ..ir.graph import Tensor
from .manager import register_pass
from .module import Module, rebuild


def _prune_group(node: Tensor) -> Tensor | None:
    if node.op != "group":
        return None
    kept = tuple(i for i in node.inputs if i.opdef.effect)
    if kept == node.inputs:
        return None
    return node.graph.make("group", kept, name=node.name, loc=node.loc)


@register_pass("dce", "drop side-effect-free values that only a group op asks for")
def dce(module: Module, options: object = None) -> tuple[Module, int]:
    before = len(module.nodes)
    out, _ = rebuild(module, _prune_group)
    return out, before - len(out.nodes)
