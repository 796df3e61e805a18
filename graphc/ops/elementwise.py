"""Elementwise ops: numpy broadcasting and dtype rules, one scalar form each.

Every op's derivative is diagonal, so one linear map per input ("lin": cotangent or
tangent -> contribution) gives both its VJP and its JVP.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..dtypes import as_dtype, bool_, broadcast_shapes, int32, is_float, is_int
from ..errors import DTypeError
from ..ir.graph import Tensor
from . import semantics
from .core import graph_of, promote
from .registry import OpDef, OpKind, register
from .shape import broadcast_like
from .state import stop_gradient

__all__ = [
    "add", "subtract", "multiply", "divide", "negative", "power", "square", "abs", "sign",
    "maximum", "minimum", "clip", "where",
    "exp", "expm1", "log", "log1p", "sqrt", "rsqrt", "sin", "cos", "tanh", "erf",
    "sigmoid", "relu", "gelu", "softplus", "floor", "ceil", "round", "cast",
    "equal", "not_equal", "less", "less_equal", "greater", "greater_equal",
    "logical_and", "logical_or", "logical_not",
]

# --- type rules ------------------------------------------------------------------------------


def _same_dtype_broadcast(inputs: tuple, attrs: dict):
    dtypes = {t.dtype for t in inputs}
    if len(dtypes) != 1:
        raise DTypeError("operands must have one dtype")
    return broadcast_shapes(*(t.shape for t in inputs)), inputs[0].dtype


def _numeric_broadcast(inputs: tuple, attrs: dict):
    shape, dtype = _same_dtype_broadcast(inputs, attrs)
    if dtype == bool_:
        raise DTypeError("needs numeric operands, got bool")
    return shape, dtype


def _float_broadcast(inputs: tuple, attrs: dict):
    shape, dtype = _same_dtype_broadcast(inputs, attrs)
    if not is_float(dtype):
        raise DTypeError(f"needs floating operands, got {dtype}")
    return shape, dtype


def _compare_type(inputs: tuple, attrs: dict):
    shape, _ = _same_dtype_broadcast(inputs, attrs)
    return shape, bool_


def _logical_type(inputs: tuple, attrs: dict):
    shape, dtype = _same_dtype_broadcast(inputs, attrs)
    if dtype != bool_:
        raise DTypeError(f"needs bool operands, got {dtype}")
    return shape, bool_


def _where_type(inputs: tuple, attrs: dict):
    cond, a, b = inputs
    if cond.dtype != bool_:
        raise DTypeError(f"condition must be bool, got {cond.dtype}")
    if a.dtype != b.dtype:
        raise DTypeError("the two branches must have one dtype")
    return broadcast_shapes(cond.shape, a.shape, b.shape), a.dtype


# --- declaration helpers ---------------------------------------------------------------------


def elementwise(name: str, ref: Callable, scalar: Callable, *, float_only: bool = False,
                vjp: Callable | None = None, jvp: Callable | None = None,
                infer: Callable | None = None, doc: str = "", **facts: Any) -> OpDef:
    """Register an elementwise op; by default operands share a dtype and broadcast.

    `facts` are OpDef's (commutative, heavy, carries).
    """
    infer = infer or (_float_broadcast if float_only else _same_dtype_broadcast)
    return register(OpDef(name, OpKind.ELEMENTWISE, infer, ref=ref, vjp=vjp, jvp=jvp, scalar=scalar, doc=doc, **facts))


def _linear(*lins: Callable) -> dict:
    """VJP and JVP from one linear map per input: lin(v, out, *inputs, **attrs) -> Tensor | None."""

    def vjp(g, out, *inputs, **attrs):
        return tuple(lin(g, out, *inputs, **attrs) for lin in lins)

    def jvp(tangents, out, *inputs, **attrs):
        total = None
        for lin, t in zip(lins, tangents):
            if t is not None:
                total = _sum_tangents(total, lin(t, out, *inputs, **attrs))
        return total if total is None or total.shape == out.shape else broadcast_like(total, out)

    return {"vjp": vjp, "jvp": jvp}


def _sum_tangents(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def apply(name: str, *operands: Any, **attrs: Any) -> Tensor:
    """Build op `name` on operands promoted to their common dtype."""
    tensors = promote(*operands)
    return graph_of(*tensors).make(name, tensors, attrs)


def _float(x: Any) -> Tensor:
    """numpy's rule for float functions: integer and bool inputs compute in float64."""
    (t,) = promote(x)
    if not is_float(t.dtype):
        t = cast(t, np.float64)
    return t


def _truth(x: Any) -> Tensor:
    """x as bool by numpy's truthiness (nonzero, NaN included, is True)."""
    (t,) = promote(x)
    return t if t.dtype == bool_ else not_equal(t, 0)


def _const(s: Any, value: float, like: Any) -> Any:
    return s.const(value, s.dtype_of(like))


def _ordered(s: Any, a: Any) -> Any:
    """Bools as 0/1 integers, so ordering comparisons mean what numpy means (False < True)."""
    return s.cast(a, int32) if s.dtype_of(a) == bool_ else a


# --- arithmetic --------------------------------------------------------------------------


def _bool_or(op: str, bool_op: str) -> Callable:
    """A scalar form that uses `bool_op` on bools (numpy: True + True is True)."""
    return lambda s, a, b: getattr(s, bool_op if s.dtype_of(a) == bool_ else op)(a, b)


elementwise("add", np.add, _bool_or("add", "or_"), commutative=True,
            **_linear(lambda v, out, a, b: v, lambda v, out, a, b: v), doc="a + b")
elementwise("subtract", np.subtract, lambda s, a, b: s.sub(a, b), infer=_numeric_broadcast,
            **_linear(lambda v, out, a, b: v, lambda v, out, a, b: -v), doc="a - b")
elementwise("multiply", np.multiply, _bool_or("mul", "and_"), commutative=True,
            **_linear(lambda v, out, a, b: v * b, lambda v, out, a, b: v * a), doc="a * b")
elementwise("divide", np.true_divide, lambda s, a, b: s.div(a, b), float_only=True,
            **_linear(lambda v, out, a, b: v / b, lambda v, out, a, b: -(v * out) / b), doc="a / b (true division)")
elementwise("negative", np.negative, lambda s, x: s.neg(x), infer=_numeric_broadcast,
            **_linear(lambda v, out, x: -v), doc="-x")
elementwise("square", np.square, lambda s, x: s.mul(x, x), infer=_numeric_broadcast,
            **_linear(lambda v, out, x: v * (2 * x)), doc="x * x")
elementwise("abs", np.abs, lambda s, x: x if s.dtype_of(x) == bool_ else s.abs(x),
            **_linear(lambda v, out, x: v * sign(x)), doc="|x| (abs'(0) = 0)")


def _power_lin_base(v: Tensor, out: Tensor, a: Tensor, b: Tensor) -> Tensor | None:
    if not is_float(a.dtype):
        return None
    # d/da a**b = b * a**(b - 1), exactly 0 where a == b == 0; the inner where keeps the
    # untaken branch finite, so derivatives of this rule are not NaN. Where a <= 0, b is
    # held constant, as the exponent rule (0 there) says: mixed partials stay symmetric.
    zero_pow = logical_and(equal(a, 0), equal(b, 0))
    b = where(a > 0, b, stop_gradient(b))
    return v * where(zero_pow, 0, b * power(a, where(zero_pow, 1, b - 1)))


def _power_lin_exponent(v: Tensor, out: Tensor, a: Tensor, b: Tensor) -> Tensor | None:
    if not is_float(a.dtype):
        return None
    # d/db a**b = log(a) * a**b where a > 0, else 0; computed on a safe base (1) elsewhere.
    positive = a > 0
    safe = where(positive, a, 1)
    return where(positive, v * (log(safe) * power(safe, b)), 0)


elementwise("power", semantics.power, lambda s, a, b: s.pow(a, b), infer=_numeric_broadcast, heavy=True,
            **_linear(_power_lin_base, _power_lin_exponent), doc="a ** b")


def add(a: Any, b: Any) -> Tensor:
    """Elementwise a + b with broadcasting."""
    return apply("add", a, b)


def subtract(a: Any, b: Any) -> Tensor:
    """Elementwise a - b with broadcasting."""
    return apply("subtract", a, b)


def multiply(a: Any, b: Any) -> Tensor:
    """Elementwise a * b with broadcasting."""
    return apply("multiply", a, b)


def divide(a: Any, b: Any) -> Tensor:
    """Elementwise true division a / b; integer operands give float64, as in numpy."""
    a, b = promote(a, b)
    return apply("divide", _float(a), _float(b))


def negative(x: Any) -> Tensor:
    """Elementwise -x."""
    return apply("negative", x)


def square(x: Any) -> Tensor:
    """Elementwise x * x."""
    return apply("square", x)


def power(a: Any, b: Any) -> Tensor:
    """Elementwise a ** b (numpy.power; integers stay integers)."""
    if isinstance(b, (int, float)) and not isinstance(b, bool) and b == 2:
        return square(promote(a, b)[0])
    return apply("power", a, b)


def abs(x: Any) -> Tensor:  # noqa: A001 (numpy's name)
    """Elementwise |x|."""
    return apply("abs", x)


# --- max / min / clip / where --------------------------------------------------------------


def _tie_share(v: Tensor, out: Tensor, mine: Tensor, other: Tensor) -> Tensor:
    """maximum/minimum's linear map for one side: ties share the cotangent evenly (as JAX)."""
    return where(equal(mine, out), where(equal(other, out), 0.5 * v, v), 0)


_MAX_MIN_LINEAR = _linear(lambda v, out, a, b: _tie_share(v, out, a, b), lambda v, out, a, b: _tie_share(v, out, b, a))


def _max_scalar(s, a, b):
    return s.or_(a, b) if s.dtype_of(a) == bool_ else s.maximum(a, b)


def _min_scalar(s, a, b):
    return s.and_(a, b) if s.dtype_of(a) == bool_ else s.minimum(a, b)


elementwise("maximum", semantics.maximum, _max_scalar, **_MAX_MIN_LINEAR, commutative=True,
            doc="the larger of a and b (NaN propagates; -0.0 < +0.0)")
elementwise("minimum", semantics.minimum, _min_scalar, **_MAX_MIN_LINEAR, commutative=True,
            doc="the smaller of a and b (NaN propagates; -0.0 < +0.0)")


def maximum(a: Any, b: Any) -> Tensor:
    """Elementwise maximum, propagating NaN (numpy.maximum)."""
    return apply("maximum", a, b)


def minimum(a: Any, b: Any) -> Tensor:
    """Elementwise minimum, propagating NaN (numpy.minimum)."""
    return apply("minimum", a, b)


# clip(x, lo, hi) = minimum(maximum(x, lo), hi): x passes the cotangent inside [lo, hi]
# (bounds included, as TensorFlow), lo below it, hi above it (hi wins when lo > hi).
elementwise(
    "clip", semantics.clip, lambda s, x, lo, hi: s.minimum(s.maximum(x, lo), hi), infer=_numeric_broadcast,
    **_linear(lambda v, out, x, lo, hi: where(logical_and(x >= lo, x <= hi), v, 0),
              lambda v, out, x, lo, hi: where(logical_and(x < lo, lo <= hi), v, 0),
              lambda v, out, x, lo, hi: where(logical_or(x > hi, lo > hi), v, 0)),
    doc="x limited to [lo, hi] (numpy.clip)")


def clip(x: Any, lo: Any, hi: Any) -> Tensor:
    """numpy.clip: minimum(maximum(x, lo), hi); a None bound is no bound."""
    dtype = promote(*(v for v in (x, lo, hi) if v is not None))[0].dtype
    if lo is None:
        lo = -np.inf if is_float(dtype) else np.iinfo(dtype).min if is_int(dtype) else False
    if hi is None:
        hi = np.inf if is_float(dtype) else np.iinfo(dtype).max if is_int(dtype) else True
    return apply("clip", x, lo, hi)


def _where_jvp(tangents, out, cond, a, b):
    ta, tb = tangents[1:]
    if ta is None and tb is None:
        return None
    return broadcast_like(where(cond, 0 if ta is None else ta, 0 if tb is None else tb), out)


elementwise("where", lambda c, a, b: np.where(c, a, b), lambda s, c, a, b: s.select(c, a, b), infer=_where_type,
            carries=1,
            vjp=lambda g, out, c, a, b: (None, where(c, g, 0), where(c, 0, g)), jvp=_where_jvp,
            doc="a where cond is true, else b")


def where(cond: Any, a: Any, b: Any) -> Tensor:
    """numpy.where(cond, a, b) with all three broadcast; cond is read by truthiness."""
    c = _truth(cond)
    a, b = promote(a, b)
    return graph_of(c, a, b).make("where", (c, a, b))


# --- float functions ------------------------------------------------------------------------

_SQRT2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_GELU_CUBIC = 0.044715


def _unary_float(name: str, ref: Callable, scalar: Callable, lin: Callable, doc: str, heavy: bool = False) -> Callable:
    """Register a float-only unary op with derivative map `lin`; return its public function."""
    elementwise(name, ref, scalar, float_only=True, doc=doc, heavy=heavy, **_linear(lin))

    def fn(x: Any) -> Tensor:
        return apply(name, _float(x))

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Elementwise {doc} (integer inputs compute in float64)."
    return fn


def _softplus_scalar(s, x):
    return s.add(s.maximum(x, _const(s, 0, x)), s.log1p(s.exp(s.neg(s.abs(x)))))


exp = _unary_float("exp", np.exp, lambda s, x: s.exp(x), lambda v, out, x: v * out, "e**x", heavy=True)
expm1 = _unary_float("expm1", np.expm1, lambda s, x: s.expm1(x), lambda v, out, x: v * (out + 1), "e**x - 1",
                     heavy=True)
log = _unary_float("log", np.log, lambda s, x: s.log(x), lambda v, out, x: v / x, "natural log", heavy=True)
log1p = _unary_float("log1p", np.log1p, lambda s, x: s.log1p(x), lambda v, out, x: v / (x + 1), "log(1 + x)",
                     heavy=True)
sqrt = _unary_float("sqrt", np.sqrt, lambda s, x: s.sqrt(x), lambda v, out, x: v * (0.5 / out), "square root")
rsqrt = _unary_float("rsqrt", lambda x: 1 / np.sqrt(x), lambda s, x: s.div(_const(s, 1, x), s.sqrt(x)),
                     lambda v, out, x: v * (-0.5 * out / x), "1 / sqrt(x)")
sin = _unary_float("sin", np.sin, lambda s, x: s.sin(x), lambda v, out, x: v * cos(x), "sine", heavy=True)
cos = _unary_float("cos", np.cos, lambda s, x: s.cos(x), lambda v, out, x: v * -sin(x), "cosine", heavy=True)
tanh = _unary_float("tanh", np.tanh, lambda s, x: s.tanh(x), lambda v, out, x: v * (1 - square(out)),
                    "hyperbolic tangent", heavy=True)
def _special():
    """scipy.special, imported on first use (it costs ~0.15 s of `import graphc` otherwise)."""
    from scipy import special

    return special


erf = _unary_float("erf", lambda x: _special().erf(x), lambda s, x: s.erf(x),
                   lambda v, out, x: v * (_TWO_OVER_SQRT_PI * exp(-square(x))), "error function", heavy=True)


def _sigmoid_ref(x: np.ndarray) -> np.ndarray:
    return _special().expit(x.astype(np.float64)).astype(x.dtype)  # float32 expit flushes sigmoid(-100) to 0


def _sigmoid_scalar(s, x):
    """Composed from exp (graphc.backend.llvm.mathlib has no sigmoid of its own): measured at most
    2.1 ulp (float32) and 2.3 ulp (float64); tests/backend/llvm/test_mathlib.py checks it."""
    one = _const(s, 1, x)
    e = s.exp(s.neg(s.abs(x)))  # in (0, 1]: no overflow for any x
    d = s.add(one, e)
    return s.select(s.cmp("ge", x, _const(s, 0, x)), s.div(one, d), s.div(e, d))


sigmoid = _unary_float("sigmoid", _sigmoid_ref, _sigmoid_scalar, lambda v, out, x: v * (out * sigmoid(-x)),
                       "logistic sigmoid 1 / (1 + e**-x), stable for large |x|", heavy=True)
softplus = _unary_float("softplus", lambda x: np.logaddexp(x, 0), _softplus_scalar,
                        lambda v, out, x: v * sigmoid(x), "log(1 + e**x), stable for large |x|", heavy=True)


# --- gelu -----------------------------------------------------------------------------------


def _gelu_ref(x: np.ndarray, *, approximate: bool) -> np.ndarray:
    if approximate:
        return 0.5 * x * (1 + np.tanh(_SQRT_2_OVER_PI * (x + _GELU_CUBIC * x ** 3)))
    return 0.5 * x * (1 + _special().erf(x * (1 / _SQRT2)))  # TF's and PyTorch's formula (docs/reliability.md)


def _gelu_scalar(s, x, *, approximate: bool):
    half_x = s.mul(_const(s, 0.5, x), x)
    if approximate:
        cubic = s.mul(_const(s, _GELU_CUBIC, x), s.mul(x, s.mul(x, x)))
        t = s.tanh(s.mul(_const(s, _SQRT_2_OVER_PI, x), s.add(x, cubic)))
    else:
        t = s.erf(s.mul(x, _const(s, 1 / _SQRT2, x)))
    return s.mul(half_x, s.add(_const(s, 1, x), t))


def _gelu_lin(v: Tensor, out: Tensor, x: Tensor, *, approximate: bool) -> Tensor:
    if approximate:
        t = tanh(_SQRT_2_OVER_PI * (x + _GELU_CUBIC * x * square(x)))
        dinner = _SQRT_2_OVER_PI * (1 + 3 * _GELU_CUBIC * square(x))
        return v * (0.5 * (1 + t) + 0.5 * x * (1 - square(t)) * dinner)
    cdf = 0.5 * (1 + erf(x * (1 / _SQRT2)))
    pdf = exp(-0.5 * square(x)) * (1 / math.sqrt(2 * math.pi))
    return v * (cdf + x * pdf)


elementwise("gelu", _gelu_ref, _gelu_scalar, float_only=True, **_linear(_gelu_lin), heavy=True,
            attrs={"approximate": "bool"},
            doc="x * Phi(x) (approximate=True: the tanh form)")


def gelu(x: Any, approximate: bool = False) -> Tensor:
    """Gaussian error linear unit x * Phi(x); `approximate=True` uses the tanh form."""
    return apply("gelu", _float(x), approximate=bool(approximate))


# --- relu / sign / rounding -----------------------------------------------------------------


elementwise("relu", lambda x: np.maximum(x, 0), lambda s, x: s.select(s.cmp("le", x, _const(s, 0, x)),
                                                                        _const(s, 0, x), x),
            infer=_numeric_broadcast, **_linear(lambda v, out, x: where(x > 0, v, 0)),
            doc="maximum(x, 0) (NaN propagates; relu'(0) = 0)")


def relu(x: Any) -> Tensor:
    """Elementwise maximum(x, 0)."""
    return apply("relu", x)


def _sign_scalar(s, x):
    zero = _const(s, 0, x)
    rest = s.select(s.cmp("eq", x, x), zero, x)  # +0 for zeros, NaN stays NaN
    return s.select(s.cmp("gt", x, zero), _const(s, 1, x), s.select(s.cmp("lt", x, zero), _const(s, -1, x), rest))


elementwise("sign", np.sign, _sign_scalar, infer=_numeric_broadcast, doc="-1, 0 or 1 by the sign of x (NaN for NaN)")


def sign(x: Any) -> Tensor:
    """Elementwise sign: -1, 0 or 1 (NaN for NaN)."""
    return apply("sign", x)


elementwise("floor", np.floor, lambda s, x: s.floor(x), float_only=True, doc="largest integer <= x")
elementwise("ceil", np.ceil, lambda s, x: s.ceil(x), float_only=True, doc="smallest integer >= x")


def _round_scalar(s, x, *, decimals: int):
    if decimals == 0:
        return s.rint(x)
    scale = _const(s, 10.0 ** builtins.abs(decimals), x)
    if decimals > 0:
        return s.div(s.rint(s.mul(x, scale)), scale)
    return s.mul(s.rint(s.div(x, scale)), scale)


elementwise("round", lambda x, *, decimals: np.round(x, decimals), _round_scalar, float_only=True,
            attrs={"decimals": "int"},
            doc="x rounded to `decimals` decimals, halves to even (numpy.round)")


def floor(x: Any) -> Tensor:
    """Elementwise floor (integers are returned unchanged)."""
    (t,) = promote(x)
    return apply("floor", t) if is_float(t.dtype) else t


def ceil(x: Any) -> Tensor:
    """Elementwise ceiling (integers are returned unchanged)."""
    (t,) = promote(x)
    return apply("ceil", t) if is_float(t.dtype) else t


def round(x: Any, decimals: int = 0) -> Tensor:  # noqa: A001 (numpy's name)
    """numpy.round: halves go to the even neighbour; integers are returned unchanged."""
    (t,) = promote(x)
    return apply("round", t, decimals=int(decimals)) if is_float(t.dtype) else t


# --- dtype conversion ----------------------------------------------------------------------

def _cast_type(inputs: tuple, attrs: dict):
    return inputs[0].shape, attrs["dtype"]


register(OpDef("cast", "elementwise", _cast_type, attrs={"dtype": "dtype"},
               ref=semantics.cast,
               scalar=lambda s, x, *, dtype: s.cast(x, dtype),
               vjp=lambda g, out, x, *, dtype: (cast(g, x.dtype) if is_float(x.dtype) and is_float(dtype) else None,),
               jvp=lambda t, out, x, *, dtype: cast(t[0], dtype) if is_float(dtype) and t[0] is not None else None,
               doc="x converted to dtype (floats truncate toward zero; float -> int saturates, NaN -> 0)"))


def cast(x: Any, dtype: Any) -> Tensor:
    """x converted to `dtype`."""
    (t,) = promote(x)
    dt = as_dtype(dtype)
    return t if t.dtype == dt else t.graph.make("cast", (t,), {"dtype": dt})


# --- comparisons and logic -------------------------------------------------------------------


def _comparison(name: str, pred: str, ref: Callable, doc: str, commutative: bool = False) -> Callable:
    elementwise(name, ref, lambda s, a, b: s.cmp(pred, _ordered(s, a), _ordered(s, b)), infer=_compare_type,
                commutative=commutative, doc=doc)

    def fn(a: Any, b: Any) -> Tensor:
        return apply(name, a, b)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Elementwise {doc} (bool result)."
    return fn


equal = _comparison("equal", "eq", np.equal, "a == b", commutative=True)
not_equal = _comparison("not_equal", "ne", np.not_equal, "a != b", commutative=True)
less = _comparison("less", "lt", np.less, "a < b")
less_equal = _comparison("less_equal", "le", np.less_equal, "a <= b")
greater = _comparison("greater", "gt", np.greater, "a > b")
greater_equal = _comparison("greater_equal", "ge", np.greater_equal, "a >= b")

elementwise("logical_and", np.logical_and, lambda s, a, b: s.and_(a, b), infer=_logical_type, commutative=True,
            doc="a and b")
elementwise("logical_or", np.logical_or, lambda s, a, b: s.or_(a, b), infer=_logical_type, commutative=True,
            doc="a or b")
elementwise("logical_not", np.logical_not, lambda s, x: s.not_(x), infer=_logical_type, doc="not x")


def logical_and(a: Any, b: Any) -> Tensor:
    """Elementwise a and b; non-bool operands are read by truthiness."""
    return apply("logical_and", _truth(a), _truth(b))


def logical_or(a: Any, b: Any) -> Tensor:
    """Elementwise a or b; non-bool operands are read by truthiness."""
    return apply("logical_or", _truth(a), _truth(b))


def logical_not(x: Any) -> Tensor:
    """Elementwise not x; non-bool operands are read by truthiness."""
    return apply("logical_not", _truth(x))
