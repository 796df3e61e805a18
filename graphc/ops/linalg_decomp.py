"""LAPACK-backed decompositions: eigh, svd, qr. Each is one primitive whose result packs
the factors into one array (graphc nodes have one result); `graphc.linalg` slices them:

* eigh (..., n, n) -> (..., n + 1, n): row 0 the eigenvalues (ascending), rows 1.. the
  eigenvectors as columns (LAPACK syevd on the lower triangle, as numpy.linalg.eigh).
* svd (..., m, n) -> (..., m + 1 + n, k), k = min(m, n): rows [U; s; V] of the reduced SVD
  A = U diag(s) Vᵀ (LAPACK gesdd); with `full`, U is m x m and V n x n and every block is
  zero-padded to max(m, n) columns (no derivative when m != n, as JAX).
* qr (..., m, n) -> (..., kq, m + n): [Qᵀ | R], kq = k ("reduced") or m ("complete")
  (LAPACK geqrf + orgqr).

Derivatives: the usual rules (as in JAX's linalg). Where two eigenvalues (or singular
values) are exactly equal, the eigenvector (singular vector) part of the gradient leaves
that pair out instead of dividing by zero: the derivative does not exist there and graphc
returns finite numbers (JAX returns inf/NaN); eigenvalue and singular value gradients
are exact. QR has derivatives except in mode "complete" with m > n (as JAX); for m < n
they follow A = [X | Y], X = Q R_x, R_y = QᵀY (Roberts and Roberts 2020, as JAX).
"""

from __future__ import annotations

import numpy as np

from ..errors import GraphcError, ShapeError
from ..ir.graph import Tensor
from .lapack_common import (
    batched_ref,
    check_matrix,
    diag_embed,
    diagonal,
    fold_lower,
    mask,
    mT,
    safe_reciprocal,
    safe_reciprocal_gaps,
    symmetric_from_lower,
)
from .linalg_solve import triangular_solve
from .registry import OpDef, register
from .shape import concatenate

__all__: list[str] = []


# --- eigh -----------------------------------------------------------------------------------

def _eigh_type(inputs: tuple, attrs: dict):
    (a,) = inputs
    n, _ = check_matrix(a, "a", square=True)
    return a.shape[:-2] + (n + 1, n), a.dtype


def eigh_packed(a: Tensor) -> Tensor:
    return a.graph.make("eigh", (a,))


def _eigh_one(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(a)
    return np.concatenate([w[..., None, :], v], axis=-2)


def _eigh_parts(out: Tensor) -> tuple[Tensor, Tensor]:
    return out[..., 0, :], out[..., 1:, :]


def _eigh_vjp(g, out, a):
    w, v = _eigh_parts(out)
    gw, gv = _eigh_parts(g)
    inner = diag_embed(gw) + safe_reciprocal_gaps(w) * (mT(v) @ gv)
    return (fold_lower(v @ inner @ mT(v)),)


def _eigh_jvp(t, out, a):
    (ta,) = t
    w, v = _eigh_parts(out)
    x = mT(v) @ symmetric_from_lower(ta) @ v
    dv = v @ (safe_reciprocal_gaps(w) * x)
    return concatenate([diagonal(x)[..., None, :], dv], axis=-2)


register(OpDef(
    "eigh", "lapack", _eigh_type, ref=lambda a: batched_ref(_eigh_one, (a.shape[-1] + 1, a.shape[-1]), a,
                                                      reads=(np.tri(a.shape[-1], dtype=bool),)),
    vjp=_eigh_vjp, jvp=_eigh_jvp,
    doc="[eigenvalues; eigenvectors] of the lower triangle of A read as symmetric (LAPACK syevd)"))


# --- svd ------------------------------------------------------------------------------------

def _svd_width(m: int, n: int, full: bool) -> int:
    return max(m, n) if full else min(m, n)


def _svd_type(inputs: tuple, attrs: dict):
    (a,) = inputs
    m, n = check_matrix(a, "a")
    return a.shape[:-2] + (m + 1 + n, _svd_width(m, n, attrs["full"])), a.dtype


def svd_packed(a: Tensor, full: bool = False) -> Tensor:
    """Rows [U; s; V], each block zero-padded on the right to the widest (full: U is m x m,
    V is n x n; else both have min(m, n) columns)."""
    return a.graph.make("svd", (a,), {"full": bool(full)})


def _svd_one(a: np.ndarray, full: bool) -> np.ndarray:
    u, s, vh = np.linalg.svd(a, full_matrices=full)
    width = _svd_width(*a.shape[-2:], full)
    blocks = [u, s[..., None, :], np.swapaxes(vh, -1, -2)]
    return np.concatenate([np.pad(b, [(0, 0)] * (b.ndim - 1) + [(0, width - b.shape[-1])]) for b in blocks], axis=-2)


def _svd_ref(a: np.ndarray, *, full: bool) -> np.ndarray:
    m, n = a.shape[-2:]
    return batched_ref(lambda x: _svd_one(x, full), (m + 1 + n, _svd_width(m, n, full)), a)


def _svd_differentiable(a: Tensor, full: bool) -> None:
    m, n = a.shape[-2:]
    if full and m != n:
        raise GraphcError(f"svd: full_matrices=True has no derivative when m != n (the extra singular vectors are "
                          f"not unique); got {a.shape}: use full_matrices=False\n  at {a.loc}")


def _svd_parts(out: Tensor, m: int) -> tuple[Tensor, Tensor, Tensor]:
    return out[..., :m, :], out[..., m, :], out[..., m + 1:, :]


def _svd_vjp(g, out, a, *, full):
    _svd_differentiable(a, full)
    m, n = a.shape[-2:]
    k = min(m, n)
    u, s, v = _svd_parts(out, m)
    gu, gs, gv = _svd_parts(g, m)
    f = safe_reciprocal_gaps(s * s)  # F[i, j] = 1 / (s_j² - s_i²)
    a1 = f * (mT(u) @ gu)
    a2 = f * (mT(v) @ gv)
    middle = diag_embed(gs) + (a1 + mT(a1)) * s[..., None, :] + s[..., :, None] * (a2 + mT(a2))
    ga = u @ middle @ mT(v)
    s_inv = safe_reciprocal(s)[..., None, :]
    if m > k:
        ga = ga + ((gu - u @ (mT(u) @ gu)) * s_inv) @ mT(v)
    if n > k:
        ga = ga + u @ mT((gv - v @ (mT(v) @ gv)) * s_inv)
    return (ga,)


def _svd_jvp(t, out, a, *, full):
    _svd_differentiable(a, full)
    (ta,) = t
    m, n = a.shape[-2:]
    k = min(m, n)
    u, s, v = _svd_parts(out, m)
    x = mT(u) @ ta @ v
    f = safe_reciprocal_gaps(s * s)
    xs = x * s[..., None, :]
    sx = s[..., :, None] * x
    du = u @ (f * (xs + mT(xs)))
    dv = v @ (f * (sx + mT(sx)))
    s_inv = safe_reciprocal(s)[..., None, :]
    if m > k:
        dav = ta @ v
        du = du + (dav - u @ (mT(u) @ dav)) * s_inv
    if n > k:
        dau = mT(ta) @ u
        dv = dv + (dau - v @ (mT(v) @ dau)) * s_inv
    return concatenate([du, diagonal(x)[..., None, :], dv], axis=-2)


register(OpDef(
    "svd", "lapack", _svd_type, ref=_svd_ref, attrs={"full": "bool"},
    vjp=_svd_vjp, jvp=_svd_jvp, doc="[U; s; V] of the SVD A = U diag(s) Vᵀ, reduced or full (LAPACK gesdd)"))


# --- qr -------------------------------------------------------------------------------------

_QR_MODES = ("reduced", "complete")


def _qr_type(inputs: tuple, attrs: dict):
    (a,) = inputs
    m, n = check_matrix(a, "a")
    mode = attrs["mode"]
    if mode not in _QR_MODES:
        raise ShapeError(f"mode must be 'reduced', 'complete' or 'r', got {mode!r}")
    kq = min(m, n) if mode == "reduced" else m
    return a.shape[:-2] + (kq, m + n), a.dtype


def qr_packed(a: Tensor, mode: str) -> Tensor:
    return a.graph.make("qr", (a,), {"mode": mode})


def _qr_one(a: np.ndarray, mode: str) -> np.ndarray:
    q, r = np.linalg.qr(a, mode=mode)
    return np.concatenate([np.swapaxes(q, -1, -2), r], axis=-1)


def _qr_ref(a: np.ndarray, *, mode: str) -> np.ndarray:
    m, n = a.shape[-2:]
    return batched_ref(lambda x: _qr_one(x, mode), (min(m, n) if mode == "reduced" else m, m + n), a)


def _qr_parts(out: Tensor, m: int) -> tuple[Tensor, Tensor]:
    return mT(out[..., :, :m]), out[..., :, m:]


def _qr_differentiable(a: Tensor, mode: str) -> None:
    m, n = a.shape[-2:]
    if mode == "complete" and m > n:
        raise GraphcError(f"qr: mode 'complete' has no derivative when m > n (Q's extra columns are not unique); "
                          f"got {a.shape}\n  at {a.loc}")


def _right_solve_rt(x: Tensor, r: Tensor) -> Tensor:
    """X R⁻ᵀ, R upper triangular."""
    return mT(triangular_solve(r, mT(x), False, False, False))


def _right_solve_r(x: Tensor, r: Tensor) -> Tensor:
    """X R⁻¹, R upper triangular."""
    return mT(triangular_solve(r, mT(x), False, True, False))


def _tall_vjp(q: Tensor, r: Tensor, gq: Tensor, gr: Tensor) -> Tensor:
    """Ā of A = QR with R square (m >= n): (Q̄ + Q (triu(M) + triu(M, 1)ᵀ)) R⁻ᵀ, M = R̄Rᵀ - QᵀQ̄."""
    k = r.shape[-1]
    mm = gr @ mT(r) - mT(q) @ gq
    sym = mm * mask(k, k, 0, mm, upper=True) + mT(mm * mask(k, k, 1, mm, upper=True))
    return _right_solve_rt(gq + q @ sym, r)


def _tall_jvp(q: Tensor, r: Tensor, da: Tensor) -> tuple[Tensor, Tensor]:
    """(dQ, dR) of A = QR with R square."""
    k = r.shape[-1]
    b = _right_solve_r(da, r)
    c = mT(q) @ b
    low = c * mask(k, k, -1, c)
    omega = low - mT(low)
    return q @ (omega - c) + b, (c - omega) @ r


def _qr_vjp(g, out, a, *, mode):
    """m >= n: the square-R rule. m < n: A = [X | Y], X = Q R_x (square), R_y = QᵀY."""
    _qr_differentiable(a, mode)
    m, n = a.shape[-2:]
    q, r = _qr_parts(out, m)
    gq, gr = _qr_parts(g, m)
    if m >= n:
        return (_tall_vjp(q, r, gq, gr),)
    y, gr_y = a[..., :, m:], gr[..., :, m:]
    gx = _tall_vjp(q, r[..., :, :m], gq + y @ mT(gr_y), gr[..., :, :m])
    return (concatenate([gx, q @ gr_y], axis=-1),)


def _qr_jvp(t, out, a, *, mode):
    _qr_differentiable(a, mode)
    (ta,) = t
    m, n = a.shape[-2:]
    q, r = _qr_parts(out, m)
    if m >= n:
        dq, dr = _tall_jvp(q, r, ta)
    else:
        dq, dr_x = _tall_jvp(q, r[..., :, :m], ta[..., :, :m])
        dr_y = mT(q) @ (ta[..., :, m:] - dq @ r[..., :, m:])
        dr = concatenate([dr_x, dr_y], axis=-1)
    return concatenate([mT(dq), dr], axis=-1)


register(OpDef(
    "qr", "lapack", _qr_type, attrs={"mode": "str"},
    ref=_qr_ref,
    vjp=_qr_vjp, jvp=_qr_jvp, doc="[Qᵀ | R] of A = QR (LAPACK geqrf + orgqr)"))
