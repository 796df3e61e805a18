"""`gc.linalg`: numpy.linalg (and scipy's cho_solve / solve_triangular) on graphc tensors.

Every function works on a matrix or a batch of them (leading dims, broadcast where
numpy broadcasts) and has gradients in both modes. Factorizations and solves are LAPACK
calls (see docs/backend.md, "LAPACK"). A singular or non-positive-definite matrix gives
NaN results where numpy raises LinAlgError (det and slogdet follow numpy: 0 and
(0, -inf)); see docs/ops.md for the gradient conventions.
"""

from __future__ import annotations

from typing import Any

from .dtypes import broadcast_shapes, is_float, shape_str
from .errors import DTypeError, ShapeError, user_location
from .ir.composite import composite
from .ir.graph import Tensor
from .ops import linalg_solve as _ls
from .ops.core import promote
from .ops.elementwise import exp
from .ops.shape import broadcast_to

__all__ = ["cho_solve", "cholesky", "det", "inv", "slogdet", "solve", "solve_triangular", "triangular_solve"]


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
    if square and t.shape[-1] != t.shape[-2]:
        raise _fail(ShapeError, f"linalg.{fn}: {what} must be square, got {shape_str(t.shape)}")
    return t


def _with_batch(t: Tensor, batch: tuple) -> Tensor:
    if t.shape[:-2] == batch:
        return t
    if any(d is None for d in batch):
        raise _fail(ShapeError, f"linalg: cannot broadcast {shape_str(t.shape)} to the unknown batch dims "
                                f"{shape_str(batch)}")
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
    return _with_batch(a, batch), _with_batch(b, batch), vector


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
    return packed[..., 0], packed[..., 1]


@composite
def det(a: Any) -> Tensor:
    """numpy.linalg.det, as sign * exp(log|det|) of one LU factorization (0 when singular)."""
    sign, logdet = slogdet(a)
    return sign * exp(logdet)


@composite
def cholesky(a: Any) -> Tensor:
    """numpy.linalg.cholesky: lower L with L Lᵀ = a, reading a's lower triangle; NaN if not
    positive definite."""
    return _ls.cholesky(_float_matrix(a, "cholesky"))


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
