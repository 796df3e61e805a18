"""Reverse mode: `gradients` adds adjoint nodes to the graph (a graph-to-graph transformation).

The nodes between `xs` and `ys` are visited in reverse topological order (the fixed order
of `graphc.ir.traverse.toposort`); each op's VJP rule builds the cotangents of its inputs
as ordinary graph nodes. Cotangents reaching one tensor along several paths are added left
to right in the order they were produced, so two builds of the same graph give the same
gradient graph and bit-for-bit the same values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import reduce
from typing import Any

from ..dtypes import is_float, shape_str
from ..errors import GraphcError, ShapeError
from ..ir.composite import composite_scope
from ..ir.graph import Tensor, adjoint_scope, get_default_graph
from ..ir.traverse import toposort
from ..ops.core import as_tensor, constant
from ..ops.reduce import sum as reduce_sum
from ..ops.shape import broadcast_like, reshape_like

__all__ = ["gradients"]

UNCONNECTED = ("none", "zero")


def as_list(value: Any, what: str) -> list[Tensor]:
    """A tensor or a sequence of tensors as a list (a clear error for anything else)."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if not isinstance(item, Tensor):
            raise GraphcError(f"{what} must be graphc tensors, got {type(item).__name__}")
    return items


def zeros_like_tensor(x: Tensor) -> Tensor:
    """Zeros with x's shape and dtype (a broadcast scalar: x's data is not read)."""
    return broadcast_like(constant(0, dtype=x.dtype, graph=x.graph), x)


def ones_like_tensor(x: Tensor) -> Tensor:
    """Ones with x's shape and dtype (a broadcast scalar: x's data is not read)."""
    return broadcast_like(constant(1, dtype=x.dtype, graph=x.graph), x)


def sum_to_like(g: Tensor, x: Tensor) -> Tensor:
    """g summed over the axes along which x was broadcast, so that it has x's shape.

    Removes leading axes and sums size-1 axes of x (keeping them). A dim of x that is
    unknown (None) is taken to match g's dim rather than to have been broadcast from 1.
    If g has fewer or size-1 dims where x has more, g is broadcast up to x's shape.
    """
    if g.shape == x.shape:
        return g
    lead = g.ndim - x.ndim
    if lead > 0:
        g = reduce_sum(g, axis=tuple(range(lead)))
    elif lead < 0:
        return broadcast_like(g, x) if g.ndim == 0 or _broadcastable(g.shape, x.shape) else _mismatch(g, x)
    ones = tuple(k for k, (dx, dg) in enumerate(zip(x.shape, g.shape)) if dx == 1 and dg != 1)
    if ones:
        g = reduce_sum(g, axis=ones, keepdims=True)
    if any(dg == 1 and dx != 1 for dg, dx in zip(g.shape, x.shape)):
        g = broadcast_like(g, x)
    if g.shape != x.shape and any(d is None for d in x.shape + g.shape):
        g = reshape_like(g, x)
    return g


def _broadcastable(src: tuple, dst: tuple) -> bool:
    lead = len(dst) - len(src)
    return lead >= 0 and all(s in (1, None) or s == d or d is None for s, d in zip(src, dst[lead:]))


def _mismatch(g: Tensor, x: Tensor) -> Tensor:
    raise ShapeError(f"a derivative of shape {shape_str(g.shape)} does not fit tensor {x.name} "
                     f"of shape {shape_str(x.shape)}")


def fit_derivative(d: Tensor, like: Tensor, node: Tensor, rule: str) -> Tensor:
    """Check a rule's result has like's dtype and bring it to like's shape."""
    if not isinstance(d, Tensor):
        raise GraphcError(f"the {rule} rule of op {node.op!r} returned {type(d).__name__}, not a tensor")
    if d.dtype != like.dtype:
        raise GraphcError(f"the {rule} rule of op {node.op!r} (node {node.name}) returned a {d.dtype} "
                          f"derivative for the {like.dtype} tensor {like.name}")
    return sum_to_like(d, like)


def add_all(parts: Sequence[Tensor]) -> Tensor:
    """Sum of the parts, left to right (a fixed order, so results repeat bit for bit)."""
    return reduce(lambda a, b: a + b, parts)


def has_results(node: Tensor) -> bool:
    """Whether the node has several results (a region op: its value is a tuple; OpDef.results)."""
    return node.opdef.results is not None


def float_valued(node: Tensor) -> bool:
    """A float node, or a node with several results of which one is float."""
    if has_results(node):
        return any(is_float(d) for _, d in node.opdef.results(node.inputs, node.attrs))
    return is_float(node.dtype)


def connected_from(order: Iterable[Tensor], sources: set[Tensor]) -> set[Tensor]:
    """Nodes of `order` (inputs first) that a float source reaches through differentiable ops."""
    live: set[Tensor] = set()
    for node in order:
        if not float_valued(node):
            continue
        if node in sources or (node.opdef.differentiable and any(i in live for i in node.inputs)):
            live.add(node)
    return live


def _seeds(ys: list[Tensor], grad_ys: Any) -> list[Tensor | None]:
    if grad_ys is None:
        return [ones_like_tensor(y) if is_float(y.dtype) else None for y in ys]
    seeds = list(grad_ys) if isinstance(grad_ys, (list, tuple)) else [grad_ys]
    if len(seeds) != len(ys):
        raise GraphcError(f"gradients: {len(ys)} ys but {len(seeds)} grad_ys")
    out: list[Tensor | None] = []
    for y, s in zip(ys, seeds):
        if s is None or not is_float(y.dtype):
            out.append(None)
            continue
        s = as_tensor(s, dtype=y.dtype, graph=y.graph)
        if s.dtype != y.dtype:
            raise GraphcError(f"gradients: grad_ys entry {s.name} is {s.dtype} but y {y.name} is {y.dtype}")
        if s.shape != y.shape:
            if not _broadcastable(s.shape, y.shape):
                raise ShapeError(f"gradients: grad_ys entry of shape {shape_str(s.shape)} does not fit "
                                 f"y {y.name} of shape {shape_str(y.shape)}")
            with composite_scope("gradients (a grad_ys seed)"):  # a seed not fitting the fed y names gradients
                s = broadcast_like(s, y)
        out.append(s)
    return out


def _backpropagate(order: list[Tensor], live: set[Tensor], pending: dict[Tensor, list[Tensor]],
                   wanted: set[Tensor]) -> dict[Tensor, Tensor]:
    """Walk `order` backwards calling VJP rules; return the total cotangent of each wanted node.

    A node's cotangent parts are summed in the order they can be computed: by their depth
    (VJP calls between the seed and the part), ties in walk order. The walk order alone
    may sum first the part that is computed last (a shared weight's contributions, one per
    step of an unrolled RNN), which keeps every other part alive until the sum can start.
    """
    total: dict[Tensor, Tensor] = {}
    depth: dict[Tensor, int] = {}  # a part's depth below the seeds
    for node in reversed(order):
        parts = pending.pop(node, None)
        if not parts:
            continue
        parts = sorted(parts, key=lambda p: depth.get(_part(p), 0))
        g = _by_result(node, parts) if has_results(node) else add_all(parts)
        level = depth.get(_part(parts[-1]), 0) + 1
        if node in wanted:
            total[node] = g
        if not any(i in live for i in node.inputs):
            continue
        cts = node.opdef.vjp(g, node, *node.inputs, **node.attrs)
        if len(cts) != len(node.inputs):
            raise GraphcError(f"the vjp rule of op {node.op!r} returned {len(cts)} cotangents "
                              f"for {len(node.inputs)} inputs")
        for inp, ct in zip(node.inputs, cts):
            if ct is not None and inp in live:  # (index, cotangent) pairs for a node with several results
                part = ct if has_results(inp) else fit_derivative(ct, inp, node, "vjp")
                depth[_part(part)] = max(depth.get(_part(part), 0), level)
                pending.setdefault(inp, []).append(part)
    return total


def _part(part: Tensor | tuple[int, Tensor]) -> Tensor:
    """The cotangent of a part (an (index, cotangent) pair for a node with several results)."""
    return part[1] if isinstance(part, tuple) else part


def _by_result(node: Tensor, parts: list[tuple[int, Tensor]]) -> list[Tensor | None]:
    """The cotangent of each result of a node with several results (None = zero), summed in order."""
    per: list[list[Tensor]] = [[] for _ in node.opdef.results(node.inputs, node.attrs)]
    for index, ct in parts:
        per[index].append(ct)
    return [add_all(p) if p else None for p in per]


def gradients(ys: Any, xs: Any, grad_ys: Any = None, unconnected: str = "none") -> list[Tensor | None]:
    """d(sum of ys)/d(xs) as new graph nodes, as `tf.gradients`.

    `ys` and `xs` are a tensor or a list of tensors; `grad_ys` gives the seed cotangent of
    each y (default: ones). Returns one tensor per x, shaped like x. An x that does not
    reach any y through differentiable float ops (including integer and bool xs) gives
    None, or zeros when ``unconnected="zero"``.
    """
    if unconnected not in UNCONNECTED:
        raise GraphcError(f"gradients: unconnected must be one of {UNCONNECTED}, got {unconnected!r}")
    ys_list, xs_list = as_list(ys, "gradients: ys"), as_list(xs, "gradients: xs")
    graph = ys_list[0].graph if ys_list else get_default_graph()
    with adjoint_scope(graph):  # tag the backward part for checkpointing
        order = toposort(ys_list)
        live = connected_from(order, set(xs_list))
        pending: dict[Tensor, list[Tensor]] = {}
        for y, seed in zip(ys_list, _seeds(ys_list, grad_ys)):
            if seed is not None and y in live:
                pending.setdefault(y, []).append(seed)
        total = _backpropagate(order, live, pending, set(xs_list))
    result: list[Tensor | None] = []
    for x in xs_list:
        g = total.get(x)
        if g is None and unconnected == "zero":
            g = zeros_like_tensor(x)
        elif g is not None and None in x.shape:
            g = _fits_at_run_time(g, x)
        result.append(g)
    return result


def _fits_at_run_time(g: Tensor, x: Tensor) -> Tensor:
    """g, checked once shapes are bound to have as many elements as x.

    Reverse mode takes an unknown dim of x to be the output's dim; if x is fed size 1 there
    and broadcasts, g would silently be the broadcast shape. Binding then raises instead.
    """
    label = (f"gradients: an unknown dim of {x.name}{shape_str(x.shape)} was fed as 1 and broadcast, "
             "which gradients do not sum over (feed the broadcast shape, or declare the dim 1)")
    with adjoint_scope(x.graph), composite_scope(label):
        return x.graph.make("reshape_like", (g, x))
