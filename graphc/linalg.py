"""`gc.linalg`: numpy.linalg (and scipy's cho_solve / solve_triangular) on graphc tensors.

Every function works on a matrix or a batch of them (leading dims, broadcast where
numpy broadcasts) and has gradients in both modes. Factorizations and solves are LAPACK
calls (see docs/backend.md, "LAPACK"). A singular or non-positive-definite matrix gives
NaN results where numpy raises LinAlgError (det and slogdet follow numpy: 0 and
(0, -inf)); see docs/ops.md for the gradient conventions.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import numpy as np

from .dtypes import axis_items, broadcast_shapes, is_float, shape_str
from .errors import DTypeError, ShapeError, user_location
from .ir.composite import composite
from .ir.graph import Tensor
from .ir.naming import add_names
from .ops import linalg_decomp as _ld
from .ops import linalg_solve as _ls
from .ops import reduce as _red
from .ops.core import constant, promote
from .ops.create import ones_like
from .ops.elementwise import abs as _abs
from .ops.elementwise import exp, not_equal, power, sqrt, where
from .ops.lapack_common import mT
from .ops.shape import broadcast_like, broadcast_to, expand_dims, filled_like, transpose

__all__ = ["cho_solve", "cholesky", "det", "eigh", "eigvalsh", "inv", "matrix_power", "norm", "pinv", "qr", "slogdet",
           "solve", "solve_triangular", "svd", "svdvals", "triangular_solve"]

SlogdetResult = namedtuple("SlogdetResult", ["sign", "logabsdet"])
EighResult = namedtuple("EighResult", ["eigenvalues", "eigenvectors"])
SVDResult = namedtuple("SVDResult", ["U", "S", "Vh"])
QRResult = namedtuple("QRResult", ["Q", "R"])


def _fail(cls: type, msg: str) -> Exception:
    return cls(f"{msg}\n  at {user_location()}")


def _float_matrix(x: Any, fn: str, what: str = "a", square: bool = False) -> Tensor:
    (t,) = promote(x)
    if not is_float(t.dtype):
        raise _fail(DTypeError, f"linalg.{fn}: {what} must be float32 or float64, got {t.dtype} "
                                "(cast it first: graphc never casts silently)")
    if t.ndim < 2:
        raise _fail(ShapeError, f"linalg.{fn}: {what} must have rank >= 2 (a matrix or a batch of them), "
                                f"got {shape_str(t.shape)}")
    if None in t.shape[-2:]:
        raise _fail(ShapeError, f"linalg.{fn}: the matrix dims of {what} {shape_str(t.shape)} must be known when "
                                "the graph is built")
    if square and t.shape[-1] != t.shape[-2]:
        raise _fail(ShapeError, f"linalg.{fn}: {what} must be square, got {shape_str(t.shape)}")
    return t


def _with_batch(t: Tensor, other: Tensor, batch: tuple) -> Tensor:
    """t broadcast to the batch dims `batch` that it shares with `other` (unknown ones included)."""
    if t.shape[:-2] == batch:
        return t
    if any(d is None for d in batch):  # the target shape: other's batch dims and t's matrix dims, from zeros
        like = filled_like(other[..., :1, :1], 0) + filled_like(t, 0)
        return broadcast_like(t, like)
    return broadcast_to(t, batch + t.shape[-2:])


def _rhs(a: Tensor, b: Any, fn: str) -> tuple[Tensor, Tensor, bool]:
    """a and b (a vector becomes a column) with the same batch dims, and whether b was a vector."""
    a, b = promote(a, b)
    a = _float_matrix(a, fn)
    vector = b.ndim == 1
    b = _float_matrix(b[:, None] if vector else b, fn, "b")
    try:
        batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ShapeError:
        raise _fail(ShapeError, f"linalg.{fn}: batch dims of {shape_str(a.shape)} and {shape_str(b.shape)} "
                                "do not broadcast") from None
    return _with_batch(a, b, batch), _with_batch(b, a, batch), vector


@composite
def solve(a: Any, b: Any) -> Tensor:
    """numpy.linalg.solve: x with a @ x = b; b of rank 1 is one right-hand side (numpy 2 rules)."""
    a, b, vector = _rhs(a, b, "solve")
    x = _ls.solve(a, b)
    return x[..., 0] if vector else x


@composite
def inv(a: Any) -> Tensor:
    """numpy.linalg.inv (solve(a, I), as numpy computes it)."""
    return _ls.inverse(_float_matrix(a, "inv", square=True))


@composite
def slogdet(a: Any) -> tuple[Tensor, Tensor]:
    """numpy.linalg.slogdet: (sign, log|det a|); (0, -inf) for a singular matrix."""
    packed = _ls.slogdet_packed(_float_matrix(a, "slogdet"))
    return SlogdetResult(packed[..., 0], packed[..., 1])


@composite
def det(a: Any) -> Tensor:
    """numpy.linalg.det, as sign * exp(log|det|) of one LU factorization (0 when singular)."""
    sign, logdet = slogdet(a)
    return sign * exp(logdet)


@composite
def cholesky(a: Any, upper: bool = False) -> Tensor:
    """numpy.linalg.cholesky: lower L with L Lᵀ = a (or Lᵀ when `upper`), reading a's lower
    triangle; NaN if not positive definite."""
    low = _ls.cholesky(_float_matrix(a, "cholesky"))
    return mT(low) if upper else low


@composite
def triangular_solve(a: Any, b: Any, lower: bool = True, adjoint: bool = False,
                     unit_diagonal: bool = False) -> Tensor:
    """tf.linalg.triangular_solve: x with T x = b (Tᵀ x = b when `adjoint`), T the lower (or
    upper) triangle of a; the other triangle is never read."""
    a, b, vector = _rhs(a, b, "triangular_solve")
    x = _ls.triangular_solve(a, b, lower, adjoint, unit_diagonal)
    return x[..., 0] if vector else x


@composite
def solve_triangular(a: Any, b: Any, trans: int | str = 0, lower: bool = False,
                     unit_diagonal: bool = False) -> Tensor:
    """scipy.linalg.solve_triangular (and jax.scipy's): trans 0/'N', 1/'T' (2/'C' = 'T' for reals)."""
    codes = {0: False, "N": False, 1: True, "T": True, 2: True, "C": True}
    if trans not in codes:
        raise _fail(ShapeError, f"linalg.solve_triangular: trans must be 0, 1, 2, 'N', 'T' or 'C', got {trans!r}")
    return triangular_solve(a, b, lower, codes[trans], unit_diagonal)


@composite
def cho_solve(c_and_lower: tuple[Any, bool], b: Any) -> Tensor:
    """scipy.linalg.cho_solve((c, lower), b): x with a @ x = b given a's Cholesky factor c."""
    c, lower = c_and_lower
    if lower:
        return triangular_solve(c, triangular_solve(c, b, True), True, adjoint=True)
    return triangular_solve(c, triangular_solve(c, b, False, adjoint=True), False)


def _uplo(a: Any, fn: str, uplo: str) -> Tensor:
    if uplo not in ("L", "U"):
        raise _fail(ShapeError, f"linalg.{fn}: UPLO must be 'L' or 'U', got {uplo!r}")
    t = _float_matrix(a, fn, square=True)
    return t if uplo == "L" else mT(t)  # the upper triangle of a is the lower one of aᵀ


@composite
def eigh(a: Any, UPLO: str = "L") -> EighResult:  # noqa: N803 (numpy's name)
    """numpy.linalg.eigh: eigenvalues (ascending) and eigenvectors (columns) of the symmetric
    matrix given by a's lower (UPLO='L') or upper triangle."""
    packed = _ld.eigh_packed(_uplo(a, "eigh", UPLO))
    return EighResult(packed[..., 0, :], packed[..., 1:, :])


@composite
def eigvalsh(a: Any, UPLO: str = "L") -> Tensor:  # noqa: N803 (numpy's name)
    """numpy.linalg.eigvalsh: the eigenvalues of eigh."""
    return eigh(a, UPLO).eigenvalues


@composite
def svd(a: Any, full_matrices: bool = True, compute_uv: bool = True, hermitian: bool = False) -> Any:
    """numpy.linalg.svd: (U, S, Vh) with a = U diag(S) Vh, S descending; S alone without
    `compute_uv`. With full_matrices (numpy's default) and a non-square a, U is m x m and
    Vh n x n, and there is no derivative (the extra vectors are not unique, as JAX);
    `hermitian` is accepted and ignored (the general SVD serves)."""
    t = _float_matrix(a, "svd")
    m, n = t.shape[-2:]
    k = min(m, n)
    full = bool(compute_uv and full_matrices and m != n)
    packed = _ld.svd_packed(t, full)
    s = packed[..., m, :k]
    if not compute_uv:
        return s
    ucols, vcols = (m, n) if full else (k, k)
    return SVDResult(packed[..., :m, :ucols], s, mT(packed[..., m + 1:, :vcols]))


@composite
def svdvals(a: Any) -> Tensor:
    """numpy.linalg.svdvals: the singular values, descending."""
    return svd(a, compute_uv=False)


@composite
def qr(a: Any, mode: str = "reduced") -> Any:
    """numpy.linalg.qr: (Q, R) for mode 'reduced' or 'complete', R alone for mode 'r'."""
    t = _float_matrix(a, "qr")
    if mode not in ("reduced", "complete", "r"):
        raise _fail(ShapeError, f"linalg.qr: mode must be 'reduced', 'complete' or 'r', got {mode!r}")
    m = t.shape[-2]
    packed = _ld.qr_packed(t, "complete" if mode == "complete" else "reduced")
    r = packed[..., :, m:]
    return r if mode == "r" else QRResult(mT(packed[..., :, :m]), r)


@composite
def pinv(a: Any, rcond: Any = None, hermitian: bool = False) -> Tensor:
    """numpy.linalg.pinv through the SVD: singular values up to rcond * max(s) count as 0
    (rcond defaults to 1e-15, as numpy's); `hermitian` is accepted and ignored."""
    t = _float_matrix(a, "pinv")
    u, s, vh = svd(t, full_matrices=False)
    cutoff = (1e-15 if rcond is None else rcond) * _red.max(s, -1, keepdims=True)
    large = s > cutoff
    s_inv = where(large, 1 / where(large, s, ones_like(s)), 0 * s)
    return mT(vh) @ (s_inv[..., None] * mT(u))


@composite
def matrix_power(a: Any, n: int) -> Tensor:
    """numpy.linalg.matrix_power: a to the integer power n (inverse first when n < 0), by
    repeated squaring."""
    t = _float_matrix(a, "matrix_power", square=True)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise _fail(ShapeError, f"linalg.matrix_power: n must be an integer, got {n!r}")
    n = int(n)
    if n == 0:
        return broadcast_like(constant(np.eye(t.shape[-1]), dtype=t.dtype, graph=t.graph), t)
    if n < 0:
        t, n = inv(t), -n
    result, square = None, t
    while True:
        if n & 1:
            result = square if result is None else result @ square
        n >>= 1
        if not n:
            return result
        square = square @ square


_VECTOR_ORDS = (None, 2, 1, 0, np.inf, -np.inf)
_MATRIX_ORDS = (None, "fro", "nuc", 1, -1, 2, -2, np.inf, -np.inf)


@composite
def norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A002 (numpy's name)
    """numpy.linalg.norm: vector norms (any real ord) over one axis, matrix norms ('fro',
    'nuc', ±1, ±2, ±inf) over two, the 2-norm of everything for ord=None and axis=None.
    Gradients at x = 0 of the 2-norms are NaN (sqrt at 0, as JAX)."""
    (t,) = promote(x)
    if not is_float(t.dtype):
        raise _fail(DTypeError, f"linalg.norm: x must be float32 or float64, got {t.dtype}")
    if axis is None:
        if ord is None:
            out = sqrt(_red.sum(t * t))
            return expand_dims(out, tuple(range(t.ndim))) if keepdims else out
        if t.ndim not in (1, 2):
            raise _fail(ShapeError, f"linalg.norm: ord={ord!r} needs a 1-D or 2-D x (or an axis), got "
                                    f"{shape_str(t.shape)}")
        axis = tuple(range(t.ndim))
    axes = axis_items(axis)
    for a in axes:
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)):
            raise _fail(ShapeError, f"linalg.norm: axis {a!r} is not an integer")
        if not -t.ndim <= int(a) < t.ndim:
            raise _fail(ShapeError, f"linalg.norm: axis {a} is out of range for rank {t.ndim}")
    axes = tuple(int(a) % t.ndim for a in axes)
    if len(axes) == 1:
        return _vector_norm(t, ord, axes[0], keepdims)
    if len(axes) == 2 and axes[0] != axes[1]:
        return _matrix_norm(t, ord, axes, keepdims)
    raise _fail(ShapeError, f"linalg.norm: axis must be an int or two different ints, got {axis!r}")


def _vector_norm(t: Tensor, ord: Any, axis: int, keepdims: bool) -> Tensor:  # noqa: A002
    if isinstance(ord, str):
        raise _fail(ShapeError, f"linalg.norm: ord {ord!r} is a matrix norm; a vector norm takes a number")
    if ord is None or ord == 2:
        return sqrt(_red.sum(t * t, axis, keepdims))
    if ord == np.inf:
        return _red.max(_abs(t), axis, keepdims)
    if ord == -np.inf:
        return _red.min(_abs(t), axis, keepdims)
    if ord == 0:
        return _red.sum(not_equal(t, 0).astype(t.dtype), axis, keepdims)
    if ord == 1:
        return _red.sum(_abs(t), axis, keepdims)
    p = float(ord)
    return power(_red.sum(power(_abs(t), p), axis, keepdims), 1.0 / p)


def _matrix_norm(t: Tensor, ord: Any, axes: tuple[int, int], keepdims: bool) -> Tensor:  # noqa: A002
    if ord not in _MATRIX_ORDS:
        raise _fail(ShapeError, f"linalg.norm: invalid matrix norm order {ord!r}; use one of "
                                "None, 'fro', 'nuc', 1, -1, 2, -2, inf, -inf")
    row, col = axes
    if ord in (None, "fro"):
        out = sqrt(_red.sum(t * t, axes))
    elif ord in (1, -1, np.inf, -np.inf):
        inner, outer = (row, col) if ord in (1, -1) else (col, row)  # 1: column sums; inf: row sums
        sums = _red.sum(_abs(t), inner, keepdims=True)
        out = (_red.max if ord > 0 else _red.min)(sums, outer, keepdims=True)
        out = _red.sum(out, axes)  # drop the two kept axes
    else:
        rest = [k for k in range(t.ndim) if k not in axes]
        s = svdvals(transpose(t, rest + [row, col]))
        out = _red.sum(s, -1) if ord == "nuc" else (_red.max if ord == 2 else _red.min)(s, -1)
    return expand_dims(out, tuple(sorted(axes))) if keepdims else out


add_names(globals(), __all__)  # name= on every builder (graphc/ir/naming.py)
