"""Sorting and selection: sort, argsort, select, as composites of comparisons, sums and gathers.

argsort ranks every element by counting the elements that sort before it (a stable total
order: NaN last, ties by position), then inverts the ranks; both steps are comparisons
fused into sum reductions, O(n^2) work per sorted line. sort gathers x along the axis at
argsort's indices (`take_along_axis`), so its gradient routes each output's cotangent to
the input element that landed there: the gradient goes "through the permutation".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..dtypes import is_float
from ..errors import DTypeError, GraphcError, ShapeError
from ..ir.composite import composite
from ..ir.graph import Tensor
from .core import promote
from .elementwise import equal, less, logical_and, logical_not, logical_or, not_equal, where
from .rearrange import _axes, _known, moveaxis, ravel
from .reduce import sum as reduce_sum
from .shape import _fail, expand_dims, take_along_axis

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


@composite
def argsort(a: Any, axis: int | None = -1, kind: Any = None, order: Any = None, stable: Any = None) -> Tensor:
    """numpy.argsort: int64 indices that sort `a` along `axis` (None: flattened).

    Always the stable order (numpy's kind='stable'): equal elements keep their order and
    NaNs go last. Every `kind` gives that order; numpy's default quicksort may order ties
    differently.
    """
    t, axis = _sortable(a, axis, kind, order, stable, "argsort")
    n = _known(t, axis, "argsort")
    rank = _ranks(moveaxis(t, axis, -1))  # (..., n)
    positions = np.arange(n, dtype=np.int64)
    hit = equal(expand_dims(rank, -2), positions[:, None])  # [..., r, i]: element i has rank r
    perm = reduce_sum(where(hit, positions, np.int64(0)), -1)
    return moveaxis(perm, -1, axis)


@composite
def sort(a: Any, axis: int | None = -1, kind: Any = None, order: Any = None, stable: Any = None) -> Tensor:
    """numpy.sort along `axis` (None: flattened), NaN last; the gradient follows the stable permutation."""
    t, axis = _sortable(a, axis, kind, order, stable, "sort")
    return take_along_axis(t, argsort(t, axis), axis)


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
