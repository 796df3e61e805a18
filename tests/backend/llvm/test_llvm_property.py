"""Random graphs of elementwise, reduction, broadcast and matmul ops: LLVM equals reference."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphc as gc

UNARY = {
    "tanh": gc.tanh, "sigmoid": gc.sigmoid, "abs": gc.abs, "neg": gc.negative, "square": lambda t: t * t * 0.5,
    "sin": gc.sin, "exp-clip": lambda t: gc.exp(gc.clip(t, -5.0, 5.0)), "relu": gc.relu,
    "log1p-abs": lambda t: gc.log1p(gc.abs(t)),
}
BINARY = {"add": gc.add, "sub": gc.subtract, "mul": gc.multiply, "max": gc.maximum, "min": gc.minimum,
          "where": lambda a, b: gc.where(a > b, a, b * 0.5)}
REDUCE = {"sum": gc.sum, "max": gc.max, "min": gc.min, "mean": gc.mean,
          "prod": lambda t, axis, keepdims: gc.prod(gc.tanh(t) * 0.5 + 1.0, axis=axis, keepdims=keepdims),
          "argmax": lambda t, axis, keepdims: gc.cast(gc.argmax(t, axis=axis if axis is None else axis % t.ndim,
                                                                keepdims=keepdims), t.dtype)}
INDEX = {
    "reverse": lambda t: t[..., ::-1],
    "stride": lambda t: t[::2],
    "flatten": lambda t: gc.reshape(t, (-1,)) * 1.5,
    "flatten-T": lambda t: gc.reshape(gc.transpose(t), (-1,)),
    "concat": lambda t: gc.concatenate([t, t * 2.0], axis=0),
    "pad": lambda t: gc.pad(t, [(1, 0)] + [(0, 1)] * (t.ndim - 1)),
    "expand": lambda t: gc.expand_dims(t, 0) + t,
}


@st.composite
def programs(draw):
    """A list of steps building a graph over up to three inputs of broadcast-compatible shapes."""
    ndim = draw(st.integers(1, 3))
    full = tuple(draw(st.lists(st.sampled_from([1, 2, 3, 5, 8, 13]), min_size=ndim, max_size=ndim)))
    shapes = []
    for _ in range(draw(st.integers(1, 3))):
        keep = draw(st.lists(st.booleans(), min_size=ndim, max_size=ndim))
        lead = draw(st.integers(0, ndim - 1))
        shapes.append(tuple(d if k else 1 for d, k in zip(full, keep))[lead:])
    steps = draw(st.lists(st.tuples(st.sampled_from(["unary", "binary", "reduce", "matmul", "transpose", "index"]),
                                    st.integers(0, 10**6)), min_size=1, max_size=8))
    return shapes, steps


def build(shapes, steps, dtype):
    xs = [gc.placeholder(dtype, s) for s in shapes]
    pool = list(xs)
    for kind, seed in steps:
        r = np.random.default_rng(seed)
        a = pool[r.integers(len(pool))]
        if kind == "unary":
            pool.append(UNARY[sorted(UNARY)[r.integers(len(UNARY))]](a))
        elif kind == "binary":
            b = pool[r.integers(len(pool))]
            try:
                pool.append(BINARY[sorted(BINARY)[r.integers(len(BINARY))]](a, b))
            except gc.ShapeError:
                continue
        elif kind == "reduce" and a.ndim:
            axis = int(r.integers(-a.ndim, a.ndim)) if r.random() < 0.7 else None
            pool.append(REDUCE[sorted(REDUCE)[r.integers(len(REDUCE))]](a, axis=axis, keepdims=bool(r.random() < 0.5)))
        elif kind == "matmul" and a.ndim >= 1:
            w = gc.constant(r.standard_normal((a.shape[-1], int(r.integers(1, 6)))).astype(dtype))
            pool.append(gc.tanh(a @ w) if a.ndim >= 2 else a @ w)
        elif kind == "transpose" and a.ndim >= 2:
            pool.append(gc.transpose(a))
        elif kind == "index" and a.ndim:
            pool.append(INDEX[sorted(INDEX)[r.integers(len(INDEX))]](a))
    return xs, pool[len(xs):] or [xs[0] * 2.0]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(), st.sampled_from([np.float32, np.float64]), st.integers(0, 2**32 - 1))
def test_random_graphs_match_reference(program, dtype, seed):
    shapes, steps = program
    graph = gc.Graph()
    with graph.as_default():
        xs, outs = build(shapes, steps, dtype)
        rng = np.random.default_rng(seed)
        feeds = {x: rng.standard_normal(x.shape).astype(dtype) for x in xs}
        want = gc.Session(graph, backend="reference").run(outs, feeds)
        got = gc.Session(graph, backend="llvm").run(outs, feeds)
    tol = 2e-5 if dtype == np.float32 else 1e-11
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol * max(1.0, float(np.max(np.abs(w), initial=0.0))))
