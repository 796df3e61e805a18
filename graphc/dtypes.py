"""The dtypes graphc supports (plain numpy dtypes) and shape/broadcast helpers."""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np

from .errors import DTypeError, ShapeError

float32 = np.dtype("float32")
float64 = np.dtype("float64")
int32 = np.dtype("int32")
int64 = np.dtype("int64")
bool_ = np.dtype("bool")

SUPPORTED = (float32, float64, int32, int64, bool_)
Shape = tuple  # tuple[int | None, ...]; None is a dim unknown until run time


def as_dtype(value: Any) -> np.dtype:
    """Normalise a dtype-like (np.dtype, numpy type, string, Python type) to a supported dtype.

    The byte order is dropped: '>f4' names float32 (arrays are converted to native order).
    """
    if value is float:
        return float32
    if value is int:
        return int32
    try:
        dt = np.dtype(value)
    except TypeError as exc:
        raise DTypeError(f"not a dtype: {value!r}") from exc
    if dt.byteorder in "<>":  # non-native byte order (native is "=")
        dt = dt.newbyteorder("=")
    if dt not in SUPPORTED:
        raise DTypeError(f"unsupported dtype {dt}; graphc supports "
                         + ", ".join(str(d) for d in SUPPORTED))
    return dt


def is_float(dt: np.dtype | None) -> bool:
    return dt is not None and dt.kind == "f"


def is_int(dt: np.dtype | None) -> bool:
    return dt is not None and dt.kind in "iu"


def result_dtype(*dtypes: np.dtype) -> np.dtype:
    """numpy's promotion among graphc dtypes (Python scalars are given the other operand's dtype)."""
    return as_dtype(np.result_type(*dtypes))


def shape_str(shape: Shape | None) -> str:
    if shape is None:
        return "?"
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


INDEX_MAX = 2**63 - 1  # generated code indexes and offsets with int64


def as_dim(d: Any, what: str = "shape") -> int:
    """One dim as a Python int; ShapeError for floats, bools and other non-integers (numpy's rule)."""
    if isinstance(d, (bool, np.bool_)):
        raise ShapeError(f"{what}: dim {d!r} is a bool, not an integer")
    try:
        return operator.index(d)
    except TypeError:
        raise ShapeError(f"{what}: dim {d!r} is not an integer") from None


def as_shape(shape: Any, what: str = "shape", unknown: bool = False) -> Shape:
    """A shape-like (int or sequence of ints; None dims if `unknown`) as a tuple of Python ints."""
    if np.isscalar(shape) or (isinstance(shape, np.ndarray) and shape.ndim == 0):
        dims = (shape,)
    else:
        try:
            dims = tuple(shape)
        except TypeError:
            raise ShapeError(f"{what}: {shape!r} is not a shape") from None
    if not unknown and any(d is None for d in dims):
        raise ShapeError(f"{what} {dims} has an unknown dim")
    return tuple(None if d is None else as_dim(d, what) for d in dims)


def out_of_range(arr: np.ndarray, dtype: np.dtype) -> str | None:
    """"the value V is out of range for DTYPE [min, max]" when `arr` holds an integer that the
    integer `dtype` cannot hold (numpy's casts would wrap it), else None."""
    if dtype.kind not in "iu" or arr.dtype.kind not in "iu" or not arr.size:
        return None
    if np.can_cast(arr.dtype, dtype, casting="safe"):
        return None
    info = np.iinfo(dtype)
    low, high = int(arr.min()), int(arr.max())
    if low >= info.min and high <= info.max:
        return None
    return f"the value {low if low < info.min else high} is out of range for {dtype} [{info.min}, {info.max}]"


def check_size(shape: Shape, dtype: np.dtype | None) -> None:
    """ShapeError when the known dims' element count or byte size does not fit the index type."""
    count = math.prod(d for d in shape if d is not None)
    nbytes = count * (dtype.itemsize if dtype is not None else 1)
    if nbytes > INDEX_MAX or count > INDEX_MAX:
        raise ShapeError(f"shape {shape_str(shape)} has {count} elements ({nbytes} bytes), more than the "
                         f"index type holds (2**63 - 1)")


def is_static(shape: Shape) -> bool:
    return all(d is not None for d in shape)


def num_elements(shape: Shape) -> int | None:
    n = 1
    for d in shape:
        if d is None:
            return None
        n *= d
    return n


def broadcast_shapes(*shapes: Shape) -> Shape:
    """numpy broadcasting over shapes that may hold None (unknown) dims.

    Raises ShapeError (without location; callers add it) when two known dims disagree.
    """
    if all(s == shapes[0] for s in shapes[1:]):  # (most operands of a map: their common shape)
        return tuple(shapes[0]) if shapes else ()
    ndim = max((len(s) for s in shapes), default=0)
    out: list[int | None] = []
    for axis in range(ndim):
        dims = [s[axis - ndim + len(s)] for s in shapes if axis - ndim + len(s) >= 0]
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            raise ShapeError("shapes " + ", ".join(shape_str(s) for s in shapes) + " do not broadcast")
        if known:
            out.append(known.pop())
        elif any(d is None for d in dims):
            out.append(None)
        else:
            out.append(1)
    return tuple(out)


def axis_items(axis: Any) -> tuple:
    """An axis argument (one axis or a sequence of them) as a tuple of its items, unchecked."""
    return tuple(axis) if isinstance(axis, (tuple, list, range)) or np.ndim(axis) else (axis,)


def normalize_axes(axis: Any, ndim: int) -> tuple[int, ...]:
    """Turn axis=None|int|sequence into a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = axis_items(axis)
    out = []
    for a in axes:
        try:
            a = operator.index(a)  # a float axis is refused, as numpy does, never truncated
        except TypeError:
            raise ShapeError(f"axis {a!r} is not an integer") from None
        if not -ndim <= a < ndim:
            raise ShapeError(f"axis {a} is out of range for rank {ndim}")
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ShapeError(f"repeated axis in {axis!r}")
    return tuple(sorted(out))
