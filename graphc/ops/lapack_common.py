"""What the LAPACK-backed ops share: type checks, numpy references that return NaN on
failure, and the small graph helpers their derivative rules are built from.

Ops of kind "lapack" lower to one LAPACK call per matrix of the batch
(`graphc.backend.llvm.lapack`). Their matrix dims must be known when the graph is
built (batch dims may be None); every input of one op has the same batch dims (the
public functions in `graphc.linalg` broadcast them first).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..dtypes import is_float, shape_str
from ..errors import DTypeError, ShapeError
from ..ir.graph import Tensor
from .core import constant
from .create import ones_like, zeros_like
from .elementwise import equal, where
from .reduce import sum as reduce_sum
from .shape import matrix_transpose


def check_matrix(x: Tensor, what: str = "a", square: bool = False) -> tuple[int, int]:
    """(rows, cols) of a float matrix (or batch of them); raises a clear error otherwise."""
    if not is_float(x.dtype):
        raise DTypeError(f"{what} must be float32 or float64, got {x.dtype}")
    if x.ndim < 2:
        raise ShapeError(f"{what} must have rank >= 2 (a matrix or a batch of them), got {shape_str(x.shape)}")
    rows, cols = x.shape[-2:]
    if rows is None or cols is None:
        raise ShapeError(f"{what}: the matrix dims of {shape_str(x.shape)} must be known when the graph is built")
    if square and rows != cols:
        raise ShapeError(f"{what} must be square, got {shape_str(x.shape)}")
    return rows, cols


def check_same_batch(a: Tensor, b: Tensor) -> tuple:
    """The batch dims a and b share (a None dim takes the other's value)."""
    if a.dtype != b.dtype:
        raise DTypeError(f"operands have different dtypes ({a.dtype} and {b.dtype})")
    ba, bb = a.shape[:-2], b.shape[:-2]
    if len(ba) != len(bb) or any(x is not None and y is not None and x != y for x, y in zip(ba, bb)):
        raise ShapeError(f"batch dims differ: {shape_str(a.shape)} and {shape_str(b.shape)}")
    return tuple(y if x is None else x for x, y in zip(ba, bb))


def batched_ref(fn: Callable[..., np.ndarray], out_shape: tuple, *arrays: np.ndarray,
                reads: tuple | None = None) -> np.ndarray:
    """fn over the whole batch at once; NaN for the matrices where numpy raises LinAlgError, and
    for those with a NaN or ±inf among the entries LAPACK reads (`reads`: per array, a boolean
    mask of the entries read, or None for all of them). Those matrices never reach numpy: its
    LAPACK can hang on them (svd of a matrix holding -inf does)."""
    bad = np.zeros((), bool)
    for a, read in zip(arrays, reads or (None,) * len(arrays)):
        wrong = ~np.isfinite(a) if read is None else ~np.isfinite(a) & read
        bad = bad | wrong.any(axis=(-2, -1))
    if not bad.any():
        return _lapack_errors_as_nan(fn, out_shape, *arrays)
    clean = tuple(np.where(bad[..., None, None], np.zeros((), a.dtype), a) for a in arrays)
    out = _lapack_errors_as_nan(fn, out_shape, *clean)
    out[bad, ...] = np.nan
    return out


def _lapack_errors_as_nan(fn: Callable[..., np.ndarray], out_shape: tuple, *arrays: np.ndarray) -> np.ndarray:
    try:
        return np.asarray(fn(*arrays))
    except np.linalg.LinAlgError:
        if arrays[0].ndim == 2:
            return np.full(out_shape, np.nan, arrays[0].dtype)
    batch = np.broadcast_shapes(*(a.shape[:-2] for a in arrays))
    out = np.empty(batch + tuple(out_shape), arrays[0].dtype)
    for idx in np.ndindex(*batch):
        try:
            out[idx] = fn(*(np.broadcast_to(a, batch + a.shape[-2:])[idx] for a in arrays))
        except np.linalg.LinAlgError:
            out[idx] = np.nan
    return out


# --- graph helpers for the derivative rules ---------------------------------------------------

def mask(n: int, m: int, k: int, like: Tensor, upper: bool = False) -> Tensor:
    """Constant n x m mask of the lower (tril(., k)) or upper (triu(., k)) triangle."""
    ones = np.ones((n, m))
    return constant(np.triu(ones, k) if upper else np.tril(ones, k), dtype=like.dtype, graph=like.graph)


def eye(n: int, like: Tensor) -> Tensor:
    return constant(np.eye(n), dtype=like.dtype, graph=like.graph)


def mT(x: Tensor) -> Tensor:  # noqa: N802 (the array API's name)
    return matrix_transpose(x)


def diagonal(x: Tensor) -> Tensor:
    """The diagonal of square matrices, (..., n, n) -> (..., n)."""
    return reduce_sum(x * eye(x.shape[-1], x), -1)


def diag_embed(v: Tensor) -> Tensor:
    """(..., n) -> (..., n, n) with v on the diagonal."""
    return v[..., None] * eye(v.shape[-1], v)


def fold_lower(g: Tensor) -> Tensor:
    """Cotangent of A for an op that reads only A's lower triangle as a symmetric matrix:
    tril(G) + tril(Gᵀ, -1)."""
    n = g.shape[-1]
    return g * mask(n, n, 0, g) + mT(g) * mask(n, n, -1, g)


def symmetric_from_lower(t: Tensor) -> Tensor:
    """The symmetric matrix an op that reads the lower triangle sees: tril(T) + tril(T, -1)ᵀ."""
    n = t.shape[-1]
    low = t * mask(n, n, -1, t)
    return low + mT(low) + t * eye(n, t)


def safe_reciprocal_gaps(w: Tensor) -> Tensor:
    """F[i, j] = 1 / (w[j] - w[i]) off the diagonal; 0 on it and where w[i] == w[j] exactly."""
    return safe_reciprocal(w[..., None, :] - w[..., :, None])


def safe_reciprocal(x: Tensor) -> Tensor:
    """1 / x, and 0 where x == 0 (a where on both sides, so no inf reaches a gradient)."""
    zero = equal(x, 0)
    return where(zero, zeros_like(x), 1 / where(zero, ones_like(x), x))
