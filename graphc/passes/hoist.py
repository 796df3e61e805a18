"""Loop-invariant code motion: compute a loop body's values of its consts alone once, before the loop.

A scan's or while_loop's body reads its consts (the values it captured: weights, ...)
through params. A body value computed from those params and constants only is the same
at every iteration; this pass computes it outside the loop from the op's operands and
passes it in as a new const, so the body reads it instead of recomputing it (W8's
reverse body: the transposed weight of ``h @ W``'s gradient). Nested loops are rewritten
inside-out, so a value invariant in both moves out of both.

Hoisted: the invariant values a varying value (or the body's result) reads, when they are
not already params or constants, own no regions, have no effect, do not grow (a result no
larger than its largest input: a broadcast stays inside, what it broadcasts is hoisted)
and are speculatable (`OpDef.speculatable`: `take` checks its indices on the reference
backend, and a zero-trip loop must not raise). Branches of a cond are not touched (only the taken one runs).
"""

from __future__ import annotations

from ..ir.graph import Tensor
from ..ir.region import Region, build_region
from ..ir.traverse import toposort
from ..ops.registry import OpKind
from .cost import nbytes
from .manager import register_pass
from .module import Module, rebuild


def _hoistable(node: Tensor) -> bool:
    op = node.opdef
    return (node.op not in ("param", "constant") and node.inputs and node.dtype is not None and not op.effect
            and op.host is None and op.kind is not OpKind.SOURCE and op.speculatable
            and nbytes(node) <= max(nbytes(i) for i in node.inputs))


def _invariants(body: Region, nconsts: int) -> list[Tensor]:
    """The body's invariant values to compute outside, in body order."""
    order = toposort(body.results, set(body.params))
    invariant = set(body.params[:nconsts])
    for node in order:
        if all(i in invariant for i in node.inputs):
            invariant.add(node)
    hoist: dict[Tensor, None] = {}
    stack = [i for n in order if n not in invariant for i in n.inputs if i in invariant]
    stack += [r for r in body.results if r in invariant]
    seen: set[Tensor] = set()
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if _hoistable(node):
            hoist[node] = None
        else:
            stack.extend(i for i in node.inputs if i in invariant)
    return [n for n in order if n in hoist]


def _hoist(node: Tensor) -> Tensor | None:
    if node.opdef.body_consts is None:
        return None
    count_key, start = node.opdef.body_consts
    start = node.attrs[start] if isinstance(start, str) else start
    nconsts = node.attrs[count_key]
    body: Region = node.attrs["body"]
    moved = _invariants(body, nconsts)
    if not moved:
        return None
    consts = node.inputs[start:start + nconsts]
    env: dict[Tensor, Tensor] = dict(zip(body.params[:nconsts], consts))
    for n in toposort(moved, set(env)):  # the invariant values, outside
        env[n] = node.graph.make(n.op, tuple(env[i] for i in n.inputs), n.attrs, name=n.name, loc=n.loc)
    outside = [env[n] for n in moved]

    def build(g, *ps):
        inner = dict(zip([*body.params[:nconsts], *moved, *body.params[nconsts:]], ps))
        for n in toposort(body.results, set(inner)):
            inner[n] = g.make(n.op, tuple(inner[i] for i in n.inputs), n.attrs, name=n.name, loc=n.loc)
        return [inner[r] for r in body.results]

    types = [*body.param_types[:nconsts], *((n.shape, n.dtype) for n in moved), *body.param_types[nconsts:]]
    new_body = build_region(types, build, body.graph.what, [p.name for p in body.params[:nconsts]]
                            + [n.name for n in moved] + [p.name for p in body.params[nconsts:]])
    at = start + nconsts
    inputs = (*node.inputs[:at], *outside, *node.inputs[at:])
    return node.graph.make(node.op, inputs, {**node.attrs, "body": new_body, count_key: nconsts + len(moved)},
                           name=node.name, loc=node.loc)


@register_pass("hoist", "compute loop-invariant body values once, before the loop (scan, while_loop)")
def hoist(module: Module, options: object = None) -> tuple[Module, int]:
    return rebuild(module, _hoist)
