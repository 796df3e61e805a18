"""Graph leaves (placeholder, constant, variable) and turning Python values into tensors."""

from __future__ import annotations

import itertools
import os
import warnings
from typing import Any

import numpy as np

from ..dtypes import as_dtype, as_shape, out_of_range, result_dtype, shape_str
from ..errors import DTypeError, Float64Warning, GraphcError, ShapeError, user_location
from ..ir.graph import Const, Graph, Tensor, get_default_graph
from .registry import OpDef, register

__all__ = ["Variable", "constant", "enable_x64", "placeholder"]

_x64 = [os.environ.get("GRAPHC_ENABLE_X64", "") not in ("", "0")]


def enable_x64(enabled: bool = True) -> None:
    """Declare float64 intentional (JAX's ``jax_enable_x64``; env ``GRAPHC_ENABLE_X64=1``).

    graphc always computes float64 where numpy's promotion gives it; this switch only
    silences the `Float64Warning` that float64 mixed into float32 arithmetic raises once per
    graph (process-wide).
    """
    _x64[0] = bool(enabled)


def _source_type(inputs: tuple, attrs: dict):
    return attrs["shape"], attrs["dtype"]


def _variable_type(inputs: tuple, attrs: dict):
    initial = attrs["initial"].array
    if initial.shape != attrs["shape"] or initial.dtype != attrs["dtype"]:
        raise ShapeError(f"the initial value is {initial.dtype}{shape_str(initial.shape)}, the variable is declared "
                         f"{attrs['dtype']}{shape_str(attrs['shape'])}")
    return attrs["shape"], attrs["dtype"]


def _const_type(inputs: tuple, attrs: dict):
    arr = attrs["value"].array
    return arr.shape, arr.dtype


register(OpDef("placeholder", "source", _source_type, attrs={"shape": "dims", "dtype": "dtype", "uid": "int"},
               doc="A value fed at run time."))
register(OpDef("constant", "source", _const_type, ref=lambda *, value: value.array, attrs={"value": "array"},
               doc="A fixed array."))
register(OpDef("variable", "source", _variable_type,
               attrs={"shape": "shape", "dtype": "dtype", "initial": "array", "trainable": "bool", "uid": "int"},
               doc="A session-owned value, initialised from `initial` and changed by assign ops."))

_leaf_ids = itertools.count()  # makes every placeholder and variable a distinct node


def next_leaf_id() -> int:
    """A fresh identity for a placeholder or variable."""
    return next(_leaf_ids)


def placeholder(dtype: Any, shape: Any = None, name: str | None = None) -> Tensor:
    """A graph input fed through `feed_dict`; dims may be None (known at run time)."""
    if shape is None:
        raise ShapeError("placeholder needs a shape (use None for an unknown dim)")
    shape = as_shape(shape, "placeholder shape", unknown=True)
    if any(d is not None and d < 0 for d in shape):
        raise ShapeError(f"placeholder shape {shape} has a negative dim")
    g = get_default_graph()
    return g.make("placeholder", (), {"shape": shape, "dtype": as_dtype(dtype), "uid": next_leaf_id()},
                  name=name or "placeholder")


def to_array(value: Any, dtype: Any = None) -> np.ndarray:
    """Convert a Python value to an array with graphc's default dtypes (float32, int32)."""
    if dtype is not None:
        dt = as_dtype(dtype)
        arr = np.asarray(value)
        if arr.dtype != dt and not np.can_cast(arr.dtype, dt, casting="same_kind") and arr.size:
            if not (arr.dtype.kind in "iub" and dt.kind in "iubf"):
                raise DTypeError(f"cannot convert a {arr.dtype} value to {dt}")
        bad = out_of_range(arr, dt)  # never wrapped (numpy wraps arrays, raises OverflowError for ints)
        if bad is not None:
            raise DTypeError(f"cannot convert to {dt}: {bad}")
        return np.asarray(value, dtype=dt)
    if isinstance(value, (np.ndarray, np.generic)):
        arr = np.asarray(value)
        if arr.dtype.byteorder in "<>":  # big-endian (non-native) data: convert to native order
            arr = arr.astype(arr.dtype.newbyteorder("="))
        if arr.dtype == np.float16:
            arr = arr.astype(np.float32)
        as_dtype(arr.dtype)
        return arr
    arr = np.asarray(value)
    if arr.dtype == np.float64:
        return arr.astype(np.float32)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int32 if arr.size == 0 or np.abs(arr).max() < 2**31 else np.int64)
    as_dtype(arr.dtype)
    return arr


def constant(value: Any, dtype: Any = None, name: str | None = None, graph: Graph | None = None) -> Tensor:
    """A constant tensor. Python floats default to float32 and ints to int32, like TensorFlow."""
    if isinstance(value, Tensor):
        raise GraphcError("constant() takes a value, not a tensor")
    arr = to_array(value, dtype)
    g = graph or get_default_graph()
    return g.make("constant", (), {"value": Const(arr)}, name=name or "const")


def Variable(initial_value: Any, dtype: Any = None, name: str | None = None,  # noqa: N802 (TF's name)
             trainable: bool = True) -> Tensor:
    """A value owned by each Session, initialised from `initial_value` when the session starts."""
    if isinstance(initial_value, Tensor):
        raise GraphcError("Variable initial values must be arrays (evaluate the tensor first)")
    if callable(initial_value):
        initial_value = initial_value()
    arr = to_array(initial_value, dtype)
    g = get_default_graph()
    return g.make("variable", (), {"shape": arr.shape, "dtype": arr.dtype, "initial": Const(arr),
                                   "trainable": bool(trainable), "uid": next_leaf_id()},
                  name=name or "Variable")


def graph_of(*values: Any) -> Graph:
    """The graph of the first tensor among values, else the default graph."""
    for v in values:
        if isinstance(v, Tensor):
            return v.graph
    return get_default_graph()


def holds_tensor(value: Any) -> bool:
    """Whether value is a (nested) list or tuple with a tensor in it."""
    return isinstance(value, (list, tuple)) and any(isinstance(v, Tensor) or holds_tensor(v) for v in value)


def pack(value: list | tuple) -> Tensor:
    """numpy.array of a (nested) list holding tensors: its entries stacked along a new axis 0."""
    parts = promote(*value)
    shapes = {p.shape for p in parts}
    if len(shapes) > 1:
        raise ShapeError("a list of tensors must hold entries of one shape (numpy.array), got "
                         + ", ".join(map(shape_str, (p.shape for p in parts))) + f"\n  at {user_location()}")
    g = parts[0].graph
    return g.make("concatenate", tuple(g.make("expand_dims", (p,), {"axis": 0}) for p in parts), {"axis": 0})


def as_tensor(value: Any, dtype: Any = None, graph: Graph | None = None) -> Tensor:
    """Pass tensors through; stack lists holding tensors (`pack`); make anything else a constant."""
    if isinstance(value, Tensor):
        return value
    if holds_tensor(value):
        t = pack(value)
        return t if dtype is None else _cast_to(t, as_dtype(dtype))
    return constant(value, dtype=dtype, graph=graph)


def _weak(value: Any) -> Any:
    """The operand numpy's promotion should see: Python scalars stay weakly typed."""
    if isinstance(value, Tensor):
        return value.dtype
    if isinstance(value, (bool, int, float)):
        return value
    return to_array(value).dtype


def promote(*values: Any) -> tuple[Tensor, ...]:
    """Convert operands to tensors of their common dtype, numpy-style (NEP 50)."""
    values = tuple(pack(v) if holds_tensor(v) else v for v in values)
    g = graph_of(*values)
    weak = [_weak(v) for v in values]
    try:
        dt = result_dtype(*weak)
    except TypeError as exc:
        raise DTypeError(f"operands {values!r} have no common dtype") from exc
    if dt == np.float64 and not _x64[0] and np.dtype(np.float32) in weak and not g.warned_float64:
        _warn_float64(g, values, weak)
    return tuple(_cast_to(as_tensor(v, dtype=dt if not isinstance(v, Tensor) else None, graph=g), dt)
                 for v in values)


def _warn_float64(g: Graph, values: tuple, weak: list) -> None:
    """The once-per-graph warning that a float32 computation became float64."""
    g.warned_float64 = True
    wide = [v.name if isinstance(v, Tensor) else f"a {dt} array" for v, dt in zip(values, weak)
            if isinstance(dt, np.dtype) and dt != np.float32]
    loc = user_location()
    filename, _, line = loc.rpartition(":")
    warnings.warn_explicit(
        f"float32 arithmetic with {', '.join(wide)} promotes to float64 (numpy's rule) at {loc}; make it "
        "float32 (e.g. gc.Variable(np.zeros(shape, np.float32))), or call gc.enable_x64() if float64 is "
        "intended (warned once per graph)", Float64Warning, filename or loc, int(line) if line.isdigit() else 0)


def _cast_to(t: Tensor, dt: np.dtype) -> Tensor:
    if t.dtype == dt:
        return t
    return t.graph.make("cast", (t,), {"dtype": dt})
