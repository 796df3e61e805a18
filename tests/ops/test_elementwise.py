"""Elementwise ops against numpy/scipy: graph results, scalar forms, special values, dtypes, errors.

Cases are looked up for every elementwise op in the registry, so a new op without a case
here fails `test_every_op_has_a_case` instead of going untested.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import special

import graphc as gc
from graphc.ops.registry import all_ops
from graphc.ops.scalar import NumpyEmitter

F32, F64, I32, I64, B = np.float32, np.float64, np.int32, np.int64, np.bool_
FLOATS = (F32, F64)
NUMERIC = (F32, F64, I32, I64)
ALL = NUMERIC + (B,)


@dataclass
class Case:
    op: str
    fn: Callable  # the public graphc function
    oracle: Callable  # numpy / scipy
    domains: tuple[str, ...]  # one per operand, see `sample`
    dtypes: tuple = FLOATS + (I32,)
    exact: bool = True  # scalar form and graph must equal the oracle bit for bit
    label: str = ""

    @property
    def id(self) -> str:
        return self.op + (f"[{self.label}]" if self.label else "")


def _np_gelu(x):
    return 0.5 * x * (1 + special.erf(x / math.sqrt(2)))


def _np_gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def _as_float(value, *operands):
    """value in the dtype graphc gives (numpy's promotion of the operands; integers compute in float64)."""
    dt = np.result_type(*operands)
    return np.asarray(value).astype(dt if dt.kind == "f" else F64)


CASES = [
    Case("add", gc.add, np.add, ("any", "any"), ALL),
    Case("subtract", gc.subtract, np.subtract, ("any", "any"), NUMERIC),
    Case("multiply", gc.multiply, np.multiply, ("any", "any"), ALL),
    Case("divide", gc.divide, np.true_divide, ("any", "nonzero"), NUMERIC + (B,)),
    Case("negative", gc.negative, np.negative, ("any",), NUMERIC),
    Case("square", gc.square, np.square, ("any",), NUMERIC),
    Case("power", gc.power, np.power, ("pos", "exponent"), FLOATS, label="float"),
    Case("power", gc.power, np.power, ("any", "exponent"), (I32, I64), label="int"),
    Case("power", lambda a: gc.power(a, 3), lambda a: np.power(a, 3), ("any",), NUMERIC, label="cube"),
    Case("abs", gc.abs, np.abs, ("any",), ALL),
    Case("sign", gc.sign, np.sign, ("any",), NUMERIC),
    Case("maximum", gc.maximum, lambda a, b: _ieee_zeros(np.maximum, a, b), ("any", "any"), ALL),
    Case("minimum", gc.minimum, lambda a, b: _ieee_zeros(np.minimum, a, b), ("any", "any"), ALL),
    Case("clip", gc.clip, lambda x, lo, hi: _ieee_zeros(np.minimum, _ieee_zeros(np.maximum, x, lo), hi),
         ("any", "lo", "hi"), NUMERIC),
    Case("where", gc.where, np.where, ("bool", "any", "any"), ALL),
    Case("exp", gc.exp, np.exp, ("any",)),
    Case("expm1", gc.expm1, np.expm1, ("any",)),
    Case("log", gc.log, np.log, ("pos",)),
    Case("log1p", gc.log1p, np.log1p, ("gt-1",)),
    Case("sqrt", gc.sqrt, np.sqrt, ("pos",)),
    Case("rsqrt", gc.rsqrt, lambda x: 1 / np.sqrt(x), ("pos",)),
    Case("sin", gc.sin, np.sin, ("any",)),
    Case("cos", gc.cos, np.cos, ("any",)),
    Case("tanh", gc.tanh, np.tanh, ("any",)),
    Case("erf", gc.erf, special.erf, ("any",)),
    Case("sigmoid", gc.sigmoid, special.expit, ("any",), exact=False),
    Case("softplus", gc.softplus, lambda x: np.logaddexp(x, 0), ("any",), exact=False),
    Case("gelu", gc.gelu, _np_gelu, ("any",), exact=False, label="erf"),
    Case("gelu", lambda x: gc.gelu(x, approximate=True), _np_gelu_tanh, ("any",), exact=False, label="tanh"),
    Case("relu", gc.relu, lambda x: np.maximum(x, 0), ("any",), NUMERIC),
    Case("floor", gc.floor, np.floor, ("any",), FLOATS),
    Case("ceil", gc.ceil, np.ceil, ("any",), FLOATS),
    Case("round", gc.round, np.round, ("halves",), FLOATS),
    Case("round", lambda x: gc.round(x, 2), lambda x: np.round(x, 2), ("any",), FLOATS, label="decimals=2"),
    Case("round", lambda x: gc.round(x, -1), lambda x: np.round(x, -1), ("wide",), FLOATS, label="decimals=-1"),
    Case("cast", lambda x: gc.cast(x, I32), lambda x: x.astype(I32), ("wide",), FLOATS + (I64, B), label="int32"),
    Case("cast", lambda x: gc.cast(x, F64), lambda x: x.astype(F64), ("any",), (F32, I32, I64, B), label="float64"),
    Case("cast", lambda x: gc.cast(x, B), lambda x: x.astype(B), ("any",), NUMERIC, label="bool"),
    Case("equal", gc.equal, np.equal, ("few", "few"), ALL),
    Case("not_equal", gc.not_equal, np.not_equal, ("few", "few"), ALL),
    Case("less", gc.less, np.less, ("few", "few"), ALL),
    Case("less_equal", gc.less_equal, np.less_equal, ("few", "few"), ALL),
    Case("greater", gc.greater, np.greater, ("few", "few"), ALL),
    Case("greater_equal", gc.greater_equal, np.greater_equal, ("few", "few"), ALL),
    Case("logical_and", gc.logical_and, np.logical_and, ("few", "few"), ALL),
    Case("logical_or", gc.logical_or, np.logical_or, ("few", "few"), ALL),
    Case("logical_not", gc.logical_not, np.logical_not, ("few",), ALL),
    Case("tan", gc.tan, np.tan, ("any",)),
    Case("arcsin", gc.arcsin, np.arcsin, ("unit",)),
    Case("arccos", gc.arccos, np.arccos, ("unit",)),
    Case("arctan", gc.arctan, np.arctan, ("any",)),
    Case("arctan2", gc.arctan2, np.arctan2, ("any", "any")),
    Case("sinh", gc.sinh, np.sinh, ("any",)),
    Case("cosh", gc.cosh, np.cosh, ("any",)),
    Case("arcsinh", gc.arcsinh, np.arcsinh, ("any",)),
    Case("arccosh", gc.arccosh, np.arccosh, ("ge1",)),
    Case("arctanh", gc.arctanh, np.arctanh, ("unit",)),
    Case("exp2", gc.exp2, np.exp2, ("any",)),
    Case("log2", gc.log2, np.log2, ("pos",)),
    Case("log10", gc.log10, np.log10, ("pos",)),
    Case("logaddexp", gc.logaddexp, np.logaddexp, ("few", "any"), exact=False),
    Case("logaddexp2", gc.logaddexp2, np.logaddexp2, ("few", "any"), exact=False),
    Case("hypot", gc.hypot, np.hypot, ("any", "any"), exact=False),
    Case("reciprocal", gc.reciprocal, np.reciprocal, ("nonzero",), FLOATS),
    Case("mod", gc.mod, np.mod, ("any", "nonzero"), NUMERIC),
    Case("mod", gc.remainder, np.remainder, ("few", "nonzero"), FLOATS, label="remainder"),
    Case("mod", lambda a, b: a % b, np.mod, ("wide", "nonzero"), NUMERIC, label="%"),
    Case("fmax", gc.fmax, lambda a, b: _ieee_zeros(np.fmax, a, b), ("any", "any"), ALL),
    Case("fmin", gc.fmin, lambda a, b: _ieee_zeros(np.fmin, a, b), ("any", "any"), ALL),
    Case("sinc", gc.sinc, np.sinc, ("halves",)),
    Case("deg2rad", gc.deg2rad, np.deg2rad, ("wide",)),
    Case("rad2deg", gc.rad2deg, np.rad2deg, ("any",)),
    Case("nan_to_num", gc.nan_to_num, np.nan_to_num, ("any",), FLOATS),
    Case("nan_to_num", lambda x: gc.nan_to_num(x, nan=-1.0, posinf=9.0, neginf=-9.0),
         lambda x: np.nan_to_num(x, nan=-1.0, posinf=9.0, neginf=-9.0), ("any",), FLOATS, label="values"),
    Case("fabs", gc.fabs, np.fabs, ("any",)),
    Case("heaviside", gc.heaviside, np.heaviside, ("few", "any")),
    Case("erfc", gc.special.erfc, special.erfc, ("wide",), exact=False),
    Case("ndtr", gc.special.ndtr, special.ndtr, ("wide",), exact=False),
    Case("log_ndtr", gc.special.log_ndtr, special.log_ndtr, ("wide",), exact=False),
    Case("erfinv", gc.special.erfinv, special.erfinv, ("unit",), exact=False),
    Case("gammaln", gc.special.gammaln, special.gammaln, ("gamma",), exact=False),
    Case("digamma", gc.special.digamma, special.digamma, ("gamma",), exact=False),
    Case("polygamma", lambda x: gc.special.polygamma(1, x), lambda x: _as_float(special.polygamma(1, x), x),
         ("gamma",), exact=False, label="n=1"),
    Case("polygamma", lambda x: gc.special.polygamma(3, x), lambda x: _as_float(special.polygamma(3, x), x),
         ("gamma",), exact=False, label="n=3"),
    Case("logit", gc.special.logit, special.logit, ("prob",), exact=False),
    Case("xlogy", gc.special.xlogy, lambda x, y: _as_float(special.xlogy(x, y), x, y), ("few", "pos"), exact=False),
    Case("xlog1py", gc.special.xlog1py, lambda x, y: _as_float(special.xlog1py(x, y), x, y), ("few", "gt-1"),
         exact=False),
    Case("identity", gc.identity, np.copy, ("any",), ALL),  # declared in graphc/ops/state.py
    Case("stop_gradient", gc.stop_gradient, np.copy, ("any",), ALL),
]
CASE_IDS = {c.id: c for c in CASES}

SHAPES = {
    1: [(), (5,), (3, 4), (2, 0, 3)],
    2: [((3, 1), (1, 4)), ((4,), (2, 3, 4)), ((), (3,)), ((2, 3), (2, 3)), ((0, 3), (1, 3)), ((3,), "py")],
    3: [((3, 1), (1, 4), (3, 4)), ((4,), (2, 3, 4), ()), ((0, 1), (1,), ()), ((2, 3), (3,), "py")],
}


def sample(domain: str, dtype, shape, rng: np.random.Generator) -> np.ndarray:
    """Random values valid for an op's operand; `domain` names the range."""
    dt = np.dtype(dtype)
    if dt == B or domain == "bool":
        return rng.random(shape) < 0.5
    if dt.kind in "iu":
        lo, hi = {"pos": (1, 6), "lo": (-3, 1), "hi": (0, 4), "few": (-1, 2), "wide": (-50, 50)}.get(domain, (-5, 6))
        v = rng.choice([0, 1, 3], shape) if domain == "exponent" else rng.integers(lo, hi, shape)  # 2 -> square
        if domain == "nonzero":
            v = np.where(v == 0, 1, v)
        return v.astype(dt)
    if domain == "nonzero":
        v = rng.uniform(0.5, 3, shape) * rng.choice([-1, 1], shape)
    elif domain == "few":
        v = rng.integers(-1, 2, shape) * 0.5  # repeats, so == and <= see ties
    elif domain == "halves":
        v = rng.integers(-8, 8, shape) * 0.5 + rng.choice([0, 0, 0.3], shape)
    else:
        v = rng.uniform(*{"pos": (0.1, 4), "gt-1": (-0.9, 3), "exponent": (-2, 2), "lo": (-2, 0), "hi": (0, 2),
                          "wide": (-60, 60), "unit": (-1, 1), "ge1": (1, 5), "gamma": (-6, 30),
                          "prob": (0, 1)}.get(domain, (-3, 3)), shape)
    return v.astype(dt)


def _python_scalar(arr: np.ndarray):
    return arr.item()


def _inputs(case: Case, dtype, shapes, seed: int):
    """(graphc operands, numpy operands, feed_dict)."""
    rng = np.random.default_rng(seed)
    ops, arrays, feeds = [], [], {}
    for domain, shape in zip(case.domains, shapes):
        dt = B if domain == "bool" else dtype
        if shape == "py":
            value = _python_scalar(sample(domain, dt, (), rng))
            ops.append(value)
            arrays.append(value)
            continue
        arr = sample(domain, dt, shape, rng)
        ph = gc.placeholder(arr.dtype, arr.shape)
        ops.append(ph)
        arrays.append(arr)
        feeds[ph] = arr
    return ops, arrays, feeds


def _shapes_for(case: Case):
    return SHAPES[len(case.domains)]


def _tol(dtype) -> dict:
    return {"rtol": 2e-6, "atol": 1e-6} if np.dtype(dtype) == F32 else {"rtol": 1e-13, "atol": 1e-14}


def _check(actual, expected, exact: bool, dtype=None) -> None:
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    if exact or expected.dtype.kind != "f":
        np.testing.assert_array_equal(actual, expected)
        zeros = (expected == 0) & (actual == 0)
        np.testing.assert_array_equal(np.signbit(actual[zeros]), np.signbit(expected[zeros]), "sign of zero")
    else:
        np.testing.assert_allclose(actual, expected, **_tol(expected.dtype))


def _ieee_zeros(fn, a, b):
    """numpy's maximum/minimum with IEEE 754-2019 zeros: -0.0 < +0.0 whatever the operand order."""
    out = fn(a, b)
    if out.dtype.kind != "f":
        return out
    neg = np.signbit(a) & np.signbit(b) if fn in (np.maximum, np.fmax) else np.signbit(a) | np.signbit(b)
    return np.where((a == 0) & (b == 0), np.where(neg, -0.0, 0.0).astype(out.dtype), out)


def _oracle(case: Case, arrays):
    with np.errstate(all="ignore"):
        return np.asarray(case.oracle(*arrays))


def _params():
    """One (case id, dtype) per registered elementwise op; an op without a case yields a failing entry."""
    out = []
    for name, opdef in all_ops().items():
        if opdef.kind != "elementwise":
            continue
        cases = [c for c in CASES if c.op == name] or [Case(name, None, None, (), (None,), label="MISSING")]
        out += [pytest.param(c.id, dt, id=f"{c.id}-{np.dtype(dt).name if dt else '?'}") for c in cases
                for dt in c.dtypes]
    return out


PARAMS = _params()


def test_every_op_has_a_case():
    missing = [p.values[0] for p in PARAMS if p.values[0].endswith("[MISSING]")]
    assert not missing, f"add a Case to tests/ops/test_elementwise.py for: {missing}"
    assert {c.op for c in CASES} <= {n for n, o in all_ops().items() if o.kind == "elementwise"}


@pytest.mark.parametrize("case_id, dtype", [p for p in PARAMS if not p.values[0].endswith("[MISSING]")])
def test_graph_and_scalar_form_match_numpy(case_id, dtype):
    case = CASE_IDS[case_id]
    for seed, shapes in enumerate(_shapes_for(case)):
        shapes = shapes if len(case.domains) > 1 else (shapes,)
        ops, arrays, feeds = _inputs(case, dtype, shapes, seed)
        node = case.fn(*ops)
        assert node.op == case.op, f"{case.id} built {node.op}"
        expected = _oracle(case, arrays)
        with gc.Session(backend="reference") as sess:
            *in_values, got = sess.run(list(node.inputs) + [node], feeds)
        _check(got, expected, case.exact)
        assert node.shape == expected.shape and node.dtype == expected.dtype
        with np.errstate(all="ignore"):
            scalar = node.opdef.scalar(NumpyEmitter(), *in_values, **_attrs(node))
        scalar = np.broadcast_to(scalar, expected.shape)
        _check(scalar, expected, case.exact)


def _attrs(node) -> dict:
    return dict(node.attrs)


SPECIALS = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 1e-30, 3e38])


@pytest.mark.parametrize("case_id", [c.id for c in CASES if "bool" not in c.domains[1:] and c.op != "cast"
                                     and F32 in c.dtypes and not c.op.startswith("logical")])
@pytest.mark.parametrize("dtype", FLOATS)
def test_special_values(case_id, dtype):
    """inf, nan, +-0 and extremes, every operand against every other (outer broadcast)."""
    case = CASE_IDS[case_id]
    rng = np.random.default_rng(0)
    ops, arrays, feeds = [], [], {}
    for k, domain in enumerate(case.domains):
        shape = (len(SPECIALS),) + (1,) * (len(case.domains) - 1 - k)
        arr = rng.random(shape) < 0.5 if domain == "bool" else SPECIALS.reshape(shape).astype(dtype)
        ph = gc.placeholder(arr.dtype, arr.shape)
        ops.append(ph)
        arrays.append(arr)
        feeds[ph] = arr
    node = case.fn(*ops)
    expected = _oracle(case, arrays)
    with gc.Session(backend="reference") as sess:
        *in_values, got = sess.run(list(node.inputs) + [node], feeds)
    _check(got, expected, case.exact)
    with np.errstate(all="ignore"):
        scalar = np.broadcast_to(node.opdef.scalar(NumpyEmitter(), *in_values, **_attrs(node)), expected.shape)
    _check(scalar, expected, case.exact)


# --- stability ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name, oracle", [("sigmoid", special.expit), ("softplus", lambda x: np.logaddexp(x, 0))])
def test_sigmoid_softplus_stable_at_large_magnitudes(name, oracle, dtype):
    xs = np.array([-1e4, -100.0, -30.0, -1e-8, 0.0, 1e-8, 30.0, 100.0, 1e4], dtype=dtype)
    x = gc.placeholder(dtype, xs.shape)
    node = getattr(gc, name)(x)
    got = _run(node, {x: xs})
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        scalar = node.opdef.scalar(NumpyEmitter(), xs)
    expected = oracle(xs.astype(F64))
    tol = {"rtol": 1e-14, "atol": 0} if dtype == F64 else {"rtol": 3e-7, "atol": 1e-44}  # float32: subnormals
    for value in (got, scalar):
        assert value.dtype == dtype and np.all(np.isfinite(value))
        np.testing.assert_allclose(value, expected, **tol)


# --- semantics ------------------------------------------------------------------------------

def _run(node, feeds=None):
    with gc.Session(backend="reference") as sess:
        return sess.run(node, feeds or {})


def test_round_is_half_to_even():
    x = gc.constant(np.array([0.5, 1.5, 2.5, -0.5, -1.5, 0.49999997, 2.675], dtype=F32))
    np.testing.assert_array_equal(_run(gc.round(x)), [0.0, 2.0, 2.0, -0.0, -2.0, 0.0, 3.0])
    assert np.signbit(_run(gc.round(x))[3])
    np.testing.assert_array_equal(_run(gc.round(x, 1)), np.round(np.array([0.5, 1.5, 2.5, -0.5, -1.5, 0.49999997,
                                                                         2.675], F32), 1))


def test_integer_rounding_is_identity_and_integer_power_stays_integer():
    i = gc.constant(np.array([-3, 2, 5], dtype=I32))
    assert gc.floor(i) is i and gc.ceil(i) is i and gc.round(i) is i
    p = i ** 3
    assert p.dtype == I32
    np.testing.assert_array_equal(_run(p), [-27, 8, 125])
    assert (i ** 2).op == "square"


def test_divide_of_integers_is_true_division():
    a = gc.constant(np.array([7, -7, 1], dtype=I32))
    q = a / 2
    assert q.dtype == F64
    np.testing.assert_array_equal(_run(q), [3.5, -3.5, 0.5])
    assert (gc.constant(np.array([1, 2], I64)) / gc.constant(np.array([4, 4], I64))).dtype == F64


def test_nan_propagation_relu_sign_maximum_minimum():
    x = gc.constant(np.array([np.nan, -1.0, 0.0, 2.0], dtype=F32))
    out = _run([gc.relu(x), gc.sign(x), gc.maximum(x, 0.0), gc.minimum(0.0, x)])
    np.testing.assert_array_equal(out[0], [np.nan, 0.0, 0.0, 2.0])
    np.testing.assert_array_equal(out[1], [np.nan, -1.0, 0.0, 1.0])
    np.testing.assert_array_equal(out[2], [np.nan, 0.0, 0.0, 2.0])
    np.testing.assert_array_equal(out[3], [np.nan, -1.0, 0.0, 0.0])


def test_where_broadcasts_all_three_and_reads_truthiness():
    c = gc.placeholder(F32, (3, 1))
    a = gc.placeholder(F64, (4,))
    w = gc.where(c, a, 7)
    assert w.shape == (3, 4) and w.dtype == F64
    cv = np.array([[0.0], [np.nan], [-2.0]], F32)
    av = np.arange(4.0)
    np.testing.assert_array_equal(_run(w, {c: cv, a: av}), np.where(cv, av, 7))


def test_logical_ops_read_truthiness():
    i = gc.constant(np.array([0, 3, -1, 0], dtype=I32))
    f = gc.constant(np.array([np.nan, 0.0, 2.0, -0.0], dtype=F32))
    out = _run([gc.logical_and(i, f), gc.logical_or(i, f), gc.logical_not(f)])
    np.testing.assert_array_equal(out[0], [False, False, True, False])
    np.testing.assert_array_equal(out[1], [True, True, True, False])
    np.testing.assert_array_equal(out[2], [False, True, False, True])


def test_clip_bounds_scalar_tensor_none_and_crossed():
    x = gc.placeholder(F32, (2, 3))
    xv = np.array([[-5.0, 0.5, 5.0], [np.nan, -0.0, 1.0]], F32)
    lo = gc.placeholder(F32, (3,))
    lov = np.array([-1.0, 0.0, 2.0], F32)
    out = _run([gc.clip(x, -1.0, 1.0), gc.clip(x, lo, 1.5), gc.clip(x, None, 0.0), gc.clip(x, 0.0, None),
                gc.clip(x, 2.0, -2.0)], {x: xv, lo: lov})
    np.testing.assert_array_equal(out[0], np.clip(xv, -1.0, 1.0))
    np.testing.assert_array_equal(out[1], np.clip(xv, lov, 1.5))
    np.testing.assert_array_equal(out[2], np.clip(xv, None, 0.0))
    np.testing.assert_array_equal(out[3], np.clip(xv, 0.0, None))
    np.testing.assert_array_equal(out[4], np.clip(xv, 2.0, -2.0))
    assert all(o.dtype == F32 for o in out)
    ints = gc.clip(gc.constant(np.array([-9, 0, 9], I32)), None, 4)
    assert ints.dtype == I32
    np.testing.assert_array_equal(_run(ints), [-9, 0, 4])


def test_gelu_forms_agree_with_scipy_definitions():
    xs = np.linspace(-8, 8, 101)
    x = gc.placeholder(F64, xs.shape)
    exact, approx = _run([gc.gelu(x), gc.gelu(x, approximate=True)], {x: xs})
    # 0.5 x (1 + erf(x / sqrt 2)), TensorFlow's and PyTorch's formula (docs/reliability.md): x * ndtr(x)
    # up to the cancellation of 1 + erf in the negative tail
    np.testing.assert_allclose(exact, 0.5 * xs * (1 + special.erf(xs / np.sqrt(2))), rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(exact, xs * special.ndtr(xs), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(approx, _np_gelu_tanh(xs), rtol=1e-14)
    for approximate, value in ((False, exact), (True, approx)):
        scalar = gc.gelu(x, approximate).opdef.scalar(NumpyEmitter(), xs, approximate=approximate)
        np.testing.assert_allclose(scalar, value, rtol=1e-13, atol=1e-15)
    assert np.max(np.abs(exact - approx)) < 1e-3  # the tanh form is an approximation of the same function


# --- dtype promotion --------------------------------------------------------------------------

@pytest.mark.parametrize("build, expected", [
    (lambda f32, f64, i32: f32 * 2.5, F32),
    (lambda f32, f64, i32: 2.5 * f32, F32),
    (lambda f32, f64, i32: f32 - 1, F32),
    (lambda f32, f64, i32: f32 ** 0.5, F32),
    (lambda f32, f64, i32: i32 + 1.5, F64),
    (lambda f32, f64, i32: i32 + 1, I32),
    (lambda f32, f64, i32: i32 * f32, F64),
    (lambda f32, f64, i32: f32 + f64, F64),
    (lambda f32, f64, i32: gc.sqrt(i32), F64),
    (lambda f32, f64, i32: gc.sigmoid(i32), F64),
    (lambda f32, f64, i32: gc.exp(f32), F32),
    (lambda f32, f64, i32: gc.maximum(i32, 0), I32),
    (lambda f32, f64, i32: gc.maximum(i32, 0.5), F64),
    (lambda f32, f64, i32: i32 > 1.5, B),
    (lambda f32, f64, i32: gc.where(i32 > 0, i32, f32), F64),
    (lambda f32, f64, i32: gc.abs(i32), I32),
])
@pytest.mark.filterwarnings("ignore::graphc.errors.Float64Warning")  # the mixes are the point here
def test_dtype_promotion_follows_numpy(build, expected):
    f32 = gc.placeholder(F32, (3,))
    f64 = gc.placeholder(F64, (3,))
    i32 = gc.placeholder(I32, (3,))
    vals = {f32: np.array([0.5, 1.0, 2.0], F32), f64: np.array([1.0, 2.0, 3.0]), i32: np.array([1, 2, 3], I32)}
    node = build(f32, f64, i32)
    assert node.dtype == expected
    assert _run(node, vals).dtype == expected
    with gc.Graph().as_default():  # the same expression on numpy arrays, where it stays in numpy
        numpy_value = build(*(vals[t] for t in (f32, f64, i32)))
    if isinstance(numpy_value, np.ndarray):
        assert numpy_value.dtype == expected


def test_comparison_of_int_with_float_compares_in_float():
    i = gc.constant(np.array([1, 2], dtype=I32))
    np.testing.assert_array_equal(_run(i > 1.5), [False, True])
    np.testing.assert_array_equal(_run(gc.equal(i, 2.0)), [False, True])


# --- errors ---------------------------------------------------------------------------------

def test_shape_error_names_op_shapes_and_line():
    a = gc.placeholder(F32, (2, 3), name="a")
    b = gc.placeholder(F32, (4, 3), name="b")
    with pytest.raises(gc.ShapeError) as info:
        gc.maximum(a, b)
    msg = str(info.value)
    assert "maximum" in msg and "(2, 3)" in msg and "(4, 3)" in msg and "do not broadcast" in msg
    assert "test_elementwise.py:" in msg


@pytest.mark.parametrize("build, op", [
    (lambda b, f: b - b, "subtract"),
    (lambda b, f: -b, "negative"),
    (lambda b, f: gc.sign(b), "sign"),
    (lambda b, f: gc.square(b), "square"),
    (lambda b, f: gc.relu(b), "relu"),
    (lambda b, f: b ** b, "power"),
    (lambda b, f: gc.clip(b, False, True), "clip"),
])
def test_dtype_error_names_op_dtype_and_line(build, op):
    b = gc.placeholder(B, (2,), name="flags")
    f = gc.placeholder(F32, (2,))
    with pytest.raises(gc.DTypeError) as info:
        build(b, f)
    msg = str(info.value)
    assert msg.startswith(op) and "bool" in msg and "flags" in msg
    assert "test_elementwise.py:" in msg
    assert isinstance(info.value, TypeError)


def test_direct_construction_checks_dtypes():
    g = gc.get_default_graph()
    i = gc.placeholder(I32, (2,))
    f = gc.placeholder(F32, (2,))
    with pytest.raises(gc.DTypeError, match="exp .*needs floating operands, got int32"):
        g.make("exp", (i,))
    with pytest.raises(gc.DTypeError, match="one dtype"):
        g.make("add", (i, f))
    with pytest.raises(gc.DTypeError, match="condition must be bool"):
        g.make("where", (f, f, f))
    with pytest.raises(gc.DTypeError, match="needs bool operands"):
        g.make("logical_not", (f,))


def test_public_functions_are_documented():
    from graphc.ops import elementwise
    for name in elementwise.__all__:
        fn = getattr(gc, name)
        assert fn.__doc__ and fn.__doc__.strip(), name
        assert fn.__name__ == name, name


# --- derivative values at non-differentiable points (the smooth parts are checked in tests/autodiff) ----

def _grads(y, xs, feeds=None):
    return _run(gc.gradients(gc.sum(y), xs), feeds)


def test_kinks_follow_the_convention_table():
    x = gc.constant(np.array([-1.0, 0.0, 2.0]))
    g_relu, = _grads(gc.relu(x), [x])
    g_abs, = _grads(gc.abs(x), [x])
    np.testing.assert_array_equal(g_relu, [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(g_abs, [-1.0, 0.0, 1.0])
    a = gc.constant(np.array([1.0, 2.0, 3.0]))
    b = gc.constant(np.array([1.0, 2.5, 2.0]))
    ga, gb = _grads(gc.maximum(a, b), [a, b])
    np.testing.assert_array_equal(ga, [0.5, 0.0, 1.0])
    np.testing.assert_array_equal(gb, [0.5, 1.0, 0.0])
    ga, gb = _grads(gc.minimum(a, b), [a, b])
    np.testing.assert_array_equal(ga, [0.5, 1.0, 0.0])
    np.testing.assert_array_equal(gb, [0.5, 0.0, 1.0])
    for fn in (gc.sign, gc.floor, gc.ceil, gc.round, lambda t: gc.cast(t > 0, gc.float64)):
        assert gc.gradients(gc.sum(fn(x)), [x]) == [None]


def test_power_gradients_at_zero_and_negative_bases():
    a = gc.constant(np.array([0.0, 0.0, -2.0, 3.0]))
    b = gc.constant(np.array([0.0, 2.0, 3.0, 2.0]))
    ga, gb = _grads(gc.power(a, b), [a, b])
    np.testing.assert_array_equal(ga, [0.0, 0.0, 12.0, 6.0])
    np.testing.assert_allclose(gb, [0.0, 0.0, 0.0, 9.0 * np.log(3.0)], rtol=1e-15)


def test_clip_and_where_gradients_route_to_the_chosen_operand():
    x = gc.constant(np.array([-2.0, -1.0, 0.0, 1.0, 2.0]))
    lo = gc.constant(-1.0, gc.float64)
    hi = gc.constant(np.array([1.0, 1.0, 1.0, 1.0, -5.0]))
    gx, glo, ghi = _grads(gc.clip(x, lo, hi), [x, lo, hi])
    np.testing.assert_array_equal(gx, [0.0, 1.0, 1.0, 1.0, 0.0])  # bounds included; lo > hi: hi wins
    assert glo == 1.0
    np.testing.assert_array_equal(ghi, [0.0, 0.0, 0.0, 0.0, 1.0])
    c = gc.constant(np.array([True, False, True, False, True]))
    gc_, gx, gy = gc.gradients(gc.sum(gc.where(c, x, 3.0 * hi)), [c, x, hi])
    assert gc_ is None
    np.testing.assert_array_equal(_run(gx), [1.0, 0.0, 1.0, 0.0, 1.0])
    np.testing.assert_array_equal(_run(gy), [0.0, 3.0, 0.0, 3.0, 0.0])


@pytest.mark.parametrize("backend", ["llvm", "reference"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fuzz_seed_1009167_log_ndtr_gradient_deep_in_the_lower_tail(backend, dtype):
    """d/dx log_ndtr(x) = pdf(x)/ndtr(x) ~ -x in the lower tail: the rule exp(-x^2/2 - out)
    cancelled two numbers near x^2/2 and lost 2.4e-4 relative in float32 at x = -118."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    xs = np.array([-118.0, -45.0, -30.0, -21.0, -15.0, -10.5, -9.5, -3.0, 0.0, 2.0], dtype)
    true = np.array([float(mpmath.npdf(float(v)) / mpmath.ncdf(float(v))) for v in xs])
    x = gc.placeholder(getattr(gc, dtype), xs.shape)
    grad = gc.gradients(gc.sum(gc.special.log_ndtr(x)), [x])[0]
    got = gc.Session(backend=backend).run(grad, {x: xs})
    bound = 2e-6 if dtype == "float32" else 2e-13
    assert np.max(np.abs(got - true) / true) < bound


@pytest.mark.parametrize("backend", ["llvm", "reference"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fuzz_seed_6110125_gammaln_at_huge_negative_poles_is_inf(backend, dtype):
    """gammaln's poles, the non-positive integers (every float32 x <= -2^23), are inf as in scipy:
    the reflection log(pi / |sin(pi x)|) - lgamma(1 - x) gave inf - inf = NaN on the LLVM backend
    where lgamma(1 - x) overflows too (float32 -3.4e38, graph-fuzz seed 6110125; float64 -1e306)."""
    big = float(np.finfo(dtype).max)
    xs = np.array([-big, -big / 4, -1e37, -2.0 ** 60, -3.0, -0.0, -2.5, 7.0], dtype)
    x = gc.placeholder(getattr(gc, dtype), xs.shape)
    got = gc.Session(backend=backend).run(gc.special.gammaln(x), {x: xs})
    np.testing.assert_array_equal(got[:6], np.inf)
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(got[6:], special.gammaln(xs[6:]), rtol=tol, atol=tol)


@pytest.mark.parametrize("backend", ["llvm", "reference"])
def test_fuzz_seed_6102310_erfinv_keeps_the_sign_of_zero(backend):
    """erfinv is odd: erfinv(-0.0) is -0.0 on both backends (scipy, the reference's oracle, gives +0.0,
    so 1 / erfinv(-0.0) was -inf on the LLVM backend and inf on the reference)."""
    y = gc.placeholder(gc.float64, (3,))
    x = gc.special.erfinv(y)
    got, inv = gc.Session(backend=backend).run([x, 1.0 / x], {y: np.array([-0.0, 0.0, -0.5])})
    assert list(np.signbit(got)) == [True, False, True]
    assert list(inv[:2]) == [-np.inf, np.inf]
