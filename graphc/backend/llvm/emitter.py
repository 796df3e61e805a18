"""The scalar Emitter protocol (graphc.ops.scalar) implemented with llvmlite's IR builder.

Values are LLVM values of the dtype's register type (bool is i1), or `Affine` forms for
int64 index arithmetic, which fold at compile time and turn into instructions only when
an operation needs a real value. Semantics follow numpy: NaN-propagating minimum and
maximum, Python-style integer floor division and modulo (index math; x // 0 == 0),
saturating float -> int casts.
Floating instructions carry only the 'contract' fast-math flag (FMA formation).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir

from ...dtypes import bool_, float32, float64, int32, int64
from ...errors import GraphcError
from ...passes.sizing import decide, proven
from . import mathlib
from .affine import Affine
from .loops import F32, F64, I1, I8, I32, I64, entry_allocas

FLOAT_FLAGS = ("contract",)

_REG = {float32: F32, float64: F64, int32: I32, int64: I64, bool_: I1}
_MEM = {float32: F32, float64: F64, int32: I32, int64: I64, bool_: I8}


def reg_type(dtype: np.dtype) -> ir.Type:
    """The LLVM type of a value of `dtype` in registers (bool: i1)."""
    return _REG[np.dtype(dtype)]


def mem_type(dtype: np.dtype) -> ir.Type:
    """The LLVM type of an element of `dtype` in memory (bool: i8, like numpy)."""
    return _MEM[np.dtype(dtype)]


def dtype_of_type(ty: ir.Type) -> np.dtype:
    if isinstance(ty, ir.FloatType):
        return float32
    if isinstance(ty, ir.DoubleType):
        return float64
    return {1: bool_, 32: int32, 64: int64}[ty.width]


def intrinsic(module: ir.Module, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
    """Declare (once) an LLVM intrinsic or external function."""
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ret, args), name)
    return fn


def _suffix(ty: ir.Type) -> str:
    if isinstance(ty, ir.FloatType):
        return "f32"
    if isinstance(ty, ir.DoubleType):
        return "f64"
    return f"i{ty.width}"


class LLVMEmitter:
    """Emits scalar operations at the builder's position; `loopvars` give Affine vars values."""

    def __init__(self, builder: ir.IRBuilder, loopvars: dict[int, ir.Value], ranges: dict[int, int]):
        self.b = builder
        self.loopvars = loopvars
        self.ranges = ranges

    # --- values ---------------------------------------------------------------------------
    def value(self, v: Any) -> ir.Value:
        """An LLVM value for v (Affine forms are materialized as i64 arithmetic)."""
        if not isinstance(v, Affine):
            return v
        b = self.b
        acc: ir.Value | None = None
        for var, coef in v.terms:
            term = self.loopvars[var]
            if not decide("unit stride", coef == 1):
                term = b.mul(term, ir.Constant(I64, coef), flags=("nsw",))
            acc = term if acc is None else b.add(acc, term, flags=("nsw",))
        if acc is None:
            return ir.Constant(I64, v.const)
        return acc if decide("zero offset", v.const == 0) else b.add(acc, ir.Constant(I64, v.const), flags=("nsw",))

    def const(self, value: Any, dtype: np.dtype) -> Any:
        dtype = np.dtype(dtype)
        if dtype == int64 and isinstance(value, (int, np.integer, bool)):
            return Affine(int(value))
        if dtype == bool_:
            return ir.Constant(I1, int(bool(value)))
        if dtype.kind in "iu":
            return ir.Constant(reg_type(dtype), int(value))
        return ir.Constant(reg_type(dtype), float(value))

    def dtype_of(self, v: Any) -> np.dtype:
        return int64 if isinstance(v, Affine) else dtype_of_type(v.type)

    def _intr(self, name: str, *args: ir.Value) -> ir.Value:
        ty = args[0].type
        fn = intrinsic(self.b.module, f"llvm.{name}.{_suffix(ty)}", ty, [a.type for a in args])
        return self.b.call(fn, list(args))

    def _pair(self, a: Any, b: Any) -> tuple[ir.Value, ir.Value, np.dtype]:
        a, b = self.value(a), self.value(b)
        if a.type != b.type:
            raise GraphcError(f"llvm emitter: operand types differ ({a.type} and {b.type})")
        return a, b, dtype_of_type(a.type)

    # --- casts ----------------------------------------------------------------------------
    def cast(self, v: Any, dtype: np.dtype) -> Any:
        dtype = np.dtype(dtype)
        src = self.dtype_of(v)
        if src == dtype:
            return v
        if isinstance(v, Affine) and v.is_const:
            return self.const(np.asarray(v.const).astype(dtype).item(), dtype)
        v = self.value(v)
        b, ty = self.b, reg_type(dtype)
        if dtype == bool_:
            if src.kind == "f":
                return b.fcmp_unordered("!=", v, ir.Constant(v.type, 0.0))
            return b.icmp_signed("!=", v, ir.Constant(v.type, 0))
        if src == bool_:
            return b.uitofp(v, ty) if dtype.kind == "f" else b.zext(v, ty)
        if src.kind == "f" and dtype.kind == "f":
            return b.fpext(v, ty) if dtype.itemsize > src.itemsize else b.fptrunc(v, ty)
        if src.kind == "f":
            fn = intrinsic(b.module, f"llvm.fptosi.sat.{_suffix(ty)}.{_suffix(v.type)}", ty, [v.type])
            return b.call(fn, [v])
        if dtype.kind == "f":
            return b.sitofp(v, ty)
        return b.sext(v, ty) if dtype.itemsize > src.itemsize else b.trunc(v, ty)

    # --- arithmetic -----------------------------------------------------------------------
    def add(self, a: Any, b: Any) -> Any:
        if isinstance(a, Affine) and isinstance(b, Affine):
            return a.add(b)
        a, b, dt = self._pair(a, b)
        if dt.kind == "f":
            return self.b.fadd(a, b, flags=FLOAT_FLAGS)
        return self.b.or_(a, b) if dt == bool_ else self.b.add(a, b)

    def sub(self, a: Any, b: Any) -> Any:
        if isinstance(a, Affine) and isinstance(b, Affine):
            return a.add(b.scale(-1))
        a, b, dt = self._pair(a, b)
        if dt.kind == "f":
            return self.b.fsub(a, b, flags=FLOAT_FLAGS)
        return self.b.xor(a, b) if dt == bool_ else self.b.sub(a, b)

    def mul(self, a: Any, b: Any) -> Any:
        if isinstance(a, Affine) and isinstance(b, Affine) and (a.is_const or b.is_const):
            return b.scale(a.const) if a.is_const else a.scale(b.const)
        a, b, dt = self._pair(a, b)
        if dt.kind == "f":
            return self.b.fmul(a, b, flags=FLOAT_FLAGS)
        return self.b.and_(a, b) if dt == bool_ else self.b.mul(a, b)

    def div(self, a: Any, b: Any) -> Any:
        a, b, dt = self._pair(a, b)
        if dt.kind != "f":
            raise GraphcError(f"llvm emitter: true division of {dt} values")
        return self.b.fdiv(a, b, flags=FLOAT_FLAGS)

    def floordiv(self, a: Any, b: Any) -> Any:
        folded = self._affine_divmod(a, b)
        if folded is not None:
            return folded[0]
        return self._int_divmod(*self._ints(a, b))[0]

    def mod(self, a: Any, b: Any) -> Any:
        folded = self._affine_divmod(a, b)
        if folded is not None:
            return folded[1]
        return self._int_divmod(*self._ints(a, b))[1]

    def _affine_divmod(self, a: Any, b: Any) -> tuple[Affine, Affine] | None:
        if isinstance(a, Affine) and isinstance(b, Affine) and b.is_const and b.const > 0:
            return proven("divmod", a.divmod(b.const, self.ranges))
        return None

    def _ints(self, a: Any, b: Any) -> tuple[ir.Value, ir.Value]:
        a, b, dt = self._pair(a, b)
        if dt.kind not in "iu":
            raise GraphcError(f"llvm emitter: floordiv/mod are index arithmetic on integers, not {dt}")
        return a, b

    def _int_divmod(self, a: ir.Value, b: ir.Value) -> tuple[ir.Value, ir.Value]:
        """Python semantics; x // 0 and x % 0 are 0 (numpy), MIN // -1 wraps."""
        bld, ty = self.b, a.type
        zero, one = ir.Constant(ty, 0), ir.Constant(ty, 1)
        minus1, smallest = ir.Constant(ty, -1), ir.Constant(ty, -(1 << (ty.width - 1)))
        bad = bld.or_(bld.icmp_signed("==", b, zero),
                      bld.and_(bld.icmp_signed("==", a, smallest), bld.icmp_signed("==", b, minus1)))
        safe = bld.select(bad, one, b)
        q, r = bld.sdiv(a, safe), bld.srem(a, safe)
        fix = bld.and_(bld.icmp_signed("!=", r, zero), bld.icmp_signed("<", bld.xor(r, safe), zero))
        q = bld.select(fix, bld.sub(q, one), q)
        r = bld.select(fix, bld.add(r, safe), r)
        is_zero = bld.icmp_signed("==", b, zero)
        return bld.select(is_zero, zero, q), bld.select(is_zero, zero, r)

    def neg(self, a: Any) -> Any:
        if isinstance(a, Affine):
            return a.scale(-1)
        if dtype_of_type(a.type).kind == "f":
            return self.b.fneg(a)
        return self.b.sub(ir.Constant(a.type, 0), a)

    def abs(self, a: Any) -> Any:
        a = self.value(a)
        dt = dtype_of_type(a.type)
        if dt.kind == "f":
            return self._intr("fabs", a)
        if dt == bool_:
            return a
        neg = self.b.icmp_signed("<", a, ir.Constant(a.type, 0))
        return self.b.select(neg, self.b.sub(ir.Constant(a.type, 0), a), a)

    def minimum(self, a: Any, b: Any) -> Any:
        a, b, dt = self._pair(a, b)
        if dt == bool_:
            return self.b.and_(a, b)
        return self._intr("minimum" if dt.kind == "f" else "smin", a, b)

    def maximum(self, a: Any, b: Any) -> Any:
        a, b, dt = self._pair(a, b)
        if dt == bool_:
            return self.b.or_(a, b)
        return self._intr("maximum" if dt.kind == "f" else "smax", a, b)

    # --- float functions ------------------------------------------------------------------
    def sqrt(self, a: Any) -> Any:
        return self._intr("sqrt", a)

    def floor(self, a: Any) -> Any:
        return self._intr("floor", a)

    def ceil(self, a: Any) -> Any:
        return self._intr("ceil", a)

    def rint(self, a: Any) -> Any:
        return self._intr("roundeven", a)

    def _math(self, name: str, *args: Any) -> Any:
        return mathlib.MATH_FUNCTIONS[name](self.b, *(self.value(a) for a in args))

    def exp(self, a: Any) -> Any:
        return self._math("exp", a)

    def expm1(self, a: Any) -> Any:
        return self._math("expm1", a)

    def log(self, a: Any) -> Any:
        return self._math("log", a)

    def log1p(self, a: Any) -> Any:
        return self._math("log1p", a)

    def tanh(self, a: Any) -> Any:
        return self._math("tanh", a)

    def erf(self, a: Any) -> Any:
        return self._math("erf", a)

    def erfc(self, a: Any) -> Any:
        return self._math("erfc", a)

    def sin(self, a: Any) -> Any:
        return self._math("sin", a)

    def cos(self, a: Any) -> Any:
        return self._math("cos", a)

    def tan(self, a: Any) -> Any:
        return self._math("tan", a)

    def asin(self, a: Any) -> Any:
        return self._math("asin", a)

    def acos(self, a: Any) -> Any:
        return self._math("acos", a)

    def atan(self, a: Any) -> Any:
        return self._math("atan", a)

    def atan2(self, y: Any, x: Any) -> Any:
        return self._math("atan2", y, x)

    def sinh(self, a: Any) -> Any:
        return self._math("sinh", a)

    def cosh(self, a: Any) -> Any:
        return self._math("cosh", a)

    def asinh(self, a: Any) -> Any:
        return self._math("asinh", a)

    def acosh(self, a: Any) -> Any:
        return self._math("acosh", a)

    def atanh(self, a: Any) -> Any:
        return self._math("atanh", a)

    def exp2(self, a: Any) -> Any:
        return self._math("exp2", a)

    def log2(self, a: Any) -> Any:
        return self._math("log2", a)

    def log10(self, a: Any) -> Any:
        return self._math("log10", a)

    def fmod(self, a: Any, b: Any) -> Any:
        """C fmod of floats (LLVM frem: exact, a libm call that is not vectorized)."""
        a, b, dt = self._pair(a, b)
        if dt.kind != "f":
            raise GraphcError(f"llvm emitter: fmod of {dt} values")
        return self.b.frem(a, b)

    def pow(self, a: Any, b: Any) -> Any:
        a, b, dt = self._pair(a, b)
        if dt.kind == "f":
            return self._math("pow", a, b)
        if dt == bool_:
            raise GraphcError("llvm emitter: power of bool values")
        return self._int_pow(a, b)

    def _int_pow(self, a: ir.Value, e: ir.Value) -> ir.Value:
        """a ** e by squaring; a negative exponent gives 0 unless |a| == 1 (numpy raises)."""
        bld, ty = self.b, a.type
        zero, one = ir.Constant(ty, 0), ir.Constant(ty, 1)
        fn = bld.function
        res_p, base_p, exp_p = entry_allocas(bld, [ty] * 3)
        neg = bld.icmp_signed("<", e, zero)
        bld.store(one, res_p)
        bld.store(a, base_p)
        bld.store(bld.select(neg, zero, e), exp_p)
        head, body, done = (fn.append_basic_block(n) for n in ("pow.head", "pow.body", "pow.done"))
        bld.branch(head)
        bld.position_at_end(head)
        ex = bld.load(exp_p)
        bld.cbranch(bld.icmp_signed(">", ex, zero), body, done)
        bld.position_at_end(body)
        res, base = bld.load(res_p), bld.load(base_p)
        odd = bld.icmp_signed("!=", bld.and_(ex, one), zero)
        bld.store(bld.select(odd, bld.mul(res, base), res), res_p)
        bld.store(bld.mul(base, base), base_p)
        bld.store(bld.ashr(ex, one), exp_p)
        bld.branch(head)
        bld.position_at_end(done)
        res = bld.load(res_p)
        # negative exponents: 1 ** e = 1, (-1) ** e = +-1, anything else truncates to 0
        odd_e = bld.icmp_signed("!=", bld.and_(e, one), zero)
        minus_one = bld.select(odd_e, ir.Constant(ty, -1), one)
        neg_res = bld.select(bld.icmp_signed("==", a, one), one,
                             bld.select(bld.icmp_signed("==", a, ir.Constant(ty, -1)), minus_one, zero))
        return bld.select(neg, neg_res, res)

    # --- logic ----------------------------------------------------------------------------
    def cmp(self, pred: str, a: Any, b: Any) -> Any:
        op = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[pred]
        if isinstance(a, Affine) and isinstance(b, Affine):
            known = proven("compare", _decide(op, *a.add(b.scale(-1)).bounds(self.ranges)))
            if known is not None:
                return ir.Constant(I1, int(known))
        a, b, dt = self._pair(a, b)
        if dt.kind == "f":
            if op == "!=":
                return self.b.fcmp_unordered(op, a, b)
            return self.b.fcmp_ordered(op, a, b)
        if dt == bool_:
            return self.b.icmp_unsigned(op, a, b)
        return self.b.icmp_signed(op, a, b)

    def select(self, cond: Any, a: Any, b: Any) -> Any:
        cond = self.value(cond)
        if isinstance(cond, ir.Constant) and cond.constant in (0, 1):
            return a if cond.constant else b
        a, b, _ = self._pair(a, b)
        return self.b.select(cond, a, b)

    def and_(self, a: Any, b: Any) -> Any:
        return self.b.and_(self.value(a), self.value(b))

    def or_(self, a: Any, b: Any) -> Any:
        return self.b.or_(self.value(a), self.value(b))

    def not_(self, a: Any) -> Any:
        return self.b.xor(self.value(a), ir.Constant(I1, 1))

    def bitxor(self, a: Any, b: Any) -> Any:
        a, b = self._ints(a, b)
        return self.b.xor(a, b)


def _decide(op: str, lo: int, hi: int) -> bool | None:
    """The value of ``d <op> 0`` when d is known to lie in [lo, hi], else None."""
    if op in ("==", "!="):
        if lo == hi == 0:
            return op == "=="
        return (op == "!=") if lo > 0 or hi < 0 else None
    true_if = {"<": hi < 0, "<=": hi <= 0, ">": lo > 0, ">=": lo >= 0}[op]
    false_if = {"<": lo >= 0, "<=": lo > 0, ">": hi <= 0, ">=": hi < 0}[op]
    return True if true_if else False if false_if else None
