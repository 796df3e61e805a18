"""Every differentiable op of the registry: VJP and JVP against finite differences in float64.

The cases below are a table keyed by op name. The parametrization comes from the registry
itself, so an op that gains a VJP rule without a table entry fails here (it cannot skip
the check). Each case's graph must contain the op it is filed under.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
from testkit import custom_exp

import graphc as gc
from graphc.ir.traverse import toposort
from graphc.ops import shape as shp
from graphc.ops.registry import all_ops
from graphc.testing import check_grads

# --- input domains ---------------------------------------------------------------------------


def _normal(rng, shape):
    return rng.standard_normal(shape)


def _positive(rng, shape):
    return rng.uniform(0.5, 2.0, shape)


def _away(rng, shape):  # |x| >= 0.3: away from the kinks of abs, relu, ...
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.3, 2.0, shape)


def _unit(rng, shape):
    return rng.uniform(-0.9, 0.9, shape)


def _above_one(rng, shape):
    return rng.uniform(1.2, 3.0, shape)


def _prob(rng, shape):
    return rng.uniform(0.1, 0.9, shape)


def _big(rng, shape):  # |b| in (2.5, 4): a / b stays away from integers for a in (0.5, 2)
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(2.5, 4.0, shape)


DOMAINS = {"normal": _normal, "positive": _positive, "away": _away, "unit": _unit, "above_one": _above_one,
           "big": _big, "prob": _prob}


@dataclass
class Case:
    """build(*placeholders) -> tensor, on inputs of `shapes` drawn from `domains` (or fixed `values`)."""

    build: Callable
    shapes: list = field(default_factory=list)
    domains: tuple | str = "normal"
    values: list | None = None
    order: int = 1
    modes: tuple = ("fwd", "rev")  # ("fwd",): the op has no reverse mode on this case (an unbounded while_loop)

    def inputs(self, rng):
        if self.values is not None:
            return [np.array(v, dtype=np.float64) for v in self.values]
        doms = (self.domains,) * len(self.shapes) if isinstance(self.domains, str) else self.domains
        return [DOMAINS[d](rng, s) for d, s in zip(doms, self.shapes)]


UNARY_SHAPES = [(3, 4), (), (2, 1, 3), (0, 3)]
BINARY_SHAPES = [((3, 4), (3, 4)), ((3, 1), (4,)), ((), (2, 3)), ((2, 1, 3), (4, 1))]
_shape_rng = np.random.default_rng(2024)  # fixed seed: random shapes, the same on every run


def random_broadcast_shapes(count: int) -> list[tuple]:
    """`count` random shapes that broadcast together: some dims 1, some leading dims dropped."""
    full = tuple(int(d) for d in _shape_rng.integers(2, 5, _shape_rng.integers(1, 4)))
    shapes = []
    for _ in range(count):
        dims = tuple(1 if _shape_rng.random() < 0.35 else d for d in full)
        shapes.append(dims[_shape_rng.integers(0, len(dims) + 1):])
    return shapes


def unary(fn, domain="normal", order=2):
    shapes = [*UNARY_SHAPES, random_broadcast_shapes(1)[0]]
    return [Case(fn, [s], domain, order=order if k < 2 else 1) for k, s in enumerate(shapes)]


def binary(fn, domains=("normal", "normal"), order=2):
    shapes = [*BINARY_SHAPES, random_broadcast_shapes(2)]
    return [Case(fn, list(s), domains, order=order if k < 2 else 1) for k, s in enumerate(shapes)]


def c(value, like):
    """A constant of like's dtype."""
    return gc.constant(value, dtype=like.dtype)


def make(op, *inputs, **attrs):
    """The primitive itself (bypassing a public function that would simplify it away)."""
    return inputs[0].graph.make(op, inputs, attrs)


def _cond(a):
    """a + 4I: well conditioned for the small random matrices of the table."""
    return a + c(4 * np.eye(a.shape[-1]), a)


def _spd(x):
    """x xᵀ + I: symmetric positive definite."""
    return x @ shp.matrix_transpose(x) + c(np.eye(x.shape[-1]), x)


def _sym(x):
    return x + shp.matrix_transpose(x)


def _svd_invariant(u, s, vh):
    """Depends on U and Vh only through their squares (each singular pair's sign is free),
    weighted by row so that the unit column norms do not make it constant."""
    m, n = u.shape[-2], vh.shape[-1]
    return (gc.sum(u ** 2 * c(np.arange(1.0, m + 1)[:, None], u), -2) * s
            + gc.sum(vh ** 2 * c(np.arange(1.0, n + 1), u), -1))


def _flat(*ts):
    return gc.concatenate([gc.reshape(t, (-1,)) for t in ts], 0)


def _rnn(x, w, reverse=False):
    """A tanh recurrence over x's rows (w captured by the body); the final carry and the ys."""
    h, ys = gc.scan(lambda c, xt: (gc.tanh(c * w + xt), c * xt), gc.zeros_like(w), x, reverse=reverse)
    return _flat(h, ys)


def _powers(a):
    """A scan without xs: a carry of two floats and an int counter."""
    (i, u, v), _ = gc.scan(lambda c, _: ((c[0] + 1, c[1] * gc.sin(c[2]), c[2] + c[1]), None), (0, a, a * a),
                           length=3)
    return _flat(u, v * gc.cast(i, a.dtype))


def _branches(x, y):
    """Both branches of a cond, chosen by a data-dependent predicate (one case takes each)."""
    return gc.cond(gc.sum(x) > 0, lambda a, b: gc.sin(a) * b, lambda a, b: a * gc.exp(b) - y, x, y)


def _doubling(x):
    """A while loop whose trip count depends on x (forward mode only)."""
    return gc.while_loop(lambda c: gc.sum(c * c) < 40.0, lambda c: c * 1.7 + gc.sin(c), x)


CASES: dict[str, list[Case]] = {
    # elementwise arithmetic
    "add": binary(lambda a, b: a + b),
    "subtract": binary(lambda a, b: a - b),
    "multiply": binary(lambda a, b: a * b),
    "divide": binary(lambda a, b: a / b, ("normal", "away")),
    "negative": unary(lambda x: -x),
    "square": unary(gc.square),
    "abs": unary(gc.abs, "away"),
    "power": binary(gc.power, ("positive", "normal")) + [
        Case(lambda x: gc.power(x, c(3.0, x)), [(2, 3)], "normal", order=2),
        Case(lambda x: gc.power(c(2.0, x), x), [(4,)], "normal", order=2),
    ],
    "maximum": binary(gc.maximum),
    "minimum": binary(gc.minimum),
    "clip": [Case(gc.clip, [(3, 4), (3, 1), (4,)], values=None, domains=("normal", "normal", "normal")),
             Case(lambda x: gc.clip(x, c(-0.5, x), c(0.5, x)), [(5, 2)], "normal"),
             Case(lambda x, lo, hi: gc.clip(x, lo, hi), values=[[-2.0, 0.1, 3.0], [-1.0], [1.0]])],
    "where": [Case(lambda a, b: gc.where(np.array([[True, False, True, False]] * 3), a, b), [(3, 4), (3, 1)]),
              Case(lambda a, b: gc.where(a > 0, a * a, b), [(2, 3), ()])],
    "identity": unary(gc.identity),
    "cast": [Case(lambda x: make("cast", x, dtype=x.dtype), [(3, 2)], order=2),
             Case(lambda x: gc.cast(gc.cast(x, gc.int32), x.dtype) + x, [(4,)])],
    # float functions
    "exp": unary(gc.exp),
    "expm1": unary(gc.expm1),
    "log": unary(gc.log, "positive"),
    "log1p": unary(gc.log1p, "unit"),
    "sqrt": unary(gc.sqrt, "positive"),
    "rsqrt": unary(gc.rsqrt, "positive"),
    "sin": unary(gc.sin),
    "cos": unary(gc.cos),
    "tanh": unary(gc.tanh),
    "erf": unary(gc.erf),
    "sigmoid": unary(gc.sigmoid),
    "softplus": unary(gc.softplus),
    "relu": unary(gc.relu, "away"),
    "gelu": unary(gc.gelu) + unary(lambda x: gc.gelu(x, approximate=True)),
    "tan": unary(gc.tan, "unit"),
    "arcsin": unary(gc.arcsin, "unit"),
    "arccos": unary(gc.arccos, "unit"),
    "arctan": unary(gc.arctan),
    "arctan2": binary(gc.arctan2, ("away", "away")),
    "sinh": unary(gc.sinh),
    "cosh": unary(gc.cosh),
    "arcsinh": unary(gc.arcsinh),
    "arccosh": unary(gc.arccosh, "above_one"),
    "arctanh": unary(gc.arctanh, "unit"),
    "exp2": unary(gc.exp2),
    "log2": unary(gc.log2, "positive"),
    "log10": unary(gc.log10, "positive"),
    "logaddexp": binary(gc.logaddexp),
    "logaddexp2": binary(gc.logaddexp2),
    "hypot": binary(gc.hypot, ("away", "away")),
    "reciprocal": unary(gc.reciprocal, "away"),
    "mod": binary(gc.mod, ("positive", "big")) + [Case(lambda a, b: a % b, [(3,), (3,)], ("positive", "big"))],
    "fmax": binary(gc.fmax),
    "fmin": binary(gc.fmin),
    "sinc": unary(gc.sinc) + [Case(gc.sinc, values=[[-0.05, 0.0, 0.03, 0.2]], order=2)],
    "deg2rad": unary(gc.deg2rad),
    "rad2deg": unary(gc.rad2deg),
    "nan_to_num": unary(gc.nan_to_num),
    "fabs": unary(gc.fabs, "away"),
    "heaviside": [Case(lambda x2: gc.heaviside(c([0.0, 1.0, -1.0], x2), x2), [(3,)], order=2)]
    + binary(gc.heaviside, ("away", "normal")),
    # gc.special
    "erfc": unary(gc.special.erfc),
    "ndtr": unary(gc.special.ndtr),
    "log_ndtr": unary(gc.special.log_ndtr) + [Case(gc.special.log_ndtr, values=[[-30.0, -21.0, 5.0, 9.0]], order=2)],
    "erfinv": unary(gc.special.erfinv, "unit"),
    "gammaln": unary(gc.special.gammaln, "positive") + [Case(gc.special.gammaln, values=[[-2.5, -0.3, 3.7, 11.0]],
                                                             order=2)],
    "digamma": unary(gc.special.digamma, "positive") + [Case(gc.special.digamma, values=[[-2.5, -0.3, 9.5]],
                                                             order=2)],
    "polygamma": unary(lambda x: gc.special.polygamma(1, x), "positive")
    + [Case(lambda x: gc.special.polygamma(1, x), values=[[-2.5, -0.3, 4.5]], order=2),
       Case(lambda x: gc.special.polygamma(2, x), [(3,)], "positive", order=2)],
    "logit": unary(gc.special.logit, "prob"),
    "xlogy": binary(gc.special.xlogy, ("normal", "positive")),
    "xlog1py": binary(gc.special.xlog1py, ("normal", "unit")),
    # reductions
    "sum": [Case(lambda x: gc.sum(x), [(3, 4)], order=2), Case(lambda x: gc.sum(x, 1), [(2, 3, 4)]),
            Case(lambda x: gc.sum(x, (0, -1), keepdims=True), [(2, 3, 4)]), Case(lambda x: gc.sum(x, 0), [(0, 3)])],
    "prod": [Case(lambda x: gc.prod(x, -1), [(3, 4)], order=2),
             Case(lambda x: gc.prod(x, 0, keepdims=True), [(3, 2)]),
             Case(lambda x: gc.prod(x, 1), values=[[[1.5, 0.0, -2.0], [0.0, 3.0, 0.0], [0.5, 2.0, -1.0]]])],
    "max": [Case(lambda x: gc.max(x), [(3, 4)]), Case(lambda x: gc.max(x, 1, keepdims=True), [(2, 3, 4)]),
            Case(lambda x: gc.max(x, (0, 2)), [(2, 3, 4)])],
    "min": [Case(lambda x: gc.min(x), [(3, 4)]), Case(lambda x: gc.min(x, -1), [(2, 3, 4)])],
    # host calls: identities for derivatives
    "print": [Case(lambda x: gc.print(gc.sin(x), "g") * x, [(2, 3)], order=2)],
    "check_numerics": [Case(lambda x: gc.check_numerics(x * x, "c"), [(3,)], order=2)],
    # collectives (a world of one here; tests/distributed checks them across ranks)
    "allreduce": [Case(lambda x: gc.distributed.allreduce(x * x, op="sum"), [(3, 4)], order=2)],
    "allgather": [Case(lambda x: gc.distributed.allgather(gc.sin(x)), [(2, 3)])],
    "broadcast": [Case(lambda x: gc.distributed.broadcast(x * x, root=0), [(3,)])],
    # linear algebra
    "matmul": [Case(gc.matmul, [(3, 4), (4, 2)], order=2), Case(gc.matmul, [(2, 3, 4), (4, 5)]),
               Case(gc.matmul, [(1, 3, 4), (2, 4, 2)]), Case(gc.matmul, [(4,), (4, 3)]),
               Case(gc.matmul, [(3, 4), (4,)]), Case(gc.matmul, [(4,), (4,)])],
    # LAPACK-backed linear algebra (matrices made well conditioned / positive definite in the graph)
    "solve": [Case(lambda a, b: gc.linalg.solve(_cond(a), b), [(3, 3), (3, 2)], order=2),
              Case(lambda a, b: gc.linalg.solve(_cond(a), b), [(2, 3, 3), (3,)]),
              Case(lambda a, b: gc.linalg.inv(_cond(a)) @ b, [(2, 1, 3, 3), (4, 3, 2)])],
    "triangular_solve": [Case(lambda a, b: gc.linalg.triangular_solve(_cond(a), b), [(3, 3), (3, 2)], order=2),
                         Case(lambda a, b: gc.linalg.triangular_solve(_cond(a), b, lower=False, adjoint=True),
                              [(2, 3, 3), (2, 3, 1)]),
                         Case(lambda a, b: gc.linalg.solve_triangular(a, b, trans=1, unit_diagonal=True),
                              [(3, 3), (3,)])],
    "cholesky": [Case(lambda x: gc.linalg.cholesky(_spd(x)), [(3, 3)], order=2),
                 Case(lambda x: gc.linalg.cholesky(x), values=[[[2.0, 9.0], [0.5, 1.5]]]),
                 Case(lambda x, b: gc.linalg.cho_solve((gc.linalg.cholesky(_spd(x)), True), b), [(2, 3, 3), (3, 2)])],
    "slogdet": [Case(lambda x: gc.linalg.slogdet(_cond(x))[1], [(3, 3)], order=2),
                Case(lambda x: gc.linalg.det(x), [(2, 3, 3)])],
    "eigh": [Case(lambda x: gc.linalg.eigvalsh(_sym(x)), [(3, 3)], order=2),
             Case(lambda x: gc.linalg.eigh(_sym(x)).eigenvectors ** 2, [(2, 3, 3)]),
             Case(lambda x: gc.linalg.eigh(x, UPLO="U").eigenvectors ** 2, [(3, 3)])],
    "svd": [Case(gc.linalg.svdvals, [(4, 3)], order=2),
            Case(lambda x: _svd_invariant(*gc.linalg.svd(x, full_matrices=False)), [(4, 3)]),
            Case(lambda x: _svd_invariant(*gc.linalg.svd(x, full_matrices=False)), [(2, 3, 4)]),
            Case(lambda x: gc.linalg.norm(x, "nuc", (1, 2)) + gc.linalg.pinv(x)[:, 0, 0], [(2, 3, 3)])],
    "qr": [Case(lambda x: gc.sum(gc.linalg.qr(x).Q ** 3) + gc.linalg.qr(x).R, [(4, 3)], order=2),
           Case(lambda x: gc.linalg.qr(x).Q * 2 + gc.linalg.qr(x).R, [(2, 3, 3)]),
           Case(lambda x: gc.sum(gc.linalg.qr(x).Q ** 3) + gc.linalg.qr(x, "complete").R, [(2, 4)])],
    # shape ops
    "broadcast_to": [Case(lambda x: gc.broadcast_to(x, (2, 3, 4)), [(3, 1)]),
                     Case(lambda x: gc.broadcast_to(x, (2, 3)), [()])],
    "broadcast_like": [Case(lambda x, y: make("broadcast_like", x, y), [(3, 1), (2, 3, 4)])],
    "reshape": [Case(lambda x: gc.reshape(x, (4, -1)), [(2, 3, 2)]), Case(lambda x: gc.reshape(x, ()), [(1, 1)])],
    "reshape_like": [Case(lambda x, y: make("reshape_like", x, y), [(2, 6), (3, 4)])],
    "expand_dims": [Case(lambda x: gc.expand_dims(x, (0, -1)), [(2, 3)])],
    "squeeze": [Case(lambda x: gc.squeeze(x, 1), [(3, 1, 2)]), Case(lambda x: gc.squeeze(x), [(1, 2, 1)])],
    "transpose": [Case(lambda x: gc.transpose(x, (2, 0, 1)), [(2, 3, 4)]), Case(lambda x: x.T, [(3, 2)])],
    "slice": [Case(lambda x: x[1:, ::2], [(3, 5)]), Case(lambda x: x[::-1, 1], [(4, 3)]),
              Case(lambda x: x[..., -2:], [(2, 2, 3)])],
    "unslice": [Case(lambda g, x: shp.unslice(g, x, ((0, 4, 2), (1, 3, 1))), [(2, 2), (4, 3)])],
    "concatenate": [Case(lambda a, b: gc.concatenate([a, b], axis=1), [(2, 3), (2, 1)]),
                    Case(lambda a, b: gc.concatenate([a, b, a], axis=None), [(2, 2), (3,)])],
    "split_like": [Case(lambda w, a: shp.split_like(w, a, 1, True), [(2, 5), (2, 3)]),
                   Case(lambda w, a: shp.split_like(w, a, 0, False), [(4, 2), (1, 2)])],
    "pad": [Case(lambda x: gc.pad(x, ((1, 2), (0, 1))), [(2, 3)]),
            Case(lambda x: gc.pad(x, 1, constant_values=2.0), [(3,)])],
    "take": [Case(lambda x: gc.take(x, np.array([2, 0, 2]), axis=1), [(2, 3)]),
             Case(lambda x: gc.take(x, np.array([[1, 1], [0, 2]]), axis=0), [(3, 2)])],
    "take_along_axis": [Case(lambda x: gc.take_along_axis(x, np.array([[2, 0, 2, -1]]), axis=0), [(3, 4)]),
                        Case(lambda x: gc.take_along_axis(x, np.array([[1], [0]]), axis=1), [(2, 3)], order=2),
                        Case(lambda x: gc.take_along_axis(x, np.array([[0, 0, 1]]), axis=-1), [(3, 2)])],
    "permute": [Case(lambda x: gc.sort(x, axis=0), [(4, 2)], order=2),
                Case(lambda x: make("permute", x, gc.constant(np.array([[2, 0, 1], [0, 1, 2]])), axis=1), [(2, 3)])],
    # sliding windows (graphc/ops/window.py): the cases go through conv2d, conv1d, pooling
    "conv_patches": [Case(lambda x, w: gc.nn.conv2d(x, w, strides=(2, 1), padding="SAME", dilations=(1, 2)),
                          [(2, 5, 4, 3), (2, 3, 3, 2)], order=2),
                     Case(lambda x, w: gc.nn.conv1d(x, w, padding=[(2, 1)], groups=2), [(1, 6, 4), (3, 2, 4)])],
    "conv_patches_t": [Case(lambda x, w: gc.nn.conv2d_transpose(x, w, strides=2, padding="SAME"),
                            [(1, 3, 2, 2), (3, 2, 3, 2)], order=2),
                       Case(lambda x: make("conv_patches_t", x, window=(2,), strides=(3,), dilation=(2,),
                                           padding=((1, 2),), in_shape=(7,)), [(2, 3, 2, 1)])],
    # autodiff's own op
    "custom_vjp": [Case(custom_exp, [(3,)], order=2)],
    # control flow (graphc/control): region ops and the result nodes that read them
    "scan": [Case(_rnn, [(4, 3), (3,)], order=2), Case(lambda x, w: _rnn(x, w, reverse=True), [(3, 2), (2,)]),
             Case(_powers, [(2,)], "unit", order=2), Case(_rnn, [(0, 3), (3,)])],
    "cond": [Case(_branches, values=[[0.5, 1.0], [0.3, -0.2]], order=2),
             Case(_branches, values=[[-0.5, 0.1], [0.3, -0.2]], order=2)],
    "result": [Case(lambda x: gc.cond(x[0] > 0, lambda a: (a * a, a), lambda a: (a, gc.exp(a)), x)[0], [(3,)])],
    "while_loop": [Case(_doubling, values=[[0.5, 1.0, -0.2]], modes=("fwd",)),
                   Case(_doubling, values=[[2.0, 3.0, 4.0]], modes=("fwd",))],
}

# Ops with no derivative, and why (JAX's conventions at non-differentiable points).
NOT_DIFFERENTIABLE = {
    "placeholder": "graph input", "constant": "graph input", "variable": "graph input",
    "assign": "state update", "group": "no value", "stop_gradient": "treated as a constant by design",
    "argmax": "integer result", "argmin": "integer result", "size_of": "integer result",
    "one_hot": "integer indices in, constant out", "one_hot_like": "integer indices in, constant out",
    "floor": "piecewise constant: zero gradient", "ceil": "piecewise constant: zero gradient",
    "round": "piecewise constant: zero gradient", "sign": "piecewise constant: zero gradient",
    "equal": "bool result", "not_equal": "bool result", "less": "bool result", "less_equal": "bool result",
    "greater": "bool result", "greater_equal": "bool result",
    "random_uniform": "random numbers: no input to differentiate",
    "random_normal": "random numbers: no input to differentiate",
    "param": "a region's input (its op differentiates)",
    "logical_and": "bool result", "logical_or": "bool result", "logical_not": "bool result",
}

OPS = all_ops()
DIFFERENTIABLE = [name for name, op in OPS.items() if op.vjp is not None]


def _ops_in(t: gc.Tensor) -> set[str]:
    return {n.op for n in toposort([t])}


def _checked(name: str, case: Case) -> Callable:
    def build(*xs):
        out = case.build(*xs)
        assert name in _ops_in(out), f"the gradient-check case for {name!r} does not build a {name} node"
        return out

    build.__name__ = name
    return build


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_op_vjp_and_jvp_match_finite_differences(name, backend):
    assert name in CASES, f"op {name!r} has a VJP rule but no gradient-check case in CASES: add one"
    assert OPS[name].jvp is not None, f"op {name!r} has a VJP rule but no JVP rule"
    rng = np.random.default_rng(sum(map(ord, name)))
    for k, case in enumerate(CASES[name]):
        check_grads(_checked(name, case), case.inputs(rng), order=case.order, seed=k, backend=backend,
                    modes=case.modes)


@pytest.mark.parametrize("name", sorted(set(OPS) - set(DIFFERENTIABLE)))
def test_op_without_vjp_is_meant_to_be_non_differentiable(name):
    assert name in NOT_DIFFERENTIABLE, (f"op {name!r} has no VJP rule: give it one, or list it in "
                                       "NOT_DIFFERENTIABLE with the reason")
    assert OPS[name].jvp is None, f"op {name!r} has a JVP rule but no VJP rule"


def test_table_has_no_stale_entries():
    assert not set(CASES) - set(DIFFERENTIABLE), "CASES lists ops that are not differentiable"


def _derivatives(name: str, case: Case, arrays: list, dtype) -> list[np.ndarray]:
    g = gc.Graph()
    with g.as_default():
        xs = [gc.placeholder(dtype, a.shape) for a in arrays]
        out = case.build(*xs)
        rng = np.random.default_rng(1)
        u = gc.constant(rng.standard_normal(out.shape), dtype=dtype)
        ds = [gc.constant(rng.standard_normal(a.shape), dtype=dtype) for a in arrays]
        grads = gc.gradients(out, xs, grad_ys=u, unconnected="zero")
        (tangent,) = gc.jvp(out, xs, ds)
        for t in [*grads, tangent]:
            assert t.dtype == dtype, f"{name}: a {dtype.name} graph got a {t.dtype} derivative"
        return gc.Session(g).run([*grads, tangent], dict(zip(xs, arrays)))


@pytest.mark.parametrize("name", sorted(n for n in CASES if all("rev" in c.modes for c in CASES[n])))
def test_op_derivatives_keep_float32(name):
    """A float32 graph gets float32 derivatives that agree with the float64 ones."""
    rng = np.random.default_rng(7)
    for case in CASES[name]:
        arrays = case.inputs(rng)
        d32 = _derivatives(name, case, [a.astype(np.float32) for a in arrays], np.dtype(np.float32))
        d64 = _derivatives(name, case, [a.astype(np.float32).astype(np.float64) for a in arrays], np.dtype(np.float64))
        for a, b in zip(d32, d64):
            scale = max(1.0, float(np.max(np.abs(b)))) if b.size else 1.0
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale, err_msg=name)


def _scale(value, factor: float):
    """value * factor for a derivative, a tuple of them (several results) or an (index, cotangent) pair."""
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, tuple):
        return tuple(_scale(v, factor) for v in value)
    return value * factor


def _scaled(rule: Callable, factor: float) -> Callable:
    def wrong(*args, **attrs):
        return _scale(rule(*args, **attrs), factor)

    return wrong


@pytest.mark.parametrize("rule", ["vjp", "jvp"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_a_wrong_rule_is_caught(name, rule, monkeypatch):
    """Scaling an op's rule by 1.5 must make its check fail (the check can fail)."""
    from dataclasses import replace

    from graphc.ops import registry

    op = OPS[name]
    monkeypatch.setitem(registry._REGISTRY, name, replace(op, **{rule: _scaled(getattr(op, rule), 1.5)}))
    rng = np.random.default_rng(sum(map(ord, name)))
    case = CASES[name][0]
    if rule == "vjp" and "rev" not in case.modes:
        with pytest.raises(gc.GraphcError, match="needs a bounded loop"):  # no reverse mode to check
            check_grads(_checked(name, case), case.inputs(rng), modes=("rev",))
        return
    with pytest.raises(AssertionError, match="differs from central finite differences"):
        check_grads(_checked(name, case), case.inputs(rng), modes=(rule.replace("vjp", "rev").replace("jvp", "fwd"),))
