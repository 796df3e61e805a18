"""Every registered op runs on the LLVM backend and matches the reference interpreter.

The table below is keyed by op name and the parametrization comes from the registry, so
an op added without an entry here fails instead of skipping. All cases of one op are
fetched together, so each op costs one compiled program.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from testkit import custom_exp

import graphc as gc
from graphc.ir.region import walk
from graphc.ops import shape as shp
from graphc.ops.random import run_counter
from graphc.ops.registry import all_ops

F32, F64, I32, I64, B = np.float32, np.float64, np.int32, np.int64, np.bool_
FLOATS = (F32, F64)
NUMERIC = (F32, F64, I32, I64)
UNARY_SHAPES = [(3, 4), (), (2, 1, 7), (0, 3), (33,)]
BINARY_SHAPES = [((3, 4), (3, 4)), ((3, 1), (4,)), ((), (2, 3)), ((2, 1, 3), (4, 1)), ((0, 3), (3,)), ((17,), ())]


def tolerance(dtype: np.dtype) -> float:
    return {np.dtype(F32): 1e-5, np.dtype(F64): 1e-12}.get(np.dtype(dtype), 0.0)


def assert_matches(got, want, label: str = "") -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, (label, got.shape, got.dtype, want.shape, want.dtype)
    tol = tolerance(want.dtype)
    if tol:
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol, equal_nan=True, err_msg=label)
    else:
        np.testing.assert_array_equal(got, want, err_msg=label)


def draw(rng: np.random.Generator, shape, dtype, domain: str = "any") -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype == B:
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        lo, hi = {"any": (-9, 10), "pos": (1, 10), "small": (0, 4)}.get(domain, (-9, 10))
        return rng.integers(lo, hi, shape).astype(dtype)
    if domain == "pos":
        return rng.uniform(0.1, 4.0, shape).astype(dtype)
    if domain == "unit":
        return rng.uniform(-0.95, 0.95, shape).astype(dtype)
    if domain == "halves":
        return (rng.integers(-8, 9, shape) / 2).astype(dtype)
    if domain == "special":
        base = rng.standard_normal(shape) * 3
        flat = base.reshape(-1)
        specials = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40]
        flat[:len(specials)] = specials[:flat.size]
        return base.astype(dtype)
    return (rng.standard_normal(shape) * 2).astype(dtype)


@dataclass
class Case:
    """build(*placeholders) -> tensor on inputs of `shapes` / `dtypes` drawn from `domains`."""

    build: Callable
    shapes: list
    dtypes: tuple = FLOATS
    domains: tuple | str = "any"
    fixed: list | None = None  # arrays used as-is instead of drawn inputs (per dtype: same for all)

    def inputs(self, rng, dtype):
        if self.fixed is not None:
            return [np.asarray(a) for a in self.fixed]
        doms = (self.domains,) * len(self.shapes) if isinstance(self.domains, str) else self.domains
        return [draw(rng, s, dtype, d) for s, d in zip(self.shapes, doms)]


def unary(fn, dtypes=FLOATS, domain="any", shapes=UNARY_SHAPES):
    return [Case(fn, [s], dtypes, domain) for s in shapes] + [Case(fn, [(11,)], dtypes, "special")] * (
        domain == "any" and all(np.dtype(d).kind == "f" for d in dtypes))


def binary(fn, dtypes=FLOATS, domains=("any", "any")):
    return [Case(fn, list(s), dtypes, domains) for s in BINARY_SHAPES]


def make(op, *inputs, **attrs):
    return inputs[0].graph.make(op, inputs, attrs)


def _size(a):
    """The matrix size; the linalg ops refuse unknown matrix dims, and so do these helpers."""
    if a.shape[-1] is None:
        raise gc.ShapeError(f"matrix dims of {a.shape} must be known when the graph is built")
    return a.shape[-1]


def _random_like(op, x):
    """The form with a tensor giving the shape (as unknown batch dims build it)."""
    return make(op, run_counter(x.graph), x, shape=(), dtype=x.dtype, key=(3, 4))


def _cond(a):
    """a + 4nI: well conditioned, so the two LAPACK builds agree to float32 rounding."""
    n = _size(a)
    return a + (4 * n * np.eye(n)).astype(a.dtype)


def _spd(x):
    """x xᵀ + nI: symmetric positive definite."""
    n = _size(x)
    return x @ shp.matrix_transpose(x) + (n * np.eye(n)).astype(x.dtype)


def _no_sign(w, v):
    return gc.concatenate([w[None, :], v * v], 0)


def _squares(u, s, vh):
    """Full SVD factors, sign-free (one extra column or row: unique up to sign)."""
    return gc.concatenate([gc.reshape(u * u, -1), gc.reshape(s, -1), gc.reshape(vh * vh, -1)], 0)


def _reassembled(u, s, vh):
    return gc.concatenate([u * u, (u * s[..., None, :]) @ vh], -1)


def _variable_read(x):
    v = gc.Variable(np.arange(12, dtype=x.dtype).reshape(3, 4))
    return v * x


def _assign_fetch(x):
    v = gc.Variable(np.zeros((3, 4), x.dtype))
    return gc.assign(v, x * 2)


def _group_fetch(x):
    v = gc.Variable(np.zeros((3, 4), x.dtype))
    return gc.group(gc.assign(v, x + 1), x)


def _one_hot_like(ind, x):
    attrs = {"on_value": 1, "off_value": 0, "wrap": True, "depth_axis": 1, "dtype": F64, "axis": 0}
    return ind.graph.make("one_hot_like", (ind, x), attrs)


LABELS = [np.array([[0, 2, -1], [1, 5, -4]], np.int32)]
INDEX = np.array([2, 0, -1, 2], np.int64)
PERM = np.array([[2, 0, 1, 1], [0, 2, 0, 2], [1, 1, 2, 0]])  # permutations of axis 0

CASES: dict[str, list[Case]] = {
    # sources, state and control
    "placeholder": [Case(lambda x: x, [(3, 4)], NUMERIC + (B,))],
    "constant": [Case(lambda x: x + gc.constant(np.arange(12, dtype=x.dtype).reshape(3, 4)), [(3, 4)], NUMERIC),
                 Case(lambda x: x * gc.constant(np.array(3, dtype=x.dtype)), [(3, 4)], NUMERIC)],
    "variable": [Case(_variable_read, [(3, 4)], NUMERIC), Case(_variable_read, [(4,)], FLOATS)],
    "assign": [Case(_assign_fetch, [(3, 4)], NUMERIC), Case(_assign_fetch, [(4,)], FLOATS)],
    "group": [Case(_group_fetch, [(3, 4)], FLOATS)],
    # elementwise arithmetic
    "add": binary(gc.add, NUMERIC + (B,)),
    "subtract": binary(gc.subtract, NUMERIC),
    "multiply": binary(gc.multiply, NUMERIC + (B,)),
    "divide": binary(gc.divide, FLOATS),
    "power": binary(gc.power, FLOATS, ("pos", "any")) + binary(gc.power, (I32, I64), ("any", "small"))
    + [Case(gc.power, [(9,), (9,)], FLOATS, ("any", "halves"))],
    "negative": unary(gc.negative, NUMERIC),
    "square": unary(gc.square, NUMERIC),
    "abs": unary(gc.abs, NUMERIC + (B,)),
    "sign": unary(gc.sign, NUMERIC),
    "maximum": binary(gc.maximum, NUMERIC + (B,)) + [Case(gc.maximum, [(11,), (11,)], FLOATS, "special")],
    "minimum": binary(gc.minimum, NUMERIC + (B,)) + [Case(gc.minimum, [(11,), (11,)], FLOATS, "special")],
    "clip": [Case(gc.clip, [(3, 4), (3, 1), (4,)], NUMERIC, ("any", "any", "pos"))],
    "where": [Case(lambda c, a, b: gc.where(c > 0, a, b), [(3, 4), (3, 1), (4,)], NUMERIC)],
    # float functions
    "exp": unary(gc.exp), "expm1": unary(gc.expm1), "log": unary(gc.log, domain="pos") + unary(gc.log)[-1:],
    "log1p": unary(gc.log1p, domain="pos") + unary(gc.log1p, domain="unit"),
    "sqrt": unary(gc.sqrt, domain="pos"), "rsqrt": unary(gc.rsqrt, domain="pos"),
    "sin": unary(gc.sin), "cos": unary(gc.cos), "tanh": unary(gc.tanh), "erf": unary(gc.erf),
    "sigmoid": unary(gc.sigmoid), "relu": unary(gc.relu, FLOATS + (I32,)), "softplus": unary(gc.softplus),
    "gelu": unary(gc.gelu) + unary(lambda x: gc.gelu(x, approximate=True), shapes=[(5, 7)]),
    "floor": unary(gc.floor), "ceil": unary(gc.ceil),
    "round": unary(gc.round, domain="halves") + unary(lambda x: gc.round(x, 2), shapes=[(9,)])
    + unary(lambda x: gc.round(x, -1), shapes=[(9,)]),
    "cast": [Case(lambda x, dt=dt: gc.cast(x, dt), [(3, 5)], NUMERIC + (B,)) for dt in (F32, F64, I32, I64, B)],
    "tan": unary(gc.tan), "arcsin": unary(gc.arcsin, domain="unit"), "arccos": unary(gc.arccos, domain="unit"),
    "arctan": unary(gc.arctan), "arctan2": binary(gc.arctan2) + [Case(gc.arctan2, [(11,), (11,)], FLOATS, "special")],
    "sinh": unary(gc.sinh), "cosh": unary(gc.cosh), "arcsinh": unary(gc.arcsinh),
    "arccosh": unary(lambda x: gc.arccosh(1 + x), domain="pos") + unary(gc.arccosh, shapes=[(11,)]),
    "arctanh": unary(gc.arctanh, domain="unit"), "exp2": unary(gc.exp2),
    "log2": unary(gc.log2, domain="pos") + unary(gc.log2)[-1:], "log10": unary(gc.log10, domain="pos"),
    "logaddexp": binary(gc.logaddexp) + [Case(gc.logaddexp, [(11,), (11,)], FLOATS, "special")],
    "logaddexp2": binary(gc.logaddexp2),
    "hypot": binary(gc.hypot) + [Case(gc.hypot, [(11,), (11,)], FLOATS, "special")],
    "reciprocal": unary(gc.reciprocal), "fabs": unary(gc.fabs),
    "mod": binary(gc.mod, NUMERIC, ("any", "pos")) + [Case(lambda a, b: a % b, [(11,), (11,)], FLOATS, "special")],
    "fmax": binary(gc.fmax, NUMERIC + (B,)) + [Case(gc.fmax, [(11,), (11,)], FLOATS, "special")],
    "fmin": binary(gc.fmin, NUMERIC + (B,)) + [Case(gc.fmin, [(11,), (11,)], FLOATS, "special")],
    "sinc": unary(gc.sinc) + unary(gc.sinc, domain="halves", shapes=[(9,)]),
    "deg2rad": unary(gc.deg2rad), "rad2deg": unary(gc.rad2deg),
    "nan_to_num": unary(gc.nan_to_num) + unary(lambda x: gc.nan_to_num(x, 1.0, 2.0, -3.0), shapes=[(11,)]),
    "heaviside": binary(gc.heaviside, FLOATS, ("halves", "any")),
    "erfc": unary(gc.special.erfc) + unary(lambda x: gc.special.erfc(x * 5), shapes=[(40,)]),
    "ndtr": unary(gc.special.ndtr), "log_ndtr": unary(gc.special.log_ndtr) + unary(lambda x: gc.special.log_ndtr(
        x * 15), shapes=[(40,)]),
    "erfinv": unary(gc.special.erfinv, domain="unit") + unary(gc.special.erfinv, shapes=[(11,)]),
    "gammaln": unary(gc.special.gammaln, domain="pos") + unary(gc.special.gammaln),
    "digamma": unary(gc.special.digamma, domain="pos") + unary(gc.special.digamma),
    "polygamma": unary(lambda x: gc.special.polygamma(1, x))
    + unary(lambda x: gc.special.polygamma(3, x), domain="pos"),
    "logit": unary(gc.special.logit, domain="unit"),
    "xlogy": binary(gc.special.xlogy, FLOATS, ("any", "pos")),
    "xlog1py": binary(gc.special.xlog1py, FLOATS, ("any", "unit")),
    "identity": unary(gc.identity, NUMERIC), "stop_gradient": unary(gc.stop_gradient, NUMERIC),
    # comparisons and logic
    "equal": binary(gc.equal, NUMERIC + (B,)) + [Case(gc.equal, [(11,), (11,)], FLOATS, "special")],
    "not_equal": binary(gc.not_equal, NUMERIC) + [Case(gc.not_equal, [(11,), (11,)], FLOATS, "special")],
    "less": binary(gc.less, NUMERIC + (B,)), "less_equal": binary(gc.less_equal, NUMERIC),
    "greater": binary(gc.greater, NUMERIC), "greater_equal": binary(gc.greater_equal, NUMERIC),
    "logical_and": binary(gc.logical_and, (B,)), "logical_or": binary(gc.logical_or, (B,)),
    "logical_not": unary(gc.logical_not, (B,)),
    # reductions
    "sum": [Case(lambda x, a=a, k=k: gc.sum(x, a, keepdims=k), [(5, 6, 7)], NUMERIC + (B,))
            for a, k in ((None, False), (0, False), (-1, True), ((0, 2), False), (1, True))]
    + [Case(lambda x: gc.sum(x, 0), [(0, 3)], NUMERIC), Case(lambda x: gc.sum(x), [()], NUMERIC)],
    "prod": [Case(lambda x, a=a: gc.prod(x, a), [(4, 5, 3)], NUMERIC, "unit") for a in (None, 0, -1, (0, 2))]
    + [Case(lambda x: gc.prod(x, 1), [(3, 0)], NUMERIC)],
    "max": [Case(lambda x, a=a: gc.max(x, a), [(4, 5, 6)], NUMERIC + (B,)) for a in (None, 0, -1, (1, 2))]
    + [Case(lambda x: gc.max(x, 0, keepdims=True), [(11, 3)], FLOATS, "special")],
    "min": [Case(lambda x, a=a: gc.min(x, a), [(4, 5, 6)], NUMERIC + (B,)) for a in (None, 0, -1, (0, 1))]
    + [Case(lambda x: gc.min(x, -1), [(3, 11)], FLOATS, "special")],
    "argmax": [Case(lambda x, a=a: gc.argmax(x, a), [(4, 5, 6)], NUMERIC + (B,)) for a in (None, 0, 1, -1)]
    + [Case(lambda x: gc.argmax(x, 0), [(11, 3)], FLOATS, "special")],
    "argmin": [Case(lambda x, a=a: gc.argmin(x, a, keepdims=True), [(4, 5, 6)], NUMERIC) for a in (None, 0, -1)]
    + [Case(lambda x: gc.argmin(x, -1), [(3, 11)], FLOATS, "special")],
    "random_uniform": [Case(lambda x: gc.random.uniform(x, x.dtype) + x, [(3, 5)]),
                       Case(lambda x: _random_like("random_uniform", x), [(2, 7)])],
    "random_normal": [Case(lambda x: gc.random.normal(x, x.dtype) + x, [(3, 5)]),
                      Case(lambda x: _random_like("random_normal", x), [(2, 7)])],
    "size_of": [Case(lambda x: x * gc.cast(gc.size_of(x, 0, gc.int64), x.dtype), [(3, 4)], NUMERIC)],
    # shape ops
    "broadcast_to": [Case(lambda x: gc.broadcast_to(x, (2, 3, 4)) + 0, [(3, 1)], NUMERIC + (B,)),
                     Case(lambda x: gc.broadcast_to(x, (5, 0)), [(1, 1)], NUMERIC)],
    "broadcast_like": [Case(lambda x, y: make("broadcast_like", x, y), [(3,), (2, 3)], NUMERIC)],
    "reshape": [Case(lambda x: gc.reshape(x, (3, -1)), [(2, 3, 2)], NUMERIC + (B,)),
                Case(lambda x: gc.reshape(gc.transpose(x), (-1,)), [(3, 4)], NUMERIC),
                Case(lambda x: gc.reshape(x[:, ::2], (2, 3)), [(3, 4)], FLOATS)],
    "reshape_like": [Case(lambda x, y: make("reshape_like", x, y), [(6,), (2, 3)], NUMERIC)],
    "expand_dims": [Case(lambda x: gc.expand_dims(x, (0, -1)), [(2, 3)], NUMERIC)],
    "squeeze": [Case(lambda x: gc.squeeze(x, 1), [(3, 1, 2)], NUMERIC), Case(gc.squeeze, [(1, 2, 1)], FLOATS)],
    "transpose": [Case(lambda x: gc.transpose(x, (1, 2, 0)), [(2, 3, 4)], NUMERIC + (B,)),
                  Case(lambda x: gc.exp(x.T), [(5, 3)], FLOATS)],
    "slice": [Case(lambda x: x[1:, ::2], [(3, 5)], NUMERIC), Case(lambda x: x[::-1, 1], [(4, 3)], NUMERIC),
              Case(lambda x: x[..., None, 2:0:-1], [(2, 4)], FLOATS)],
    "unslice": [Case(lambda g, x: shp.unslice(g, x, ((1, None, 2), 0, (None, None, -1))), [(2, 1, 3), (4, 2, 3)],
                     NUMERIC)],
    "concatenate": [Case(lambda a, b: gc.concatenate([a, b], axis=1), [(2, 3), (2, 1)], NUMERIC + (B,)),
                    Case(lambda a, b: gc.stack([a, b], axis=0), [(3,), (3,)], FLOATS),
                    Case(lambda a, b: gc.concatenate([a, b], axis=None), [(2, 2), (3,)], FLOATS)],
    "split_like": [Case(lambda w, a: shp.split_like(w, a, 1, True), [(2, 5), (2, 2)], NUMERIC),
                   Case(lambda w, a: shp.split_like(w, a, -1, False), [(2, 5), (2, 2)], FLOATS)],
    "take": [Case(lambda x: gc.take(x, INDEX, axis=1), [(2, 3)], NUMERIC + (B,)),
             Case(lambda x: gc.take(x, INDEX, axis=0) * 2, [(3, 2)], FLOATS),
             Case(lambda x: gc.take(x, np.array([[5, -6], [0, 1]])), [(2, 3)], FLOATS)],
    "take_along_axis": [Case(lambda x: gc.take_along_axis(x, INDEX[:, None], axis=0), [(3, 2)], NUMERIC + (B,)),
                        Case(lambda x: gc.take_along_axis(x, np.array([[4, -5, 0]]), axis=1) * 2, [(2, 5)], FLOATS),
                        Case(lambda x: gc.take_along_axis(x, np.array([[1, -1]]), axis=0), [(3, 2)], NUMERIC)],
    "permute": [Case(lambda x: make("permute", x, gc.constant(PERM), axis=0), [(3, 4)], NUMERIC + (B,)),
                Case(lambda x: make("permute", x, gc.constant(PERM.T), axis=1) * 2, [(4, 3)], FLOATS, "special")],
    "one_hot": [Case(lambda i: gc.one_hot(i, 4), [(2, 3)], (I32, I64)),
                Case(lambda i: gc.one_hot(i, 3, on_value=2.0, off_value=-1.0, dtype=F64, axis=0), [(5,)],
                     (I32,))],
    "one_hot_like": [Case(_one_hot_like, [None, (2, 3)], (F64,), fixed=LABELS + [np.zeros((2, 3))])],
    "pad": [Case(lambda x: gc.pad(x, ((1, 2), (0, 1))), [(2, 3)], NUMERIC + (B,)),
            Case(lambda x: gc.pad(x, 2, constant_values=-1.5), [(3,)], FLOATS)],
    "custom_vjp": [Case(custom_exp, [(3,)], FLOATS)],
    "conv_patches": [Case(lambda x, w: gc.nn.conv2d(x, w, strides=(2, 1), padding="SAME", dilations=(1, 2)),
                          [(2, 5, 7, 3), (2, 3, 3, 5)], FLOATS),
                     Case(lambda x: make("conv_patches", x, window=(3,), strides=(2,), dilation=(1,), padding=((2, 3),),
                                         pad_value=-np.inf), [(2, 5, 3)], FLOATS)],
    "conv_patches_t": [Case(lambda x, w: gc.nn.conv2d_transpose(x, w, strides=(2, 3), padding=[(1, 0), (2, 1)]),
                            [(2, 3, 4, 3), (3, 4, 2, 3)], FLOATS),
                       Case(lambda x: make("conv_patches_t", x, window=(2,), strides=(3,), dilation=(2,),
                                           padding=((1, 2),), in_shape=(7,)), [(2, 3, 2, 1)], FLOATS)],
    # host calls (what they print and stop: tests/runtime/test_debug_ops.py)
    "print": [Case(lambda x: gc.print(gc.exp(x) * 2, "p", summarize=1), [(3, 4)], FLOATS),
              Case(lambda x: gc.print(x[::2], summarize=-1) + 1, [(4, 3)], NUMERIC),
              Case(lambda x: gc.print(x), [()], (B,))],
    "check_numerics": [Case(lambda x: gc.check_numerics(gc.tanh(x).T, "c") * 3, [(3, 4)], FLOATS),
                       Case(gc.check_numerics, [(0, 3)], FLOATS)],
    # matrix products
    # collectives (a world of one here; tests/distributed runs them across ranks)
    "allreduce": [Case(lambda x: gc.distributed.allreduce(x * 2, op="sum"), [(3, 4)], NUMERIC),
                  Case(lambda x: gc.distributed.allreduce(x.T, op="mean"), [(2, 3)], FLOATS),
                  Case(lambda x: gc.distributed.allreduce(x, op="sum"), [()], NUMERIC),
                  Case(lambda x: gc.distributed.allreduce(x, op="sum"), [(0, 3)], FLOATS)],
    "allgather": [Case(gc.distributed.allgather, [(3, 4)], NUMERIC + (B,)),
                  Case(gc.distributed.allgather, [()], FLOATS)],
    "broadcast": [Case(lambda x: gc.distributed.broadcast(x[::2], root=0), [(4, 3)], NUMERIC + (B,))],
    "matmul": [Case(gc.matmul, [(5, 3), (3, 4)], FLOATS), Case(lambda a, b: a @ b.T, [(5, 3), (4, 3)], FLOATS),
               Case(lambda a, b: a.T @ b, [(3, 5), (3, 4)], FLOATS),
               Case(gc.matmul, [(2, 1, 5, 3), (3, 3, 4)], FLOATS),
               Case(lambda a, b: gc.transpose(a, (0, 2, 1)) @ b, [(2, 3, 5), (2, 3, 4)], FLOATS),
               Case(gc.matmul, [(3,), (3, 4)], FLOATS), Case(gc.matmul, [(5, 3), (3,)], FLOATS),
               Case(gc.matmul, [(7,), (7,)], FLOATS), Case(gc.matmul, [(3, 0), (0, 4)], FLOATS),
               Case(gc.matmul, [(0, 3), (3, 4)], FLOATS),
               Case(lambda a, b: gc.broadcast_to(a, (4, 3)) @ b, [(1, 3), (3, 2)], FLOATS),
               Case(lambda a, b: a[:, ::2] @ b, [(4, 6), (3, 2)], FLOATS)],
    # LAPACK-backed linear algebra (well-conditioned / positive definite inputs built in the graph)
    "solve": [Case(lambda a, b: gc.linalg.solve(_cond(a), b), [(4, 4), (4, 3)], FLOATS),
              Case(lambda a, b: gc.linalg.solve(_cond(a), b), [(2, 3, 3), (3,)], FLOATS),
              Case(lambda a, b: gc.linalg.inv(_cond(a.T)), [(3, 3), (1,)], FLOATS),
              Case(lambda a, b: gc.linalg.solve(a[:, ::2] + 8 * np.eye(2), b), [(2, 4), (1, 2, 5)], (F64,)),
              Case(gc.linalg.solve, [None, None], (F64,), fixed=[np.ones((2, 2)), np.ones((2, 1))]),
              Case(gc.linalg.solve, [(0, 0), (0, 2)], FLOATS)],
    "triangular_solve": [Case(lambda a, b, lo=lo, adj=adj, u=u: gc.linalg.triangular_solve(_cond(a), b, lo, adj, u),
                              [(2, 3, 3), (2, 3, 2)], FLOATS)
                         for lo, adj, u in ((True, False, False), (False, True, False), (True, True, True))]
    + [Case(gc.linalg.triangular_solve, [None, None], (F64,), fixed=[np.eye(2) * [0, 1], np.ones((2,))])],
    "cholesky": [Case(lambda x: gc.linalg.cholesky(_spd(x)), [(4, 4)], FLOATS),
                 Case(lambda x: gc.linalg.cholesky(_spd(x)), [(2, 1, 3, 3)], FLOATS),
                 Case(gc.linalg.cholesky, [None], (F64,), fixed=[np.array([[[1.0, 2.0], [2.0, 1.0]], np.eye(2)])])],
    "slogdet": [Case(lambda x: gc.stack(gc.linalg.slogdet(x)), [(2, 4, 4)], FLOATS),
                Case(gc.linalg.det, [(3, 3)], FLOATS), Case(gc.linalg.det, [(0, 0)], FLOATS),
                Case(lambda x: gc.stack(gc.linalg.slogdet(x)), [None], (F64,),
                     fixed=[np.array([[[1.0, 2.0], [2.0, 4.0]], [[0.0, 1.0], [1.0, 0.0]]])])],
    # eigenvectors and singular vectors are compared through sign-free products (v * v, u diag(s) vh)
    "eigh": [Case(lambda x: gc.linalg.eigvalsh(_spd(x)), [(2, 4, 4)], FLOATS),
             Case(lambda x: _no_sign(*gc.linalg.eigh(_spd(x))), [(5, 5)], FLOATS),
             Case(lambda x: gc.linalg.eigh(x.T, UPLO="U")[1] ** 2, [(3, 3)], (F64,)),
             Case(gc.linalg.eigvalsh, [(0, 0)], FLOATS)],
    "svd": [Case(gc.linalg.svdvals, [(2, 5, 3)], FLOATS), Case(gc.linalg.svdvals, [(3, 6)], FLOATS),
            Case(lambda x: _reassembled(*gc.linalg.svd(x, full_matrices=False)), [(2, 4, 3)], FLOATS),
            Case(lambda x: _reassembled(*gc.linalg.svd(x[:, ::2], full_matrices=False)), [(3, 8)], (F64,)),
            Case(lambda x: gc.linalg.pinv(x), [(4, 3)], (F64,)), Case(gc.linalg.svdvals, [(0, 3)], FLOATS),
            Case(lambda x: _squares(*gc.linalg.svd(x)), [(2, 4, 3)], FLOATS),
            Case(lambda x: _squares(*gc.linalg.svd(x)), [(2, 3)], FLOATS)],
    "qr": [Case(lambda x: gc.linalg.qr(x).Q + gc.linalg.qr(x).R, [(3, 3)], FLOATS),
           Case(lambda x: gc.concatenate(list(gc.linalg.qr(x)), -2), [(2, 5, 3)], FLOATS),
           Case(lambda x: gc.concatenate(list(gc.linalg.qr(x, mode="complete")), -1), [(5, 3)], FLOATS),
           Case(lambda x: gc.concatenate(list(gc.linalg.qr(x)), -1), [(3, 5)], FLOATS),
           Case(lambda x: gc.linalg.qr(x, mode="r"), [(4, 4)], FLOATS)],
}


def _scan_case(x, w):
    h, ys = gc.scan(lambda c, xt: (gc.tanh(c * w + xt), c * xt), gc.zeros_like(w), x)
    return gc.concatenate([h, gc.reshape(ys, (-1,))], 0)


def _cond_case(x):
    return gc.cond(gc.sum(x) > 0, lambda a: gc.exp(a), lambda a: a * 2, x)


def _while_case(x):
    return gc.while_loop(lambda c: c[0] < 5, lambda c: (c[0] + 1, c[1] * 0.5 + 1), (0, x))[1]


CASES.update({
    "scan": [Case(_scan_case, [(4, 3), (3,)], FLOATS), Case(_scan_case, [(0, 2), (2,)], FLOATS)],
    "param": [Case(_scan_case, [(2, 3), (3,)], (F64,))],
    "result": [Case(_cond_case, [(3,)], FLOATS)],
    "cond": [Case(_cond_case, [(3,)], FLOATS), Case(_cond_case, [(2, 2)], (F64,))],
    "while_loop": [Case(_while_case, [(3,)], FLOATS)],
})


def test_table_names_only_registered_ops():
    assert set(CASES) <= set(all_ops())


@pytest.mark.parametrize("op", sorted(all_ops()))
def test_op_matches_reference(op):
    assert op in CASES, f"op {op!r} has no LLVM backend test case"
    rng = np.random.default_rng(sum(map(ord, op)))
    graph = gc.Graph()
    fetches, feeds, labels = [], {}, []
    with graph.as_default():
        for n, case in enumerate(CASES[op]):
            for dtype in case.dtypes:
                arrays = case.inputs(rng, dtype)
                phs = [gc.placeholder(a.dtype, a.shape) for a in arrays]
                out = case.build(*phs)
                feeds.update(zip(phs, arrays))
                fetches.append(out)
                labels.append(f"{op} case {n} {np.dtype(dtype).name} {[a.shape for a in arrays]}")
    assert op in {t.op for t in walk(fetches)}, f"no case of {op} builds {op}"
    want = gc.Session(graph, backend="reference").run(fetches, feeds)
    got = gc.Session(graph, backend="llvm").run(fetches, feeds)
    for label, g, w in zip(labels, got, want):
        if w is None:
            assert g is None, label
        else:
            assert_matches(g, w, label)
