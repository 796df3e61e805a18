"""Accuracy, special values and vectorization of graphc.backend.llvm.mathlib.

Each function is compiled into a loop ``out[i] = f(in[i])`` at O3 for the host CPU and run on
numpy arrays.  Errors are measured in ulps of the correctly rounded result, against numpy
evaluated in long double (80-bit on x86-64); erf against scipy (float32) and mpmath (float64).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import numpy as np
import pytest

from graphc.backend.llvm.mapkernel import BINARY, MapKernel
from graphc.backend.llvm.mathlib import CODY_WAITE_BOUND, MATH_FUNCTIONS

LD = np.longdouble
MAX_ULP = {np.float32: 4.0, np.float64: 2.0}
DTYPES = [np.float32, np.float64]
UNARY = [name for name in MATH_FUNCTIONS if name not in BINARY]
N_RANDOM = 100_000
N_RANDOM_MPMATH = 20_000  # float64 erf reference: mpmath is slow
SINCOS_RANGE = dict(zip(DTYPES, CODY_WAITE_BOUND))
TRIG = ("sin", "cos", "tan")


# --- compiling a map loop ----------------------------------------------------------------

@functools.cache
def kernel(name: str, dtype: type) -> MapKernel:
    """The map loop of `name` over `dtype` (compiled once per test session)."""
    return MapKernel(name, dtype)


# --- references and error measure --------------------------------------------------------

def _erf_reference(x: np.ndarray, name: str = "erf") -> np.ndarray:
    """erf or erfc in long double: scipy's float64 function for float32 inputs, mpmath for float64."""
    if x.dtype == np.float32:
        special = pytest.importorskip("scipy.special")
        return getattr(special, name)(x.astype(np.float64)).astype(LD)
    mpmath = pytest.importorskip("mpmath")
    fn = getattr(mpmath, name)
    # Beyond |x| = 30 both are constants in long double (erf: +-1, erfc: 0 or 2); mpmath has no
    # signed zero or infinities.
    with mpmath.workdps(40):
        ref = np.array([LD(mpmath.nstr(fn(mpmath.mpf(float(v))), 30)) if abs(v) < 30 else np.nan for v in x],
                       dtype=LD)
    far = np.sign(x) if name == "erf" else 1 - np.sign(x)
    ref = np.where(np.abs(x) >= 30, far, ref)
    return np.where(x == 0, x, ref) if name == "erf" else ref


_LONG_DOUBLE_REFERENCE: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "exp": np.exp,
    "expm1": np.expm1,
    "log": np.log,
    "log1p": np.log1p,
    "tanh": np.tanh,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "exp2": np.exp2,
    "log2": np.log2,
    "log10": np.log10,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "asinh": np.arcsinh,
    "acosh": np.arccosh,
    "atanh": np.arctanh,
    "atan": np.arctan,
    "asin": np.arcsin,
    "acos": np.arccos,
}


def reference(name: str, x: np.ndarray) -> np.ndarray:
    """f(x) in long double, nearly exact for float32 and float64 inputs."""
    if name in ("erf", "erfc"):
        return _erf_reference(x, name)
    with np.errstate(all="ignore"):
        return _LONG_DOUBLE_REFERENCE[name](x.astype(LD))


def ulp_errors(got: np.ndarray, ref: np.ndarray, dtype: type) -> np.ndarray:
    """|got - ref| in ulps of ref rounded to dtype; inf where the value class differs."""
    with np.errstate(over="ignore"):
        rounded = ref.astype(dtype)
    err = np.zeros(got.shape, dtype=LD)
    finite = np.isfinite(got) & np.isfinite(rounded)
    # The largest finite value has the spacing of its predecessor (numpy says inf).
    below_max = np.nextafter(np.finfo(dtype).max, 0, dtype=dtype)
    spacing = np.spacing(np.minimum(np.abs(rounded[finite]), below_max)).astype(LD)
    err[finite] = np.abs(got[finite].astype(LD) - ref[finite]) / spacing
    same_special = (np.isnan(got) & np.isnan(rounded)) | (np.isinf(got) & (got == rounded))
    err[~finite & ~same_special] = np.inf
    zero_sign = (got == 0) & (rounded == 0) & (np.signbit(got) != np.signbit(rounded))
    err[zero_sign] = np.inf
    return err


def _check(got: np.ndarray, ref: np.ndarray, dtype: type, *inputs: np.ndarray) -> None:
    """Assert got is within MAX_ULP of ref; the message lists the worst inputs."""
    err = ulp_errors(got, ref, dtype)
    worst = np.argsort(err)[::-1][:5]
    detail = ", ".join(
        f"f({', '.join(repr(a[i].item()) for a in inputs)}) = {got[i].item()!r} "
        f"(exact {ref[i]!r}, {err[i]:.2f} ulp)" for i in worst)
    assert err.max() <= MAX_ULP[dtype], detail


# --- inputs ------------------------------------------------------------------------------

def _log_uniform(rng: np.random.Generator, n: int, lo: float, hi: float,
                 signed: bool = True) -> np.ndarray:
    """Magnitudes spread evenly over the decades 10**lo .. 10**hi, random signs if signed."""
    x = 10.0 ** rng.uniform(lo, hi, n)
    return x * rng.choice([-1.0, 1.0], n) if signed else x


def random_inputs(name: str, dtype: type, n: int) -> np.ndarray:
    rng = np.random.default_rng(1234)
    f64 = dtype == np.float64
    h = n // 2
    if name in ("exp", "expm1"):
        lo, hi = (-746.0, 710.0) if f64 else (-104.0, 89.0)
        x = np.concatenate([_log_uniform(rng, h, -300 if f64 else -30, np.log10(-lo)),
                            rng.uniform(lo, hi, n - h)])
    elif name == "log":
        x = np.concatenate([_log_uniform(rng, h, -323 if f64 else -44.5, 308 if f64 else 38,
                                         signed=False),
                            rng.uniform(0.0, 4.0, n - h)])
    elif name == "log1p":
        x = np.concatenate([_log_uniform(rng, h, -300 if f64 else -30, 308 if f64 else 38,
                                         signed=False),
                            -_log_uniform(rng, h // 2, -30, 0, signed=False),
                            -1 + _log_uniform(rng, n - h - h // 2, -15 if f64 else -7, 0,
                                              signed=False)])
    elif name in TRIG:
        top = SINCOS_RANGE[dtype]
        near_pio2 = (rng.integers(1, int(top / 1.6), n // 10) * (np.pi / 2)).astype(dtype)
        x = np.concatenate([_log_uniform(rng, h, -30, np.log10(top)), near_pio2,
                            rng.uniform(-top, top, n - h - n // 10)])
    elif name == "exp2":
        x = np.concatenate([rng.uniform(-1080 if f64 else -155, 1030 if f64 else 130, h),
                            rng.uniform(-3, 3, n - h)])
    elif name in ("log2", "log10"):
        x = np.concatenate([_log_uniform(rng, h, -323 if f64 else -44.5, 308 if f64 else 38, signed=False),
                            rng.uniform(0.0, 4.0, n - h)])
    elif name in ("sinh", "cosh"):
        x = np.concatenate([_log_uniform(rng, h, -300 if f64 else -30, 3), rng.uniform(-712, 712, n - h)])
    elif name in ("asinh", "atan"):
        x = np.concatenate([_log_uniform(rng, h, -300 if f64 else -30, 300 if f64 else 38),
                            rng.uniform(-3, 3, n - h)])
    elif name == "acosh":
        x = np.concatenate([1 + _log_uniform(rng, h, -16 if f64 else -7, 300 if f64 else 38, signed=False),
                            rng.uniform(1, 3, n - h)])
    elif name == "erfc":
        x = np.concatenate([_log_uniform(rng, h, -300 if f64 else -30, 0.5), rng.uniform(-6, 27 if f64 else 10, n - h)])
    elif name in ("atanh", "asin", "acos"):
        x = np.concatenate([_log_uniform(rng, h, -300 if f64 else -30, 0),
                            rng.uniform(-1, 1, n - h - n // 10),
                            1 - _log_uniform(rng, n // 10, -16 if f64 else -7, 0, signed=False)])
    else:  # tanh, erf
        x = np.concatenate([_log_uniform(rng, h, -300 if f64 else -30, 3),
                            rng.uniform(-40.0, 40.0, n - h)])
    return x.astype(dtype)


def special_inputs(name: str, dtype: type) -> np.ndarray:
    fi = np.finfo(dtype)
    values = [0.0, np.inf, np.nan, fi.tiny, fi.smallest_subnormal, 3 * fi.smallest_subnormal,
              fi.tiny / 3, fi.max, fi.eps, 0.5, 1.0, 2.0, 10.0]
    if name in ("exp", "expm1", "tanh", "erf", "erfc", "sinh", "cosh", "exp2"):
        # exp thresholds: overflow, denormal results, underflow to zero.
        values += [np.log(fi.max), np.log(fi.tiny), np.log(fi.smallest_subnormal) - np.log(2)]
    if name in ("sinh", "cosh"):
        values += [np.log(fi.max) + np.log(2), 1.0 + fi.eps]
    if name == "erfc":
        values += [0.84375, 2.2, 4.0, 26.5, 27.3, 9.0]
    if name == "exp2":
        values += [np.log2(fi.max), -np.log2(fi.tiny), np.log2(fi.smallest_subnormal), 3.0, -3.0]
    if name in ("log", "log1p", "log2", "log10"):
        values += [-1.0, -0.5, 8.0, 1000.0, 2.0 ** -20]
    if name in ("atanh", "asin", "acos", "acosh"):
        values += [1 - fi.epsneg, 0.5 - fi.epsneg, 1 + fi.eps]
    if name in ("atan", "asinh"):
        values += [7 / 16, 11 / 16, 19 / 16, 39 / 16, 2.0**28, 2.0**-28]
    if name in TRIG:
        top = SINCOS_RANGE[dtype]
        values += [np.pi / 4, np.pi / 2, np.pi, top, top * 0.999]
    with np.errstate(over="ignore"):
        x = np.array(values, dtype=dtype)
        x = np.concatenate([x, np.nextafter(x, np.inf), np.nextafter(x, -np.inf)])
    return np.concatenate([x, -x])


# --- tests -------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("name", UNARY)
def test_accuracy(name: str, dtype: type) -> None:
    slow = name in ("erf", "erfc") and dtype == np.float64
    x = random_inputs(name, dtype, N_RANDOM_MPMATH if slow else N_RANDOM)
    _check(kernel(name, dtype)(x), reference(name, x), dtype, x)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("name", UNARY)
def test_special_values(name: str, dtype: type) -> None:
    x = special_inputs(name, dtype)
    _check(kernel(name, dtype)(x), reference(name, x), dtype, x)


# The finite float32 and float64 closest to a multiple of pi/2 (2^-29.2 and 2^-60.9 from it, by
# mpmath): the reduction cancels the most bits there.
HARD_TRIG = {np.float32: [16367173 * 2.0**72], np.float64: [6381956970095103 * 2.0**797]}
LARGE_TRIG_ULP = 1.0  # measured: float32 0.50, float64 0.84 (tan), 0.76 (sin), 0.75 (cos)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("name", TRIG)
def test_trig_large_arguments(name: str, dtype: type) -> None:
    """Beyond the Cody-Waite range: Payne-Hanek, within 1 ulp up to the largest float (issue 12 #7; was NaN)."""
    rng = np.random.default_rng(7)
    fi = np.finfo(dtype)
    bound = SINCOS_RANGE[dtype]
    x = _log_uniform(rng, 20_000, np.log10(bound), np.log10(fi.max)).astype(dtype)
    hard = np.array(HARD_TRIG[dtype] + [bound, 2 * bound, fi.max, 2.0**30, 2.0**100], dtype)
    hard = np.concatenate([hard, np.nextafter(hard, dtype(0)), np.nextafter(hard, dtype(fi.max))])
    multiples = (np.pi / 2 * rng.integers(1, 2**62, 200).astype(np.float64) * 2.0 ** rng.integers(-40, 900, 200))
    with np.errstate(over="ignore"):
        multiples = multiples.astype(dtype)
    x = np.concatenate([x, hard, multiples[np.isfinite(multiples)]])
    x = np.concatenate([x, -x])
    got = kernel(name, dtype)(x)
    err = ulp_errors(got, reference(name, x), dtype)
    assert err.max() <= LARGE_TRIG_ULP, f"{err.max():.2f} ulp at x = {x[np.argmax(err)]!r}"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_pow_accuracy(dtype: type) -> None:
    rng = np.random.default_rng(99)
    n = N_RANDOM // 4
    f64 = dtype == np.float64
    # Results from underflow to overflow: y = t / log(x).
    x1 = _log_uniform(rng, n, -300 if f64 else -30, 300 if f64 else 30, signed=False)
    y1 = rng.uniform(-750, 715, n) if f64 else rng.uniform(-110, 95, n)
    y1 /= np.log(x1)
    # Negative bases with integral exponents, and plain moderate values.
    x2 = rng.uniform(-10, 10, n)
    y2 = rng.integers(-40, 41, n).astype(float)
    x3 = rng.uniform(0, 3, n)
    y3 = rng.uniform(-30, 30, n)
    x = np.concatenate([x1, x2, x3, 1 + _log_uniform(rng, n, -15 if f64 else -7, -1)])
    y = np.concatenate([y1, y2, y3, _log_uniform(rng, n, 0, 17 if f64 else 9)])
    x, y = x.astype(dtype), y.astype(dtype)
    with np.errstate(all="ignore"):
        ref = np.power(x.astype(LD), y.astype(LD))
    _check(kernel("pow", dtype)(x, y), ref, dtype, x, y)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_pow_special_values(dtype: type) -> None:
    fi = np.finfo(dtype)
    base = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 10.0, np.inf, np.nan, fi.max,
                     fi.smallest_subnormal, fi.tiny, 1 + fi.eps, 1 - fi.epsneg], dtype=dtype)
    values = np.concatenate([base, -base, np.array([2.5, -2.5, 1e30, -1e30], dtype=dtype)])
    x, y = (a.ravel() for a in np.meshgrid(values, values))
    with np.errstate(all="ignore"):
        ref = np.power(x.astype(LD), y.astype(LD))
        assert np.array_equal(np.isnan(np.power(x, y)), np.isnan(ref))
    _check(kernel("pow", dtype)(x, y), ref, dtype, x, y)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_atan2_accuracy(dtype: type) -> None:
    rng = np.random.default_rng(5)
    n = N_RANDOM // 2
    f64 = dtype == np.float64
    top = 300 if f64 else 37
    y = np.concatenate([_log_uniform(rng, n, -top, top), rng.uniform(-3, 3, n)]).astype(dtype)
    x = np.concatenate([_log_uniform(rng, n, -top, top), rng.uniform(-3, 3, n)]).astype(dtype)
    _check(kernel("atan2", dtype)(y, x), np.arctan2(y.astype(LD), x.astype(LD)), dtype, y, x)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_atan2_special_values(dtype: type) -> None:
    """C99: signed zeros choose 0 or pi, infinities give multiples of pi/4, nan propagates."""
    fi = np.finfo(dtype)
    base = np.array([0.0, 1.0, 0.5, 2.0, np.inf, np.nan, fi.max, fi.smallest_subnormal, fi.tiny], dtype=dtype)
    values = np.concatenate([base, -base])
    y, x = (a.ravel() for a in np.meshgrid(values, values))
    ref = np.arctan2(y.astype(LD), x.astype(LD))
    _check(kernel("atan2", dtype)(y, x), ref, dtype, y, x)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("name", list(MATH_FUNCTIONS))
def test_loop_vectorizes(name: str, dtype: type) -> None:
    """The map loop uses 256- or 512-bit vector FMAs (ymm on AVX2, possibly zmm on AVX-512)."""
    asm = kernel(name, dtype).asm
    assert re.search(r"\bvfn?madd\w*\s+[^\n]*%[yz]mm", asm), f"{name} did not vectorize"


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_compiled_sigmoid_op_is_accurate(dtype):
    """sigmoid is composed from exp in its op's scalar form (no mathlib function): what runs is measured here."""
    import graphc as gc

    rng = np.random.default_rng(0)
    xs = np.concatenate([rng.uniform(-90.0, 90.0, N_RANDOM), [0.0, -0.0, 1e-30, -1e-30, 40.0, -40.0]]).astype(dtype)
    x = gc.placeholder(dtype, xs.shape)
    with gc.Session() as sess:
        got = sess.run(gc.sigmoid(x), {x: xs})
    wide = xs.astype(np.float64 if dtype == np.float32 else LD)
    want = 1 / (1 + np.exp(-wide))
    ulps = np.abs(got.astype(wide.dtype) - want) / np.spacing(want.astype(dtype)).astype(wide.dtype)
    assert float(ulps.max()) <= 3.0  # measured: 2.1 (float32), 2.3 (float64)

