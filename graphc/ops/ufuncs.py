"""More numpy elementwise functions: trigonometric, hyperbolic, logarithmic and the rest.

Each is one `OpDef` declared with the helpers of `elementwise.py` (shape and dtype rules,
one derivative map per input); the transcendental scalar forms call the LLVM math library
(`graphc/backend/llvm/mathlib.py`). docs/ops.md lists each op's derivative convention.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..dtypes import float32, is_float
from ..ir.graph import Tensor
from . import semantics
from .core import promote
from .elementwise import (
    _MAX_MIN_LINEAR,
    _const,
    _float,
    _linear,
    _max_scalar,
    _min_scalar,
    _numeric_broadcast,
    _unary_float,
    abs,
    apply,
    cos,
    elementwise,
    equal,
    exp,
    floor,
    less,
    rsqrt,
    sign,
    sin,
    square,
    where,
)

__all__ = [
    "tan", "arcsin", "arccos", "arctan", "arctan2", "sinh", "cosh", "arcsinh", "arccosh", "arctanh",
    "exp2", "log2", "log10", "logaddexp", "logaddexp2", "hypot", "reciprocal", "mod", "remainder",
    "fmax", "fmin", "sinc", "deg2rad", "rad2deg", "nan_to_num", "fabs", "heaviside",
]

_LN2 = math.log(2.0)
_LN10 = math.log(10.0)
_LOG2E = 1 / _LN2

# --- trigonometric and hyperbolic --------------------------------------------------------------

tan = _unary_float("tan", np.tan, lambda s, x: s.tan(x), lambda v, out, x: v * (1 + square(out)), "tangent",
                   heavy=True)
arcsin = _unary_float("arcsin", np.arcsin, lambda s, x: s.asin(x),
                      lambda v, out, x: v * rsqrt((1 - x) * (1 + x)), "inverse sine", heavy=True)
arccos = _unary_float("arccos", np.arccos, lambda s, x: s.acos(x),
                      lambda v, out, x: -v * rsqrt((1 - x) * (1 + x)), "inverse cosine", heavy=True)
arctan = _unary_float("arctan", np.arctan, lambda s, x: s.atan(x), lambda v, out, x: v / (1 + square(x)),
                      "inverse tangent", heavy=True)
sinh = _unary_float("sinh", np.sinh, lambda s, x: s.sinh(x), lambda v, out, x: v * cosh(x), "hyperbolic sine",
                    heavy=True)
cosh = _unary_float("cosh", np.cosh, lambda s, x: s.cosh(x), lambda v, out, x: v * sinh(x), "hyperbolic cosine",
                    heavy=True)
arcsinh = _unary_float("arcsinh", np.arcsinh, lambda s, x: s.asinh(x), lambda v, out, x: v * rsqrt(square(x) + 1),
                       "inverse hyperbolic sine", heavy=True)
arccosh = _unary_float("arccosh", np.arccosh, lambda s, x: s.acosh(x),
                       lambda v, out, x: v * rsqrt((x - 1) * (x + 1)), "inverse hyperbolic cosine", heavy=True)
arctanh = _unary_float("arctanh", np.arctanh, lambda s, x: s.atanh(x), lambda v, out, x: v / ((1 - x) * (1 + x)),
                       "inverse hyperbolic tangent", heavy=True)

# --- exponentials and logarithms ---------------------------------------------------------------

exp2 = _unary_float("exp2", np.exp2, lambda s, x: s.exp2(x), lambda v, out, x: v * (out * _LN2), "2**x",
                    heavy=True)
log2 = _unary_float("log2", np.log2, lambda s, x: s.log2(x), lambda v, out, x: v / (x * _LN2), "base-2 log",
                    heavy=True)
log10 = _unary_float("log10", np.log10, lambda s, x: s.log10(x), lambda v, out, x: v / (x * _LN10),
                     "base-10 log", heavy=True)


def _binary_float(name: str, ref: Callable, scalar: Callable, lin_a: Callable, lin_b: Callable, doc: str,
                  **facts: Any) -> Callable:
    """Register a float-only binary op; return its public function (ints compute in float64)."""
    elementwise(name, ref, scalar, float_only=True, doc=doc, **_linear(lin_a, lin_b), **facts)

    def fn(a: Any, b: Any) -> Tensor:
        a, b = promote(a, b)
        return apply(name, _float(a), _float(b))

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Elementwise {doc} (integer inputs compute in float64)."
    return fn


def _logaddexp_scalar(base2: bool) -> Callable:
    """numpy's form: a tie gives a + log(2); else max + log1p(exp(-|a - b|)) (base 2 for logaddexp2)."""

    def scalar(s, a, b):
        d = s.neg(s.abs(s.sub(a, b)))
        if base2:
            rest, tie = s.mul(_const(s, _LOG2E, a), s.log1p(s.exp2(d))), _const(s, 1, a)
        else:
            rest, tie = s.log1p(s.exp(d)), _const(s, _LN2, a)
        return s.select(s.cmp("eq", a, b), s.add(a, tie), s.add(s.maximum(a, b), rest))

    return scalar


logaddexp = _binary_float("logaddexp", np.logaddexp, _logaddexp_scalar(False),
                          lambda v, out, a, b: v * exp(a - out), lambda v, out, a, b: v * exp(b - out),
                          "log(e**a + e**b), stable for large |a|, |b|", commutative=True, heavy=True)
logaddexp2 = _binary_float("logaddexp2", np.logaddexp2, _logaddexp_scalar(True),
                           lambda v, out, a, b: v * exp2(a - out), lambda v, out, a, b: v * exp2(b - out),
                           "log2(2**a + 2**b), stable for large |a|, |b|", commutative=True, heavy=True)
arctan2 = _binary_float("arctan2", np.arctan2, lambda s, y, x: s.atan2(y, x),
                        lambda v, out, y, x: v * x / (square(x) + square(y)),
                        lambda v, out, y, x: -v * y / (square(x) + square(y)),
                        "angle of the point (x, y) in (-pi, pi] (C99 signed zeros and infinities)", heavy=True)


def _hypot_scalar(s, a, b):
    """max * sqrt(1 + (min / max)**2): no overflow; hypot(inf, nan) = inf as in C99."""
    ax, bx = s.abs(a), s.abs(b)
    m, n = s.maximum(ax, bx), s.minimum(ax, bx)
    zero, inf = _const(s, 0, a), _const(s, np.inf, a)
    r = s.div(n, s.select(s.cmp("eq", m, zero), _const(s, 1, a), m))
    res = s.mul(m, s.sqrt(s.add(_const(s, 1, a), s.mul(r, r))))
    return s.select(s.or_(s.cmp("eq", ax, inf), s.cmp("eq", bx, inf)), inf, res)


def _hypot_lin(v: Tensor, out: Tensor, mine: Tensor, other: Tensor) -> Tensor:
    """d hypot / d mine = mine / hypot, taken as 0 at the origin (its smallest subgradient)."""
    at_zero = equal(out, 0)
    return where(at_zero, 0, v * mine / where(at_zero, 1, out))


hypot = _binary_float("hypot", np.hypot, _hypot_scalar, lambda v, out, a, b: _hypot_lin(v, out, a, b),
                      lambda v, out, a, b: _hypot_lin(v, out, b, a), "sqrt(a**2 + b**2) without overflow",
                      commutative=True)

# --- arithmetic --------------------------------------------------------------------------------

reciprocal = _unary_float("reciprocal", np.reciprocal, lambda s, x: s.div(_const(s, 1, x), x),
                          lambda v, out, x: -v * square(out), "1 / x")
fabs = _unary_float("fabs", np.fabs, lambda s, x: s.abs(x), lambda v, out, x: v * sign(x), "|x| (fabs'(0) = 0)")


def _mod_scalar(s, a, b):
    """Python's and numpy's a % b: the result has b's sign (floats: from C fmod; ints: floor)."""
    if s.dtype_of(a).kind != "f":
        return s.mod(a, b)
    zero = _const(s, 0, a)
    r = s.fmod(a, b)
    wrong_sign = s.and_(s.cmp("ne", r, zero), s.cmp("ne", s.cmp("lt", r, zero), s.cmp("lt", b, zero)))
    r = s.select(wrong_sign, s.add(r, b), r)
    return s.select(s.cmp("eq", r, zero), s.select(s.cmp("lt", b, zero), _const(s, -0.0, a), zero), r)


def _mod_lin_b(v: Tensor, out: Tensor, a: Tensor, b: Tensor) -> Tensor | None:
    return None if not is_float(a.dtype) else -v * floor(a / b)


elementwise("mod", np.mod, _mod_scalar, infer=_numeric_broadcast,
            **_linear(lambda v, out, a, b: v if is_float(a.dtype) else None, _mod_lin_b),
            doc="a % b with the sign of b (numpy.mod, Python's %)")


def mod(a: Any, b: Any) -> Tensor:
    """numpy.mod (also `remainder` and the `%` operator): the remainder with the sign of b."""
    return apply("mod", a, b)


def remainder(a: Any, b: Any) -> Tensor:
    """numpy.remainder, the same as `mod`."""
    return mod(a, b)


def _nan_ignoring(pick: Callable) -> Callable:
    """fmax/fmin: where one operand is NaN the other is the result."""

    def scalar(s, a, b):
        if s.dtype_of(a).kind != "f":
            return pick(s, a, b)
        return s.select(s.cmp("ne", a, a), b, s.select(s.cmp("ne", b, b), a, pick(s, a, b)))

    return scalar


def _nan_ignoring_ref(extremum: Callable) -> Callable:
    """numpy.fmax/fmin with graphc's zeros (semantics.maximum/minimum: -0.0 < +0.0 in either order)."""

    def ref(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = extremum(a, b)
        if out.dtype.kind != "f":
            return out
        return np.where(np.isnan(a), b, np.where(np.isnan(b), a, out)).astype(out.dtype)

    return ref


elementwise("fmax", _nan_ignoring_ref(semantics.maximum), _nan_ignoring(_max_scalar), **_MAX_MIN_LINEAR,
            commutative=True, doc="the larger of a and b, ignoring NaN (numpy.fmax; max(-0.0, +0.0) = +0.0)")
elementwise("fmin", _nan_ignoring_ref(semantics.minimum), _nan_ignoring(_min_scalar), **_MAX_MIN_LINEAR,
            commutative=True, doc="the smaller of a and b, ignoring NaN (numpy.fmin; min(-0.0, +0.0) = -0.0)")


def fmax(a: Any, b: Any) -> Tensor:
    """numpy.fmax: elementwise maximum; where one operand is NaN the other one is returned."""
    return apply("fmax", a, b)


def fmin(a: Any, b: Any) -> Tensor:
    """numpy.fmin: elementwise minimum; where one operand is NaN the other one is returned."""
    return apply("fmin", a, b)


def _angle_factor(s, x, degrees_to_radians: bool):
    """numpy's constant: pi/180 or 180/pi, computed in float32 for float32 (npy_deg2radf)."""
    if s.dtype_of(x) == float32:
        pi, c180 = np.float32(np.pi), np.float32(180)
        return _const(s, float(pi / c180 if degrees_to_radians else c180 / pi), x)
    return _const(s, np.pi / 180 if degrees_to_radians else 180 / np.pi, x)


deg2rad = _unary_float("deg2rad", np.deg2rad, lambda s, x: s.mul(x, _angle_factor(s, x, True)),
                       lambda v, out, x: v * (math.pi / 180), "degrees to radians")
rad2deg = _unary_float("rad2deg", np.rad2deg, lambda s, x: s.mul(x, _angle_factor(s, x, False)),
                       lambda v, out, x: v * (180 / math.pi), "radians to degrees")

# --- sinc --------------------------------------------------------------------------------------

_SINC_SERIES_BELOW = 0.1
# sinc'(x) = sum_k>=1 (-1)^k 2k pi^(2k) x^(2k-1) / (2k+1)! near 0 (6 terms: below 1e-17 for |x| < 0.1).
_SINC_D = tuple((-1) ** k * 2 * k * math.pi ** (2 * k) / math.factorial(2 * k + 1) for k in range(1, 7))


def _sinc_scalar(s, x):
    y = s.mul(_const(s, np.pi, x), x)
    return s.select(s.cmp("eq", x, _const(s, 0, x)), _const(s, 1, x), s.div(s.sin(y), y))


def _sinc_lin(v: Tensor, out: Tensor, x: Tensor) -> Tensor:
    """sinc'(x) = (cos(pi x) - sinc(x)) / x, by its series near 0 (so every order is smooth there)."""
    near = less(abs(x), _SINC_SERIES_BELOW)
    far_x = where(near, 1, x)
    far = (cos(math.pi * far_x) - sin(math.pi * far_x) / (math.pi * far_x)) / far_x
    x2 = square(x)
    series = _SINC_D[-1]
    for c in reversed(_SINC_D[:-1]):
        series = series * x2 + c
    return v * where(near, series * x, far)


sinc = _unary_float("sinc", np.sinc, _sinc_scalar, _sinc_lin, "sin(pi x) / (pi x), 1 at 0 (numpy.sinc)",
                    heavy=True)

# --- nan_to_num and heaviside ------------------------------------------------------------------


def _nan_to_num_scalar(s, x, *, nan: float, posinf: float, neginf: float):
    inf = _const(s, np.inf, x)
    x = s.select(s.cmp("eq", x, inf), _const(s, posinf, x), x)
    x = s.select(s.cmp("eq", x, s.neg(inf)), _const(s, neginf, x), x)
    return s.select(s.cmp("ne", x, x), _const(s, nan, x), x)


elementwise("nan_to_num", lambda x, *, nan, posinf, neginf: np.nan_to_num(x, nan=nan, posinf=posinf, neginf=neginf),
            _nan_to_num_scalar, float_only=True, attrs={"nan": "number", "posinf": "number", "neginf": "number"},
            **_linear(lambda v, out, x, **attrs: where(less(abs(x), np.inf), v, 0)),
            doc="x with NaN and infinities replaced by finite numbers (numpy.nan_to_num)")


def nan_to_num(x: Any, nan: float = 0.0, posinf: float | None = None, neginf: float | None = None) -> Tensor:
    """numpy.nan_to_num: NaN -> nan, inf -> posinf, -inf -> neginf (default: the dtype's extremes).

    Integer inputs are returned unchanged. The gradient passes where x is finite, 0 elsewhere.
    """
    (t,) = promote(x)
    if not is_float(t.dtype):
        return t
    fi = np.finfo(t.dtype)
    return apply("nan_to_num", t, nan=float(nan), posinf=float(fi.max if posinf is None else posinf),
                 neginf=float(fi.min if neginf is None else neginf))


def _heaviside_scalar(s, x1, x2):
    zero = _const(s, 0, x1)
    at_zero = s.select(s.cmp("eq", x1, zero), x2, x1)  # x1 NaN stays NaN
    return s.select(s.cmp("lt", x1, zero), zero, s.select(s.cmp("gt", x1, zero), _const(s, 1, x1), at_zero))


heaviside = _binary_float("heaviside", np.heaviside, _heaviside_scalar, lambda v, out, x1, x2: None,
                          lambda v, out, x1, x2: where(equal(x1, 0), v, 0),
                          "step function: 0 where x1 < 0, x2 where x1 == 0, 1 where x1 > 0")
