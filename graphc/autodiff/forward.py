"""Forward mode: `jvp` pushes tangents from `xs` to `ys` with each op's JVP rule."""

from __future__ import annotations

from typing import Any

from ..dtypes import is_float, shape_str
from ..errors import GraphcError, ShapeError
from ..ir.graph import Tensor
from ..ir.traverse import toposort
from ..ops.core import as_tensor
from .reverse import UNCONNECTED, add_all, as_list, fit_derivative, float_valued, has_results, zeros_like_tensor

__all__ = ["jvp"]


def _input_tangents(xs: list[Tensor], tangents: Any) -> dict[Tensor, Tensor]:
    ts = list(tangents) if isinstance(tangents, (list, tuple)) else [tangents]
    if len(ts) != len(xs):
        raise GraphcError(f"jvp: {len(xs)} xs but {len(ts)} tangents")
    parts: dict[Tensor, list[Tensor]] = {}
    for x, t in zip(xs, ts):
        if t is None or not is_float(x.dtype):
            continue
        t = as_tensor(t, dtype=x.dtype, graph=x.graph)
        if t.dtype != x.dtype:
            raise GraphcError(f"jvp: the tangent of {x.name} is {t.dtype} but {x.name} is {x.dtype}")
        if t.ndim > x.ndim:
            raise ShapeError(f"jvp: a tangent of shape {shape_str(t.shape)} does not fit {x.name} "
                             f"of shape {shape_str(x.shape)}")
        parts.setdefault(x, []).append(fit_derivative(t, x, x, "given tangent"))
    return {x: add_all(p) for x, p in parts.items()}


def jvp(ys: Any, xs: Any, tangents: Any, unconnected: str = "zero") -> list[Tensor | None]:
    """Forward-mode derivative: the tangent of each y when each x moves along its tangent.

    `ys`, `xs` are a tensor or a list; `tangents` has one entry per x (None = zero).
    Returns one tensor per y, shaped like y. A y that no tangent reaches gives zeros (or
    None with ``unconnected="none"``); integer and bool ys always give None.
    """
    if unconnected not in UNCONNECTED:
        raise GraphcError(f"jvp: unconnected must be one of {UNCONNECTED}, got {unconnected!r}")
    ys_list, xs_list = as_list(ys, "jvp: ys"), as_list(xs, "jvp: xs")
    tans: dict[Tensor, Tensor] = _input_tangents(xs_list, tangents)
    for node in toposort(ys_list):
        if node in tans or not float_valued(node):
            continue
        in_t = tuple(tans.get(i) for i in node.inputs)
        if all(t is None for t in in_t) or not node.opdef.differentiable:
            continue
        if node.opdef.jvp is None:
            raise GraphcError(f"op {node.op!r} has a vjp rule but no jvp rule (node {node.name})")
        t = node.opdef.jvp(in_t, node, *node.inputs, **node.attrs)
        if t is not None:  # a node with several results gets a tuple of tangents (its rule fits them)
            tans[node] = t if has_results(node) else fit_derivative(t, node, node, "jvp")
    result: list[Tensor | None] = []
    for y in ys_list:
        t = tans.get(y)
        if t is None and unconnected == "zero" and is_float(y.dtype):
            t = zeros_like_tensor(y)
        result.append(t)
    return result
