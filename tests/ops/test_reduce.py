"""Reductions against numpy/scipy, generated from the registry so that none is skipped."""

import contextlib
import warnings

import numpy as np
import pytest
from scipy import special

import graphc as gc
from graphc.ops import reduce as red
from graphc.ops.registry import all_ops, get_op
from graphc.ops.scalar import NumpyEmitter

RNG = np.random.default_rng(0)
SHAPE = (3, 4, 5)
DTYPES = (np.float32, np.float64, np.int32)
AXES = (None, 0, -1, 1, (0, 2), (-1, 0), ())
ARG_AXES = (None, 0, -1, 1)


def _np_arg(fn):
    return lambda a, axis=None, keepdims=False: fn(a, axis=axis, keepdims=keepdims)


def _np_logsumexp(a, axis=None, keepdims=False):
    """scipy's logsumexp with numpy's keepdims shapes (scipy trips on 0-d and empty inputs)."""
    axes = tuple(range(a.ndim)) if axis is None else axis
    shape = np.sum(a, axis=axes, keepdims=keepdims).shape
    if a.size == 0 and axes == tuple(range(a.ndim)):
        return special.logsumexp(a.ravel()).reshape(shape)
    return np.reshape(special.logsumexp(a, axis=axes), shape)


# name -> (graphc function, numpy reference, dtypes numpy allows, axis cases)
REDUCTIONS = {
    "sum": (gc.sum, np.sum, DTYPES, AXES),
    "prod": (gc.prod, np.prod, DTYPES, AXES),
    "max": (gc.max, np.max, DTYPES, AXES),
    "min": (gc.min, np.min, DTYPES, AXES),
    "argmax": (gc.argmax, _np_arg(np.argmax), DTYPES, ARG_AXES),
    "argmin": (gc.argmin, _np_arg(np.argmin), DTYPES, ARG_AXES),
    "mean": (gc.mean, np.mean, DTYPES, AXES),
    "var": (gc.var, np.var, DTYPES, AXES),
    "std": (gc.std, np.std, DTYPES, AXES),
    "logsumexp": (gc.logsumexp, _np_logsumexp, DTYPES, AXES),
}
EMPTY_RAISES = {"max", "min", "argmax", "argmin"}  # numpy raises on an empty reduced axis


def test_every_reduction_is_covered():
    primitives = {name for name, op in all_ops().items() if op.kind == "reduce"}
    assert primitives <= set(REDUCTIONS)
    assert set(red.__all__) == set(REDUCTIONS) | {"size_of"}


def _data(shape, dtype):
    if np.dtype(dtype).kind == "i":
        return RNG.integers(-3, 4, size=shape).astype(dtype)
    return RNG.standard_normal(shape).astype(dtype)


def _tol(dtype):
    return {"rtol": 2e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


@contextlib.contextmanager
def _quiet():
    """Silence numpy's warnings about empty slices and non-finite values (we compare the values)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _run(t, feeds=None):
    with gc.Session(backend="reference") as sess:
        return sess.run(t, feeds or {})


def _check(name, a, axis, keepdims, placeholder_shape=None):
    fn, ref, _, _ = REDUCTIONS[name]
    a = np.asarray(a)
    if a.ndim:
        x = gc.placeholder(a.dtype, a.shape if placeholder_shape is None else placeholder_shape)
        feeds = {x: a}
    else:  # 0-d feeds come back 1-d from the session's feed conversion (np.ascontiguousarray)
        x, feeds = gc.constant(a), {}
    y = fn(x, axis=axis, keepdims=keepdims)
    with _quiet():
        want = np.asarray(ref(a, axis=axis, keepdims=keepdims))
    got = _run(y, feeds)
    assert got.dtype == want.dtype == y.dtype, (got.dtype, want.dtype, y.dtype)
    assert got.shape == want.shape
    assert len(y.shape) == want.ndim
    assert all(d is None or d == w for d, w in zip(y.shape, want.shape))
    np.testing.assert_allclose(got, want, **_tol(a.dtype))


CASES = [(name, dt, axis, kd) for name, (_, _, dtypes, axes) in REDUCTIONS.items()
         for dt in dtypes for axis in axes for kd in (False, True)]


@pytest.mark.parametrize("name,dtype,axis,keepdims", CASES)
def test_matches_numpy(name, dtype, axis, keepdims):
    _check(name, _data(SHAPE, dtype), axis, keepdims)


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@pytest.mark.parametrize("shape,axis", [((3, 1, 5), 1), ((1,), 0), ((1, 1), None), ((), None), ((4, 1), -1)])
def test_size_one_dims_and_scalars(name, shape, axis):
    _check(name, _data(shape, np.float64), axis, False)
    _check(name, _data(shape, np.float64), axis, True)


@pytest.mark.parametrize("name", sorted(set(REDUCTIONS) - EMPTY_RAISES))
@pytest.mark.parametrize("axis", [None, 0, 1])
def test_empty_axes_follow_numpy(name, axis):
    _check(name, np.zeros((0, 3)), axis, False)


@pytest.mark.parametrize("name", sorted(EMPTY_RAISES))
def test_empty_reduced_axis_is_a_build_time_error(name):
    fn = REDUCTIONS[name][0]
    x = gc.placeholder(gc.float32, (0, 3))
    with pytest.raises(gc.ShapeError, match=name):
        fn(x, axis=0)
    with pytest.raises(gc.ShapeError):
        fn(x)
    _check(name, np.zeros((0, 3)), 1, False)  # reducing a non-empty axis of an empty array is fine


def test_sum_and_prod_of_empty_are_identities():
    x = gc.placeholder(gc.float32, (2, 0))
    s, p = _run([gc.sum(x, 1), gc.prod(x, 1)], {x: np.zeros((2, 0), np.float32)})
    np.testing.assert_array_equal(s, [0, 0])
    np.testing.assert_array_equal(p, [1, 1])


@pytest.mark.parametrize("name", ["sum", "prod", "mean", "var", "std", "max", "argmax"])
def test_bool_inputs(name):
    _check(name, RNG.integers(0, 2, size=(4, 3)).astype(bool), 0, False)


def test_ints_accumulate_as_numpy():
    x = gc.placeholder(gc.int32, (3,))
    assert gc.sum(x).dtype == gc.prod(x).dtype == np.int64
    assert gc.mean(x).dtype == gc.var(x).dtype == gc.std(x).dtype == np.float64
    assert gc.max(x).dtype == np.int32
    assert gc.argmax(x).dtype == gc.argmin(x).dtype == np.int64
    big = np.array([2**31 - 1, 2**31 - 1, 2], np.int32)
    assert _run(gc.sum(x), {x: big}) == np.sum(big) == 2**32


def test_ties_in_max_and_argmax_pick_first():
    a = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    x = gc.constant(a)
    got = _run([gc.max(x, 1), gc.argmax(x, 1), gc.argmin(x, 1), gc.argmax(x)])
    assert got[0].tolist() == [3.0, 2.0]
    assert got[1].tolist() == [1, 0] and got[2].tolist() == [0, 0] and got[3] == 1


def test_nan_propagates_through_max_and_argmax():
    a = np.array([1.0, np.nan, 5.0])
    x = gc.constant(a)
    m, i = _run([gc.max(x), gc.argmax(x)])
    assert np.isnan(m) and i == np.argmax(a) == 1


def test_argmax_takes_one_axis_only():
    x = gc.placeholder(gc.float32, (2, 3))
    with pytest.raises(gc.ShapeError):
        gc.argmax(x, axis=(0, 1))


@pytest.mark.parametrize("fn", [gc.sum, gc.max, gc.mean, gc.logsumexp])
def test_bad_axes_raise_shape_errors(fn):
    x = gc.placeholder(gc.float32, (2, 3))
    with pytest.raises(gc.ShapeError, match="out of range"):
        fn(x, axis=2)
    with pytest.raises(gc.ShapeError, match="repeated"):
        fn(x, axis=(1, -1))


def test_canonical_axes_intern_to_one_node():
    x = gc.placeholder(gc.float32, (2, 3, 4))
    assert gc.sum(x, (-1, 0)) is gc.sum(x, (0, 2))
    assert gc.max(x, -1, keepdims=1) is gc.max(x, 2, keepdims=True)


def test_methods():
    a = _data((2, 3), np.float64)
    x = gc.constant(a)
    got = _run([x.sum(0), x.mean(axis=1, keepdims=True), x.max(), x.min(1)])
    for g, w in zip(got, [a.sum(0), a.mean(1, keepdims=True), a.max(), a.min(1)]):
        np.testing.assert_allclose(g, w)


# --- var/std with ddof -------------------------------------------------------------------------

@pytest.mark.parametrize("fn,ref", [(gc.var, np.var), (gc.std, np.std)])
@pytest.mark.parametrize("ddof", [1, 2, 5])
def test_ddof(fn, ref, ddof):
    a = _data((4, 3), np.float64)
    x = gc.placeholder(gc.float64, (None, 3))
    with _quiet():
        want = ref(a, axis=0, ddof=ddof)
    np.testing.assert_allclose(_run(fn(x, 0, ddof=ddof), {x: a}), want)
    y = gc.constant(a)
    np.testing.assert_allclose(_run(fn(y, 0, ddof=ddof)), want)


def test_var_is_accurate_with_a_large_offset():
    a = 1e4 + RNG.standard_normal(1000)
    np.testing.assert_allclose(_run(gc.var(gc.constant(a))), np.var(a), rtol=1e-10)


# --- logsumexp ---------------------------------------------------------------------------------

LSE_ROWS = np.array([
    [-np.inf, -np.inf, -np.inf],
    [np.inf, 1.0, -np.inf],
    [np.inf, np.inf, 0.0],
    [-np.inf, 2.0, 3.0],
    [1e4, 1e4, -1e4],
    [-1e4, -1e4 + 1, -1e4],
    [np.nan, 0.0, 1.0],
])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logsumexp_special_values_match_scipy(dtype):
    a = LSE_ROWS.astype(dtype)
    x = gc.placeholder(dtype, (None, 3))
    got = _run([gc.logsumexp(x, 1), gc.logsumexp(x, -1, keepdims=True)], {x: a})
    with _quiet():
        want = special.logsumexp(a, axis=1)
    np.testing.assert_allclose(got[0], want, rtol=1e-6)
    np.testing.assert_allclose(got[1], want[:, None], rtol=1e-6)
    assert got[0].dtype == dtype


def test_logsumexp_of_huge_values_is_finite():
    a = np.array([[1e4, 1e4 - 1], [-1e4, -1e4 + 2]], np.float32)
    got = _run(gc.logsumexp(gc.constant(a), axis=1))
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, special.logsumexp(a.astype(np.float64), axis=1), rtol=1e-6)


# --- size_of and None dims ---------------------------------------------------------------------

def test_size_of_reads_the_fed_shape():
    x = gc.placeholder(gc.float32, (None, 4, None))
    n_all, n_0, n_02 = gc.size_of(x), gc.size_of(x, 0, gc.float32), gc.size_of(x, (0, -1))
    assert n_all.shape == () and n_0.dtype == np.float32 and n_all.dtype == np.int64
    got = _run([n_all, n_0, n_02], {x: np.zeros((3, 4, 2), np.float32)})
    assert got == [24, 3.0, 6] and got[1].dtype == np.float32
    assert _run(n_0, {x: np.zeros((0, 4, 2), np.float32)}) == 0


def test_size_of_gather_form_uses_the_bound_shape():
    x = gc.placeholder(gc.float32, (3, 5, 2))
    node = gc.size_of(x, (0, 1), gc.float64)
    value = get_op("size_of").gather(NumpyEmitter(), (), None, node)
    assert value == 15 and np.asarray(value).dtype == np.float64


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@pytest.mark.parametrize("axis", [0, (0, 1), None])
def test_reductions_over_a_none_batch_dim(name, axis):
    if name.startswith("arg") and isinstance(axis, tuple):
        return
    _check(name, _data((6, 3), np.float32), axis, False, placeholder_shape=(None, 3))
    _check(name, _data((6, 3), np.float32), axis, True, placeholder_shape=(None, None))


def test_mean_over_a_none_dim_uses_the_run_time_count():
    x = gc.placeholder(gc.float64, (None,))
    m = gc.mean(x)
    for n in (1, 2, 7):
        a = RNG.standard_normal(n)
        np.testing.assert_allclose(_run(m, {x: a}), a.mean())


# --- VJP/JVP rules, called directly (exact values, no finite differences) -----------------------

def _rule_values(name, a, axis, keepdims, g, t):
    x = gc.constant(a)
    op = get_op(name)
    out = getattr(gc, name)(x, axis, keepdims)
    attrs = dict(out.attrs)
    (vjp,) = op.vjp(gc.constant(g), out, x, **attrs)
    jvp = op.jvp((gc.constant(t),), out, x, **attrs)
    return _run([gc.broadcast_to(vjp, a.shape), jvp])


def test_max_min_share_ties_evenly():
    a = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [5.0, 1.0, 1.0, 1.0]])
    g = np.array([6.0, 8.0, 1.0])
    t = np.arange(12.0).reshape(3, 4)
    vjp, jvp = _rule_values("max", a, 1, False, g, t)
    np.testing.assert_allclose(vjp, [[0, 3, 3, 0], [2, 2, 2, 2], [1, 0, 0, 0]])
    np.testing.assert_allclose(jvp, [1.5, 5.5, 8.0])
    vjp, jvp = _rule_values("min", a, 1, True, g[:, None], t)
    np.testing.assert_allclose(vjp, [[0, 0, 0, 6], [2, 2, 2, 2], [0, 1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(jvp, [[3.0], [5.5], [10.0]])


def test_prod_rule_with_zeros():
    a = np.array([[2.0, 3.0, 4.0], [2.0, 0.0, 5.0], [0.0, 0.0, 7.0], [0.0, 0.0, 0.0]])
    g = np.array([1.0, 2.0, 3.0, 4.0])
    t = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    vjp, jvp = _rule_values("prod", a, -1, False, g, t)
    np.testing.assert_array_equal(vjp, [[12, 8, 6], [0, 20, 0], [0, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(jvp, [12, 10, 0, 0])


def test_prod_rule_matches_the_product_of_the_others():
    a = RNG.standard_normal((3, 4))
    g = np.ones(())
    vjp, jvp = _rule_values("prod", a, None, False, g, np.ones_like(a))
    others = np.array([np.prod(np.delete(a.ravel(), i)) for i in range(a.size)]).reshape(a.shape)
    np.testing.assert_allclose(vjp, others, rtol=1e-12)
    np.testing.assert_allclose(jvp, others.sum(), rtol=1e-12)


def test_arg_reductions_and_size_of_have_no_gradient():
    for name in ("argmax", "argmin", "size_of"):
        assert not get_op(name).differentiable


def test_sum_gradient_when_the_cotangent_knows_a_none_dim():
    x = gc.placeholder(gc.float64, (None, 3))
    y = gc.sum(x, axis=1, keepdims=True) * gc.constant(np.array([[1.0], [2.0]]))  # static batch of 2
    (g,) = gc.gradients(y, [x])
    np.testing.assert_array_equal(_run(g, {x: np.ones((2, 3))}), [[1, 1, 1], [2, 2, 2]])


@pytest.mark.parametrize("row", [[2.0, 0.0, 5.0, 3.0], [0.0, 0.0, 7.0, 2.0], [0.0, 1.5, 0.0, 0.0],
                                 [1.0, 2.0, 3.0, 4.0]])
def test_prod_hessian_is_exact_at_zeros(row):
    """d2 prod / dx_i dx_j is the product of the elements other than i and j (0 on the diagonal)."""
    x = gc.placeholder(gc.float64, (4,))
    h = gc.Session(backend="reference").run(gc.hessian(gc.prod(x), x), {x: row})
    want = np.array([[0.0 if i == j else np.prod(np.delete(row, [i, j])) for j in range(4)] for i in range(4)])
    np.testing.assert_array_equal(h, want)
