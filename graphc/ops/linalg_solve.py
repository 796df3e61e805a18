"""LAPACK-backed primitives for linear systems: solve, triangular_solve, cholesky, slogdet.

Derivatives follow Giles 2008 ("Collected matrix derivative results") and, for the
Cholesky factor, Murray 2016. Inputs read as symmetric (cholesky) use their lower
triangle only, as numpy does, and their cotangent is the exact derivative of that
reading (`fold_lower`). A matrix LAPACK reports as singular (or not positive definite)
gives NaN in every output element of that matrix, on both backends.
"""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..ir.graph import Tensor
from .create import zeros_like
from .lapack_common import (
    batched_ref,
    check_matrix,
    check_same_batch,
    diagonal,
    eye,
    fold_lower,
    mask,
    mT,
    symmetric_from_lower,
)
from .reduce import sum as reduce_sum
from .registry import OpDef, register
from .shape import broadcast_like, concatenate

__all__: list[str] = []


def _solve_type(inputs: tuple, attrs: dict):
    a, b = inputs
    n, _ = check_matrix(a, "a", square=True)
    rows, k = check_matrix(b, "b")
    batch = check_same_batch(a, b)
    if rows != n:
        raise ShapeError(f"b has {rows} rows for a {n} x {n} system")
    return batch + (n, k), a.dtype


def solve(a: Tensor, b: Tensor) -> Tensor:
    """X with A X = B for square A (..., n, n) and B (..., n, k) of the same batch dims."""
    return a.graph.make("solve", (a, b))


def _solve_vjp(g, x, a, b):
    gb = solve(mT(a), g)
    return -(gb @ mT(x)), gb


def _solve_jvp(t, x, a, b):
    ta, tb = t
    rhs = tb if ta is None else (-(ta @ x) if tb is None else tb - ta @ x)
    return solve(a, rhs)


register(OpDef(
    "solve", "lapack", _solve_type,
    ref=lambda a, b: batched_ref(np.linalg.solve, b.shape[-2:], a, b),
    vjp=_solve_vjp, jvp=_solve_jvp,
    doc="X = A⁻¹ B (LAPACK gesv); NaN where A is exactly singular"))


# --- triangular solve -----------------------------------------------------------------------

def _triangular_type(inputs: tuple, attrs: dict):
    return _solve_type(inputs, attrs)


def triangular_solve(a: Tensor, b: Tensor, lower: bool, trans: bool, unit: bool) -> Tensor:
    """X with op(T) X = B, T the lower (or upper) triangle of A (unit diagonal if `unit`),
    op(T) = Tᵀ when `trans`. The other triangle of A is never read."""
    return a.graph.make("triangular_solve", (a, b), {"lower": bool(lower), "trans": bool(trans), "unit": bool(unit)})


def _triangular_ref(a, b, *, lower, trans, unit):
    """scipy's solve_triangular: LAPACK trtrs, the routine the LLVM backend calls (a solve of
    the masked matrix by LU would differ where b holds inf or NaN)."""
    from scipy.linalg import solve_triangular

    def one(t: np.ndarray, r: np.ndarray) -> np.ndarray:
        return solve_triangular(t, r, trans=int(trans), lower=lower, unit_diagonal=unit, check_finite=False)

    n = a.shape[-1]
    read = np.tri(n, n, -int(unit), bool) if lower else np.tri(n, n, -int(unit), bool).T
    batch = a.shape[:-2]
    out = np.empty(b.shape, np.result_type(a, b))
    for idx in np.ndindex(*batch):
        out[idx] = batched_ref(one, b.shape[-2:], a[idx], b[idx], reads=(read, None))
    return out


def _tri_mask(a: Tensor, lower: bool, unit: bool) -> Tensor:
    """The entries of A that T reads (a unit diagonal is not read)."""
    n = a.shape[-1]
    return mask(n, n, -1, a) if lower and unit else mask(n, n, 0, a) if lower else mask(n, n, int(unit), a, upper=True)


def _triangular_vjp(g, x, a, b, *, lower, trans, unit):
    gb = triangular_solve(a, g, lower, not trans, unit)
    gt = -(gb @ mT(x))  # cotangent of op(T)
    return (mT(gt) if trans else gt) * _tri_mask(a, lower, unit), gb


def _triangular_jvp(t, x, a, b, *, lower, trans, unit):
    ta, tb = t
    rhs = tb
    if ta is not None:
        dt = ta * _tri_mask(a, lower, unit)
        prod = (mT(dt) if trans else dt) @ x
        rhs = -prod if tb is None else tb - prod
    return triangular_solve(a, rhs, lower, trans, unit)


register(OpDef(
    "triangular_solve", "lapack", _triangular_type, ref=_triangular_ref,
    attrs={"lower": "bool", "trans": "bool", "unit": "bool"},
    vjp=_triangular_vjp, jvp=_triangular_jvp,
    doc="X = op(T)⁻¹ B for the lower/upper triangle T of A (LAPACK trtrs); NaN where T has a zero pivot"))


# --- cholesky -------------------------------------------------------------------------------

def _square_type(inputs: tuple, attrs: dict):
    (a,) = inputs
    check_matrix(a, "a", square=True)
    return a.shape, a.dtype


def cholesky(a: Tensor) -> Tensor:
    """Lower L with L Lᵀ = A, reading A's lower triangle."""
    return a.graph.make("cholesky", (a,))


def _phi(x: Tensor) -> Tensor:
    """Lower triangle with the diagonal halved (Murray 2016's Φ)."""
    n = x.shape[-1]
    return x * mask(n, n, -1, x) + 0.5 * x * eye(n, x)


def _cholesky_vjp(g, low, a):
    # dL = L Φ(L⁻¹ dA L⁻ᵀ)  =>  Ā = L⁻ᵀ Φ(Lᵀ L̄) L⁻¹, then folded onto the lower triangle read.
    p = _phi(mT(low) @ g)
    s = triangular_solve(low, mT(triangular_solve(low, p, True, True, False)), True, True, False)  # L⁻ᵀ Pᵀ L⁻¹
    return (fold_lower(s),)  # fold_lower reads only the symmetric part, so Pᵀ for P is fine


def _cholesky_jvp(t, low, a):
    (ta,) = t
    da = symmetric_from_lower(ta)
    inner = triangular_solve(low, mT(triangular_solve(low, da, True, False, False)), True, False, False)
    return low @ _phi(inner)


def _cholesky_ref(a):
    return batched_ref(np.linalg.cholesky, a.shape[-2:], a, reads=(np.tri(a.shape[-1], dtype=bool),))


register(OpDef(
    "cholesky", "lapack", _square_type, ref=_cholesky_ref, vjp=_cholesky_vjp, jvp=_cholesky_jvp,
    doc="lower Cholesky factor of the lower triangle of A (LAPACK potrf); NaN if not positive definite"))


# --- slogdet --------------------------------------------------------------------------------

def _slogdet_type(inputs: tuple, attrs: dict):
    (a,) = inputs
    check_matrix(a, "a", square=True)
    return a.shape[:-2] + (2,), a.dtype


def slogdet_packed(a: Tensor) -> Tensor:
    """[sign, log|det A|] stacked on a last axis of 2."""
    return a.graph.make("slogdet", (a,))


def _slogdet_one(a: np.ndarray) -> np.ndarray:
    sign, logdet = np.linalg.slogdet(a)
    return np.stack([sign, logdet], axis=-1)


def _slogdet_ref(a):
    return batched_ref(_slogdet_one, (2,), a)


def inverse(a: Tensor) -> Tensor:
    """A⁻¹ as solve(A, I) (what numpy.linalg.inv does)."""
    return solve(a, broadcast_like(eye(a.shape[-1], a), a))


def _slogdet_vjp(g, out, a):
    gl = g[..., 1]
    return (gl[..., None, None] * mT(inverse(a)),)


def _slogdet_jvp(t, out, a):
    (ta,) = t
    dl = reduce_sum(diagonal(solve(a, ta)), -1, keepdims=True)  # d log|det A| = tr(A⁻¹ dA)
    return concatenate([zeros_like(dl), dl], axis=-1)


register(OpDef(
    "slogdet", "lapack", _slogdet_type, ref=_slogdet_ref, vjp=_slogdet_vjp, jvp=_slogdet_jvp,
    doc="[sign, log|det A|] from an LU factorization (LAPACK getrf); sign 0 and -inf when singular"))
