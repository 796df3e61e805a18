"""Sorting and selection: sort, argsort, select, as composites of comparisons and gathers.

argsort orders each line stably (NaN last, ties by position). Lines of up to
`RANK_SORT_MAX` elements are ranked by counting the elements that sort before each one,
then the ranks are inverted (comparisons fused into sum reductions: O(n^2) work, a small
graph). Longer lines go through a bitonic sorting network on (value, position) keys:
O(n log^2 n) work in log2(N)(log2(N)+1)/2 compare-exchange stages, N = n rounded up to
a power of two.

sort gathers x at argsort's indices with the `permute` primitive, whose VJP gathers the
cotangent at the inverse permutation (argsort of the indices): the gradient goes
"through the permutation" at the cost of another argsort, never a scatter.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..dtypes import int64, is_float, is_int, shape_str
from ..errors import DTypeError, GraphcError, ShapeError
from ..ir.composite import composite
from ..ir.graph import Tensor
from .core import constant, promote
from .elementwise import (
    cast,
    equal,
    greater_equal,
    less,
    logical_and,
    logical_not,
    logical_or,
    not_equal,
    subtract,
    where,
)
from .rearrange import _axes, _known, moveaxis, ravel
from .reduce import sum as reduce_sum
from .registry import OpDef, register
from .shape import _canon_axis, _clamp, _fail, broadcast_like, expand_dims, getitem, pad, take

__all__ = ["argsort", "select", "sort"]


def _sortable(a: Any, axis: int | None, kind: Any, order: Any, stable: Any, what: str) -> tuple[Tensor, int]:
    """The tensor to sort (flattened for axis=None) and the normalised axis; checks numpy's options."""
    if order is not None:
        raise _fail(GraphcError, f"{what}: `order` (structured fields) is not supported")
    if kind not in (None, "quicksort", "mergesort", "heapsort", "stable") or stable not in (None, True, False):
        raise _fail(GraphcError, f"{what}: unknown kind {kind!r} / stable {stable!r}")
    (t,) = promote(a)
    if axis is None:
        t, axis = ravel(t), 0
    if t.ndim == 0:
        raise _fail(ShapeError, f"{what}: axis {axis} is out of bounds for a scalar")
    return t, _axes((axis,), t.ndim, what)[0]


def _ranks(x: Tensor) -> Tensor:
    """The position of each element of x's last axis in the stable ascending order (NaN last), int64."""
    n = x.shape[-1]
    xi, xj = expand_dims(x, -1), expand_dims(x, -2)  # [..., i, j]: does j sort before i?
    earlier = np.tri(n, k=-1, dtype=bool)  # j < i
    lt, tie = less(xj, xi), equal(xj, xi)
    if is_float(x.dtype):
        nan_i, nan_j = not_equal(xi, xi), not_equal(xj, xj)
        lt = logical_or(lt, logical_and(nan_i, logical_not(nan_j)))
        tie = logical_or(tie, logical_and(nan_i, nan_j))
    before = logical_or(lt, logical_and(tie, earlier))
    return reduce_sum(before, -1)


RANK_SORT_MAX = 256


def _bitonic(x: Tensor) -> Tensor:
    """argsort of x's last axis by a bitonic network on (value, key) pairs; key = position + N * class.

    Classes order what values alone cannot: 0 numbers, 1 NaN, 2 padding (their values are
    replaced by the largest value, so the key decides among them and among equal numbers).
    """
    n = x.shape[-1]
    size = 1 << (n - 1).bit_length()
    if x.dtype == np.bool_:
        x = cast(x, np.int32)
    top = np.asarray(np.inf if is_float(x.dtype) else np.iinfo(x.dtype).max, x.dtype)
    pos = np.arange(size, dtype=np.int64)
    base = pos + np.where(pos < n, 0, 2 * size)
    value = x
    key = broadcast_like(constant(base[:n], graph=x.graph), x)
    if is_float(x.dtype):
        nan = not_equal(x, x)
        value = where(nan, top, x)
        key = key + where(nan, np.int64(size), np.int64(0))
    if size > n:
        widths = ((0, 0),) * (x.ndim - 1) + ((0, size - n),)
        value = pad(value, widths, constant_values=top)
        key = pad(key, widths, constant_values=0) + np.where(pos < n, 0, base)
    block = 2
    while block <= size:
        step = block // 2
        while step >= 1:
            partner = pos ^ step
            keep_min = ((pos & step) == 0) == ((pos & block) == 0)  # the lower slot of an ascending pair
            pv, pk = take(value, partner, -1), take(key, partner, -1)
            partner_first = logical_or(less(pv, value), logical_and(equal(pv, value), less(pk, key)))
            swap = equal(partner_first, keep_min)
            value, key = where(swap, pv, value), where(swap, pk, key)
            step //= 2
        block *= 2
    key = getitem(key, (..., slice(0, n))) if size > n else key
    return where(greater_equal(key, size), subtract(key, size), key)


def _by_rank(x: Tensor) -> Tensor:
    """argsort of x's last axis by inverting the ranks (O(n^2), one small graph)."""
    n = x.shape[-1]
    positions = np.arange(n, dtype=np.int64)
    hit = equal(expand_dims(_ranks(x), -2), positions[:, None])  # [..., r, i]: element i has rank r
    return reduce_sum(where(hit, positions, np.int64(0)), -1)


@composite
def argsort(a: Any, axis: int | None = -1, kind: Any = None, order: Any = None, stable: Any = None) -> Tensor:
    """numpy.argsort: int64 indices that sort `a` along `axis` (None: flattened).

    Always the stable order (numpy's kind='stable'): equal elements keep their order and
    NaNs go last. Every `kind` gives that order; numpy's default quicksort may order ties
    differently.
    """
    t, axis = _sortable(a, axis, kind, order, stable, "argsort")
    n = _known(t, axis, "argsort")
    line = moveaxis(t, axis, -1)
    perm = _by_rank(line) if n <= RANK_SORT_MAX else _bitonic(line)
    return moveaxis(perm, -1, axis)


@composite
def sort(a: Any, axis: int | None = -1, kind: Any = None, order: Any = None, stable: Any = None) -> Tensor:
    """numpy.sort along `axis` (None: flattened), NaN last; the gradient follows the stable permutation."""
    t, axis = _sortable(a, axis, kind, order, stable, "sort")
    return permute(t, argsort(t, axis), axis)


# --- permute: a gather by a permutation, whose adjoint is a gather by the inverse -------------

def _permute_type(inputs: tuple, attrs: dict):
    x, perm = inputs
    if not is_int(perm.dtype):
        raise DTypeError(f"the permutation must be integers, got {perm.dtype}")
    if perm.ndim != x.ndim or any(None not in (a, b) and a != b for a, b in zip(perm.shape, x.shape)):
        raise ShapeError(f"the permutation's shape {shape_str(perm.shape)} differs from x's {shape_str(x.shape)}")
    return tuple(b if a is None else a for a, b in zip(x.shape, perm.shape)), x.dtype


def _permute_ref(x: np.ndarray, perm: np.ndarray, *, axis: int) -> np.ndarray:
    line = np.arange(x.shape[axis]).reshape([-1 if k == axis else 1 for k in range(x.ndim)])
    if not (np.sort(perm, axis=axis) == line).all():
        raise GraphcError(f"permute: the indices along axis {axis} are not a permutation")
    return np.take_along_axis(x, perm.astype(np.int64), axis)


def _permute_gather(s, idx, load, node):
    axis = node.attrs["axis"]
    src = list(idx)
    src[axis] = _clamp(s, s.cast(load(1, tuple(idx)), int64), node.shape[axis] - 1)
    return load(0, tuple(src))


register(OpDef(
    "permute", "index", _permute_type, canon=_canon_axis, attrs={"axis": "int"},
    ref=_permute_ref, gather=_permute_gather,
    vjp=lambda g, out, x, perm, *, axis: (permute(g, argsort(perm, axis), axis), None),
    jvp=lambda t, out, x, perm, *, axis: None if t[0] is None else permute(t[0], perm, axis),
    doc="x gathered along `axis` by a permutation of that axis (what sort builds); the VJP gathers by "
        "the inverse permutation"))


def permute(x: Tensor, perm: Tensor, axis: int) -> Tensor:
    """x gathered along `axis` at `perm`, which must be a permutation of each line (argsort's result)."""
    return x.graph.make("permute", (x, perm), {"axis": axis})


@composite
def select(condlist: Any, choicelist: Any, default: Any = 0) -> Tensor:
    """numpy.select: per element, the choice of the first true condition, else `default`."""
    conds, choices = list(condlist), list(choicelist)
    if len(conds) != len(choices):
        raise _fail(ShapeError, "select: list of cases must be same length as list of conditions "
                                f"({len(choices)} and {len(conds)})")
    if not conds:
        raise _fail(ShapeError, "select with an empty condition list is not possible")
    cs = []
    for k, c in enumerate(conds):
        dt = c.dtype if isinstance(c, Tensor) else np.asarray(c).dtype
        if dt != np.bool_:
            raise _fail(DTypeError, f"select: invalid entry {k} in condlist: should be boolean, got {dt}")
        cs.append(c)
    *values, result = promote(*choices, default)
    for c, v in zip(reversed(cs), reversed(values)):
        result = where(c, v, result)
    return result
