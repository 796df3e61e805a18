"""Elementwise ops: numpy broadcasting, one scalar form each."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..dtypes import bool_, broadcast_shapes, is_float
from ..errors import DTypeError
from ..ir.graph import Tensor
from .core import graph_of, promote
from .registry import OpDef, register

__all__ = ["add", "multiply", "exp", "cast", "less"]


def _same_dtype_broadcast(inputs: tuple, attrs: dict):
    dtypes = {t.dtype for t in inputs}
    if len(dtypes) != 1:
        raise DTypeError("operands must have one dtype")
    return broadcast_shapes(*(t.shape for t in inputs)), inputs[0].dtype


def _float_broadcast(inputs: tuple, attrs: dict):
    shape, dtype = _same_dtype_broadcast(inputs, attrs)
    if not is_float(dtype):
        raise DTypeError(f"needs floating operands, got {dtype}")
    return shape, dtype


def _compare_type(inputs: tuple, attrs: dict):
    shape, _ = _same_dtype_broadcast(inputs, attrs)
    return shape, bool_


def elementwise(name: str, ref: Callable, scalar: Callable, *, float_only: bool = False,
                vjp: Callable | None = None, jvp: Callable | None = None,
                infer: Callable | None = None, doc: str = "") -> OpDef:
    """Register an elementwise op; by default operands share a dtype and broadcast."""
    return register(OpDef(name, "elementwise", infer or (_float_broadcast if float_only else _same_dtype_broadcast),
                          ref=ref, vjp=vjp, jvp=jvp, scalar=scalar, doc=doc))


def apply(name: str, *operands: Any, **attrs: Any) -> Tensor:
    """Build op `name` on operands promoted to their common dtype."""
    tensors = promote(*operands)
    return graph_of(*tensors).make(name, tensors, attrs)


def _float(x: Any) -> Tensor:
    """numpy's rule for float functions: integer and bool inputs compute in float64."""
    (t,) = promote(x)
    if not is_float(t.dtype):
        t = cast(t, np.float64)
    return t


# --- arithmetic --------------------------------------------------------------------------

elementwise("add", np.add, lambda s, a, b: s.add(a, b),
            vjp=lambda g, out, a, b: (g, g),
            jvp=lambda t, out, a, b: _sum_tangents(t[0], t[1]),
            doc="a + b")
elementwise("multiply", np.multiply, lambda s, a, b: s.mul(a, b),
            vjp=lambda g, out, a, b: (g * b, g * a),
            jvp=lambda t, out, a, b: _sum_tangents(None if t[0] is None else t[0] * b,
                                                   None if t[1] is None else a * t[1]),
            doc="a * b")
elementwise("exp", np.exp, lambda s, x: s.exp(x), float_only=True,
            vjp=lambda g, out, x: (g * out,),
            jvp=lambda t, out, x: t[0] * out,
            doc="e**x")


def _sum_tangents(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def add(a: Any, b: Any) -> Tensor:
    """Elementwise a + b with broadcasting."""
    return apply("add", a, b)


def multiply(a: Any, b: Any) -> Tensor:
    """Elementwise a * b with broadcasting."""
    return apply("multiply", a, b)


def exp(x: Any) -> Tensor:
    """Elementwise e**x."""
    return apply("exp", _float(x))


# --- dtype conversion ----------------------------------------------------------------------

def _cast_type(inputs: tuple, attrs: dict):
    return inputs[0].shape, attrs["dtype"]


register(OpDef("cast", "elementwise", _cast_type,
               ref=lambda x, *, dtype: x.astype(dtype),
               scalar=lambda s, x, *, dtype: s.cast(x, dtype),
               vjp=lambda g, out, x, *, dtype: (cast(g, x.dtype) if is_float(x.dtype) and is_float(dtype) else None,),
               jvp=lambda t, out, x, *, dtype: cast(t[0], dtype) if is_float(dtype) and t[0] is not None else None,
               doc="x converted to dtype (numpy's astype: floats truncate toward zero)"))


def cast(x: Any, dtype: Any) -> Tensor:
    """x converted to `dtype`."""
    from ..dtypes import as_dtype
    (t,) = promote(x)
    dt = as_dtype(dtype)
    return t if t.dtype == dt else t.graph.make("cast", (t,), {"dtype": dt})


# --- comparisons ----------------------------------------------------------------------------

elementwise("less", np.less, lambda s, a, b: s.cmp("lt", a, b), infer=_compare_type, doc="a < b")


def less(a: Any, b: Any) -> Tensor:
    """Elementwise a < b (bool)."""
    return apply("less", a, b)
