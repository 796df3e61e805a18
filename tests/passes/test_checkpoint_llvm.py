"""Checkpoint policies through compiled LLVM programs: same values, and the arena the plan really uses."""

import numpy as np
import pytest

import graphc as gc
from graphc.backend.llvm.steps import Gemm


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


def _paired_recomputations(monkeypatch, spread: bool):
    """(plan, recomputed GEMM steps, those of them in a pair, sqrt's values, reference values) for a
    36-layer float32 chain whose products are large enough to pair (64x128 @ 128x128)."""
    from graphc.passes import schedule

    monkeypatch.setenv("GRAPHC_CACHE", "0")  # (a program's disk entry would skip the schedule)
    if not spread:
        monkeypatch.setattr(schedule, "interleave_recomputation", lambda order, size, base: order)
    rng = np.random.default_rng(3)
    x = gc.placeholder(gc.float32, (64, 128), name="x")
    ws = [gc.Variable((rng.standard_normal((128, 128)) / 12).astype(np.float32)) for _ in range(36)]
    h = x
    for w in ws:
        h = gc.tanh(h @ w)
    fetches = [gc.sum(h), *gc.gradients(gc.sum(h), ws)]
    feed = {x: rng.standard_normal((64, 128)).astype(np.float32)}
    with gc.Session(options=gc.CompileOptions(checkpoint="sqrt")) as sess:
        plan = sess.compile(fetches, feed).plan
        values = sess.run(fetches, feed)
    with gc.Session(backend="reference") as ref:
        want = ref.run(fetches, feed)
    recomputed = [k for k, s in enumerate(plan.steps) if isinstance(s, Gemm) and "_remat" in s.node.attrs]
    in_pairs = {k for i in plan.pairs for k in (i, i + 1)}
    return plan, recomputed, [k for k in recomputed if k in in_pairs], values, want


def test_recomputed_products_run_beside_backward_products(monkeypatch):
    """sqrt (segments of 6, the last kept) recomputes 5 segments of 5 products. Spread over the
    backward products before them (`schedule.interleave_recomputation`), the recomputed products run
    in pairs beside backward ones, as the backward's own products do, instead of alone, in the
    segments whose spreading cannot raise the arena's peak (the deeper ones). Each still carries
    its tanh in its epilogue, as the forward's products do; the arena is no larger; values agree
    with the reference backend."""
    plan, recomputed, paired, values, want = _paired_recomputations(monkeypatch, spread=True)
    for got, exp in zip(values, want):
        np.testing.assert_allclose(got, exp, rtol=2e-4, atol=2e-5)
    assert len(recomputed) == 25
    for k in recomputed:
        epilogue = plan.steps[k].epilogue
        assert epilogue is not None and any(m.op == "tanh" for m in epilogue.members)
    with monkeypatch.context() as m:
        base, base_recomputed, base_paired, _, _ = _paired_recomputations(m, spread=False)
    print(f"\nrecomputed products paired: {len(paired)} of {len(recomputed)} (not spread: {len(base_paired)}); "
          f"pairs {len(plan.pairs)} (not spread: {len(base.pairs)}); "
          f"arena {plan.arena_bytes} B (not spread: {base.arena_bytes} B)")
    assert len(base_recomputed) == 25 and len(paired) > len(base_paired) and len(plan.pairs) > len(base.pairs)
    assert plan.arena_bytes <= base.arena_bytes


@pytest.mark.parametrize("act, layers, width, batch", [(gc.gelu, 16, 512, 128), (gc.tanh, 25, 128, 64)])
def test_spreading_recomputation_never_grows_the_arena(monkeypatch, act, layers, width, batch):
    """MLPs with biases under sqrt: the arena with recomputation spread is no larger than without
    (here spreading with a part's largest value as the margin, not its values' sum, grew it by
    a 128x512 buffer and by 1 KB)."""
    from graphc.passes import schedule

    monkeypatch.setenv("GRAPHC_CACHE", "0")  # (a program's disk entry would skip the schedule)

    def arena(spread: bool) -> int:
        rng = np.random.default_rng(5)
        x = gc.placeholder(gc.float32, (batch, width), name="x")
        params, h = [], x
        for _ in range(layers):
            w = gc.Variable((rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32))
            b = gc.Variable(np.zeros(width, np.float32))
            params += [w, b]
            h = act(h @ w + b)
        loss = gc.mean(h * h)
        fetches = [loss, *gc.gradients(loss, params)]
        feed = {x: rng.standard_normal((batch, width)).astype(np.float32)}
        with monkeypatch.context() as m:
            if not spread:
                m.setattr(schedule, "interleave_recomputation", lambda order, size, base: order)
            with gc.Session(options=gc.CompileOptions(checkpoint="sqrt")) as sess:
                return sess.compile(fetches, feed).plan.arena_bytes

    assert arena(True) <= arena(False)
