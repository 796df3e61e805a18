"""Checkpoint policies through compiled LLVM programs: same values, and the arena the plan really uses."""

import numpy as np
import pytest

import graphc as gc


def _chain(layers=24, width=32, batch=16):
    rng = np.random.default_rng(0)
    x = gc.placeholder(gc.float64, (batch, width), name="x")
    ws = [gc.Variable(rng.standard_normal((width, width)) * 0.3) for _ in range(layers)]
    h = x
    for w in ws:
        h = gc.tanh(h @ w)
    loss = gc.sum(h * h)
    return x, [loss, *gc.gradients(loss, ws)], {x: rng.standard_normal((batch, width))}


def _arena(options):
    x, fetches, feed = _chain()
    with gc.Session(options=options) as sess:
        program = sess.compile(fetches, feed)
        values = sess.run(fetches, feed)
    with gc.Session(backend="reference") as ref:
        want = ref.run(fetches, feed)
    for got, exp in zip(values, want):
        np.testing.assert_allclose(got, exp, rtol=1e-9, atol=1e-12)
    return program


def test_sqrt_and_revolve_shrink_the_compiled_arena():
    none = _arena(gc.CompileOptions(checkpoint="none"))
    sqrt = _arena(gc.CompileOptions(checkpoint="sqrt"))
    rev = _arena(gc.CompileOptions(checkpoint="revolve", slots=2))
    print(f"\narena bytes: none {none.plan.arena_bytes}, sqrt {sqrt.plan.arena_bytes}, "
          f"revolve(2) {rev.plan.arena_bytes}")
    assert sqrt.plan.arena_bytes < none.plan.arena_bytes
    assert "saved residuals" in sqrt.report() and "planned peak (arena)" in sqrt.report()


def test_memory_budget_is_met_by_the_compiled_arena():
    none = _arena(gc.CompileOptions())
    budget = int(none.plan.arena_bytes * 0.6)
    fitted = _arena(gc.CompileOptions(memory_budget=budget))
    assert fitted.plan.arena_bytes <= budget
    with pytest.raises(gc.GraphcError, match="cannot be met"):
        _arena(gc.CompileOptions(memory_budget=256))
