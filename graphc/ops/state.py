"""Ops about state and control: assignments to variables, grouping, identity, stop_gradient."""

from __future__ import annotations

from typing import Any

from ..dtypes import shape_str
from ..errors import DTypeError, GraphcError, ShapeError
from ..ir.graph import Tensor
from .core import as_tensor, graph_of
from .registry import OpDef, register
from .shape import broadcast_to

__all__ = ["assign", "assign_add", "assign_sub", "group", "identity", "stop_gradient"]


def _assign_type(inputs: tuple, attrs: dict):
    var, value = inputs
    if var.op != "variable":
        raise GraphcError(f"can only assign to a Variable, not to {var.op} {var.name}")
    if value.dtype != var.dtype:
        raise DTypeError(f"value dtype {value.dtype} differs from variable dtype {var.dtype}")
    if value.shape != var.shape:
        raise ShapeError(f"value shape {shape_str(value.shape)} differs from variable shape {shape_str(var.shape)}")
    return var.shape, var.dtype


register(OpDef("assign", "state", _assign_type, ref=lambda var, value: value, effect=True,
               doc="the new value of a variable; the session stores it at the end of the run"))


def assign(var: Tensor, value: Any, name: str | None = None) -> Tensor:
    """Set `var` to `value` at the end of the run; the result is the new value."""
    if not isinstance(var, Tensor) or var.op != "variable":
        raise GraphcError(f"assign: {var!r} is not a Variable")
    value = as_tensor(value, dtype=var.dtype, graph=var.graph)
    if value.shape != var.shape and len(value.shape) <= len(var.shape):
        value = broadcast_to(value, var.shape)
    return var.graph.make("assign", (var, value), name=name)


def assign_add(var: Tensor, delta: Any, name: str | None = None) -> Tensor:
    """Set `var` to var + delta at the end of the run."""
    return assign(var, var + delta, name=name)


def assign_sub(var: Tensor, delta: Any, name: str | None = None) -> Tensor:
    """Set `var` to var - delta at the end of the run."""
    return assign(var, var - delta, name=name)


def check_single_assignments(assigns: list[Tensor], verb: str = "assigned", unit: str = "run") -> None:
    """Refuse two assignments to one variable (a run applies all of its assignments together)."""
    seen: dict[Tensor, Tensor] = {}
    for a in assigns:
        var = a.inputs[0]
        if var in seen:
            raise GraphcError(f"variable {var.name} is {verb} twice in one {unit} ({seen[var].name} and {a.name})")
        seen[var] = a


register(OpDef("group", "control", lambda inputs, attrs: ((), None), ref=lambda *xs: None, effect=True,
               doc="runs its inputs; has no value"))


def group(*inputs: Any, name: str | None = None) -> Tensor:
    """An op that, when fetched, runs all of `inputs` (tensors, ops, or lists of them)."""
    flat: list[Tensor] = []
    stack = list(reversed(inputs))
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        elif isinstance(item, Tensor):
            flat.append(item)
        else:
            raise GraphcError(f"group: {item!r} is not a tensor or op")
    return graph_of(*flat).make("group", tuple(flat), name=name)


def _same_type(inputs: tuple, attrs: dict):
    return inputs[0].shape, inputs[0].dtype


register(OpDef("identity", "elementwise", _same_type, ref=lambda x: x.copy(), carries=0,
               scalar=lambda s, x: x,
               vjp=lambda g, out, x: (g,), jvp=lambda t, out, x: t[0], doc="x"))
register(OpDef("stop_gradient", "elementwise", _same_type, ref=lambda x: x.copy(), carries=0,
               scalar=lambda s, x: x, doc="x, seen as a constant by gradients and jvp"))


def identity(x: Any) -> Tensor:
    """A copy of x."""
    t = as_tensor(x)
    return t.graph.make("identity", (t,))


def stop_gradient(x: Any) -> Tensor:
    """x, treated as a constant by `gradients` and `jvp`."""
    t = as_tensor(x)
    return t.graph.make("stop_gradient", (t,))
