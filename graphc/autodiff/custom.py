"""`custom_gradient`: give a subgraph its own VJP (TensorFlow's decorator).

The decorated function's result y is wrapped in a ``custom_vjp`` node whose inputs are
(y, *args). Its value is y; the args are dependencies only (never read), there so that
reverse mode reaches them. Reverse mode calls the user's grad function instead of
differentiating y's subgraph; forward mode differentiates y's subgraph itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ..errors import GraphcError
from ..ir.graph import Tensor
from ..ops.core import as_tensor, graph_of
from ..ops.registry import OpDef, register

__all__ = ["custom_gradient"]


class GradFn:
    """A user's gradient function as a node attribute (hashed by identity, printed by name)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn

    def __repr__(self) -> str:
        return f"<grad_fn {getattr(self.fn, '__qualname__', type(self.fn).__name__)}>"


def _custom_type(inputs: tuple, attrs: dict):
    return inputs[0].shape, inputs[0].dtype


def _custom_vjp(g: Tensor, out: Tensor, y: Tensor, *xs: Tensor, grad_fn: GradFn) -> tuple:
    cts = grad_fn.fn(g)
    cts = list(cts) if isinstance(cts, (list, tuple)) else [cts]
    if len(cts) != len(xs):
        raise GraphcError(f"custom_gradient {grad_fn!r} returned {len(cts)} cotangents for {len(xs)} inputs")
    return (None, *(None if c is None else as_tensor(c, dtype=x.dtype, graph=x.graph) for c, x in zip(cts, xs)))


register(OpDef(
    "custom_vjp", "index", _custom_type, attrs={"grad_fn": "object"},
    ref=lambda y, *xs, grad_fn: y.copy(),
    gather=lambda s, idx, load, node: load(0, tuple(idx)),
    vjp=_custom_vjp,
    jvp=lambda t, out, y, *xs, grad_fn: t[0],
    doc="y (input 0) with a user VJP for the other inputs, which are dependencies only"))


def custom_gradient(f: Callable[..., tuple[Any, Callable[..., Any]]]) -> Callable[..., Tensor]:
    """Decorator: ``f(*args)`` returns ``(y, grad_fn)``; ``grad_fn(dy)`` returns one cotangent per arg.

    Positional args become tensors (they are the differentiable inputs); keyword args are
    passed through unchanged. y must be a single tensor. A cotangent may be None (zero).
    Variables that f reads without taking them as arguments get no gradient through y.
    """

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Tensor:
        graph = graph_of(*args)
        xs = tuple(as_tensor(a, graph=graph) for a in args)
        result = f(*xs, **kwargs)
        if not (isinstance(result, tuple) and len(result) == 2 and callable(result[1])):
            raise GraphcError(f"custom_gradient: {f.__qualname__} must return (y, grad_fn)")
        y, grad_fn = result
        if not isinstance(y, Tensor):
            raise GraphcError(f"custom_gradient: {f.__qualname__} must return one tensor y, "
                              f"got {type(y).__name__}")
        return y.graph.make("custom_vjp", (y, *xs), {"grad_fn": GradFn(grad_fn)})

    return wrapper
