"""Diagonals, triangles and tensor contractions (einsum) as composites of primitives.

Contractions of floating operands lower to `matmul` (a BLAS GEMM) after transposes and
reshapes; integer operands multiply and sum instead (GEMM is floating only).
`einsum` contracts its operands pairwise, in the order with the fewest multiply-adds
(exhaustive search for up to `OPTIMAL_LIMIT` operands, greedy beyond).
"""

from __future__ import annotations

import itertools
import math
import operator
import string
from typing import Any

import numpy as np

from ..dtypes import is_float, shape_str
from ..errors import GraphcError, ShapeError
from ..ir.composite import composite
from ..ir.graph import Tensor
from .core import promote
from .elementwise import multiply, where
from .linalg import matmul
from .rearrange import _axes, _int, moveaxis, ravel
from .reduce import sum as reduce_sum
from .shape import _fail, broadcast_to, expand_dims, getitem, pad, reshape, transpose

__all__ = ["diag", "diagonal", "einsum", "einsum_path", "inner", "kron", "outer", "tensordot", "trace", "tril",
           "triu"]

OPTIMAL_LIMIT = 5


def _static(t: Tensor, what: str, last: int | None = None) -> tuple[int, ...]:
    """t's shape (its `last` dims only, if given), which must be known when building."""
    dims = t.shape if last is None else t.shape[-last:]
    if None in dims:
        which = "shapes" if last is None else f"sizes of the last {last} axes"
        raise _fail(ShapeError, f"{what} needs known {which}, got {shape_str(t.shape)}")
    return dims


# --- diagonals and triangles --------------------------------------------------------------------

@composite
def diagonal(a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Tensor:
    """numpy.diagonal: the diagonal of the (axis1, axis2) planes, as a new last axis."""
    (t,) = promote(a)
    if t.ndim < 2:
        raise _fail(ShapeError, f"diagonal needs a tensor of rank >= 2, got shape {shape_str(t.shape)}")
    i, j = _axes((axis1,), t.ndim, "diagonal") + _axes((axis2,), t.ndim, "diagonal")
    if i == j:
        raise _fail(ShapeError, "diagonal: axis1 and axis2 cannot be the same")
    offset = _int(offset, "diagonal: offset")
    t = moveaxis(t, (i, j), (-2, -1))
    n, m = _static(t, "diagonal", 2)
    count = max(0, min(n, m - offset) if offset >= 0 else min(n + offset, m))
    first = offset if offset >= 0 else -offset * m
    lead = t.shape[:-2]
    if sum(d is None for d in lead) > 1 or (None in lead and n * m == 0):
        raise _fail(ShapeError, f"diagonal needs at most one unknown leading dim, got {shape_str(t.shape)}")
    flat = reshape(t, tuple(-1 if d is None else d for d in lead) + (n * m,))
    if count == 0:
        return getitem(flat, (..., slice(0, 0)))
    return getitem(flat, (..., slice(first, first + (count - 1) * (m + 1) + 1, m + 1)))


@composite
def diag(v: Any, k: int = 0) -> Tensor:
    """numpy.diag: the k-th diagonal of a 2-D tensor, or a 2-D tensor with a 1-D v on its k-th diagonal."""
    (t,) = promote(v)
    k = _int(k, "diag: k")
    if t.ndim == 2:
        return diagonal(t, k)
    if t.ndim != 1:
        raise _fail(ShapeError, f"diag: input must be 1- or 2-d, got shape {shape_str(t.shape)}")
    (n,) = _static(t, "diag")
    size = n + abs(k)
    column = pad(t, ((0, abs(k)),))
    along = expand_dims(column, 1 if k >= 0 else 0)  # row i holds v[i] (k >= 0); column j holds v[j] (k < 0)
    return where(np.eye(size, k=k, dtype=bool), along, np.zeros((), t.dtype))


@composite
def trace(a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1, dtype: Any = None) -> Tensor:
    """numpy.trace: the sum along diagonals (ints sum to int64, as in numpy)."""
    (t,) = promote(a)
    out = reduce_sum(diagonal(t, offset, axis1, axis2), -1)
    return out if dtype is None else out.astype(dtype)


def _triangle(m: Any, k: int, lower: bool, what: str) -> Tensor:
    (t,) = promote(m)
    if t.ndim < 1:
        raise _fail(ShapeError, f"{what} needs a tensor of rank >= 1, got a scalar")
    dims = _static(t, what, 2)
    keep = np.tri(*dims, k=_int(k, f"{what}: k") - (0 if lower else 1), dtype=bool)
    zero = np.zeros((), t.dtype)
    return where(keep, t, zero) if lower else where(keep, zero, t)


@composite
def tril(m: Any, k: int = 0) -> Tensor:
    """numpy.tril: zeros above the k-th diagonal of the last two axes."""
    return _triangle(m, k, True, "tril")


@composite
def triu(m: Any, k: int = 0) -> Tensor:
    """numpy.triu: zeros below the k-th diagonal of the last two axes."""
    return _triangle(m, k, False, "triu")


# --- products --------------------------------------------------------------------------------

@composite
def outer(a: Any, b: Any) -> Tensor:
    """numpy.outer: ravel(a)[:, None] * ravel(b)[None, :]."""
    a, b = promote(a, b)
    return multiply(expand_dims(ravel(a), 1), expand_dims(ravel(b), 0))


@composite
def kron(a: Any, b: Any) -> Tensor:
    """numpy.kron: the Kronecker product (shapes aligned on the right)."""
    a, b = promote(a, b)
    if a.ndim == 0 or b.ndim == 0:
        return multiply(a, b)
    nd = max(a.ndim, b.ndim)
    sa = (1,) * (nd - a.ndim) + _static(a, "kron")
    sb = (1,) * (nd - b.ndim) + _static(b, "kron")
    wa = reshape(a, tuple(d for s in sa for d in (s, 1)))
    wb = reshape(b, tuple(d for s in sb for d in (1, s)))
    return reshape(multiply(wa, wb), tuple(x * y for x, y in zip(sa, sb)))


@composite
def tensordot(a: Any, b: Any, axes: Any = 2) -> Tensor:
    """numpy.tensordot: sum of products over axes[0] of a and axes[1] of b (an int N: a's last N, b's first N)."""
    a, b = promote(a, b)
    if isinstance(axes, (int, np.integer)):
        n = operator.index(axes)
        if n < 0 or n > min(a.ndim, b.ndim):
            raise _fail(ShapeError, f"tensordot: cannot contract {n} axes of {shape_str(a.shape)} and "
                                    f"{shape_str(b.shape)}")
        ax_a, ax_b = tuple(range(a.ndim - n, a.ndim)), tuple(range(n))
    else:
        try:
            ax_a, ax_b = axes
        except (TypeError, ValueError):
            raise _fail(GraphcError, f"tensordot: axes must be an int or a pair of axis lists, got {axes!r}") from None
        ax_a = _axes(ax_a, a.ndim, "tensordot")
        ax_b = _axes(ax_b, b.ndim, "tensordot")
    if len(ax_a) != len(ax_b):
        raise _fail(ShapeError, f"tensordot: {len(ax_a)} axes of a against {len(ax_b)} axes of b")
    sa, sb = _static(a, "tensordot"), _static(b, "tensordot")
    if any(sa[i] != sb[j] for i, j in zip(ax_a, ax_b)):
        raise _fail(ShapeError, f"tensordot: shape-mismatch for sum: {shape_str(sa)} axes {ax_a} against "
                                f"{shape_str(sb)} axes {ax_b}")
    letters = iter(string.ascii_letters)
    la = [next(letters) for _ in range(a.ndim)]
    lb = [next(letters) for _ in range(b.ndim)]
    for i, j in zip(ax_a, ax_b):
        lb[j] = la[i]
    out = [c for k, c in enumerate(la) if k not in ax_a] + [c for k, c in enumerate(lb) if k not in ax_b]
    return _contract(_Term(a, tuple(la)), _Term(b, tuple(lb)), set(out)).arranged(out)


@composite
def inner(a: Any, b: Any) -> Tensor:
    """numpy.inner: sum over the last axes; a scalar operand multiplies."""
    a, b = promote(a, b)
    if a.ndim == 0 or b.ndim == 0:
        return multiply(a, b)
    return tensordot(a, b, ((-1,), (-1,)))


# --- einsum ------------------------------------------------------------------------------------

class _Term:
    """A tensor whose axes carry einsum labels (one per axis, all distinct)."""

    def __init__(self, t: Tensor, labels: tuple[str, ...]):
        self.t, self.labels = t, labels

    def size(self, label: str) -> int:
        return self.t.shape[self.labels.index(label)]

    def summed(self, drop: set) -> _Term:
        axes = tuple(k for k, c in enumerate(self.labels) if c in drop)
        if not axes:
            return self
        return _Term(reduce_sum(self.t, axes), tuple(c for c in self.labels if c not in drop))

    def arranged(self, out: list[str], shape: tuple | None = None) -> Tensor:
        """The tensor with axes in `out` order (labels not in out summed first), broadcast to `shape`."""
        term = self.summed(set(self.labels) - set(out))
        perm = [term.labels.index(c) for c in out]
        t = transpose(term.t, perm) if perm != sorted(perm) else term.t
        return t if shape is None or t.shape == shape else broadcast_to(t, shape)


def _contract(x: _Term, y: _Term, keep: set) -> _Term:
    """x and y multiplied, summed over the labels not in `keep`: a GEMM over (batch, free, contracted) groups."""
    common = set(x.labels) & set(y.labels)
    x = x.summed(set(x.labels) - keep - common)
    y = y.summed(set(y.labels) - keep - common)
    batch = [c for c in x.labels if c in common and c in keep]
    summed = [c for c in x.labels if c in common and c not in keep]
    for c in summed:  # a size-1 (broadcast) contracted axis: sum the other operand's axis first
        if x.size(c) != y.size(c):
            x, y = (x, y.summed({c})) if x.size(c) == 1 else (x.summed({c}), y)
    summed = [c for c in summed if c in x.labels and c in y.labels]
    fx = [c for c in x.labels if c not in common]
    fy = [c for c in y.labels if c not in common]
    if not summed or not is_float(x.t.dtype):  # elementwise product (and sum): no GEMM needed
        full = batch + fx + fy + summed
        prod = multiply(_spread(x, full), _spread(y, full))
        if summed:  # integers: numpy keeps the operands' dtype where sum would give int64
            prod = reduce_sum(prod, tuple(range(len(full) - len(summed), len(full)))).astype(prod.dtype)
        return _Term(prod, tuple(batch + fx + fy))
    bx = [x.size(c) for c in batch]
    by = [y.size(c) for c in batch]
    m = math.prod(x.size(c) for c in fx)
    n = math.prod(y.size(c) for c in fy)
    k = math.prod(x.size(c) for c in summed)
    a = reshape(x.arranged(batch + fx + summed), tuple(bx) + (m, k))
    b = reshape(y.arranged(batch + summed + fy), tuple(by) + (k, n))
    shape = tuple(max(p, q) for p, q in zip(bx, by)) + tuple(x.size(c) for c in fx) + tuple(y.size(c) for c in fy)
    return _Term(reshape(matmul(a, b), shape), tuple(batch + fx + fy))


def _spread(x: _Term, full: list[str]) -> Tensor:
    """x's tensor with axes in `full` order, size-1 axes for labels it lacks."""
    t = x.arranged([c for c in full if c in x.labels])
    missing = tuple(k for k, c in enumerate(full) if c not in x.labels)
    return expand_dims(t, missing) if missing else t


def _parse(subscripts: str, operands: tuple[Tensor, ...]) -> tuple[list[tuple[str, ...]], list[str]]:
    """Per-operand label tuples and the output labels; '...' becomes upper-case-free private labels."""
    if not isinstance(subscripts, str):
        raise _fail(GraphcError, "einsum: the subscripts must be a string (the interleaved form is not supported)")
    spec = subscripts.replace(" ", "")
    lhs, arrow, rhs = spec.partition("->")
    inputs = lhs.split(",")
    if len(inputs) != len(operands):
        raise _fail(ShapeError, f"einsum: {len(inputs)} subscripts for {len(operands)} operands")
    for part in inputs + ([rhs] if arrow else []):
        bad = set(part.replace("...", "")) - set(string.ascii_letters)
        if bad or part.count("...") > 1:
            raise _fail(GraphcError, f"einsum: invalid subscript {part!r} in {subscripts!r}")
    ell = max((t.ndim - len(p.replace("...", "")) for p, t in zip(inputs, operands) if "..." in p), default=0)
    private = [chr(0x100 + k) for k in range(ell)]  # labels no user subscript can contain
    labels = []
    for part, t in zip(inputs, operands):
        n_ell = t.ndim - len(part.replace("...", ""))
        if ("..." not in part and n_ell != 0) or n_ell < 0:
            raise _fail(ShapeError, f"einsum: subscript {part!r} does not fit operand of shape {shape_str(t.shape)}")
        head, _, tail = part.partition("...")
        labels.append(tuple(head) + tuple(private[ell - n_ell:] if "..." in part else ()) + tuple(tail))
    if arrow:
        if "..." not in rhs and ell and any("..." in p for p in inputs):
            raise _fail(ShapeError, f"einsum: output subscript {rhs!r} must contain '...' as the inputs do")
        head, _, tail = rhs.partition("...")
        out = list(head) + (private if "..." in rhs else []) + list(tail)
        if len(set(out)) != len(out):
            raise _fail(ShapeError, f"einsum: output subscript {rhs!r} repeats a label")
        unknown = set(out) - set().union(*map(set, labels))
        if unknown:
            raise _fail(ShapeError, f"einsum: output label(s) {sorted(unknown)} appear in no input")
    else:
        counts: dict[str, int] = {}
        for ls in labels:
            for c in ls:
                counts[c] = counts.get(c, 0) + 1
        out = private + sorted(c for c, k in counts.items() if k == 1 and c not in private)
    return labels, out


def _dims(labels: list[tuple[str, ...]], operands: tuple[Tensor, ...]) -> dict[str, int]:
    """Each label's size; sizes of one label must agree (1 broadcasts)."""
    dims: dict[str, int] = {}
    for ls, t in zip(labels, operands):
        for c, d in zip(ls, _static(t, "einsum")):
            if dims.get(c, 1) not in (1, d) and d != 1:
                raise _fail(ShapeError, f"einsum: label {c if c.isascii() else '...'} has sizes {dims[c]} and {d} "
                                        f"(operands {', '.join(shape_str(o.shape) for o in operands)})")
            dims[c] = max(dims.get(c, 1), d)
    return dims


def _distinct(t: Tensor, labels: tuple[str, ...]) -> _Term:
    """Repeated labels within one operand take the diagonal (numpy's 'ii->i')."""
    while len(set(labels)) != len(labels):
        c = next(c for c in labels if labels.count(c) > 1)
        i = labels.index(c)
        j = labels.index(c, i + 1)
        t = diagonal(t, 0, i, j)
        labels = tuple(x for k, x in enumerate(labels) if k not in (i, j)) + (c,)
    return _Term(t, labels)


def _step_cost(a: frozenset, b: frozenset, dims: dict[str, int]) -> int:
    return math.prod(dims[c] for c in a | b)


def _contraction_path(sets: list[frozenset], out: frozenset, dims: dict[str, int],
                      optimize: Any) -> list[tuple[int, int]]:
    """A contraction order as numpy's einsum_path lists it: pairs of positions in the shrinking operand list."""
    if isinstance(optimize, (list, tuple)) and optimize and optimize[0] == "einsum_path":
        path, count = [tuple(p) for p in optimize[1:]], len(sets)
        for pair in path:
            if len(pair) != 2 or len(set(pair)) != 2 or not all(0 <= _int(i, "einsum: path") < count for i in pair):
                raise _fail(GraphcError, f"einsum: path {optimize!r} does not contract {len(sets)} operands pairwise")
            count -= 1
        return path

    def after(cur: list[frozenset], i: int, j: int) -> tuple[list[frozenset], frozenset, int]:
        rest = [s for k, s in enumerate(cur) if k not in (i, j)]
        keep = out.union(*rest) if rest else out
        return rest, (cur[i] | cur[j]) & keep, _step_cost(cur[i], cur[j], dims)

    if optimize is False or len(sets) < 2:
        return [(0, 1)] * (len(sets) - 1)

    def best(cur: list[frozenset]) -> tuple[int, list]:
        if len(cur) == 1:
            return 0, []
        found = None
        for i, j in itertools.combinations(range(len(cur)), 2):
            rest, new, cost = after(cur, i, j)
            sub, path = best(rest + [new])
            if found is None or cost + sub < found[0]:
                found = (cost + sub, [(i, j)] + path)
        return found

    if optimize != "greedy" and len(sets) <= OPTIMAL_LIMIT:
        return best(list(sets))[1]
    cur, path = list(sets), []
    while len(cur) > 1:
        i, j = min(itertools.combinations(range(len(cur)), 2), key=lambda p: after(cur, *p)[2])
        rest, new, _ = after(cur, i, j)
        cur, path = rest + [new], path + [(i, j)]
    return path


def _prepared(subscripts: str, operands: tuple) -> tuple:
    ts = promote(*operands) if operands else ()
    if not ts:
        raise _fail(GraphcError, "einsum needs at least one operand")
    labels, out = _parse(subscripts, ts)
    dims = _dims(labels, ts)
    return ts, labels, out, dims


@composite
def einsum_path(subscripts: str, *operands: Any, optimize: Any = "optimal") -> tuple[list, str]:
    """numpy.einsum_path: the pairwise contraction order einsum uses, and a short report of its cost."""
    ts, labels, out, dims = _prepared(subscripts, operands)
    sets = [frozenset(ls) for ls in labels]
    path = _contraction_path(sets, frozenset(out), dims, optimize)
    cur, total = list(sets), 0
    for i, j in path:
        rest = [s for k, s in enumerate(cur) if k not in (i, j)]
        total += _step_cost(cur[i], cur[j], dims)
        cur = rest + [(cur[i] | cur[j]) & frozenset(out).union(*rest)]
    naive = math.prod(dims.values()) * max(len(sets) - 1, 1)
    report = (f"  Complete contraction: {subscripts}\n  One loop nest over all labels: {naive} multiply-adds\n"
              f"  Pairwise contractions: {total} multiply-adds\n  Path: {path}")
    return ["einsum_path", *path], report


@composite
def einsum(subscripts: str, *operands: Any, optimize: Any = "optimal") -> Tensor:
    """numpy.einsum in its subscripts form: labels, '...', implicit or explicit output, repeated labels.

    Operands are contracted pairwise in the order `einsum_path` gives (optimize: 'optimal',
    'greedy', False for pairs in list order, or an explicit ['einsum_path', (i, j), ...]); each
    pairwise contraction of floats is one matmul. numpy's own default is optimize=False;
    only rounding differs.
    """
    ts, labels, out, dims = _prepared(subscripts, operands)
    terms = [_distinct(t, ls) for t, ls in zip(ts, labels)]
    path = _contraction_path([frozenset(ls) for ls in labels], frozenset(out), dims, optimize)
    if len(path) != len(terms) - 1:
        raise _fail(GraphcError, f"einsum: path {path} does not contract {len(terms)} operands to one")
    for i, j in path:
        rest = [s for k, s in enumerate(terms) if k not in (i, j)]
        keep = set(out).union(*(s.labels for s in rest))
        terms = rest + [_contract(terms[i], terms[j], keep)]
    (term,) = terms
    return term.arranged(out, tuple(dims[c] for c in out))
