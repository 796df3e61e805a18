"""scipy.special functions as elementwise ops (the public names live in `graphc.special`).

Scalar forms are written with the Emitter vocabulary (erfc lowers to the LLVM math
library); float32 computes in float32 throughout except erfc. Accuracy (float64, against
scipy): erfc and ndtr to a few ulp; gammaln, digamma and polygamma to about 1e-15
relative away from their zeros (absolute error about 1e-15 next to a zero); erfinv to
1e-15 relative (three Halley steps on erf/erfc from a 2e-3 start).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..dtypes import float32
from ..errors import GraphcError
from ..ir.graph import Tensor
from .elementwise import (
    _TWO_OVER_SQRT_PI,
    _const,
    _float,
    _linear,
    _special,
    _unary_float,
    apply,
    elementwise,
    equal,
    exp,
    log,
    log1p,
    where,
)
from .ufuncs import _binary_float

__all__ = ["erfc", "erfinv", "gammaln", "digamma", "polygamma", "xlogy", "xlog1py", "logit", "ndtr", "log_ndtr"]

_SQRT_PI_OVER_2 = math.sqrt(math.pi) / 2
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_SQRT1_2 = math.sqrt(0.5)
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_LOG_PI = math.log(math.pi)
_SHIFT = 8  # recurrences move arguments below this up to where the asymptotic series is exact
# Bernoulli numbers B_2, B_4, ..., B_20.
_BERNOULLI = (1 / 6, -1 / 30, 1 / 42, -1 / 30, 5 / 66, -691 / 2730, 7 / 6, -3617 / 510, 43867 / 798,
              -174611 / 330)


def _scipy(name: str):
    """A reference that keeps the input's dtype (scipy computes float32 in float64)."""

    def ref(*arrays):
        out = getattr(_special(), name)(*arrays)
        return np.asarray(out).astype(np.result_type(*arrays))

    ref.__name__ = name
    return ref


def _c(s, value: float, like: Any) -> Any:
    return _const(s, value, like)


def _horner(s, w, coeffs, like):
    acc = _c(s, coeffs[-1], like)
    for c in reversed(coeffs[:-1]):
        acc = s.add(s.mul(acc, w), _c(s, c, like))
    return acc


# --- erfc, ndtr, log_ndtr ----------------------------------------------------------------------

erfc = _unary_float("erfc", _scipy("erfc"), lambda s, x: s.erfc(x),
                    lambda v, out, x: v * (-_TWO_OVER_SQRT_PI * exp(-(x * x))),
                    "complementary error function 1 - erf(x), accurate in the tail", heavy=True)


def _ndtr_scalar(s, x):
    return s.mul(_c(s, 0.5, x), s.erfc(s.mul(s.neg(x), _c(s, _SQRT1_2, x))))


ndtr = _unary_float("ndtr", _scipy("ndtr"), _ndtr_scalar, lambda v, out, x: v * (_INV_SQRT_2PI * exp(-0.5 * x * x)),
                    "standard normal CDF", heavy=True)

# log(ndtr(x)) for x <= -20 (float32: -10): -x^2/2 - log(-x) - log(2 pi)/2 + log1p(sum_k (-1)^k (2k-1)!! / x^(2k)).
_LOG_NDTR_SERIES = (-1.0, 3.0, -15.0, 105.0, -945.0, 10395.0)


def _log_ndtr_scalar(s, x):
    half = _c(s, 0.5, x)
    upper = s.log1p(s.neg(s.mul(half, s.erfc(s.mul(x, _c(s, _SQRT1_2, x))))))  # x > 0: log(1 - ndtr(-x))
    middle = s.log(_ndtr_scalar(s, x))
    w = s.div(_c(s, 1, x), s.mul(x, x))
    series = s.mul(w, _horner(s, w, _LOG_NDTR_SERIES, x))
    tail = s.sub(s.sub(s.neg(s.mul(half, s.mul(x, x))), s.log(s.neg(x))), _c(s, _HALF_LOG_2PI, x))
    tail = s.add(tail, s.log1p(series))
    zero = _c(s, 0, x)
    # The asymptotic tail takes over before ndtr underflows (float32 ndtr is 0 below about -13).
    below = -10 if s.dtype_of(x) == float32 else -20
    return s.select(s.cmp("gt", x, zero), upper, s.select(s.cmp("gt", x, _c(s, below, x)), middle, tail))


def _log_ndtr_vjp(v: Tensor, out: Tensor, x: Tensor) -> Tensor:
    """v * pdf(x) / ndtr(x). Deep in the tail the ratio is -x / (1 + series), from the
    forward's asymptotic expansion: exp(-x^2/2 - out) cancels two numbers near x^2/2
    (float32 lost 7e-4 relative at x = -118, graph-fuzz seed 1009167). The float64 bound
    is where the series' truncation (about 5e-18 relative) beats the cancellation. The
    tail's argument is clamped in the other lanes, so neither branch makes a NaN there."""
    below = -10.0 if x.dtype == float32 else -40.0
    tail = x < below
    xs = where(tail, x, below)
    w = 1.0 / (xs * xs)
    acc = _LOG_NDTR_SERIES[-1] + 0.0 * w
    for c in reversed(_LOG_NDTR_SERIES[:-1]):
        acc = acc * w + c
    return v * where(tail, -xs / (1.0 + w * acc), _INV_SQRT_2PI * exp(-0.5 * x * x - out))


log_ndtr = _unary_float("log_ndtr", _scipy("log_ndtr"), _log_ndtr_scalar, _log_ndtr_vjp,
                        "log of the standard normal CDF, accurate in both tails", heavy=True)

# --- erfinv ------------------------------------------------------------------------------------

_WINITZKI = 0.147


def _erfinv_scalar(s, y):
    one, zero = _c(s, 1, y), _c(s, 0, y)
    a = s.abs(y)
    w = s.neg(s.log(s.mul(s.sub(one, a), s.add(one, a))))
    b = s.sub(_c(s, 2 / (math.pi * _WINITZKI), y), s.mul(_c(s, 0.5, y), w))
    x = s.sqrt(s.sub(s.sqrt(s.add(s.mul(b, b), s.mul(w, _c(s, 1 / _WINITZKI, y)))), b))  # within 2e-3
    near_zero = s.cmp("lt", a, _c(s, 0.5, y))
    for _ in range(3):  # Halley on erf(x) = a; erfc in the tail keeps f accurate
        f = s.select(near_zero, s.sub(s.erf(x), a), s.sub(s.sub(one, a), s.erfc(x)))
        u = s.mul(s.mul(f, _c(s, _SQRT_PI_OVER_2, y)), s.exp(s.mul(x, x)))
        x = s.sub(x, s.div(u, s.add(one, s.mul(x, u))))
    x = s.select(s.cmp("eq", a, one), _c(s, np.inf, y), x)
    x = s.select(s.cmp("gt", a, one), _c(s, np.nan, y), x)
    x = s.select(s.cmp("lt", y, zero), s.neg(x), x)
    return s.select(s.cmp("eq", y, zero), y, x)  # keeps -0


def _erfinv_ref(y: np.ndarray) -> np.ndarray:
    """scipy's erfinv with the sign of zero kept, as the scalar form (erfinv is odd; scipy gives +0
    at -0, so the backends disagreed downstream: 1 / erfinv(-0.0), graph-fuzz seed 6102310)."""
    return np.where(y == 0, y, _scipy("erfinv")(y))


erfinv = _unary_float("erfinv", _erfinv_ref, _erfinv_scalar,
                      lambda v, out, y: v * (_SQRT_PI_OVER_2 * exp(out * out)), "inverse error function", heavy=True)

# --- gammaln, digamma, polygamma ---------------------------------------------------------------


def _reflected(s, x):
    """(x > 0, x where positive else 1 - x, r = x - rint(x) for the reflection's sin(pi r))."""
    one = _c(s, 1, x)
    positive = s.cmp("gt", x, _c(s, 0, x))
    return positive, s.select(positive, x, s.sub(one, x)), s.sub(x, s.rint(x))


def _gammaln_scalar(s, x):
    positive, xp, r = _reflected(s, x)
    small = s.cmp("lt", xp, _c(s, _SHIFT, x))
    prod = xp
    for k in range(1, _SHIFT):
        prod = s.mul(prod, s.add(xp, _c(s, k, x)))
    z = s.select(small, s.add(xp, _c(s, _SHIFT, x)), xp)
    w = s.div(_c(s, 1, x), z)
    coeffs = [b / (2 * k * (2 * k - 1)) for k, b in enumerate(_BERNOULLI[:8], start=1)]
    series = s.mul(w, _horner(s, s.mul(w, w), coeffs, x))
    stirling = s.add(s.sub(s.mul(s.sub(z, _c(s, 0.5, x)), s.log(z)), z), s.add(_c(s, _HALF_LOG_2PI, x), series))
    lg = s.sub(stirling, s.select(small, s.log(prod), _c(s, 0, x)))
    # x <= 0: log(pi / |sin(pi x)|) - lgamma(1 - x); inf at the poles (r = 0), where lgamma(1 - x) can be
    # inf too (every float32 x <= -2^23 is a pole; inf - inf gave NaN at -3.4e38: graph-fuzz seed 6110125)
    sin_pix = s.abs(s.sin(s.mul(_c(s, math.pi, x), r)))
    reflected = s.sub(s.sub(_c(s, _LOG_PI, x), s.log(sin_pix)), lg)
    inf = _c(s, np.inf, x)
    reflected = s.select(s.cmp("eq", r, _c(s, 0, x)), inf, reflected)
    res = s.select(positive, lg, reflected)
    res = s.select(s.cmp("eq", x, inf), inf, res)
    return s.select(s.cmp("eq", x, s.neg(inf)), s.neg(inf), res)  # scipy's gammaln(-inf)


def _digamma_scalar(s, x):
    positive, xp, r = _reflected(s, x)
    small = s.cmp("lt", xp, _c(s, _SHIFT, x))
    acc = _c(s, 0, x)
    for k in range(_SHIFT):
        acc = s.add(acc, s.div(_c(s, 1, x), s.add(xp, _c(s, k, x))))
    z = s.select(small, s.add(xp, _c(s, _SHIFT, x)), xp)
    w2 = s.div(_c(s, 1, x), s.mul(z, z))
    coeffs = [b / (2 * k) for k, b in enumerate(_BERNOULLI[:8], start=1)]
    psi = s.sub(s.sub(s.log(z), s.div(_c(s, 0.5, x), z)), s.mul(w2, _horner(s, w2, coeffs, x)))
    psi = s.sub(psi, s.select(small, acc, _c(s, 0, x)))
    # x <= 0: psi(1 - x) - pi cot(pi x).
    pr = s.mul(_c(s, math.pi, x), r)
    reflected = s.sub(psi, s.div(s.mul(_c(s, math.pi, x), s.cos(pr)), s.sin(pr)))
    # Poles at 0, -1, -2, ...: NaN, except -1/x at +-0 (scipy: -inf at +0, inf at -0).
    zero = _c(s, 0, x)
    pole = s.select(s.cmp("eq", x, zero), s.div(_c(s, -1, x), x), _c(s, np.nan, x))
    reflected = s.select(s.cmp("eq", r, zero), pole, reflected)
    return s.select(positive, psi, reflected)


def _ipow(s, t, k: int):
    acc = t
    for _ in range(k - 1):
        acc = s.mul(acc, t)
    return acc


def _polygamma_scalar(s, x, *, n: int):
    """psi^(n)(x), n >= 1: (-1)^(n+1) n! sum_k 1/(x+k)^(n+1) by recurrence and the asymptotic series."""
    sign = 1.0 if n % 2 else -1.0
    shift = 10 + 4 * n
    positive, xp, r = _reflected(s, x)
    one = _c(s, 1, x)
    acc = _c(s, 0, x)
    for k in range(shift):
        t = s.div(one, s.add(xp, _c(s, k, x)))
        acc = s.add(acc, _ipow(s, t, n + 1))
    z = s.add(xp, _c(s, shift, x))
    w = s.div(one, z)
    # (n-1)!/z^n + n!/(2 z^(n+1)) + sum_k B_2k (2k+n-1)!/(2k)! / z^(2k+n)
    coeffs = [math.factorial(2 * k + n - 1) / math.factorial(2 * k) * b for k, b in enumerate(_BERNOULLI, start=1)]
    series = s.mul(s.mul(w, w), _horner(s, s.mul(w, w), coeffs, x))
    head = s.add(_c(s, math.factorial(n - 1), x), s.mul(_c(s, math.factorial(n) / 2, x), w))
    asym = s.mul(_ipow(s, w, n), s.add(head, series))
    res = s.mul(_c(s, sign, x), s.add(s.mul(_c(s, math.factorial(n), x), acc), asym))
    # x <= 0: psi^(n)(x) = (-1)^n psi^(n)(1 - x) - pi d^n/dx^n cot(pi x), the latter a polynomial in
    # c = cot(pi x); at the poles and at -inf, scipy's (-1)^(n+1) inf.
    pr = s.mul(_c(s, math.pi, x), r)
    cot = s.div(s.cos(pr), s.sin(pr))
    d_cot = _horner(s, cot, _cot_derivative(n), x)
    reflected = s.sub(s.mul(_c(s, (-1.0) ** n, x), res), s.mul(_c(s, math.pi, x), d_cot))
    pole = s.or_(s.cmp("eq", r, _c(s, 0, x)), s.cmp("eq", x, _c(s, -np.inf, x)))
    reflected = s.select(pole, _c(s, sign * np.inf, x), reflected)
    return s.select(positive, res, reflected)


def _cot_derivative(n: int) -> tuple[float, ...]:
    """Coefficients (lowest first) of P with d^n/dx^n cot(pi x) = P(cot(pi x)): P' (-pi (1 + c^2)) each step."""
    p = np.array([0.0, 1.0])
    for _ in range(n):
        p = -math.pi * np.polynomial.polynomial.polymul([1.0, 0.0, 1.0], np.polynomial.polynomial.polyder(p))
    return tuple(float(c) for c in p)


gammaln = _unary_float("gammaln", _scipy("gammaln"), _gammaln_scalar, lambda v, out, x: v * digamma(x),
                       "log |Gamma(x)|", heavy=True)
digamma = _unary_float("digamma", _scipy("digamma"), _digamma_scalar, lambda v, out, x: v * polygamma(1, x),
                       "d/dx log Gamma(x)", heavy=True)


def _polygamma_ref(x: np.ndarray, *, n: int) -> np.ndarray:
    return np.asarray(_special().polygamma(n, x)).astype(x.dtype)


elementwise("polygamma", _polygamma_ref, _polygamma_scalar, float_only=True, heavy=True, attrs={"n": "int"},
            **_linear(lambda v, out, x, *, n: v * polygamma(n + 1, x)),
            doc="the n-th derivative of digamma, n >= 1 (reflection for x <= 0)")


def polygamma(n: int, x: Any) -> Tensor:
    """scipy.special.polygamma: the n-th derivative of digamma (n = 0 is `digamma` itself)."""
    n = int(n)
    if n == 0:
        return digamma(x)
    if n < 0:
        raise GraphcError(f"polygamma: n must be >= 0, got {n}")
    return apply("polygamma", _float(x), n=n)


# --- logit, xlogy, xlog1py ---------------------------------------------------------------------

logit = _unary_float("logit", _scipy("logit"), lambda s, x: s.log(s.div(x, s.sub(_c(s, 1, x), x))),
                     lambda v, out, x: v / (x * (1 - x)), "log(x / (1 - x)), the inverse of expit", heavy=True)


def _x_times(log_fn: str):
    """x * log_fn(y), 0 where x == 0 unless y is NaN (scipy's xlogy, xlog1py)."""

    def scalar(s, x, y):
        zero = _c(s, 0, x)
        at_zero = s.and_(s.cmp("eq", x, zero), s.cmp("eq", y, y))
        return s.select(at_zero, zero, s.mul(x, getattr(s, log_fn)(y)))

    return scalar


def _safe_ratio(v: Tensor, x: Tensor, den: Tensor) -> Tensor:
    """v * x / den, 0 where x == 0 (also where den == 0 there)."""
    zero = equal(x, 0)
    return where(zero, 0, v * x / where(zero, 1, den))


xlogy = _binary_float("xlogy", _scipy("xlogy"), _x_times("log"), lambda v, out, x, y: v * log(y),
                      lambda v, out, x, y: _safe_ratio(v, x, y), "x * log(y), 0 where x == 0", heavy=True)
xlog1py = _binary_float("xlog1py", _scipy("xlog1py"), _x_times("log1p"), lambda v, out, x, y: v * log1p(y),
                        lambda v, out, x, y: _safe_ratio(v, x, 1 + y), "x * log1p(y), 0 where x == 0", heavy=True)
