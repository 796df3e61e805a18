"""numpy implementations of graphc's semantics where plain numpy differs (docs/reliability.md).

The reference backend (and `NumpyEmitter`) use these, so the oracle of every test and the
LLVM backend follow one rule:

* maximum/minimum (and clip, and the max/min reductions) order -0.0 below +0.0 and
  propagate NaN, as IEEE 754-2019 maximum/minimum and LLVM's ``llvm.maximum``: the result
  does not depend on the operands' order (numpy's depends on it for zeros);
* float -> int casts saturate: NaN gives 0, values beyond the range give its min or max
  (LLVM's ``fptosi.sat``, XLA's convert); numpy gives an arbitrary value (INT_MIN on x86);
* integer ** negative integer is the exact result truncated toward zero: 1 for base 1,
  +-1 for base -1, else 0 (0 ** -n included); numpy raises.
"""

from __future__ import annotations

import numpy as np


def maximum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """np.maximum with max(-0.0, +0.0) = +0.0 in either order."""
    out = np.maximum(a, b)
    if out.dtype.kind != "f":
        return out
    return np.where((a == 0) & (b == 0), np.add(a, b, dtype=out.dtype), out)  # -0 + -0 = -0, else +0


def minimum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """np.minimum with min(-0.0, +0.0) = -0.0 in either order."""
    out = np.minimum(a, b)
    if out.dtype.kind != "f":
        return out
    return np.where((a == 0) & (b == 0), -np.add(-a, -b, dtype=out.dtype), out)


def clip(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """minimum(maximum(x, lo), hi) (hi wins when lo > hi, as numpy.clip)."""
    return minimum(maximum(x, lo), hi)


def reduce_extremum(fn, x: np.ndarray, axis: tuple, keepdims: bool) -> np.ndarray:
    """np.max/np.min over axes where a slice of zeros gives +0.0 (max) or -0.0 (min) if it has one."""
    out = np.asarray(fn(x, axis=axis, keepdims=keepdims))
    if out.dtype.kind != "f" or not out.size:
        return out
    want_neg = fn is np.min
    has = np.any((x == 0) & (np.signbit(x) == want_neg), axis=axis, keepdims=keepdims)
    zero = np.where(has == want_neg, -0.0, 0.0).astype(out.dtype)  # max: -0 only if no +0; min: -0 if any
    return np.where(out == 0, zero, out)


def cast(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """x.astype(dtype), with float -> int saturating (NaN -> 0)."""
    x, dtype = np.asarray(x), np.dtype(dtype)
    if x.dtype.kind != "f" or dtype.kind not in "iu":
        return x.astype(dtype)
    info = np.iinfo(dtype)
    hi, lo = x >= float(info.max) + 1, x < float(info.min)  # both bounds are powers of two: exact
    bad = hi | lo | np.isnan(x)
    out = np.where(bad, 0, x).astype(dtype)
    return np.where(hi, info.max, np.where(lo, info.min, out)).astype(dtype)


def power(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """np.power, with integer ** negative integer truncated toward zero instead of raising."""
    a, b = np.asarray(a), np.asarray(b)
    if np.result_type(a, b).kind not in "iu":
        return np.power(a, b)
    neg = b < 0
    out = np.power(a, np.where(neg, 0, b))
    odd = (b % 2) != 0
    tiny = np.where(a == 1, 1, np.where(a == -1, np.where(odd, -1, 1), 0))
    return np.where(neg, tiny, out).astype(out.dtype)
