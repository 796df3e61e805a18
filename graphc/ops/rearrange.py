"""numpy's array-manipulation functions as composites of the shape primitives.

Each function follows numpy's signature and semantics and is built from transpose,
reshape, slice, pad, concatenate, broadcast_to and take, so its gradient, JVP and
lowering come from theirs. Functions that need a dim's size to build their graph
(roll, repeat, tile, array_split, ...) raise ShapeError when it is unknown.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from ..dtypes import axis_items, shape_str
from ..errors import GraphcError, ShapeError
from ..ir.composite import composite
from ..ir.graph import Tensor
from .core import as_tensor, constant, promote
from .elementwise import add, cast, floor, multiply, subtract, where
from .shape import _fail, broadcast_to, concatenate, expand_dims, getitem, reshape, reshape_like, split, take, transpose

__all__ = ["array_split", "atleast_1d", "atleast_2d", "atleast_3d", "column_stack", "dsplit", "dstack", "flip",
           "fliplr", "flipud", "hsplit", "hstack", "linspace", "moveaxis", "ravel", "repeat", "roll", "rot90",
           "swapaxes", "tile", "vsplit", "vstack"]


def _axes(axis: Any, ndim: int, what: str) -> tuple[int, ...]:
    """numpy's normalize_axis_tuple: ints in [-ndim, ndim), order kept, no repeats."""
    items = axis_items(axis)
    out = []
    for a in items:
        try:
            a = operator.index(a)
        except TypeError:
            raise _fail(GraphcError, f"{what}: axis must be an int, got {a!r}") from None
        if not -ndim <= a < ndim:
            raise _fail(ShapeError, f"{what}: axis {a} is out of bounds for a tensor of rank {ndim}")
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise _fail(ShapeError, f"{what}: repeated axis in {axis!r}")
    return tuple(out)


def _int(value: Any, what: str) -> int:
    """A Python int from an int-like argument; a GraphcError naming `what` otherwise (numpy: TypeError)."""
    try:
        return operator.index(value)
    except TypeError:
        raise _fail(GraphcError, f"{what} must be an integer, got {value!r}") from None


def _known(t: Tensor, axis: int, what: str) -> int:
    n = t.shape[axis]
    if n is None:
        raise _fail(ShapeError, f"{what} needs a known size on axis {axis}, got shape {shape_str(t.shape)}")
    return n


def _take_axis(t: Tensor, axis: int, start: int | None, stop: int | None, step: int = 1) -> Tensor:
    return getitem(t, (slice(None),) * axis + (slice(start, stop, step),))


# --- views: ravel, moveaxis, swapaxes, flip, rot90 ----------------------------------------------

@composite
def ravel(a: Any) -> Tensor:
    """numpy.ravel: the elements in row-major order, as a 1-D tensor."""
    (t,) = promote(a)
    return reshape(t, -1)


@composite
def moveaxis(a: Any, source: Any, destination: Any) -> Tensor:
    """numpy.moveaxis: axes `source` moved to positions `destination`, the others keep their order."""
    (t,) = promote(a)
    src, dst = _axes(source, t.ndim, "moveaxis source"), _axes(destination, t.ndim, "moveaxis destination")
    if len(src) != len(dst):
        raise _fail(ShapeError, "moveaxis: `source` and `destination` must have the same number of elements")
    order = [k for k in range(t.ndim) if k not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return t if order == list(range(t.ndim)) else transpose(t, order)


@composite
def swapaxes(a: Any, axis1: int, axis2: int) -> Tensor:
    """numpy.swapaxes."""
    (t,) = promote(a)
    i, j = _axes((axis1,), t.ndim, "swapaxes") + _axes((axis2,), t.ndim, "swapaxes")
    perm = list(range(t.ndim))
    perm[i], perm[j] = j, i
    return t if i == j else transpose(t, perm)


@composite
def flip(m: Any, axis: Any = None) -> Tensor:
    """numpy.flip: the order of elements reversed along `axis` (None: every axis)."""
    (t,) = promote(m)
    axes = range(t.ndim) if axis is None else _axes(axis, t.ndim, "flip")
    return getitem(t, tuple(slice(None, None, -1) if k in axes else slice(None) for k in range(t.ndim)))


@composite
def fliplr(m: Any) -> Tensor:
    """numpy.fliplr: reverse axis 1 (rank >= 2)."""
    (t,) = promote(m)
    if t.ndim < 2:
        raise _fail(ShapeError, f"fliplr: input must be >= 2-d, got shape {shape_str(t.shape)}")
    return flip(t, 1)


@composite
def flipud(m: Any) -> Tensor:
    """numpy.flipud: reverse axis 0 (rank >= 1)."""
    (t,) = promote(m)
    if t.ndim < 1:
        raise _fail(ShapeError, "flipud: input must be >= 1-d, got a scalar")
    return flip(t, 0)


@composite
def rot90(m: Any, k: int = 1, axes: Any = (0, 1)) -> Tensor:
    """numpy.rot90: rotate by 90 degrees k times in the plane of `axes`, from the first towards the second."""
    (t,) = promote(m)
    axes = tuple(axes)
    if len(axes) != 2:
        raise _fail(ShapeError, "rot90: len(axes) must be 2")
    if axes[0] == axes[1] or abs(axes[0] - axes[1]) == t.ndim:
        raise _fail(ShapeError, "rot90: axes must be different")
    a0, a1 = _axes(axes[0], t.ndim, "rot90"), _axes(axes[1], t.ndim, "rot90")
    k = _int(k, "rot90: k") % 4
    if k == 0:
        return t
    if k == 2:
        return flip(flip(t, a0), a1)
    perm = list(range(t.ndim))
    perm[a0[0]], perm[a1[0]] = perm[a1[0]], perm[a0[0]]
    return transpose(flip(t, a1), perm) if k == 1 else flip(transpose(t, perm), a1)


# --- roll, repeat, tile -------------------------------------------------------------------------

@composite
def roll(a: Any, shift: Any, axis: Any = None) -> Tensor:
    """numpy.roll: elements shifted along `axis` (None: of the flattened tensor), wrapping around."""
    (t,) = promote(a)
    if axis is None:
        return reshape_like(roll(ravel(t), shift, 0), t) if t.ndim != 1 else roll(t, shift, 0)
    try:
        pairs = np.broadcast(np.asarray(shift), np.asarray(axis))
    except ValueError:
        raise _fail(ShapeError, f"roll: shift {shift!r} and axis {axis!r} do not broadcast") from None
    total: dict[int, int] = {}
    for s, ax in pairs:
        (k,) = _axes(int(ax), t.ndim, "roll")
        total[k] = total.get(k, 0) + _int(s, "roll: shift")
    for k, s in sorted(total.items()):
        n = _known(t, k, "roll")
        s = s % n if n else 0
        if s:
            t = concatenate([_take_axis(t, k, n - s, None), _take_axis(t, k, None, n - s)], k)
    return t


@composite
def repeat(a: Any, repeats: Any, axis: int | None = None) -> Tensor:
    """numpy.repeat: each element repeated `repeats` times along `axis` (None: of the flattened tensor)."""
    (t,) = promote(a)
    if axis is None:
        t, axis = ravel(t), 0
    (axis,) = _axes((axis,), t.ndim, "repeat")
    reps = np.asarray(repeats)
    if reps.dtype.kind not in "iu" or reps.ndim > 1:
        raise _fail(GraphcError, f"repeat: repeats must be an int or a 1-D sequence of ints, got {repeats!r}")
    if (reps < 0).any():
        raise _fail(ShapeError, f"repeat: repeats may not contain negative values, got {repeats!r}")
    n = _known(t, axis, "repeat")
    if reps.ndim == 1 and reps.size not in (1, n):
        raise _fail(ShapeError, f"repeat: {reps.size} repeats for an axis of size {n}")
    if reps.size == 1 and None not in t.shape:
        r = int(reps.reshape(()))
        wide = broadcast_to(expand_dims(t, axis + 1), t.shape[:axis + 1] + (r,) + t.shape[axis + 1:])
        return reshape(wide, t.shape[:axis] + (n * r,) + t.shape[axis + 1:])
    return take(t, np.repeat(np.arange(n), np.broadcast_to(reps, (n,))).astype(np.int64), axis)


@composite
def tile(A: Any, reps: Any) -> Tensor:  # noqa: N803 (numpy's name)
    """numpy.tile: A repeated `reps` times along each axis (shapes aligned on the right)."""
    (t,) = promote(A)
    reps = (_int(reps, "tile: reps"),) if np.isscalar(reps) else tuple(_int(r, "tile: reps") for r in reps)
    if any(r < 0 for r in reps):
        raise _fail(ShapeError, f"tile: reps must be non-negative, got {reps}")
    if None in t.shape:
        raise _fail(ShapeError, f"tile needs a known shape, got {shape_str(t.shape)}")
    reps = (1,) * (t.ndim - len(reps)) + reps
    shape = (1,) * (len(reps) - t.ndim) + t.shape
    if all(r == 1 for r in reps):
        return reshape(t, shape)
    inter = tuple(d for pair in zip((1,) * len(shape), shape) for d in pair)
    wide = broadcast_to(reshape(t, inter), tuple(d for pair in zip(reps, shape) for d in pair))
    return reshape(wide, tuple(r * d for r, d in zip(reps, shape)))


# --- atleast_nd and the stacking family ---------------------------------------------------------

def _atleast(arys: tuple, ndim: int) -> Any:
    out = []
    for a in arys:
        (t,) = promote(a)
        if t.ndim < ndim:
            shape = {0: (1,) * ndim, 1: ((1,) + t.shape + (1,))[:ndim], 2: t.shape + (1,)}[t.ndim]
            t = reshape(t, tuple(-1 if d is None else d for d in shape))
        out.append(t)
    return out[0] if len(out) == 1 else tuple(out)


@composite
def atleast_1d(*arys: Any) -> Any:
    """numpy.atleast_1d: scalars become shape (1,); one tensor for one input, else a tuple."""
    return _atleast(arys, 1)


@composite
def atleast_2d(*arys: Any) -> Any:
    """numpy.atleast_2d: (N,) becomes (1, N), scalars (1, 1)."""
    return _atleast(arys, 2)


@composite
def atleast_3d(*arys: Any) -> Any:
    """numpy.atleast_3d: (N,) becomes (1, N, 1), (M, N) becomes (M, N, 1), scalars (1, 1, 1)."""
    return _atleast(arys, 3)


def _seq(tup: Any, what: str) -> list:
    if isinstance(tup, Tensor) or not len(tup):
        raise _fail(GraphcError, f"{what} needs a non-empty sequence of tensors")
    return list(tup)


def _as_list(x: Any) -> list:
    return list(x) if isinstance(x, tuple) else [x]


@composite
def hstack(tup: Any) -> Tensor:
    """numpy.hstack: joined along axis 1 (axis 0 for 1-D inputs)."""
    arrs = _as_list(atleast_1d(*_seq(tup, "hstack")))
    return concatenate(arrs, 0 if arrs[0].ndim == 1 else 1)


@composite
def vstack(tup: Any) -> Tensor:
    """numpy.vstack: joined along axis 0 after atleast_2d."""
    return concatenate(_as_list(atleast_2d(*_seq(tup, "vstack"))), 0)


@composite
def dstack(tup: Any) -> Tensor:
    """numpy.dstack: joined along axis 2 after atleast_3d."""
    return concatenate(_as_list(atleast_3d(*_seq(tup, "dstack"))), 2)


@composite
def column_stack(tup: Any) -> Tensor:
    """numpy.column_stack: 1-D inputs become columns, then joined along axis 1."""
    arrs = []
    for a in _seq(tup, "column_stack"):
        (t,) = promote(a)
        arrs.append(transpose(atleast_2d(t)) if t.ndim < 2 else t)
    return concatenate(arrs, 1)


# --- the split family ---------------------------------------------------------------------------

@composite
def array_split(ary: Any, indices_or_sections: Any, axis: int = 0) -> list[Tensor]:
    """numpy.array_split: like split, but N sections need not divide the axis (the first ones get one more)."""
    (t,) = promote(ary)
    if isinstance(indices_or_sections, (float, Tensor)):
        raise _fail(GraphcError, f"array_split: indices_or_sections must be an int or a sequence of ints, "
                                 f"got {indices_or_sections!r}")
    if not isinstance(indices_or_sections, (int, np.integer)):
        return split(t, indices_or_sections, axis)
    (axis,) = _axes((axis,), t.ndim, "array_split")
    parts = int(indices_or_sections)
    if parts <= 0:
        raise _fail(ShapeError, f"array_split: number of sections must be larger than 0, got {parts}")
    each, extra = divmod(_known(t, axis, "array_split"), parts)
    sizes = [each + 1] * extra + [each] * (parts - extra)
    return split(t, list(np.cumsum(sizes)[:-1]), axis) if parts > 1 else [t]


def _split_rank(ary: Any, ndim: int, axis: int, what: str, ios: Any) -> list[Tensor]:
    (t,) = promote(ary)
    if t.ndim < ndim:
        raise _fail(ShapeError, f"{what} only works on tensors of {ndim} or more dimensions, "
                                f"got shape {shape_str(t.shape)}")
    return split(t, ios, axis)


@composite
def hsplit(ary: Any, indices_or_sections: Any) -> list[Tensor]:
    """numpy.hsplit: split along axis 1 (axis 0 for 1-D tensors)."""
    (t,) = promote(ary)
    return _split_rank(t, 1, 1 if t.ndim > 1 else 0, "hsplit", indices_or_sections)


@composite
def vsplit(ary: Any, indices_or_sections: Any) -> list[Tensor]:
    """numpy.vsplit: split along axis 0 (rank >= 2)."""
    return _split_rank(ary, 2, 0, "vsplit", indices_or_sections)


@composite
def dsplit(ary: Any, indices_or_sections: Any) -> list[Tensor]:
    """numpy.dsplit: split along axis 2 (rank >= 3)."""
    return _split_rank(ary, 3, 2, "dsplit", indices_or_sections)


# --- linspace ----------------------------------------------------------------------------------

@composite
def linspace(start: Any, stop: Any, num: int = 50, endpoint: bool = True, retstep: bool = False,
             dtype: Any = None, axis: int = 0) -> Any:
    """numpy.linspace: `num` evenly spaced values from start to stop (differentiable in start and stop).

    start and stop may be tensors (their shapes broadcast; the new axis is `axis`). With
    Python-number bounds the result is float32 (graphc's default float, as tf.linspace)
    where numpy gives float64. Values are computed as numpy does: start + i * step, the last
    one set to stop when `endpoint`.
    """
    num = _int(num, "linspace: num")
    if num < 0:
        raise _fail(ShapeError, f"linspace: number of samples, {num}, must be non-negative")
    lo, hi = promote(start, stop)
    if lo.dtype.kind != "f":  # numpy's float64, or graphc's float32 for Python ints
        python = all(isinstance(v, (int, float)) for v in (start, stop))
        lo, hi = cast(lo, np.float32 if python else np.float64), cast(hi, np.float32 if python else np.float64)
    div = num - 1 if endpoint else num
    delta = subtract(hi, lo)
    shape = (num,) + (1,) * delta.ndim
    steps = constant(np.arange(num, dtype=lo.dtype).reshape(shape), graph=lo.graph)
    if div > 0:
        step = delta / as_tensor(np.asarray(div, lo.dtype), graph=lo.graph)
        y = add(multiply(steps, step), lo)
    else:
        step = multiply(delta, np.asarray(np.nan, lo.dtype))
        y = add(multiply(steps, delta), lo)
    if endpoint and num > 1:
        last = np.zeros(shape, bool)
        last[-1] = True
        y = where(last, hi, y)
    y = moveaxis(y, 0, axis)
    if dtype is not None and np.dtype(dtype) != y.dtype:
        y = cast(floor(y) if np.dtype(dtype).kind in "iu" else y, dtype)
    return (y, step) if retstep else y
