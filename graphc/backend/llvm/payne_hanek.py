"""Payne-Hanek reduction of a large float64 argument modulo pi/2, emitted as scalar LLVM IR.

x = m 2^t (m a 53-bit integer) times 2/pi is, modulo 4, m times a 192-bit window of the bits
of 2/pi that starts at the bit of weight 2^-(t-1): the bits above it only add multiples of 4.
The product is taken in 64-bit words, so the quadrant is exact and the fraction has 190 bits
(x is never closer than 2^-62 to a multiple of pi/2 in float64, so at least 128 bits stay);
the fraction times pi/2 gives the reduced argument as a double-double.  The bits of 2/pi are
computed here in integers (Machin's formula for pi), not copied.
"""

from __future__ import annotations

import functools

from llvmlite import ir

from .loops import F64, I1, I32, I64

_I128 = ir.IntType(128)
_WORDS = 20  # one zero word, then 2/pi to 1216 bits: windows for every exponent up to 2047
_TABLE = "graphc.mathlib.two_over_pi"
PIO2_DD = (1.5707963267948966, 6.123233995736766e-17)  # pi/2 as a double-double (hi, lo)


def _atan_inv(n: int, bits: int) -> int:
    """atan(1/n) * 2^bits, truncated (error a few units)."""
    total, term, k = 0, (1 << bits) // n, 0
    while term:
        total += term // (2 * k + 1) if k % 2 == 0 else -(term // (2 * k + 1))
        term //= n * n
        k += 1
    return total


@functools.cache
def two_over_pi_words() -> tuple[int, ...]:
    """floor(2/pi * 2^(64 (_WORDS - 1))) as _WORDS 64-bit words, most significant first."""
    guard = 64
    bits = 64 * _WORDS + guard
    pi = 16 * _atan_inv(5, bits) - 4 * _atan_inv(239, bits)  # pi * 2^bits, within 2^-1300
    value = (2 << (64 * (_WORDS - 1) + bits)) // pi
    return tuple((value >> (64 * (_WORDS - 1 - i))) & (2**64 - 1) for i in range(_WORDS))


def _table(module: ir.Module) -> ir.GlobalVariable:
    if _TABLE in module.globals:
        return module.globals[_TABLE]
    ty = ir.ArrayType(I64, _WORDS)
    table = ir.GlobalVariable(module, ty, _TABLE)
    table.linkage = "internal"
    table.global_constant = True
    table.initializer = ir.Constant(ty, list(two_over_pi_words()))
    return table


def _intrinsic(b: ir.IRBuilder, name: str, ret: ir.Type, args: list[ir.Value]) -> ir.Value:
    module = b.module
    fn = module.globals.get(name) or ir.Function(module, ir.FunctionType(ret, [a.type for a in args]), name)
    return b.call(fn, args)


def reduce_pio2(b: ir.IRBuilder, x: ir.Value) -> tuple[ir.Value, ir.Value, ir.Value]:
    """(q, r, rl) for a float64 x with |x| >= 2^-30: x = (4k + q) pi/2 + r + rl, |r| <= pi/4 (about).

    q is an i32 in 0..3; r + rl is a double-double.  Infinities give garbage (callers select NaN);
    smaller x would read the table's padding and give garbage too, never outside the table.
    """
    bits = b.bitcast(x, I64)
    e = b.and_(b.lshr(bits, ir.Constant(I64, 52)), ir.Constant(I64, 0x7FF))
    m = b.or_(b.and_(bits, ir.Constant(I64, (1 << 52) - 1)), ir.Constant(I64, 1 << 52))
    # x = m 2^t with t = e - 1075.  Bit j of the table (from the top) weighs 2^(63 - j) in 2/pi,
    # so the window starts at j0 = 63 + (t - 1) = e - 1013 (clamped: no read before the table).
    j0 = b.sub(e, ir.Constant(I64, 1013))
    j0 = b.select(b.icmp_signed("<", j0, ir.Constant(I64, 0)), ir.Constant(I64, 0), j0)
    word, shift = b.lshr(j0, ir.Constant(I64, 6)), b.and_(j0, ir.Constant(I64, 63))
    table = _table(b.module)
    zero = ir.Constant(I32, 0)
    w = [b.load(b.gep(table, [zero, b.add(word, ir.Constant(I64, k))], inbounds=True), typ=I64)
         for k in range(4)]
    window = [_intrinsic(b, "llvm.fshl.i64", I64, [w[k], w[k + 1], shift]) for k in range(3)]
    # (r0 r1 r2) = m * window mod 2^192, one 64x64 -> 128-bit product per word.
    m128 = b.zext(m, _I128)
    acc = ir.Constant(_I128, 0)
    out = []
    for word_bits in reversed(window):
        acc = b.add(b.lshr(acc, ir.Constant(_I128, 64)), b.mul(m128, b.zext(word_bits, _I128)))
        out.append(b.trunc(acc, I64))
    r2, r1, r0 = out
    # Round to the nearest quadrant: n = top two bits + the next; the rest is a signed fraction.
    n = b.add(b.lshr(r0, ir.Constant(I64, 62)), b.and_(b.lshr(r0, ir.Constant(I64, 61)), ir.Constant(I64, 1)))
    hi = _intrinsic(b, "llvm.fshl.i64", I64, [r0, r1, ir.Constant(I64, 2)])
    lo = _intrinsic(b, "llvm.fshl.i64", I64, [r1, r2, ir.Constant(I64, 2)])
    v = b.or_(b.shl(b.zext(hi, _I128), ir.Constant(_I128, 64)), b.zext(lo, _I128))  # fraction * 2^128
    frac_neg = b.icmp_signed("<", v, ir.Constant(_I128, 0))
    a = b.select(frac_neg, b.neg(v), v)
    lz = _intrinsic(b, "llvm.ctlz.i128", _I128, [a, ir.Constant(I1, 0)])
    lz = b.select(b.icmp_unsigned(">", lz, ir.Constant(_I128, 127)), ir.Constant(_I128, 127), lz)
    a = b.shl(a, lz)
    # |fraction| = a 2^(-128 - lz): the top 53 bits exactly, the next 64 rounded.
    top = b.uitofp(b.trunc(b.lshr(a, ir.Constant(_I128, 75)), I64), F64)
    rest = b.uitofp(b.trunc(b.lshr(a, ir.Constant(_I128, 11)), I64), F64)
    lz64 = b.trunc(lz, I64)
    fh = b.fmul(top, _pow2(b, b.sub(ir.Constant(I64, -53), lz64)))
    fl = b.fmul(rest, _pow2(b, b.sub(ir.Constant(I64, -117), lz64)))
    # r + rl = (fh + fl) pi/2 in double-double.
    hi_c, lo_c = (ir.Constant(F64, c) for c in PIO2_DD)
    ph = b.fmul(fh, hi_c)
    pe = _intrinsic(b, "llvm.fma.f64", F64, [fh, hi_c, b.fneg(ph)])
    tail = _intrinsic(b, "llvm.fma.f64", F64, [fh, lo_c, _intrinsic(b, "llvm.fma.f64", F64, [fl, hi_c, pe])])
    r = b.fadd(ph, tail)
    rl = b.fsub(tail, b.fsub(r, ph))
    # The sign of the fraction, then of x (sin and tan are odd: x < 0 gives -n, -r).
    x_neg = b.icmp_signed("<", bits, ir.Constant(I64, 0))
    flip = b.xor(frac_neg, x_neg)
    r, rl = b.select(flip, b.fneg(r), r), b.select(flip, b.fneg(rl), rl)
    n = b.select(x_neg, b.neg(n), n)
    return b.trunc(b.and_(n, ir.Constant(I64, 3)), I32), r, rl


def _pow2(b: ir.IRBuilder, k: ir.Value) -> ir.Value:
    """2^k for an i64 k in the normal exponent range."""
    return b.bitcast(b.shl(b.add(k, ir.Constant(I64, 1023)), ir.Constant(I64, 52)), F64)
