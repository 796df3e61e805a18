"""Vectorizable transcendental functions, emitted as straight-line LLVM IR.

The kernel code generator calls ``emit_<name>(builder, x)`` on scalar ``float`` or ``double``
values inside a loop body.  The emitted code has no branches and no calls except the
``llvm.fabs``, ``llvm.floor``, ``llvm.fma`` and ``llvm.copysign`` intrinsics, so LLVM's loop
vectorizer widens it like plain arithmetic (``llvm.exp`` and libm calls would be scalarized).
The exception: sin, cos and tan branch, for arguments beyond the Cody-Waite range, to an
out-of-line Payne-Hanek function that the vectorizer accepts (see rarecall.py).

Method: Cody-Waite range reduction with FMA, then polynomials per type.  Coefficients come from
fdlibm and Cephes or were fitted (weighted minimax, mpmath) for this module.  Special cases are
handled with selects.  No fast-math flags are set: callers must not add ``nnan``/``ninf`` to
these instructions either, or LLVM may drop the inf/nan handling.  ``llvm.fma`` assumes the
target has FMA (x86-64-v3 and later); without it LLVM would call libm's ``fma``.

Accuracy: the tests require 4 ulp (float32) and 2 ulp (float64) against correctly rounded
values.  Measured maxima, in ulps (float32: every third float32 bit pattern, against float64
numpy; float64: 2e6 random arguments over each function's range, against long double numpy, or
6e4 against mpmath for erf; pow: 6e6 random pairs from underflow to overflow):

    function  exp   expm1  log   log1p  tanh  erf   sin   cos   pow
    float32   1.01  1.43   0.82  1.39   1.33  1.17  1.53  1.53  0.50
    float64   0.74  1.00   0.79  1.25   1.29  1.11  0.76  0.77  0.82

(sigmoid is not here: the op composes it from `emit_exp`, see graphc/ops/elementwise.py.)

The functions added for numpy's ufuncs compute in float64 with double-double steps where
a rounding would cost accuracy (exp2/log2/log10 scale a double-double exp or log; sinh and
cosh use e^|x|/2 as a double-double; asinh, acosh and atanh take a double-double log of a
double-double argument; tan divides double-double sin and cos of the reduced argument;
atan reduces around 0, 1/2, 1, 3/2 and infinity, fdlibm's scheme, with a fitted polynomial;
asin/acos use asin(s) = s + s^3 P(s^2) and the half-angle identity above 1/2).  float32
widens, computes in float64 and rounds once.  Measured maxima (1e6 random arguments per
function over its range plus the special values, against long double numpy; atan2 on 1e6
random pairs from 1e-300 to 1e300, or 1e-37 to 1e37 for float32):

    function  tan   exp2  log2  log10 sinh  cosh  asinh acosh atanh atan  asin  acos  atan2
    float32   0.50  0.50  0.50  0.50  0.50  0.50  0.50  0.50  0.50  0.50  0.50  0.50  0.50
    float64   0.88  0.74  0.50  0.50  0.65  0.87  0.52  0.52  0.50  0.64  0.62  0.61  0.74

erfc (for gc.special) is 1 - erf below 0.84375 (with 1 - |x| exact) and exp(-x^2) erfcx(x)
above, exp's argument and result and erfcx's fitted polynomials in double-double: 0.50 ulp
(float32) and 1.48 ulp (float64, 3.5e4 arguments from 1e-300 to 27 against mpmath).
Inputs ±0, ±inf, nan and denormals give the IEEE/numpy results.  float32 pow is computed in
float64 and rounded once.

sin, cos and tan reduce with Cody-Waite up to |x| = 2**20 (float32) or 2**47 (float64)
(``CODY_WAITE_BOUND``; tan, computed in float64, uses the float64 bound).  Beyond it those lanes
take a rarely-taken branch to an out-of-line function per module (``rarecall.rare_call``):
Payne-Hanek reduction with the exact quadrant from integer arithmetic on the bits of 2/pi
(payne_hanek.py), then the float64 polynomials above, rounded once for float32.  Measured
maxima there (3 x 2e5 random arguments log-uniform from the bound to the largest finite
value, both signs, against long double numpy; at the floats closest to a multiple of pi/2,
the worst case for the reduction, 0.49 ulp at most):

    function  sin   cos   tan
    float32   0.50  0.50  0.50
    float64   0.76  0.76  0.88

In-range vectors pay one compare and branch; a lane beyond the bound calls an out-of-line
function (compiled ``optnone``); a module using sin/cos, or tan, compiles longer on a cache
miss (the costs are measured in docs/benchmarks.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

from llvmlite import ir

from . import payne_hanek
from .loops import F64, I1, I32
from .payne_hanek import PIO2_DD
from .rarecall import rare_call

_INF = float("inf")
_NAN = float("nan")
_LOG2E = 1.4426950408889634
_TWO_OVER_PI = 0.6366197723675814

# ln 2 split for Cody-Waite: the high parts have trailing zero bits, so n * hi is exact.
_LN2_HI = (0.693359375, 6.93147180369123816490e-01)
_LN2_LO = (-2.12194440e-4, 1.90821492927058770002e-10)

# exp(r) = 1 + r + r^2 * P(r) on |r| <= ln2/2.  float32: Cephes expf; float64: fitted.
_EXP_P32 = (5.0000001201e-1, 1.6666665459e-1, 4.1665795894e-2, 8.3334519073e-3,
            1.3981999507e-3, 1.9875691500e-4)
_EXP_P64 = (0.5, 0.16666666666666677, 0.0416666666666667, 0.00833333333332153,
            0.0013888888888866687, 0.00019841269886403234, 2.480158736085567e-05,
            2.755724390973665e-06, 2.7557242502104107e-07, 2.5109148004801612e-08,
            2.0924523360908534e-09)

# log(1 + f) for f = m - 1, m in [sqrt(1/2), sqrt(2)).  float32: Cephes logf polynomial,
# log1p(f) = f - f^2/2 + f^3 * P(f).  float64: fdlibm, s = f / (2 + f),
# log1p(f) = f - f^2/2 + s * (f^2/2 + s^2 * P(s^2)).
_LOG_P32 = (3.3333331174e-1, -2.4999993993e-1, 2.0000714765e-1, -1.6668057665e-1,
            1.4249322787e-1, -1.2420140846e-1, 1.1676998740e-1, -1.1514610310e-1,
            7.0376836292e-2)
_LOG_P64 = (6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01,
            2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01,
            1.479819860511658591e-01)

# tanh(a) = a + a^3 * P(a^2) for a < 0.625.  float32: Cephes tanhf; float64: fitted.
_TANH_SMALL = 0.625
_TANH_P32 = (-3.33332819422e-1, 1.33314422036e-1, -5.37397155531e-2, 2.06390887954e-2,
             -5.70498872745e-3)
_TANH_P64 = (-0.33333333333333315, 0.13333333333329853, -0.05396825396611469,
             0.021869488470112688, -0.008863234332903314, 0.0035921141856784795,
             -0.0014557270601761375, 0.0005894562229066075, -0.00023702332158533076,
             9.15776290540463e-05, -3.02054882290587e-05, 6.050052827116334e-06)

# erf(a) = a + a * P(a^2) for a < 0.84375; erf(a) = 1 - exp(-a^2) * Q(a - shift) above, with
# a clamped to where erf rounds to 1.  All fitted.
_ERF_SMALL = 0.84375
_ERF_P32 = (0.12837916612625122, -0.3761258125305176, 0.11282820999622345,
            -0.026806853711605072, 0.005058376584202051, -0.0006358111277222633)
_ERF_P64 = (0.12837916709551256, -0.37612638903183404, 0.112837916709355,
            -0.026866170640811194, 0.0052239775766400685, -0.0008548323803663536,
            0.00012055200300504387, -1.4922127885727375e-05, 1.6401695677143025e-06,
            -1.5714835205542542e-07, 1.072745053551405e-08)
_ERFC_MAX = (4.0, 6.0)
_ERFC_SHIFT = (2.0, 3.4)
_ERFC_Q32 = (0.25539565086364746, -0.1067957952618599, 0.04180612415075302,
             -0.01546302530914545, 0.00541355786845088, -0.0018543531186878681,
             0.0006308078882284462, -0.00013123784447088838, 5.179393701837398e-05,
             -4.121949677937664e-05)
_ERFC_Q64 = (0.1595353646591353, -0.043538687415040536, 0.01150382742878254,
             -0.002950449473074974, 0.0007361497656689957, -0.0001790154422578431,
             4.249965300806086e-05, -9.863228854642416e-06, 2.2378035494145752e-06,
             -5.029185189794289e-07, 1.0809725020529011e-07, -2.009254582741987e-08,
             8.616939123116523e-09, 7.743725179873227e-11, -7.443654904290278e-10,
             -1.1219103201790626e-09, -3.937901987438741e-10, 1.627940916409711e-11,
             8.236066598324976e-11, 3.800631720334045e-11, 9.141853855887653e-12,
             1.196674641522791e-12, 7.014143352183367e-14)

# pi/2 as a sum of three parts of each type.
# |x| up to which Cody-Waite reduction keeps sin/cos within 2 ulp (float32, float64); Payne-Hanek beyond.
CODY_WAITE_BOUND = (2.0**20, 2.0**47)
_PIO2_32 = (1.5707963705062866, -4.371138828673793e-08, -1.7151245100058819e-15)
_PIO2_64 = (1.5707963267948966, 6.123233995736766e-17, -1.4973849048591698e-33)
# sin(r) = r + r^3 * S(r^2), cos(r) = 1 - r^2/2 + r^4 * C(r^2) on |r| <= pi/4.
# float32: Cephes sinf/cosf; float64: fdlibm.
_SIN_S32 = (-1.6666654611e-1, 8.3321608736e-3, -1.9515295891e-4)
_COS_C32 = (4.166664568298827e-2, -1.388731625493765e-3, 2.443315711809948e-5)
_SIN_S64 = (-1.66666666666666324348e-01, 8.33333333332248946124e-03,
            -1.98412698298579493134e-04, 2.75573137070700676789e-06,
            -2.50507602534068634195e-08, 1.58969099521155010221e-10)
_COS_C64 = (4.16666666666666019037e-02, -1.38888888888741095749e-03,
            2.48015872894767294178e-05, -2.75573143513906633035e-07,
            2.08757232129817482790e-09, -1.13596475577881948265e-11)

# Double-double log for pow: log(m) = 2s + (2/3) s^3 + s^5 * P(s^2), s = (m-1)/(m+1); fitted.
_TWO_THIRDS = (0.6666666666666666, 3.700743415417188e-17)
_LOGDD_P = (0.39999999999999963, 0.28571428571453145, 0.22222222215882068,
            0.18181819046618009, 0.15384546230238227, 0.13336684778940167,
            0.11668050513573332, 0.12040644039291722)

# Constants as double-double (hi, lo) pairs.
_LN2_DD = (0.6931471805599453, 2.3190468138462996e-17)
_INV_LN2_DD = (1.4426950408889634, 2.0355273740931033e-17)
_LOG10E_DD = (0.4342944819032518, 1.098319650216765e-17)
_PI_DD = (3.141592653589793, 1.2246467991473532e-16)
_PIO4_DD = (0.7853981633974483, 3.061616997868383e-17)
# sinh(x) = x + x^3 P(x^2) for |x| < 1: Taylor, 1 / (2k + 3)!.
_SINH_P = tuple(1.0 / math.factorial(2 * k + 3) for k in range(10))
# asin(s) = s + s^3 P(s^2) for s^2 <= 1/4; fitted (mpmath chebyfit).
_ASIN_P = (0.16666666666666666, 0.07500000000000118, 0.044642857142551895, 0.03038194447553234,
           0.02237215744350722, 0.017352816540325496, 0.01396378001220357, 0.011566459612121669,
           0.009621842970100282, 0.009319560794767446, 0.0030448799094556773, 0.019554513336123378,
           -0.01924167174674304, 0.02961201126495512)
# atan(z) = z + z^3 P(z^2) for |z| <= 7/16; fitted (mpmath chebyfit).
_ATAN_P = (-0.3333333333333333, 0.1999999999999941, -0.14285714285566806, 0.11111111096645038,
           -0.09090908355602592, 0.07692285554889286, -0.06666241923359964, 0.05876946456755061,
           -0.05216679739313656, 0.04492259293193656, -0.033128134256069586, 0.014773184616983806)
# atan breakpoints and atan(c) (double-double) at the centres c = 0.5, 1, 1.5 (fdlibm's scheme).
_ATAN_CENTRES = ((0.4375, 0.5, (0.4636476090008061, 2.2698777452961687e-17)),
                 (0.6875, 1.0, (0.7853981633974483, 3.061616997868383e-17)),
                 (1.1875, 1.5, (0.982793723247329, 1.3903311031230998e-17)))

# erfcx(x) = exp(x^2) erfc(x) = P(x - 1.5) on [0.84375, 2.2) and P(x - 3.1) on [2.2, 4);
_ERFCX_MID1 = (0.3215854164543175, -0.16362291773256007, 0.0761510398554774, -0.032930905299562656,
               0.01337734095306664, -0.0051459575479843615, 0.0018861348770320802,
               -0.0006619300664262103, 0.00022330994431814236, -7.265892201752249e-05,
               2.2864312506175292e-05, -6.974992924142817e-06, 2.0669693191985962e-06,
               -5.960763319743334e-07, 1.6755404757512238e-07, -4.5985328496312076e-08,
               1.2317301476338168e-08, -3.201624039987516e-09, 8.358465075250773e-10,
               -2.402080465142778e-10, 5.3155445695778934e-11)
# fitted (mpmath chebyfit).
_ERFCX_MID2 = (0.17371840860540824, -0.05132503374198143, 0.01461080400526582,
               -0.004021027550438258, 0.0010728092994536128, -0.0002781274888527758,
               7.020469466994442e-05, -1.728369582228478e-05, 4.156309405776762e-06,
               -9.775859214764813e-07, 2.251586066712891e-07, -5.083533245192134e-08,
               1.1261523853530903e-08, -2.4498993447109987e-09, 5.238083395329096e-10,
               -1.1021051082797986e-10, 2.280649248673348e-11, -4.584777110388044e-12,
               9.21244206577293e-13, -2.168653467944124e-13, 4.215849529650115e-14)
# x erfcx(x) = Q(1 / x^2) for x >= 4; fitted (mpmath chebyfit).
_ERFCX_TAIL = (0.5641895835477563, -0.28209479177387675, 0.42314218765887884, -1.0578554680951964,
               3.7024938372936087, -16.661170063440455, 91.63048369357551, -595.1288191881648,
               4437.032220264238, -36630.851164382475, 315353.50094006304, -2590303.65713741,
               18253198.281488802, -98105742.03701618, 345022818.1402942, -583029210.4454905)

Num = ir.Value | float
T = TypeVar("T")


def _i32(v: int) -> ir.Constant:
    return ir.Constant(I32, v)


class _Ops:
    """IR-building helpers for one floating-point type (no fast-math flags)."""

    def __init__(self, b: ir.IRBuilder, ty: ir.Type) -> None:
        if not isinstance(ty, (ir.FloatType, ir.DoubleType)):
            raise TypeError(f"mathlib: expected float or double, got {ty}")
        self.b = b
        self.ty = ty
        self.is64 = isinstance(ty, ir.DoubleType)
        self.ity = ir.IntType(64 if self.is64 else 32)
        self.mant = 52 if self.is64 else 23
        self.bias = 1023 if self.is64 else 127

    # constants and operands
    def pick(self, pair: tuple[T, T]) -> T:
        """The float32 or float64 entry of a (float32, float64) pair."""
        return pair[1] if self.is64 else pair[0]

    def v(self, a: Num) -> ir.Value:
        return a if isinstance(a, ir.Value) else ir.Constant(self.ty, a)

    def iconst(self, a: int) -> ir.Constant:
        """An integer constant as wide as the float type."""
        return ir.Constant(self.ity, a)

    def _intrinsic(self, name: str, nargs: int) -> ir.Function:
        fnty = ir.FunctionType(self.ty, [self.ty] * nargs)
        return self.b.module.declare_intrinsic(name, [self.ty], fnty)

    # arithmetic
    def add(self, a: Num, c: Num) -> ir.Value:
        return self.b.fadd(self.v(a), self.v(c))

    def sub(self, a: Num, c: Num) -> ir.Value:
        return self.b.fsub(self.v(a), self.v(c))

    def mul(self, a: Num, c: Num) -> ir.Value:
        return self.b.fmul(self.v(a), self.v(c))

    def div(self, a: Num, c: Num) -> ir.Value:
        return self.b.fdiv(self.v(a), self.v(c))

    def neg(self, a: ir.Value) -> ir.Value:
        return self.b.fneg(a)

    def fma(self, a: Num, c: Num, d: Num) -> ir.Value:
        """a * c + d with one rounding."""
        return self.b.call(self._intrinsic("llvm.fma", 3), [self.v(a), self.v(c), self.v(d)])

    def abs(self, a: ir.Value) -> ir.Value:
        return self.b.call(self._intrinsic("llvm.fabs", 1), [a])

    def floor(self, a: ir.Value) -> ir.Value:
        return self.b.call(self._intrinsic("llvm.floor", 1), [a])

    def copysign(self, mag: Num, sign: ir.Value) -> ir.Value:
        return self.b.call(self._intrinsic("llvm.copysign", 2), [self.v(mag), sign])

    def poly(self, x: ir.Value, coeffs: Sequence[float]) -> ir.Value:
        """c0 + c1 x + c2 x^2 + ... by Horner's rule with FMA."""
        acc = self.v(coeffs[-1])
        for c in reversed(coeffs[:-1]):
            acc = self.fma(acc, x, c)
        return acc

    # comparisons (ordered: false when either side is nan, unless named otherwise)
    def lt(self, a: Num, c: Num) -> ir.Value:
        return self.b.fcmp_ordered("<", self.v(a), self.v(c))

    def gt(self, a: Num, c: Num) -> ir.Value:
        return self.b.fcmp_ordered(">", self.v(a), self.v(c))

    def eq(self, a: Num, c: Num) -> ir.Value:
        return self.b.fcmp_ordered("==", self.v(a), self.v(c))

    def lt_or_nan(self, a: Num, c: Num) -> ir.Value:
        return self.b.fcmp_unordered("<", self.v(a), self.v(c))

    def isnan(self, a: ir.Value) -> ir.Value:
        return self.b.fcmp_unordered("uno", a, a)

    def sel(self, cond: ir.Value, a: Num, c: Num) -> ir.Value:
        return self.b.select(cond, self.v(a), self.v(c))

    def clamp(self, a: ir.Value, lo: float, hi: float) -> ir.Value:
        """Clamp a to [lo, hi]; nan becomes lo."""
        a = self.sel(self.gt(a, lo), a, lo)
        return self.sel(self.lt(a, hi), a, hi)

    # rounding, integers and scaling
    def rint(self, a: ir.Value) -> ir.Value:
        """Round to an integral value (exact for |a| < 2^(mant-1)) without a libm call."""
        shifter = 1.5 * 2.0**self.mant
        return self.sub(self.add(a, shifter), shifter)

    def to_i32(self, a: ir.Value) -> ir.Value:
        """Integral float value (in i32 range) to i32."""
        return self.b.fptosi(a, I32)

    def pow2(self, n: ir.Value) -> ir.Value:
        """2^n for an i32 n in the normal exponent range."""
        e = self.b.add(n, _i32(self.bias))
        if self.is64:
            e = self.b.zext(e, self.ity)
        return self.b.bitcast(self.b.shl(e, self.iconst(self.mant)), self.ty)

    def ldexp(self, a: ir.Value, n: ir.Value) -> ir.Value:
        """a * 2^n as two multiplications by powers of two, for n beyond the normal exponent range.

        For a near 1 the first product is exact, so overflowing and denormal results round once.
        """
        n1 = self.b.ashr(n, _i32(1))
        n2 = self.b.sub(n, n1)
        return self.mul(self.mul(a, self.pow2(n1)), self.pow2(n2))

    def decompose(self, x: ir.Value) -> tuple[ir.Value, ir.Value]:
        """(k as i32, m) with x = 2^k * m and m in [sqrt(1/2), sqrt(2)), for normal x > 0."""
        off = 0x3FE6A09E667F3BCD if self.is64 else 0x3F3504F3  # bits of sqrt(1/2)
        one = 0x3FF0000000000000 if self.is64 else 0x3F800000
        t = self.b.add(self.b.bitcast(x, self.ity), self.iconst(one - off))
        k = self.b.lshr(t, self.iconst(self.mant))
        if self.is64:
            k = self.b.trunc(k, I32)
        k = self.b.sub(k, _i32(self.bias))
        m_bits = self.b.add(self.b.and_(t, self.iconst((1 << self.mant) - 1)), self.iconst(off))
        return k, self.b.bitcast(m_bits, self.ty)

    def i2f(self, n: ir.Value) -> ir.Value:
        return self.b.sitofp(n, self.ty)

    # error-free transformations (double-double arithmetic)
    def two_sum(self, a: ir.Value, c: ir.Value) -> tuple[ir.Value, ir.Value]:
        """(s, e) with s + e == a + c exactly."""
        s = self.add(a, c)
        cc = self.sub(s, a)
        return s, self.add(self.sub(a, self.sub(s, cc)), self.sub(c, cc))

    def fast_two_sum(self, a: ir.Value, c: ir.Value) -> tuple[ir.Value, ir.Value]:
        """(s, e) with s + e == a + c exactly, given |a| >= |c|."""
        s = self.add(a, c)
        return s, self.sub(c, self.sub(s, a))

    def two_prod(self, a: Num, c: Num) -> tuple[ir.Value, ir.Value]:
        """(p, e) with p + e == a * c exactly."""
        p = self.mul(a, c)
        return p, self.fma(a, c, self.neg(p))


# --- exp and expm1 ----------------------------------------------------------------------

def _reduce_ln2(o: _Ops, x: ir.Value, xl: ir.Value | None = None
                ) -> tuple[ir.Value, ir.Value, ir.Value | None]:
    """(n, r, rl) with x + xl = n ln2 + r + rl, |r| <= ln2/2 and integral n; |x| <= 1100.

    rl, the low part of a double-double r, is None for float32.
    """
    n = o.rint(o.mul(x, _LOG2E))
    r = o.fma(n, -o.pick(_LN2_HI), x)  # exact
    if not o.is64:
        return n, o.fma(n, -_LN2_LO[0], r), None
    lo = o.mul(n, -_LN2_LO[1]) if xl is None else o.fma(n, -_LN2_LO[1], xl)
    return n, *o.fast_two_sum(r, lo)


def _exp_poly(o: _Ops, r: ir.Value) -> ir.Value:
    """P(r) with exp(r) = 1 + r + r^2 P(r) for |r| <= ln2/2."""
    return o.poly(r, o.pick((_EXP_P32, _EXP_P64)))


def _exp_parts(o: _Ops, x: ir.Value, xl: ir.Value | None = None) -> tuple[ir.Value, ir.Value | None, ir.Value]:
    """(e, el, n) with exp(x + xl) = (e + el) 2^n; el (float64 only, else None) is below ulp(e)."""
    # Clamp to just past the overflow/underflow thresholds; nan becomes the low bound.
    xc = o.clamp(x, *o.pick(((-104.0, 89.0), (-746.0, 710.0))))
    if xl is not None:
        xl = o.sel(o.eq(xc, x), xl, 0.0)
    n, r, rl = _reduce_ln2(o, xc, xl)
    r2 = o.mul(r, r)
    if o.is64:
        # 1 + r + r^2 P + rl (1 + r), adding the rounding error of 1 + r back.
        s, se = o.fast_two_sum(o.v(1.0), r)
        t = o.fma(r2, _exp_poly(o, r), o.fma(rl, r, rl))
        return *o.fast_two_sum(s, o.add(se, t)), o.to_i32(n)
    return o.add(1.0, o.fma(r2, _exp_poly(o, r), r)), None, o.to_i32(n)


def _exp(o: _Ops, x: ir.Value, xl: ir.Value | None = None) -> ir.Value:
    """exp(x + xl); xl (float64 only) is a low part below ulp(x)."""
    e, _, n = _exp_parts(o, x, xl)
    return o.sel(o.isnan(x), x, o.ldexp(e, n))


def _expm1(o: _Ops, x: ir.Value) -> ir.Value:
    # Below the low bound expm1 rounds to -1; the high bound keeps n - 1 a normal exponent.
    xc = o.clamp(x, *o.pick(((-20.0, 88.8), (-40.0, 709.8))))
    n, r, rl = _reduce_ln2(o, xc)
    r2 = o.mul(r, r)
    # expm1(x) = 2^n q + 2^n - 1 = 2 (t q + (t - 1/2)) with q = expm1(r), t = 2^(n-1);
    # t - 1/2 is exact.
    t = o.pow2(o.b.sub(o.to_i32(n), _i32(1)))
    if o.is64:
        # q + ql = expm1(r + rl) in double-double; t q is exact.
        q, ql = o.fast_two_sum(r, o.fma(r2, _exp_poly(o, r), o.fma(rl, r, rl)))
        s, e = o.two_sum(o.sub(t, 0.5), o.mul(t, q))
        res = o.add(s, o.fma(t, ql, e))
    else:
        res = o.fma(t, o.fma(r2, _exp_poly(o, r), r), o.sub(t, 0.5))
    tiny = 2.0 ** -(o.mant + 2)  # expm1(x) rounds to x; keeps -0 and denormals exact
    return o.sel(o.lt_or_nan(o.abs(x), tiny), x, o.mul(2.0, res))


# --- log and log1p ----------------------------------------------------------------------

def _log1p_kernel(o: _Ops, k: ir.Value, f: ir.Value) -> ir.Value:
    """k ln2 + log(1 + f) for f in about [sqrt(1/2) - 1, sqrt(2) - 1] and an integral float k."""
    ln2_hi, ln2_lo = o.pick(_LN2_HI), o.pick(_LN2_LO)
    hfsq = o.mul(o.mul(0.5, f), f)
    if not o.is64:
        z = o.mul(f, f)
        y = o.mul(o.mul(f, z), o.poly(f, _LOG_P32))
        y = o.sub(o.fma(k, ln2_lo, y), hfsq)
        return o.fma(k, ln2_hi, o.add(f, y))
    s = o.div(f, o.add(2.0, f))
    z = o.mul(s, s)
    r = o.mul(z, o.poly(z, _LOG_P64))
    t = o.sub(hfsq, o.fma(s, o.add(hfsq, r), o.mul(k, ln2_lo)))
    return o.fma(k, ln2_hi, o.neg(o.sub(t, f)))


def _log(o: _Ops, x: ir.Value) -> ir.Value:
    # Scale denormals into the normal range first.
    extra = o.mant + 2
    sub = o.lt(x, 2.0 ** (1 - o.bias))
    xs = o.sel(sub, o.mul(x, 2.0**extra), x)
    k, m = o.decompose(xs)
    kf = o.sub(o.i2f(k), o.sel(sub, float(extra), 0.0))
    res = _log1p_kernel(o, kf, o.sub(m, 1.0))
    res = o.sel(o.eq(x, 0.0), -_INF, res)
    res = o.sel(o.eq(x, _INF), _INF, res)
    return o.sel(o.lt_or_nan(x, 0.0), _NAN, res)


def _log1p(o: _Ops, x: ir.Value) -> ir.Value:
    u = o.add(1.0, x)
    # c = (1 + x) - u exactly, so log1p(x) = log(u + c) = k ln2 + log(m + c 2^-k).
    c = o.sel(o.lt(x, 1.0), o.sub(x, o.sub(u, 1.0)), o.sub(1.0, o.sub(u, x)))
    k, m = o.decompose(u)
    f = o.add(o.sub(m, 1.0), o.ldexp(c, o.b.neg(k)))
    res = _log1p_kernel(o, o.i2f(k), f)
    res = o.sel(o.eq(x, -1.0), -_INF, res)
    res = o.sel(o.eq(x, _INF), _INF, res)
    res = o.sel(o.lt_or_nan(x, -1.0), _NAN, res)
    tiny = 2.0 ** -(o.mant + 2)  # log1p(x) rounds to x; keeps -0 and denormals exact
    return o.sel(o.lt(o.abs(x), tiny), x, res)


# --- tanh, erf -----------------------------------------------------------------------

def _tanh(o: _Ops, x: ir.Value) -> ir.Value:
    a = o.abs(x)
    z = o.mul(a, a)
    small = o.fma(o.mul(a, z), o.poly(z, o.pick((_TANH_P32, _TANH_P64))), a)
    # 1 - 2 / (exp(2a) + 1): exp overflows to inf for large a, giving exactly 1.
    big = o.sub(1.0, o.div(2.0, o.add(_exp(o, o.add(a, a)), 1.0)))
    return o.copysign(o.sel(o.lt(a, _TANH_SMALL), small, big), x)


def _erf(o: _Ops, x: ir.Value) -> ir.Value:
    a = o.abs(x)
    small = o.fma(a, o.poly(o.mul(a, a), o.pick((_ERF_P32, _ERF_P64))), a)
    ac = o.sel(o.lt(a, o.pick(_ERFC_MAX)), a, o.pick(_ERFC_MAX))
    q = o.poly(o.sub(ac, o.pick(_ERFC_SHIFT)), o.pick((_ERFC_Q32, _ERFC_Q64)))
    big = o.sub(1.0, o.mul(_exp(o, o.neg(o.mul(ac, ac))), q))
    res = o.copysign(o.sel(o.lt(a, _ERF_SMALL), small, big), x)
    return o.sel(o.isnan(x), x, res)


# --- sin and cos ------------------------------------------------------------------------

def _cody_waite(o: _Ops, xs: ir.Value) -> tuple[ir.Value, ir.Value, Num]:
    """(n, r, rl) with xs = n pi/2 + r + rl for |xs| <= CODY_WAITE_BOUND (rl is 0 for float32)."""
    n = o.rint(o.mul(xs, _TWO_OVER_PI))
    p1, p2, p3 = o.pick((_PIO2_32, _PIO2_64))
    r = o.fma(n, -p1, xs)  # exact in the supported range
    if not o.is64:
        return n, o.fma(n, -p3, o.fma(n, -p2, r)), 0.0
    # r + rl = x - n pi/2 in double-double.
    p, pe = o.two_prod(n, p2)
    r, e = o.two_sum(r, o.neg(p))
    return n, *o.fast_two_sum(r, o.fma(n, -p3, o.sub(e, pe)))


def _sincos_kernel(o: _Ops, r: ir.Value, rl: Num) -> tuple[tuple[ir.Value, Num], tuple[ir.Value, Num]]:
    """(sin, cos) of r + rl, |r| <= pi/4, as (hi, lo) pairs (lo is 0 for float32)."""
    z = o.mul(r, r)
    hz = o.mul(0.5, z)
    if o.is64:
        # sin(r + rl) = r + r^3 S + rl (1 - r^2/2) and cos(r + rl) = 1 - r^2/2 + r^4 C - r rl.
        c_poly = o.fma(o.mul(z, z), o.poly(z, _COS_C64), o.neg(o.mul(r, rl)))
        sin_r = o.fast_two_sum(r, o.fma(o.mul(r, z), o.poly(z, _SIN_S64), o.mul(rl, o.sub(1.0, hz))))
    else:
        c_poly = o.mul(o.mul(z, z), o.poly(z, _COS_C32))
        sin_r = o.fma(o.mul(r, z), o.poly(z, _SIN_S32), r), 0.0
    # 1 - hz rounds; add its rounding error back before the small terms.
    w = o.sub(1.0, hz)
    return sin_r, o.fast_two_sum(w, o.add(o.sub(o.sub(1.0, w), hz), c_poly))


def _reduce_pio2(o: _Ops, xs: ir.Value) -> tuple[ir.Value, tuple[ir.Value, Num], tuple[ir.Value, Num]]:
    """(n, sin r, cos r) for xs = n pi/2 + r, |xs| <= CODY_WAITE_BOUND; (hi, lo) pairs as `_sincos_kernel`."""
    n, r, rl = _cody_waite(o, xs)
    return n, *_sincos_kernel(o, r, rl)


def _quadrant(o: _Ops, q: ir.Value, sin_r: ir.Value, cos_r: ir.Value) -> ir.Value:
    """sin(r + q pi/2) for an i32 quadrant q."""
    odd = o.b.trunc(q, I1)
    upper = o.b.icmp_unsigned("!=", o.b.and_(q, _i32(2)), _i32(0))
    res = o.sel(odd, cos_r, sin_r)
    return o.sel(upper, o.neg(res), res)


def _far_path(o: _Ops, name: str, x: ir.Value, key: int, near: ir.Value, bound: float,
              far: Callable[[_Ops, ir.Value, ir.Value, ir.Value], ir.Value]) -> ir.Value:
    """near, or for |x| > bound the out-of-line Payne-Hanek version (NaN for inf).

    far(o, q, r, rl) computes the result in float64 from x = (4k + q + key) pi/2 + r + rl.
    """
    def build(b: ir.IRBuilder, arg: ir.Value, quadrant: ir.Value) -> ir.Value:
        d = _Ops(b, F64)
        xd = arg if o.is64 else b.fpext(arg, F64)
        q, r, rl = payne_hanek.reduce_pio2(b, xd)
        res = d.sel(d.lt(d.abs(xd), _INF), far(d, b.add(q, quadrant), r, rl), _NAN)
        return res if o.is64 else b.fptrunc(res, o.ty)

    fn_name = f"{name}.{'f64' if o.is64 else 'f32'}"
    return rare_call(o.b, fn_name, o.ty, build, x, key, o.gt(o.abs(x), bound), near)


def _far_sincos(o: _Ops, q: ir.Value, r: ir.Value, rl: ir.Value) -> ir.Value:
    (sin_r, _), (cos_r, _) = _sincos_kernel(o, r, rl)
    return _quadrant(o, q, sin_r, cos_r)


def _sincos(o: _Ops, x: ir.Value, quadrant: int) -> ir.Value:
    """sin(x + quadrant * pi/2): quadrant 0 gives sin, 1 gives cos."""
    bound = o.pick(CODY_WAITE_BOUND)
    inside = o.b.fcmp_ordered("<=", o.abs(x), o.v(bound))
    n, (sin_r, _), (cos_r, _) = _reduce_pio2(o, o.sel(inside, x, 0.0))
    # Quadrant n mod 4, computed in floating point (float64 n exceeds the i32 range).
    q = o.b.add(o.to_i32(o.sub(n, o.mul(4.0, o.floor(o.mul(n, 0.25))))), _i32(quadrant))
    res = _quadrant(o, q, sin_r, cos_r)
    if quadrant == 0:
        res = o.sel(o.eq(x, 0.0), x, res)  # sin(-0) = -0
    res = o.sel(inside, res, _NAN)
    return _far_path(o, "sincos", x, quadrant, res, bound, _far_sincos)


# --- pow --------------------------------------------------------------------------------

def _log_dd(o: _Ops, ax: ir.Value) -> tuple[ir.Value, ir.Value]:
    """log(ax) as an unevaluated double-double sum, for finite ax > 0 (float64 only)."""
    sub = o.lt(ax, 2.0**-1022)
    xs = o.sel(sub, o.mul(ax, 2.0**54), ax)
    k, m = o.decompose(xs)
    kf = o.sub(o.i2f(k), o.sel(sub, 54.0, 0.0))
    f = o.sub(m, 1.0)
    # s = f / (2 + f) in double-double: sh + sl.
    d = o.add(2.0, f)
    dl = o.sub(f, o.sub(d, 2.0))
    sh = o.div(f, d)
    sl = o.div(o.sub(o.fma(o.neg(sh), d, f), o.mul(sh, dl)), d)
    # s^3 and (2/3) s^3 in double-double.
    sq, sqe = o.two_prod(sh, sh)
    cu, cue = o.two_prod(sq, sh)
    cul = o.add(cue, o.fma(sqe, sh, o.mul(o.mul(3.0, sq), sl)))
    th, te = o.two_prod(cu, _TWO_THIRDS[0])
    tl = o.add(te, o.fma(cu, _TWO_THIRDS[1], o.mul(cul, _TWO_THIRDS[0])))
    tail = o.mul(o.mul(cu, sq), o.poly(sq, _LOGDD_P))  # s^5 P(s^2)
    # k ln2 + 2s + (2/3) s^3 + tail.
    s1, e1 = o.two_sum(o.mul(kf, _LN2_HI[1]), o.add(sh, sh))
    s2, e2 = o.two_sum(s1, th)
    lo = o.add(o.add(e1, e2), o.add(o.add(sl, sl), tl))
    lo = o.add(lo, o.fma(kf, _LN2_LO[1], tail))
    return o.fast_two_sum(s2, lo)


def _pow_special(o: _Ops, x: ir.Value, y: ir.Value, mag: ir.Value) -> ir.Value:
    """C99/numpy pow given mag = |x|^y for finite nonzero x and finite y."""
    b = o.b
    ax = o.abs(x)
    y_int = o.eq(o.floor(y), y)  # also true for +-inf
    half = o.mul(y, 0.5)
    y_odd = b.and_(y_int, b.fcmp_ordered("!=", o.floor(half), half))
    neg_x = o.lt(x, 0.0)
    res = o.sel(b.and_(neg_x, y_odd), o.neg(mag), mag)
    res = o.sel(b.and_(neg_x, b.not_(y_int)), _NAN, res)
    # x = +-0 or +-inf: 0 or inf, negative only for odd integer y.
    x_zero = o.eq(ax, 0.0)
    zi = o.sel(b.xor(x_zero, o.lt(y, 0.0)), 0.0, _INF)
    zi = o.sel(y_odd, o.copysign(zi, x), zi)
    res = o.sel(b.or_(x_zero, o.eq(ax, _INF)), zi, res)
    # y = +-inf: 1 if |x| == 1, else 0 or inf.
    yi = o.sel(b.icmp_unsigned("==", o.lt(ax, 1.0), o.gt(y, 0.0)), 0.0, _INF)
    yi = o.sel(o.eq(ax, 1.0), 1.0, yi)
    res = o.sel(o.eq(o.abs(y), _INF), yi, res)
    res = o.sel(b.or_(o.isnan(x), o.isnan(y)), _NAN, res)
    return o.sel(b.or_(o.eq(x, 1.0), o.eq(y, 0.0)), 1.0, res)



# --- functions computed in float64 (float32 rounds the float64 result once) -------------

def _dd_sqrt(o: _Ops, q: ir.Value, ql: ir.Value) -> tuple[ir.Value, ir.Value]:
    """sqrt(q + ql) as (hi, lo) for q >= 0 (lo is 0 where q == 0)."""
    sh = o.b.call(o._intrinsic("llvm.sqrt", 1), [q])
    sl = o.div(o.add(o.fma(o.neg(sh), sh, q), ql), o.mul(2.0, sh))
    return sh, o.sel(o.gt(q, 0.0), sl, 0.0)


def _dd_div(o: _Ops, nh: ir.Value, nl: Num, dh: ir.Value, dl: Num) -> tuple[ir.Value, ir.Value]:
    """(nh + nl) / (dh + dl) as (hi, lo)."""
    qh = o.div(nh, dh)
    return qh, o.div(o.sub(o.add(o.fma(o.neg(qh), dh, nh), nl), o.mul(qh, dl)), dh)


def _log_of_dd(o: _Ops, ah: ir.Value, al: ir.Value) -> tuple[ir.Value, ir.Value]:
    """log(ah + al) as (hi, lo) for finite ah > 0 and |al| below ulp(ah)."""
    lh, ll = _log_dd(o, ah)
    return o.fast_two_sum(lh, o.add(ll, o.div(al, ah)))


def _log_scaled(o: _Ops, x: ir.Value, scale: tuple[float, float]) -> ir.Value:
    """log(x) * scale (a double-double constant) with log's special values."""
    lh, ll = _log_dd(o, x)
    p, pe = o.two_prod(lh, scale[0])
    res = o.add(p, o.add(pe, o.fma(lh, scale[1], o.mul(ll, scale[0]))))
    res = o.sel(o.eq(x, 0.0), -_INF, res)
    res = o.sel(o.eq(x, _INF), _INF, res)
    return o.sel(o.lt_or_nan(x, 0.0), _NAN, res)


def _log2(o: _Ops, x: ir.Value) -> ir.Value:
    return _log_scaled(o, x, _INV_LN2_DD)


def _log10(o: _Ops, x: ir.Value) -> ir.Value:
    return _log_scaled(o, x, _LOG10E_DD)


def _exp2(o: _Ops, x: ir.Value) -> ir.Value:
    zh, ze = o.two_prod(x, _LN2_DD[0])
    return _exp(o, zh, o.fma(x, _LN2_DD[1], ze))


def _half_exp(o: _Ops, a: ir.Value) -> tuple[ir.Value, ir.Value]:
    """exp(a) / 2 as (hi, lo), for a >= 0 (inf beyond the overflow threshold)."""
    dh, de = o.two_sum(a, o.v(-_LN2_DD[0]))
    e, el, n = _exp_parts(o, dh, o.sub(de, _LN2_DD[1]))
    return o.ldexp(e, n), o.ldexp(el, n)


def _sinh(o: _Ops, x: ir.Value) -> ir.Value:
    a = o.abs(x)
    z = o.mul(a, a)
    small = o.fma(o.mul(a, z), o.poly(z, _SINH_P), a)
    h, hl = _half_exp(o, a)
    big = o.add(h, o.sub(hl, o.div(0.25, h)))  # e^a/2 - e^-a/2
    res = o.sel(o.lt(a, 1.0), small, big)
    return o.sel(o.isnan(x), x, o.copysign(res, x))


def _cosh(o: _Ops, x: ir.Value) -> ir.Value:
    h, hl = _half_exp(o, o.abs(x))
    return o.sel(o.isnan(x), x, o.add(h, o.add(hl, o.div(0.25, h))))


def _asinh(o: _Ops, x: ir.Value) -> ir.Value:
    a = o.abs(x)
    # log(a + sqrt(a^2 + 1)) with the argument in double-double.
    p, pe = o.two_prod(a, a)
    q, qe = o.two_sum(p, o.v(1.0))
    sh, sl = _dd_sqrt(o, q, o.add(qe, pe))
    ah, ae = o.two_sum(a, sh)
    ah, al = o.fast_two_sum(ah, o.add(ae, sl))
    big = o.gt(a, 2.0**28)  # sqrt(a^2 + 1) rounds to a: log(2a) = log(a) + log 2
    lh, ll = _log_of_dd(o, o.sel(big, a, ah), o.sel(big, 0.0, al))
    res = o.add(lh, o.add(ll, o.sel(big, _LN2_DD[0], 0.0)))
    res = o.sel(o.eq(a, _INF), _INF, res)
    res = o.sel(o.lt(a, 2.0**-28), a, res)  # asinh(a) rounds to a
    return o.sel(o.isnan(x), x, o.copysign(res, x))


def _acosh(o: _Ops, x: ir.Value) -> ir.Value:
    # log(x + sqrt(x^2 - 1)) with the argument in double-double.
    p, pe = o.two_prod(x, x)
    q, qe = o.two_sum(p, o.v(-1.0))
    sh, sl = _dd_sqrt(o, q, o.add(qe, pe))
    ah, ae = o.two_sum(x, sh)
    ah, al = o.fast_two_sum(ah, o.add(ae, sl))
    big = o.gt(x, 2.0**28)
    lh, ll = _log_of_dd(o, o.sel(big, x, ah), o.sel(big, 0.0, al))
    res = o.add(lh, o.add(ll, o.sel(big, _LN2_DD[0], 0.0)))
    res = o.sel(o.eq(x, _INF), _INF, res)
    return o.sel(o.lt_or_nan(x, 1.0), _NAN, res)


def _atanh(o: _Ops, x: ir.Value) -> ir.Value:
    a = o.abs(x)
    # log((1 + a) / (1 - a)) / 2 with the quotient in double-double.
    nh, nl = o.two_sum(o.v(1.0), a)
    dh, dl = o.two_sum(o.v(1.0), o.neg(a))
    qh, ql = _dd_div(o, nh, nl, dh, dl)
    lh, ll = _log_of_dd(o, qh, ql)
    res = o.mul(0.5, o.add(lh, ll))
    res = o.sel(o.eq(a, 1.0), _INF, res)
    res = o.sel(o.lt(a, 2.0**-28), a, res)  # atanh(a) rounds to a; keeps denormals exact
    res = o.sel(o.lt_or_nan(1.0, a), _NAN, res)
    return o.sel(o.isnan(x), x, o.copysign(res, x))


def _atan_parts(o: _Ops, t: ir.Value, wide: bool) -> tuple[ir.Value, ir.Value]:
    """atan(t) as (hi, lo) for t >= 0 (t <= 19/16 unless wide): reduction to |z| <= 7/16 around
    the centres 0, 0.5, 1, 1.5 and, when wide, infinity (atan = pi/2 + atan(-1/t))."""
    z, hi, lo = t, o.v(0.0), o.v(0.0)
    for bound, c, (ch, cl) in _ATAN_CENTRES:
        above = o.lt(bound, t)  # also false for nan
        zc = o.div(o.sub(t, c), o.fma(c, t, 1.0))  # (t - c) / (1 + c t)
        z, hi, lo = o.sel(above, zc, z), o.sel(above, ch, hi), o.sel(above, cl, lo)
    if wide:
        above = o.lt(2.4375, t)
        z = o.sel(above, o.div(-1.0, t), z)
        hi, lo = o.sel(above, PIO2_DD[0], hi), o.sel(above, PIO2_DD[1], lo)
    z2 = o.mul(z, z)
    tail = o.mul(o.mul(z, z2), o.poly(z2, _ATAN_P))
    s, e = o.two_sum(hi, z)
    return o.fast_two_sum(s, o.add(e, o.add(tail, lo)))


def _atan(o: _Ops, x: ir.Value) -> ir.Value:
    hi, lo = _atan_parts(o, o.abs(x), wide=True)
    res = o.add(hi, lo)
    res = o.sel(o.lt(o.abs(x), 2.0**-28), x, res)  # atan(x) rounds to x
    return o.sel(o.isnan(x), x, o.copysign(res, x))


def _atan2(o: _Ops, y: ir.Value, x: ir.Value) -> ir.Value:
    """C99/numpy atan2: the angle of (x, y), signed zeros and infinities included."""
    b = o.b
    ax, ay = o.abs(x), o.abs(y)
    swap = o.lt(ax, ay)
    num, den = o.sel(swap, ax, ay), o.sel(swap, ay, ax)
    qh, ql = _dd_div(o, num, 0.0, den, 0.0)
    both_zero, both_inf = o.eq(den, 0.0), o.eq(num, _INF)
    qh = o.sel(both_zero, 0.0, o.sel(both_inf, 1.0, qh))
    ql = o.sel(b.or_(both_zero, o.eq(den, _INF)), 0.0, ql)
    hi, lo = _atan_parts(o, qh, wide=False)  # q in [0, 1]
    lo = o.add(lo, o.div(ql, o.fma(qh, qh, 1.0)))  # atan(q + ql) = atan(q) + ql / (1 + q^2)
    # |y| > |x|: pi/2 - r; x negative (sign bit, so -0 too): pi - that.
    hi2, e2 = o.two_sum(o.v(PIO2_DD[0]), o.neg(hi))
    hi = o.sel(swap, hi2, hi)
    lo = o.sel(swap, o.add(e2, o.sub(PIO2_DD[1], lo)), lo)
    neg_x = o.lt(o.copysign(1.0, x), 0.0)
    hi3, e3 = o.two_sum(o.v(_PI_DD[0]), o.neg(hi))
    res = o.sel(neg_x, o.add(hi3, o.add(e3, o.sub(_PI_DD[1], lo))), o.add(hi, lo))
    res = o.copysign(res, y)
    return o.sel(b.or_(o.isnan(x), o.isnan(y)), _NAN, res)


def _asin_acos(o: _Ops, x: ir.Value, cos: bool) -> ir.Value:
    a = o.abs(x)
    # |x| <= 1/2: asin(a) = a + a^3 P(a^2).
    a2 = o.mul(a, a)
    small_tail = o.mul(o.mul(a, a2), o.poly(a2, _ASIN_P))
    # |x| > 1/2: asin(a) = pi/2 - 2 asin(s) with s = sqrt((1 - a) / 2) (1 - a is exact).
    z = o.mul(0.5, o.sub(1.0, a))
    sh, sl = _dd_sqrt(o, z, o.v(0.0))
    sl = o.add(sl, o.mul(o.mul(sh, z), o.poly(z, _ASIN_P)))  # asin(s) = sh + sl
    big = o.lt(0.5, a)
    if not cos:
        h, e = o.two_sum(o.v(PIO2_DD[0]), o.mul(-2.0, sh))
        big_res = o.add(h, o.add(e, o.fma(-2.0, sl, PIO2_DD[1])))
        res = o.sel(big, big_res, o.add(a, small_tail))
        res = o.copysign(res, x)
    else:
        # acos(x) = pi/2 - asin(x) (|x| <= 1/2); 2 asin(s) (x > 1/2); pi - 2 asin(s) (x < -1/2).
        h, e = o.two_sum(o.v(PIO2_DD[0]), o.neg(o.copysign(a, x)))
        small_res = o.add(h, o.sub(o.add(e, PIO2_DD[1]), o.copysign(small_tail, x)))
        twice_h, twice_l = o.mul(2.0, sh), o.mul(2.0, sl)
        h2, e2 = o.two_sum(o.v(_PI_DD[0]), o.neg(twice_h))
        neg_res = o.add(h2, o.add(e2, o.sub(_PI_DD[1], twice_l)))
        big_res = o.sel(o.lt(x, 0.0), neg_res, o.add(twice_h, twice_l))
        res = o.sel(big, big_res, small_res)
    return o.sel(o.lt_or_nan(1.0, a), _NAN, res)


def _asin(o: _Ops, x: ir.Value) -> ir.Value:
    return _asin_acos(o, x, cos=False)


def _acos(o: _Ops, x: ir.Value) -> ir.Value:
    return _asin_acos(o, x, cos=True)


def _tan_of(o: _Ops, odd: ir.Value, sin_r: tuple[ir.Value, Num], cos_r: tuple[ir.Value, Num]) -> ir.Value:
    """tan(r + n pi/2) from double-double sin r and cos r: sin r / cos r for even n, -cos r / sin r for odd n."""
    (sh, sl), (ch, cl) = sin_r, cos_r
    nh, nl = o.sel(odd, o.neg(ch), sh), o.sel(odd, o.neg(cl), sl)
    dh, dl = o.sel(odd, sh, ch), o.sel(odd, sl, cl)
    qh, ql = _dd_div(o, nh, nl, dh, dl)
    return o.add(qh, ql)


def _far_tan(o: _Ops, q: ir.Value, r: ir.Value, rl: ir.Value) -> ir.Value:
    return _tan_of(o, o.b.trunc(q, I1), *_sincos_kernel(o, r, rl))


def _tan(o: _Ops, x: ir.Value) -> ir.Value:
    bound = CODY_WAITE_BOUND[1]
    inside = o.b.fcmp_ordered("<=", o.abs(x), o.v(bound))
    n, sin_r, cos_r = _reduce_pio2(o, o.sel(inside, x, 0.0))
    odd = o.b.fcmp_ordered("!=", o.sub(n, o.mul(2.0, o.floor(o.mul(n, 0.5)))), o.v(0.0))
    res = o.sel(o.eq(x, 0.0), x, _tan_of(o, odd, sin_r, cos_r))  # tan(-0) = -0
    return _far_path(o, "tan", x, 0, o.sel(inside, res, _NAN), bound, _far_tan)


def _poly_dd(o: _Ops, x: ir.Value, coeffs: Sequence[float]) -> tuple[ir.Value, ir.Value]:
    """c0 + x P(x) as (hi, lo): Horner's rule with the last step in double-double."""
    h, hl = o.two_prod(x, o.poly(x, coeffs[1:]))
    s, e = o.two_sum(o.v(coeffs[0]), h)
    return s, o.add(e, hl)


def _erfc(o: _Ops, x: ir.Value) -> ir.Value:
    """erfc(x), accurate relative to the result also in the tail (down to denormals)."""
    a = o.abs(x)
    # |x| < 0.84375: 1 - erf(x), with 1 - |x| exact.
    tail = o.mul(a, o.poly(o.mul(a, a), _ERF_P64))
    h, e = o.two_sum(o.v(1.0), o.neg(o.copysign(a, x)))
    small = o.add(h, o.sub(e, o.sel(o.lt(x, 0.0), o.neg(tail), tail)))
    # Above: exp(-a^2) erfcx(a), with a^2 in double-double.
    # erfcx = q + ql: the polynomials' last step and the tail's division by a in double-double.
    mid = o.lt(a, 4.0)
    low = o.lt(a, 2.2)
    t = o.sel(mid, o.sub(a, o.sel(low, 1.5, 3.1)), o.div(1.0, o.mul(a, a)))
    mid1, mid2 = _poly_dd(o, t, _ERFCX_MID1), _poly_dd(o, t, _ERFCX_MID2)
    nh, nl = (o.sel(mid, o.sel(low, m1, m2), tl) for m1, m2, tl in zip(mid1, mid2, _poly_dd(o, t, _ERFCX_TAIL)))
    q, ql = _dd_div(o, nh, nl, o.sel(mid, 1.0, a), 0.0)
    p, pe = o.two_prod(a, a)
    e, el, n = _exp_parts(o, o.neg(p), o.neg(pe))  # exp(-a^2) = (e + el) 2^n
    big = o.ldexp(o.fma(e, q, o.fma(e, ql, o.mul(el, q))), n)
    big = o.sel(o.lt(x, 0.0), o.sub(2.0, big), big)
    res = o.sel(o.lt(a, _ERF_SMALL), small, big)
    res = o.sel(o.eq(a, _INF), o.sel(o.lt(x, 0.0), 2.0, 0.0), res)
    return o.sel(o.isnan(x), x, res)


def _in_float64(fn: Callable[..., ir.Value]) -> Callable[..., ir.Value]:
    """emit_<name>: fn on float64 operands; float32 operands are widened and the result rounded once."""

    def emit(b: ir.IRBuilder, *args: ir.Value) -> ir.Value:
        ty = args[0].type
        if any(a.type != ty for a in args):
            raise TypeError(f"mathlib: operands differ in type: {[str(a.type) for a in args]}")
        o = _Ops(b, F64)
        if isinstance(ty, ir.DoubleType):
            return fn(o, *args)
        _Ops(b, ty)  # checks the type
        return b.fptrunc(fn(o, *(b.fpext(a, F64) for a in args)), ty)

    emit.__name__ = f"emit_{fn.__name__.lstrip('_')}"
    emit.__doc__ = f"{fn.__name__.lstrip('_')}, computed in float64 (float32: rounded once)."
    return emit


# --- public API -------------------------------------------------------------------------

def _native(fn: Callable[[_Ops, ir.Value], ir.Value], doc: str) -> Callable[[ir.IRBuilder, ir.Value], ir.Value]:
    """emit_<name>: fn computed in the operand's own type."""

    def emit(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
        return fn(_Ops(b, x.type), x)

    emit.__name__ = f"emit_{fn.__name__.lstrip('_')}"
    emit.__doc__ = doc
    return emit


def _sin(o: _Ops, x: ir.Value) -> ir.Value:
    return _sincos(o, x, 0)


def _cos(o: _Ops, x: ir.Value) -> ir.Value:
    return _sincos(o, x, 1)


emit_exp = _native(_exp, "exp(x); overflows to inf and underflows through denormals to 0.")
emit_expm1 = _native(_expm1, "exp(x) - 1, accurate for small |x|.")
emit_log = _native(_log, "Natural logarithm; log(+-0) = -inf, log(x < 0) = nan.")
emit_log1p = _native(_log1p, "log(1 + x), accurate for small |x|; log1p(-1) = -inf, log1p(x < -1) = nan.")
emit_tanh = _native(_tanh, "tanh(x); tanh(+-inf) = +-1.")
emit_erf = _native(_erf, "The error function; erf(+-inf) = +-1.")
emit_sin = _native(_sin, "sin(x) for all x; sin(+-inf) = nan.")
emit_cos = _native(_cos, "cos(x) for all x; cos(+-inf) = nan.")


def emit_pow(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    """x ** y with numpy (C99) semantics: negative x needs an integral y, 0 ** 0 = 1, etc.

    float64 uses double-double log and exp; float32 computes in float64 and rounds once.
    """
    if x.type != y.type:
        raise TypeError(f"mathlib: pow operands differ in type: {x.type} and {y.type}")
    o = _Ops(b, x.type)
    if o.is64:
        lh, ll = _log_dd(o, o.abs(x))
        zh, ze = o.two_prod(y, lh)
        return _pow_special(o, x, y, _exp(o, zh, o.fma(y, ll, ze)))
    d = _Ops(b, F64)
    xd, yd = b.fpext(x, F64), b.fpext(y, F64)
    mag = _exp(d, d.mul(yd, _log(d, d.abs(xd))))
    return b.fptrunc(_pow_special(d, xd, yd, mag), x.type)


MATH_FUNCTIONS: dict[str, Callable[..., ir.Value]] = {
    "exp": emit_exp,
    "expm1": emit_expm1,
    "log": emit_log,
    "log1p": emit_log1p,
    "tanh": emit_tanh,
    "erf": emit_erf,
    "sin": emit_sin,
    "cos": emit_cos,
    "pow": emit_pow,
    "exp2": _in_float64(_exp2),
    "log2": _in_float64(_log2),
    "log10": _in_float64(_log10),
    "sinh": _in_float64(_sinh),
    "cosh": _in_float64(_cosh),
    "asinh": _in_float64(_asinh),
    "acosh": _in_float64(_acosh),
    "atanh": _in_float64(_atanh),
    "tan": _in_float64(_tan),
    "atan": _in_float64(_atan),
    "asin": _in_float64(_asin),
    "acos": _in_float64(_acos),
    "erfc": _in_float64(_erfc),
    "atan2": _in_float64(_atan2),
}
