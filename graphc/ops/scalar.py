"""The scalar vocabulary op declarations lower to, and a numpy implementation of it.

Elementwise ops declare ``scalar(s, *values, **attrs)`` and index ops declare
``gather(s, idx, load, node)`` against the `Emitter` protocol below. A backend
implements the protocol (the LLVM backend emits IR); `NumpyEmitter` evaluates the
same forms on whole arrays, which lets tests check every declared scalar form
against the op's reference implementation without any compiler.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from . import semantics


class Emitter(Protocol):
    """Scalar operations on opaque values; each value has one of graphc's dtypes.

    Floating semantics are numpy's: minimum/maximum propagate NaN, rint rounds half to
    even, div is true division, floordiv/mod are Python's (used for index math on ints),
    fmod is C's (floats: the remainder of truncated division, with a's sign).
    """

    def const(self, value: float | int | bool, dtype: np.dtype) -> Any: ...
    def dtype_of(self, v: Any) -> np.dtype: ...
    def cast(self, v: Any, dtype: np.dtype) -> Any: ...
    def add(self, a: Any, b: Any) -> Any: ...
    def sub(self, a: Any, b: Any) -> Any: ...
    def mul(self, a: Any, b: Any) -> Any: ...
    def div(self, a: Any, b: Any) -> Any: ...
    def floordiv(self, a: Any, b: Any) -> Any: ...
    def mod(self, a: Any, b: Any) -> Any: ...
    def neg(self, a: Any) -> Any: ...
    def abs(self, a: Any) -> Any: ...
    def minimum(self, a: Any, b: Any) -> Any: ...
    def maximum(self, a: Any, b: Any) -> Any: ...
    def sqrt(self, a: Any) -> Any: ...
    def floor(self, a: Any) -> Any: ...
    def ceil(self, a: Any) -> Any: ...
    def rint(self, a: Any) -> Any: ...
    def exp(self, a: Any) -> Any: ...
    def expm1(self, a: Any) -> Any: ...
    def log(self, a: Any) -> Any: ...
    def log1p(self, a: Any) -> Any: ...
    def tanh(self, a: Any) -> Any: ...
    def erf(self, a: Any) -> Any: ...
    def erfc(self, a: Any) -> Any: ...
    def sin(self, a: Any) -> Any: ...
    def cos(self, a: Any) -> Any: ...
    def pow(self, a: Any, b: Any) -> Any: ...
    def fmod(self, a: Any, b: Any) -> Any: ...
    def tan(self, a: Any) -> Any: ...
    def asin(self, a: Any) -> Any: ...
    def acos(self, a: Any) -> Any: ...
    def atan(self, a: Any) -> Any: ...
    def atan2(self, y: Any, x: Any) -> Any: ...
    def sinh(self, a: Any) -> Any: ...
    def cosh(self, a: Any) -> Any: ...
    def asinh(self, a: Any) -> Any: ...
    def acosh(self, a: Any) -> Any: ...
    def atanh(self, a: Any) -> Any: ...
    def exp2(self, a: Any) -> Any: ...
    def log2(self, a: Any) -> Any: ...
    def log10(self, a: Any) -> Any: ...
    def cmp(self, pred: str, a: Any, b: Any) -> Any: ...
    def select(self, cond: Any, a: Any, b: Any) -> Any: ...
    def and_(self, a: Any, b: Any) -> Any: ...
    def or_(self, a: Any, b: Any) -> Any: ...
    def not_(self, a: Any) -> Any: ...
    def bitxor(self, a: Any, b: Any) -> Any: ...  # integers (random numbers' Philox rounds)


class NumpyEmitter:
    """Evaluates scalar forms elementwise on numpy arrays (a test oracle for lowerings)."""

    def const(self, value, dtype):
        return np.asarray(value, dtype=dtype)

    def dtype_of(self, v):
        return np.asarray(v).dtype

    def cast(self, v, dtype):
        return semantics.cast(v, dtype)

    def add(self, a, b):
        return np.add(a, b)

    def sub(self, a, b):
        return np.subtract(a, b)

    def mul(self, a, b):
        return np.multiply(a, b)

    def div(self, a, b):
        return np.true_divide(a, b)

    def floordiv(self, a, b):
        return np.floor_divide(a, b)

    def mod(self, a, b):
        return np.mod(a, b)

    def neg(self, a):
        return np.negative(a)

    def abs(self, a):
        return np.abs(a)

    def minimum(self, a, b):
        return semantics.minimum(np.asarray(a), np.asarray(b))

    def maximum(self, a, b):
        return semantics.maximum(np.asarray(a), np.asarray(b))

    def sqrt(self, a):
        return np.sqrt(a)

    def floor(self, a):
        return np.floor(a)

    def ceil(self, a):
        return np.ceil(a)

    def rint(self, a):
        return np.rint(a)

    def exp(self, a):
        return np.exp(a)

    def expm1(self, a):
        return np.expm1(a)

    def log(self, a):
        return np.log(a)

    def log1p(self, a):
        return np.log1p(a)

    def tanh(self, a):
        return np.tanh(a)

    def erf(self, a):
        from scipy import special

        a = np.asarray(a)
        return special.erf(a).astype(a.dtype)

    def erfc(self, a):
        from scipy import special

        a = np.asarray(a)
        return special.erfc(a).astype(a.dtype)

    def sin(self, a):
        return np.sin(a)

    def cos(self, a):
        return np.cos(a)

    def pow(self, a, b):
        return semantics.power(a, b)

    def fmod(self, a, b):
        return np.fmod(a, b)

    def atan2(self, y, x):
        return np.arctan2(y, x)

    tan, sinh, cosh, exp2, log2, log10 = (staticmethod(f) for f in (np.tan, np.sinh, np.cosh, np.exp2, np.log2,
                                                                    np.log10))
    asin, acos, atan = staticmethod(np.arcsin), staticmethod(np.arccos), staticmethod(np.arctan)
    asinh, acosh, atanh = staticmethod(np.arcsinh), staticmethod(np.arccosh), staticmethod(np.arctanh)

    def cmp(self, pred, a, b):
        return {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
                "gt": np.greater, "ge": np.greater_equal}[pred](a, b)

    def select(self, cond, a, b):
        return np.where(cond, a, b)

    def and_(self, a, b):
        return np.logical_and(a, b)

    def or_(self, a, b):
        return np.logical_or(a, b)

    def not_(self, a):
        return np.logical_not(a)

    def bitxor(self, a, b):
        return np.bitwise_xor(a, b)
