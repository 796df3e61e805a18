"""The three Hessian-vector-product routes agree on every differentiable op of the registry.

Routes: `gc.hessian_vector_product` (reverse over reverse), forward over reverse
(`jvp` of `gradients`) and reverse over forward (`gradients` of `jvp`). They are built for
y = sum(w * f(x...)) with random w and directions v, on every case of the finite-difference
table (test_op_grads.CASES, so ops added there are covered here automatically) and at
every kink of the convention table (kinks.KINKS) where the first derivatives are finite.
The routes must agree to rounding, including where the result is inf or NaN.
"""

from __future__ import annotations

import numpy as np
import pytest
from kinks import KINKS
from test_op_grads import CASES, DIFFERENTIABLE

import graphc as gc


def hvp_routes(build, arrays: list[np.ndarray], seed: int = 0) -> dict[str, list[np.ndarray]]:
    """The value of each route's H v, one array per input, on the reference backend."""
    rng = np.random.default_rng(seed)
    g = gc.Graph()
    with g.as_default():
        xs = [gc.placeholder(gc.float64, a.shape) for a in arrays]
        out = build(*xs)
        y = gc.sum(gc.constant(rng.standard_normal(out.shape)) * out)
        vs = [rng.standard_normal(a.shape) for a in arrays]
        rev_rev = gc.hessian_vector_product(y, xs, vs)
        fwd_rev = gc.jvp(gc.gradients(y, xs, unconnected="zero"), xs, vs)
        (tangent,) = gc.jvp(y, xs, vs)
        rev_fwd = gc.gradients(tangent, xs, unconnected="zero")
        routes = {"reverse-over-reverse": rev_rev, "forward-over-reverse": fwd_rev, "reverse-over-forward": rev_fwd}
        values = gc.Session(g, backend="reference").run(routes, dict(zip(xs, arrays)))
    return {k: [np.asarray(a) for a in v] for k, v in values.items()}


def assert_routes_agree(routes: dict[str, list[np.ndarray]], label: str) -> None:
    names = list(routes)
    for a in names:
        for b in names[names.index(a) + 1:]:
            for i, (ra, rb) in enumerate(zip(routes[a], routes[b])):
                scale = max(1.0, float(np.max(np.abs(ra[np.isfinite(ra)]), initial=0.0)))
                np.testing.assert_allclose(ra, rb, rtol=1e-9, atol=1e-12 * scale,
                                           err_msg=f"{label}: input {i}, {a} vs {b}")


# Ops whose table cases have no reverse mode, so no HVP route but forward over forward exists:
# an unbounded while_loop (reverse mode needs max_iterations, which makes it a scan: covered).
NO_REVERSE = {name for name in DIFFERENTIABLE if not any("rev" in case.modes for case in CASES[name])}


@pytest.mark.parametrize("name", sorted(set(DIFFERENTIABLE) - NO_REVERSE))
def test_routes_agree_at_random_points(name):
    rng = np.random.default_rng(sum(map(ord, name)) + 1)
    for k, case in enumerate(CASES[name]):
        assert_routes_agree(hvp_routes(case.build, case.inputs(rng), seed=k), f"{name} case {k}")


@pytest.mark.parametrize("name", sorted(KINKS))
def test_routes_agree_at_kinks(name):
    for k, kink in enumerate(p for p in KINKS[name] if p.hvp):
        assert_routes_agree(hvp_routes(kink.build, kink.arrays(), seed=k), f"{name} kink {k}: {kink.where}")
