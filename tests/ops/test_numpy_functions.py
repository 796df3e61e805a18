"""numpy's shape, index, contraction, scan and sorting functions (composites of primitives).

One table, keyed by the public name, holds cases with a numpy oracle. Every name in the
``__all__`` of the composite modules must have an entry (a function added without one
fails). Each case runs on both backends against numpy (the LLVM backend in one compiled
program per module); float64 cases check VJPs and JVPs against central finite differences
on the reference backend, and the LLVM backend's VJPs and JVPs against the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

import graphc as gc
from graphc.ir.traverse import toposort
from graphc.ops import contract, rearrange, scan, selection
from graphc.testing import check_grads

F64, I32 = np.float64, np.int32
MODULES = {m.__name__.rsplit(".", 1)[1]: m for m in (rearrange, contract, scan, selection)}


@dataclass
class Case:
    fn: Callable  # graphc, on placeholders
    oracle: Callable  # numpy, on arrays
    args: tuple  # per input: a shape (random data) or a fixed float array
    dtypes: tuple = (F64,)
    grad: bool = True  # check derivatives (float64)


def _join(parts):
    """One tensor (or array) from a function's list/tuple result, each part weighted differently."""
    if isinstance(parts, (gc.Tensor, np.ndarray)):
        return parts
    lib = gc if isinstance(parts[0], gc.Tensor) else np
    return lib.concatenate([lib.ravel(p) * (k + 1) for k, p in enumerate(parts)])


def both(name_np, *args, **kwargs):
    """A case calling gc.<name> and np.<name> the same way."""
    return Case(lambda *xs: getattr(gc, name_np)(*xs, **kwargs), lambda *xs: getattr(np, name_np)(*xs, **kwargs),
                *args)


def ein(spec, *shapes, dtypes=(F64,), **kwargs):
    """An einsum case on operands of the given shapes."""
    return Case(lambda *xs: gc.einsum(spec, *xs, **kwargs), lambda *xs: np.einsum(spec, *xs), shapes, dtypes)


IDX = np.array([[0, 3, -1], [2, 2, 1]])
CUMPROD_ZEROS = np.array([[1.5, 0.0, -2.0, 0.7], [0.0, 0.0, 3.0, 1.1], [0.5, 2.0, -1.0, 0.0]])
TIES = np.array([[0.3, -1.0, 0.3, 2.0, -1.0, 0.3]])
SPECIALS = np.array([3.0, np.nan, 1.0, -np.inf, 1.0, np.nan, 0.0, -0.0, np.inf, 1.0, -2.0])

CASES: dict[str, list[Case]] = {
    # rearrange
    "ravel": [both("ravel", ((2, 3, 2),), (F64, I32))],
    "moveaxis": [both("moveaxis", ((2, 3, 4),), (F64, I32), source=0, destination=-1),
                 both("moveaxis", ((2, 3, 4),), source=[0, 1], destination=[-1, 0])],
    "swapaxes": [both("swapaxes", ((2, 3, 4),), (F64, I32), axis1=0, axis2=2)],
    "flip": [both("flip", ((2, 3, 4),), (F64, I32)), both("flip", ((2, 3, 4),), axis=(0, -1)),
             both("flip", ((3,),), axis=0)],
    "fliplr": [both("fliplr", ((2, 3, 4),), (F64, I32))],
    "flipud": [both("flipud", ((3, 2),), (F64, I32))],
    "rot90": [both("rot90", ((2, 3),), (F64, I32)), both("rot90", ((2, 3, 4),), k=2, axes=(2, 1)),
              both("rot90", ((2, 3, 4),), k=-1, axes=(0, 2)), both("rot90", ((2, 3),), k=4)],
    "roll": [both("roll", ((2, 3, 4),), (F64, I32), shift=5), both("roll", ((2, 3, 4),), shift=(1, -2), axis=(0, 2)),
             both("roll", ((2, 3, 4),), shift=2, axis=(0, 1, 1)), both("roll", ((4,),), shift=-1)],
    "repeat": [both("repeat", ((2, 3),), (F64, I32), repeats=2), both("repeat", ((2, 3),), repeats=3, axis=1),
               both("repeat", ((2, 3),), repeats=[1, 0, 2], axis=-1), both("repeat", ((),), repeats=3)],
    "tile": [both("tile", ((2, 3),), (F64, I32), reps=2), both("tile", ((2, 3),), reps=(2, 1, 2)),
             both("tile", ((2, 1, 3),), reps=(3, 1))],
    "atleast_1d": [both("atleast_1d", ((),), (F64, I32)), both("atleast_1d", ((2, 3),)),
                   both("atleast_1d", ((), (3,)))],
    "atleast_2d": [both("atleast_2d", ((),)), both("atleast_2d", ((3,),), (F64, I32)),
                   both("atleast_2d", ((1, 2, 3),))],
    "atleast_3d": [both("atleast_3d", ((),)), both("atleast_3d", ((3,),)), both("atleast_3d", ((2, 3),), (F64, I32)),
                   both("atleast_3d", ((2, 3), (4,)))],
    "hstack": [Case(lambda a, b: gc.hstack([a, b]), lambda a, b: np.hstack([a, b]), ((2, 3), (2, 1)), (F64, I32)),
               Case(lambda a, b: gc.hstack((a, b)), lambda a, b: np.hstack((a, b)), ((3,), ()))],
    "vstack": [Case(lambda a, b: gc.vstack([a, b]), lambda a, b: np.vstack([a, b]), ((3,), (2, 3)), (F64, I32))],
    "dstack": [Case(lambda a, b: gc.dstack([a, b]), lambda a, b: np.dstack([a, b]), ((3,), (1, 3, 2)))],
    "column_stack": [Case(lambda a, b, c: gc.column_stack([a, b, c]), lambda a, b, c: np.column_stack([a, b, c]),
                          ((3,), (3, 2), (3,)), (F64, I32))],
    "array_split": [both("array_split", ((7, 2),), (F64, I32), indices_or_sections=3),
                    both("array_split", ((2, 5),), indices_or_sections=[1, -1, 9], axis=1),
                    both("array_split", ((3,),), indices_or_sections=5)],
    "hsplit": [both("hsplit", ((2, 4),), (F64, I32), indices_or_sections=2), both("hsplit", ((6,),),
                                                                                   indices_or_sections=[2])],
    "vsplit": [both("vsplit", ((4, 3),), (F64, I32), indices_or_sections=[1, 3])],
    "dsplit": [both("dsplit", ((1, 2, 4),), indices_or_sections=2)],
    "linspace": [Case(lambda a, b: gc.linspace(a, b, 5), lambda a, b: np.linspace(a, b, 5), ((), ())),
                 Case(lambda a, b: gc.linspace(a, b, 4, endpoint=False, axis=-1),
                      lambda a, b: np.linspace(a, b, 4, endpoint=False, axis=-1), ((3,), (2, 1))),
                 Case(lambda a, b: gc.linspace(a, b, 3, retstep=True), lambda a, b: np.linspace(a, b, 3, retstep=True),
                      ((2,), ())),
                 Case(lambda a, b: gc.linspace(a, b, 1), lambda a, b: np.linspace(a, b, 1), ((), ()))],
    # contract
    "diagonal": [both("diagonal", ((3, 4),), (F64, I32)), both("diagonal", ((3, 4),), offset=1),
                 both("diagonal", ((3, 4),), offset=-2), both("diagonal", ((3, 4),), offset=7),
                 both("diagonal", ((2, 3, 4),), offset=1, axis1=-1, axis2=1)],
    "diag": [both("diag", ((4,),), (F64, I32)), both("diag", ((3,),), k=2), both("diag", ((3,),), k=-1),
             both("diag", ((3, 4),), k=1)],
    "trace": [both("trace", ((3, 4),), (F64, I32)), both("trace", ((2, 3, 4),), offset=-1, axis1=1, axis2=2)],
    "tril": [both("tril", ((3, 4),), (F64, I32)), both("tril", ((2, 3, 4),), k=-1), both("tril", ((3,),), k=1)],
    "triu": [both("triu", ((3, 4),), (F64, I32)), both("triu", ((2, 4, 3),), k=1)],
    "outer": [both("outer", ((3,), (2, 2)), (F64, I32))],
    "inner": [both("inner", ((3, 4), (2, 5, 4)), (F64, I32)), both("inner", ((3,), (3,))),
              both("inner", ((), (2, 3)))],
    "kron": [both("kron", ((2, 3), (2, 2)), (F64, I32)), both("kron", ((3,), (2, 1, 2))), both("kron", ((), (2,)))],
    "tensordot": [both("tensordot", ((2, 3, 4), (4, 5)), (F64, I32), axes=1),
                  both("tensordot", ((2, 3, 4), (2, 4, 4)), axes=([0, 2], [0, 1])),
                  both("tensordot", ((2, 3), (4,)), axes=0), both("tensordot", ((3, 2), (3, 2)), (F64, I32)),
                  both("tensordot", ((2, 0), (0, 3)), axes=1)],
    "einsum": [ein("ij,jk,k->i", (3, 4), (4, 5), (5,), dtypes=(F64, I32)), ein("ii", (4, 4)),
               ein("ii->i", (4, 4)), ein("bii->b", (2, 3, 3)), ein("ij->ji", (2, 3)), ein("i,j", (3,), (2,)),
               ein("bij,bjk->bik", (2, 3, 4), (2, 4, 2)), ein("...ij,...jk", (2, 3, 4), (4, 2)),
               ein("...i,i->...", (2, 3, 4), (4,)), ein("bij,bj->bi", (1, 3, 4), (2, 4)),
               ein("abc,cd,bd->a", (2, 3, 4), (4, 4), (3, 4)), ein("iij,jk->ik", (3, 3, 2), (2, 1)),
               Case(lambda a: gc.einsum("ij,ij->", a, a), lambda a: np.einsum("ij,ij->", a, a), ((3, 2),)),
               ein("ab,bc,cd,de->ae", (2, 3), (3, 4), (4, 2), (2, 3), optimize=False),
               ein("ij,jk,kl->il", (2, 3), (3, 4), (4, 2), optimize="greedy")],
    # scan
    "cumsum": [both("cumsum", ((2, 3, 4),), (F64, I32)), both("cumsum", ((2, 5),), axis=1),
               both("cumsum", ((9, 2),), axis=0), both("cumsum", ((1,),), (F64, I32), axis=0),
               both("cumsum", ((0, 3),), axis=0)],
    "cumprod": [both("cumprod", ((2, 3, 2),), (F64, I32)), both("cumprod", ((3, 5),), axis=-1),
                both("cumprod", (CUMPROD_ZEROS,), axis=1), both("cumprod", (CUMPROD_ZEROS,), axis=0)],
    "diff": [both("diff", ((3, 5),), (F64, I32)), both("diff", ((4, 3),), n=2, axis=0),
             both("diff", ((3, 4),), n=0), both("diff", ((3, 5),), n=7),
             Case(lambda a, b: gc.diff(a, prepend=0.5, append=b), lambda a, b: np.diff(a, prepend=0.5, append=b),
                  ((2, 3), (2, 2)))],
    # selection
    "sort": [both("sort", ((3, 5),), (F64, I32)), both("sort", ((4, 3),), axis=0), both("sort", ((2, 3),), axis=None),
             Case(gc.sort, np.sort, (TIES,), grad=False), both("sort", ((0, 3),))],
    "argsort": [Case(gc.argsort, lambda a: np.argsort(a, kind="stable"), ((3, 5),), (F64, I32), grad=False),
                Case(lambda a: gc.argsort(a, axis=0), lambda a: np.argsort(a, axis=0, kind="stable"), (TIES.T,),
                     grad=False),
                Case(lambda a: gc.argsort(a, axis=None), lambda a: np.argsort(a, axis=None, kind="stable"), ((2, 3),),
                     grad=False)],
    "select": [Case(lambda a, b: gc.select([a > 0, b < 0], [a, b * 2], 0.5),
                    lambda a, b: np.select([a > 0, b < 0], [a, b * 2], 0.5), ((3, 4), (4,))),
               Case(lambda a: gc.select([a > 1], [a]), lambda a: np.select([a > 1], [a]), ((5,),), (F64, I32))],
    # a primitive, here for its public function's forms
    "take_along_axis": [Case(lambda a: gc.take_along_axis(a, IDX, axis=1), lambda a: np.take_along_axis(a, IDX, 1),
                             ((2, 4),), (F64, I32)),
                        Case(lambda a: gc.take_along_axis(a, IDX[:1], 0), lambda a: np.take_along_axis(a, IDX[:1], 0),
                             ((4, 3),)),
                        Case(lambda a: gc.take_along_axis(a, IDX[0], None),
                             lambda a: np.take_along_axis(a, IDX[0], None), ((2, 2),))],
    # Tensor methods
    "Tensor.ravel": [Case(lambda a: a.ravel(), np.ravel, ((2, 3),), (F64, I32))],
    "Tensor.flatten": [Case(lambda a: a.flatten(), lambda a: a.flatten(), ((2, 1, 3),), (F64, I32))],
    "Tensor.squeeze": [Case(lambda a: a.squeeze(), lambda a: a.squeeze(), ((1, 3, 1),)),
                       Case(lambda a: a.squeeze(-1), lambda a: a.squeeze(-1), ((1, 3, 1),))],
    "Tensor.cumsum": [Case(lambda a: a.cumsum(1), lambda a: a.cumsum(1), ((2, 3),))],
    "Tensor.trace": [Case(lambda a: a.trace(), lambda a: a.trace(), ((3, 3),))],
}

NOT_TENSOR_VALUED = {"einsum_path": "returns a contraction plan; see test_einsum_path_*"}
RNG = np.random.default_rng(0)


def _inputs(case: Case, dtype, rng=RNG) -> list[np.ndarray]:
    out = []
    for a in case.args:
        if isinstance(a, tuple):
            out.append(rng.integers(-4, 5, a).astype(dtype) if np.dtype(dtype).kind == "i"
                       else rng.standard_normal(a).astype(dtype))
        else:
            out.append(np.asarray(a, dtype))
    return out


def _flat(result) -> list:
    return list(result) if isinstance(result, (list, tuple)) else [result]


def test_every_public_function_has_cases():
    public = {name for m in MODULES.values() for name in m.__all__}
    assert public - set(CASES) - set(NOT_TENSOR_VALUED) == set()
    assert public >= set(NOT_TENSOR_VALUED)


def _values(names: list[str]) -> tuple[gc.Graph, list, dict, list]:
    """A graph of every case (every dtype) of `names`: fetches, feeds and numpy's results."""
    g = gc.Graph()
    fetches, feeds, expected = [], {}, []
    with g.as_default():
        for name in names:
            for case in CASES[name]:
                for dtype in case.dtypes:
                    arrays = _inputs(case, dtype)
                    xs = [gc.placeholder(a.dtype, a.shape) for a in arrays]
                    feeds.update(zip(xs, arrays))
                    got, want = _flat(case.fn(*xs)), _flat(case.oracle(*arrays))
                    assert len(got) == len(want), name
                    fetches += got
                    expected += [np.asarray(w) for w in want]
    return g, fetches, feeds, expected


def _assert_numpy(got: list, expected: list, fetches: list) -> None:
    for a, want, t in zip(got, expected, fetches):
        assert a.shape == want.shape and a.dtype == want.dtype, (str(t), a.shape, a.dtype, want.shape, want.dtype)
        np.testing.assert_allclose(a, want, rtol=1e-12, atol=1e-12, err_msg=str(t))


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_numpy(name):
    g, fetches, feeds, expected = _values([name])
    _assert_numpy(gc.Session(g, backend="reference").run(fetches, feeds), expected, fetches)


GRAD_CASES = [(name, k) for name, cases in sorted(CASES.items()) for k, c in enumerate(cases) if c.grad]


@pytest.mark.parametrize("name,k", GRAD_CASES)
def test_derivatives_match_finite_differences(name, k):
    case = CASES[name][k]
    arrays = _inputs(case, F64, np.random.default_rng(k))
    check_grads(lambda *xs: _join(case.fn(*xs)), arrays, seed=k)


def _group(name: str) -> str:
    """The module a case belongs to (methods and primitives go with selection)."""
    return next((m for m, mod in MODULES.items() if name in mod.__all__), "selection")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_llvm_values_and_derivatives_match_reference(module):
    """Every case of the module's functions in one LLVM program: values against numpy (every dtype),
    float64 VJPs and JVPs against the reference backend."""
    names = [n for n in sorted(CASES) if _group(n) == module]
    g, values, feeds, expected = _values(names)
    rng = np.random.default_rng(1)
    fetches = []
    with g.as_default():
        for name in names:
            for case in CASES[name]:
                arrays = _inputs(case, F64, rng)
                xs = [gc.placeholder(F64, a.shape) for a in arrays]
                feeds.update(zip(xs, arrays))
                out = _join(case.fn(*xs))
                fetches.append(out)
                if case.grad:
                    u = gc.constant(rng.standard_normal(out.shape), dtype=F64)
                    fetches += gc.gradients(out, xs, grad_ys=u, unconnected="zero")
                    fetches += gc.jvp(out, xs, [gc.constant(rng.standard_normal(a.shape), dtype=F64) for a in arrays])
    want = gc.Session(g, backend="reference").run(fetches, feeds)
    got = gc.Session(g, backend="llvm").run(values + fetches, feeds)
    _assert_numpy(got[:len(values)], expected, values)
    for a, b, t in zip(got[len(values):], want, fetches):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=str(t))


# --- contraction order and lowering ----------------------------------------------------------

def test_einsum_path_picks_the_cheap_order():
    a, b, v = gc.placeholder(F64, (10, 300)), gc.placeholder(F64, (300, 300)), gc.placeholder(F64, (300,))
    path, report = gc.einsum_path("ij,jk,k->i", a, b, v)
    assert path == ["einsum_path", (1, 2), (0, 1)]  # B v first: 90k + 3k multiply-adds, not 900k + 3k
    assert "Pairwise contractions: 93000 multiply-adds" in report
    numpy_path, _ = np.einsum_path("ij,jk,k->i", np.ones((10, 300)), np.ones((300, 300)), np.ones(300),
                                   optimize="optimal")
    assert path == numpy_path
    assert gc.einsum_path("ij,jk,k->i", a, b, v, optimize=False)[0] == ["einsum_path", (0, 1), (0, 1)]


def test_einsum_greedy_and_optimal_agree_on_a_chain():
    shapes = [(2, 30), (30, 3), (3, 40), (40, 2)]
    xs = [gc.placeholder(F64, s) for s in shapes]
    optimal = gc.einsum_path("ab,bc,cd,de->ae", *xs)[0]
    greedy = gc.einsum_path("ab,bc,cd,de->ae", *xs, optimize="greedy")[0]
    numpy_path = np.einsum_path("ab,bc,cd,de->ae", *(np.ones(s) for s in shapes), optimize="optimal")[0]
    assert optimal == numpy_path
    assert len(greedy) == 4


def test_einsum_lowers_contractions_to_matmul():
    a, b, c = gc.placeholder(F64, (3, 4)), gc.placeholder(F64, (4, 5)), gc.placeholder(F64, (5, 2))
    ops = [n.op for n in toposort([gc.einsum("ij,jk,kl->il", a, b, c)])]
    assert ops.count("matmul") == 2
    assert "matmul" in {n.op for n in toposort([gc.tensordot(a, b, 1)])}


def test_einsum_follows_an_explicit_path():
    xs = [gc.placeholder(F64, s) for s in ((2, 3), (3, 4), (4, 5))]
    arrays = [RNG.standard_normal(x.shape) for x in xs]
    out = gc.einsum("ij,jk,kl->il", *xs, optimize=["einsum_path", (1, 2), (0, 1)])
    np.testing.assert_allclose(gc.Session().run(out, dict(zip(xs, arrays))), np.linalg.multi_dot(arrays))


@pytest.mark.parametrize("seed", range(6))
def test_random_einsum_matches_numpy(seed):
    """Random subscripts over 1-3 operands with shared, summed, repeated and broadcast labels."""
    rng = np.random.default_rng(seed)
    size = {c: int(rng.integers(1, 4)) for c in "abcde"}
    subs = ["".join(rng.choice(list("abcde"), int(rng.integers(1, 4)))) for _ in range(int(rng.integers(1, 4)))]
    present = sorted(set("".join(subs)))
    out = "".join(rng.permutation([c for c in present if rng.random() < 0.5]))
    spec = ",".join(subs) + "->" + out
    arrays = [rng.standard_normal([size[c] for c in s]) for s in subs]
    xs = [gc.placeholder(F64, a.shape) for a in arrays]
    got = gc.Session().run(gc.einsum(spec, *xs), dict(zip(xs, arrays)))
    np.testing.assert_allclose(got, np.einsum(spec, *arrays), rtol=1e-12, atol=1e-12, err_msg=spec)


# --- gradient conventions ---------------------------------------------------------------------

def test_sort_gradient_follows_the_stable_permutation_at_ties():
    x = gc.placeholder(F64, (6,))
    w = np.arange(1.0, 7.0)
    (g,) = gc.gradients(gc.sum(gc.sort(x) * w), [x])
    values = TIES[0]
    order = np.argsort(values, kind="stable")
    want = np.empty(6)
    want[order] = w
    for backend in ("reference", "llvm"):
        np.testing.assert_array_equal(gc.Session(backend=backend).run(g, {x: values}), want)


def test_cumprod_gradient_is_exact_at_zeros():
    x = gc.placeholder(F64, (4,))
    values = np.array([2.0, 0.0, 3.0, 0.0])
    (g,) = gc.gradients(gc.sum(gc.cumprod(x)), [x])
    # d/dx_k sum_i prod_{j<=i} x_j = sum_{i>=k} prod_{j<=i, j!=k} x_j
    want = [sum(np.prod(np.delete(values[:i + 1], k)) for i in range(k, 4)) for k in range(4)]
    for backend in ("reference", "llvm"):
        np.testing.assert_allclose(gc.Session(backend=backend).run(g, {x: values}), want)


def test_argsort_puts_nan_last_and_keeps_ties_in_order():
    values = np.array([3.0, np.nan, 1.0, -np.inf, 1.0, np.nan, 0.0, -0.0, np.inf])
    x = gc.placeholder(F64, values.shape)
    for backend in ("reference", "llvm"):
        idx, srt = gc.Session(backend=backend).run([gc.argsort(x), gc.sort(x)], {x: values})
        np.testing.assert_array_equal(idx, np.argsort(values, kind="stable"))
        np.testing.assert_array_equal(srt, np.sort(values))


@pytest.mark.parametrize("backend", ["reference", "llvm"])
def test_bitonic_network_matches_numpy(backend, monkeypatch):
    """The network that sorts lines longer than RANK_SORT_MAX, on short lines (NaN, infs, signed zeros, ties)."""
    monkeypatch.setattr(selection, "RANK_SORT_MAX", 4)
    ints = RNG.integers(-3, 3, (13, 2)).astype(I32)
    bools = RNG.random(9) < 0.5
    x, i, b = gc.placeholder(F64, (2, 11)), gc.placeholder(I32, ints.shape), gc.placeholder(np.bool_, bools.shape)
    floats = np.stack([SPECIALS, RNG.standard_normal(11)])
    got = gc.Session(backend=backend).run([gc.argsort(x), gc.sort(x), gc.argsort(i, 0), gc.sort(i, 0), gc.argsort(b)],
                                          {x: floats, i: ints, b: bools})
    want = [np.argsort(floats, kind="stable"), np.sort(floats), np.argsort(ints, 0, kind="stable"), np.sort(ints, 0),
            np.argsort(bools, kind="stable")]
    for g, w in zip(got, want):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)
    check_grads(lambda t: gc.sort(t, 0), [RNG.standard_normal((9, 2))], order=2 if backend == "reference" else 1,
                backend=backend)


def test_long_lines_sort_without_quadratic_intermediates():
    """Above RANK_SORT_MAX, sort and its gradients build no node with n*n elements (bitonic network, permute)."""
    n = selection.RANK_SORT_MAX + 1
    x = gc.placeholder(F64, (2, n))
    y = gc.sort(x)
    (g,) = gc.gradients(gc.sum(y * y), [x])
    (t,) = gc.jvp(y, [x], [gc.constant(np.ones((2, n)))])
    assert max(int(np.prod(node.shape)) for node in toposort([g, t])) < n * n
    small = gc.sort(gc.placeholder(F64, (n - 1,)))
    assert max(int(np.prod(node.shape)) for node in toposort([small])) == (n - 1) ** 2  # rank counting


# --- errors name the function, the shapes and the user's line ----------------------------------

@pytest.mark.parametrize("build,match", [
    (lambda x: gc.moveaxis(x, 0, 5), "moveaxis destination: axis 5 is out of bounds for a tensor of rank 2"),
    (lambda x: gc.moveaxis(x, (0, 1), 0), "moveaxis: `source` and `destination`"),
    (lambda x: gc.fliplr(x[0]), r"fliplr: input must be >= 2-d, got shape \(4,\)"),
    (lambda x: gc.rot90(x, axes=(0, 0)), "rot90: axes must be different"),
    (lambda x: gc.repeat(x, [1, 2], axis=1), "repeat: 2 repeats for an axis of size 4"),
    (lambda x: gc.repeat(x, -1), "repeat: repeats may not contain negative values"),
    (lambda x: gc.tile(x, (-1,)), "tile: reps must be non-negative"),
    (lambda x: gc.array_split(x, 0), "array_split: number of sections must be larger than 0"),
    (lambda x: gc.vsplit(x[0], 2), r"vsplit only works on tensors of 2 or more dimensions, got shape \(4,\)"),
    (lambda x: gc.diagonal(x[0]), r"diagonal needs a tensor of rank >= 2, got shape \(4,\)"),
    (lambda x: gc.diag(gc.reshape(x, (3, 2, 2))), r"diag: input must be 1- or 2-d, got shape \(3, 2, 2\)"),
    (lambda x: gc.tensordot(x, x, 1), r"tensordot: shape-mismatch for sum: \(3, 4\) axes \(1,\) against \(3, 4\)"),
    (lambda x: gc.einsum("ij,jk", x, x), "einsum: label j has sizes 4 and 3"),
    (lambda x: gc.einsum("ijk", x), r"einsum: subscript 'ijk' does not fit operand of shape \(3, 4\)"),
    (lambda x: gc.einsum("ij->ik", x), r"einsum: output label\(s\) \['k'\] appear in no input"),
    (lambda x: gc.einsum("i2", x), "einsum: invalid subscript"),
    (lambda x: gc.cumsum(x, 2), "cumsum: axis 2 is out of bounds for a tensor of rank 2"),
    (lambda x: gc.diff(x, -1), "diff: order must be non-negative but got -1"),
    (lambda x: gc.diff(x[0, 0]), "diff requires input that is at least one dimensional"),
    (lambda x: gc.diff(x, append=gc.placeholder(F64, (3, 4, 1))), "diff: its concatenate with operands"),
    (lambda x: gc.hstack([x, x[0]]), "hstack: its concatenate with operands"),
    (lambda x: gc.sort(x, order="f"), "sort: `order`"),
    (lambda x: gc.select([x], [x]), "select: invalid entry 0 in condlist: should be boolean, got float64"),
    (lambda x: gc.select([x > 0], []), "select: list of cases must be same length"),
    (lambda x: gc.linspace(x, x, -2), "linspace: number of samples, -2, must be non-negative"),
    (lambda x: gc.roll(x, 1.5, 0), "roll: shift must be an integer, got np.float64"),
    (lambda x: gc.rot90(x, 1.5), "rot90: k must be an integer, got 1.5"),
    (lambda x: gc.diff(x, 1.5), "diff: n must be an integer, got 1.5"),
    (lambda x: gc.diag(x[0], 0.5), "diag: k must be an integer"),
    (lambda x: gc.linspace(0.0, 1.0, x), "linspace: num must be an integer"),
    (lambda x: gc.array_split(x, 2.5), "array_split: indices_or_sections must be an int or a sequence of ints"),
    (lambda x: gc.einsum("ij,jk", x, x.T, optimize=["einsum_path", (0, 5)]), "einsum: path .* does not contract 2"),
])
def test_bad_input_raises_a_clear_error(build, match):
    x = gc.placeholder(F64, (3, 4))
    with pytest.raises(gc.GraphcError, match=match) as info:
        build(x)
    assert "test_numpy_functions.py" in str(info.value)


def test_unknown_dims_are_refused_where_sizes_are_needed():
    x = gc.placeholder(F64, (None, 3))
    with pytest.raises(gc.ShapeError, match=r"roll needs a known size on axis 0, got shape \(\?, 3\)"):
        gc.roll(x, 1, axis=0)
    with pytest.raises(gc.ShapeError, match="cumsum needs a known size on axis 0"):
        gc.cumsum(x, 0)
    with pytest.raises(gc.ShapeError, match=r"tril needs known sizes of the last 2 axes, got \(\?, 3\)"):
        gc.tril(x)
    y = gc.cumsum(x, 1) + gc.flip(x, 0)  # the known axis, and a flip of the unknown one, are fine
    value = np.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(gc.Session(backend="llvm").run(y, {x: value}), np.cumsum(value, 1) + value[::-1])


@pytest.mark.parametrize("backend", ["reference", "llvm"])
def test_unknown_leading_dims(backend, monkeypatch):
    """Functions that need only the sizes of the axes they work on accept unknown leading dims."""
    monkeypatch.setattr(selection, "RANK_SORT_MAX", 4)  # the bitonic network too
    x, z = gc.placeholder(F64, (None, 6)), gc.placeholder(F64, (None, 3, 4))
    a, c = RNG.standard_normal((2, 6)), RNG.standard_normal((2, 3, 4))
    outs = [gc.sort(x), gc.argsort(x), gc.cumprod(x, 1), gc.diff(x), gc.repeat(x, 2, 1), gc.tril(z),
            gc.diagonal(z, 1, 1, 2), gc.trace(z, axis1=1, axis2=2)]
    want = [np.sort(a), np.argsort(a, kind="stable"), np.cumprod(a, 1), np.diff(a), np.repeat(a, 2, 1), np.tril(c),
            np.diagonal(c, 1, 1, 2), np.trace(c, axis1=1, axis2=2)]
    grads = gc.gradients(gc.sum(outs[0] * outs[2]) + gc.sum(outs[-1] * outs[-1]), [x, z])
    got = gc.Session(backend=backend).run(outs + grads, {x: a, z: c})
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12)
    assert got[-2].shape == a.shape and got[-1].shape == c.shape
