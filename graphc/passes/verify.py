"""The IR verifier run after each pass: types re-infer (once per node), graphs don't mix, assignments are unique."""

from __future__ import annotations

import weakref

from ..errors import GraphcError
from ..ir.graph import Tensor
from ..ir.printer import node_names, type_str
from ..ir.region import Region, regions_of
from ..ir.traverse import toposort
from ..ops.registry import infer_type


class VerifyError(GraphcError):
    """A pass produced an ill-formed module (a compiler bug, not a user error)."""


# Nodes whose stored type their inputs re-infer. A node is immutable, so it stays so: each
# node's type is checked once, by the first verification that sees it, not after every pass.
_TYPED: weakref.WeakSet[Tensor] = weakref.WeakSet()


def verify_nodes(order: list[Tensor], after: str = "?", region: Region | None = None) -> None:
    """Raise VerifyError, showing the offending node and its neighbours, if the nodes (a
    module's, in topological order; or a region's) are ill-formed. Regions are verified too:
    their nodes live in their own graph, and a param is read only inside its own region."""
    graph = region.graph if region is not None else order[0].graph if order else None
    assigned: dict[Tensor, Tensor] = {}
    for node in order:
        problem = None
        if node.graph is not graph:
            problem = "belongs to another graph than the rest of the module"
        elif node.op == "param" and (region is None or node not in region.params):
            problem = "a param read outside its region"
        elif node not in _TYPED:
            try:
                shape, dtype = infer_type(node.opdef, node.inputs, node.attrs, node.loc)
                if shape != node.shape or dtype != node.dtype:
                    problem = f"stored type {type_str(node)} but its inputs give {dtype}{shape}"
                else:
                    _TYPED.add(node)
            except GraphcError as exc:
                problem = f"type rule fails: {exc}"
        if node.op == "assign":
            var = node.inputs[0]
            if var in assigned:
                problem = f"second assignment to variable {var.name}"
            assigned[var] = node
        if problem:
            raise VerifyError(f"after pass {after}: {_describe(order, node)}: {problem}")
        for _, body in regions_of(node):
            verify_nodes(toposort(body.results), after, body)


def _describe(order: list[Tensor], node: Tensor) -> str:
    names = node_names(order)
    users = [u for u in order if node in u.inputs]
    lines = [f"{names[node]} = {node.op}({', '.join(names[i] for i in node.inputs)}) : {type_str(node)}"]
    lines += [f"  input  {names[i]} = {i.op} : {type_str(i)}" for i in node.inputs]
    lines += [f"  user   {names[u]} = {u.op} : {type_str(u)}" for u in users[:4]]
    return "\n".join(lines)
