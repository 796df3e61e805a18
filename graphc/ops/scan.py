"""Cumulative sums and products, and differences, as composites of slice, pad and arithmetic.

cumsum and cumprod use the Hillis-Steele scan: ceil(log2 n) steps, each combining the
running result with itself shifted by 1, 2, 4, ... along the axis (a pad of a slice).
That is O(n log n) work in log n fused kernels; the gradient comes from the pieces, so
cumprod's derivative is exact at zeros (no division by the input).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..dtypes import is_float, shape_str
from ..errors import ShapeError
from ..ir.composite import composite
from ..ir.graph import Tensor
from .core import promote
from .elementwise import cast, multiply, not_equal, subtract
from .rearrange import _axes, _int, _known, _take_axis, ravel
from .shape import _fail, broadcast_to, concatenate, pad

__all__ = ["cumprod", "cumsum", "diff"]

_NO_VALUE = object()  # numpy's np._NoValue: "not given" where None would be a value


def _scan(a: Any, axis: int | None, dtype: Any, combine: Any, identity: int, what: str) -> Tensor:
    (t,) = promote(a)
    if axis is None:
        t, axis = ravel(t), 0
    if t.ndim == 0:
        raise _fail(ShapeError, f"{what}: axis {axis} is out of bounds for a scalar")
    (axis,) = _axes((axis,), t.ndim, what)
    dt = np.dtype(dtype) if dtype is not None else t.dtype if is_float(t.dtype) else np.dtype(np.int64)
    t = cast(t, dt) if t.dtype != dt else t
    n = _known(t, axis, what)
    shift = 1
    while shift < n:
        widths = tuple((shift, 0) if k == axis else (0, 0) for k in range(t.ndim))
        t = combine(t, pad(_take_axis(t, axis, None, n - shift), widths, constant_values=identity))
        shift *= 2
    return t


@composite
def cumsum(a: Any, axis: int | None = None, dtype: Any = None) -> Tensor:
    """numpy.cumsum: running sums along `axis` (None: of the flattened tensor); ints and bools give int64."""
    return _scan(a, axis, dtype, lambda x, y: x + y, 0, "cumsum")


@composite
def cumprod(a: Any, axis: int | None = None, dtype: Any = None) -> Tensor:
    """numpy.cumprod: running products along `axis` (None: of the flattened tensor); ints and bools give int64."""
    return _scan(a, axis, dtype, multiply, 1, "cumprod")


def _edge(value: Any, t: Tensor, axis: int) -> Tensor:
    """prepend/append: a scalar becomes a size-1 slab along axis; anything else is used as given."""
    (v,) = promote(value)
    if v.ndim == 0:
        shape = t.shape[:axis] + (1,) + t.shape[axis + 1:]
        if None in shape:
            raise _fail(ShapeError, f"diff: a scalar prepend/append needs a known shape, got {shape_str(t.shape)}")
        v = broadcast_to(v, shape)
    return v


@composite
def diff(a: Any, n: int = 1, axis: int = -1, prepend: Any = _NO_VALUE, append: Any = _NO_VALUE) -> Tensor:
    """numpy.diff: the n-th discrete difference along `axis` (bools: not_equal, as numpy)."""
    (t,) = promote(a)
    n = _int(n, "diff: n")
    if n < 0:
        raise _fail(ShapeError, f"diff: order must be non-negative but got {n}")
    if t.ndim == 0:
        raise _fail(ShapeError, "diff requires input that is at least one dimensional")
    (axis,) = _axes((axis,), t.ndim, "diff")
    if n == 0:
        return t
    parts = ([_edge(prepend, t, axis)] if prepend is not _NO_VALUE else []) + [t]
    parts += [_edge(append, t, axis)] if append is not _NO_VALUE else []
    t = concatenate(parts, axis) if len(parts) > 1 else t
    for _ in range(n):
        hi, lo = _take_axis(t, axis, 1, None), _take_axis(t, axis, None, -1)
        t = not_equal(hi, lo) if t.dtype == np.bool_ else subtract(hi, lo)
    return t
