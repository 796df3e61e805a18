"""Every pipeline preserves results on random graphs (reference interpreter before vs after), NaN and Inf included."""

import importlib.util
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphc as gc
from graphc.backend.interpreter import evaluate
from graphc.compiler import optimize
from graphc.passes.pipeline import PIPELINES

_spec = importlib.util.spec_from_file_location(
    "graph_property", Path(__file__).parents[1] / "backend" / "llvm" / "test_llvm_property.py")
_gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_gen)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_gen.programs(), st.sampled_from([np.float32, np.float64]), st.integers(0, 2**32 - 1),
       st.sampled_from(sorted(PIPELINES)), st.booleans())
def test_pipelines_preserve_random_graphs(program, dtype, seed, level, special):
    shapes, steps = program
    with gc.Graph().as_default():
        xs, outs = _gen.build(shapes, steps, dtype)
        rng = np.random.default_rng(seed)
        feeds = {}
        for x in xs:
            value = rng.standard_normal(x.shape).astype(dtype)
            if special and value.size:
                flat = value.reshape(-1)
                flat[rng.integers(value.size, size=min(3, value.size))] = rng.choice([np.nan, np.inf, -np.inf, 0.0])
            feeds[x] = value
        want = evaluate(outs, feeds)
        opt = optimize(outs, {x: x.shape for x in xs}, gc.CompileOptions(opt_level=level))
        got = evaluate(opt.module.outputs, {opt.mapping[x]: v for x, v in feeds.items() if x in opt.mapping})
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol, equal_nan=True)
