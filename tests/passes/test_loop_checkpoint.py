"""Checkpointing of loops: a differentiated scan stores every k-th carry and recomputes segments, or
follows revolve's binomial schedule; memory budgets choose among the loop policies."""

import numpy as np
import pytest

import graphc as gc
from graphc.backend.interpreter import evaluate
from graphc.passes.loop_checkpoint import checkpoint_loops, loop_pairs, segment_length, share_forward, stored_bytes
from graphc.passes.loop_revolve import revolve_loops, schedule
from graphc.passes.module import Module
from graphc.passes.revolve import min_steps


def _rnn(steps, reverse=False, seed=0):
    rng = np.random.default_rng(seed)
    g = gc.Graph()
    with g.as_default():
        xs = gc.placeholder(gc.float64, (steps, 3, 2), name="xs")
        wx = gc.Variable(rng.standard_normal((2, 4)), name="wx")
        wh = gc.Variable(rng.standard_normal((4, 4)) * 0.5, name="wh")

        def cell(h, x):
            h = gc.tanh(x @ wx + h @ wh)
            return h, gc.sum(h, axis=1)

        h, ys = gc.scan(cell, gc.zeros((3, 4), gc.float64), xs, reverse=reverse)
        loss = gc.sum(h * h) + gc.sum(ys ** 2)
        fetches = [loss, *gc.gradients(loss, [wx, wh, xs])]
    return g, fetches, {xs: rng.standard_normal((steps, 3, 2))}


@pytest.mark.parametrize("reverse", [False, True])
def test_segmented_scans_give_the_same_values_and_gradients(reverse):
    g, fetches, feed = _rnn(12, reverse)
    module = Module(tuple(fetches), frozenset(g.adjoint))
    stacked = stored_bytes(loop_pairs(module)[0])  # the residuals of 12 iterations
    out, loops = checkpoint_loops(module)
    assert [(r.iterations, r.segment, r.stored_before, r.stored_after) for r in loops] == [(12, 3, stacked, 4 * 96)]
    for want, got in zip(evaluate(module.outputs, feed), evaluate(out.outputs, feed)):
        np.testing.assert_array_equal(got, want)


def test_sqrt_on_a_long_scan_stores_fewer_carries_and_lowers_the_planned_peak():
    peaks, values = {}, {}
    for policy in ("none", "sqrt"):
        g, fetches, feed = _rnn(400)
        with gc.Session(g, options=gc.CompileOptions(checkpoint=policy)) as sess:
            program = sess.compile(fetches, feed)
            values[policy] = sess.run(fetches, feed)
        peaks[policy] = program.plan.arena_bytes
        report = program.report()
    print(f"\nplanned peak: none {peaks['none']} B, sqrt {peaks['sqrt']} B\n{report}")
    assert peaks["sqrt"] < peaks["none"]
    # residuals 76800 B, and the summed ys (sunk into the loops, passes/sink.py): 400 x 3 float64;
    # carries 20 x (96 B + the sum's accumulator, 8 B)
    assert "400 iterations in segments of 20: stored 86400 B of residuals -> 2080 B of carries" in report
    for a, b in zip(values["sqrt"], values["none"]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def test_segment_length_is_the_divisor_nearest_the_square_root():
    assert [segment_length(n) for n in (1000, 400, 60, 13, 2)] == [25, 20, 6, 1, 1]


def test_the_forward_loop_runs_once_without_checkpointing():
    g, fetches, feed = _rnn(12)
    module = Module(tuple(fetches), frozenset(g.adjoint))
    assert sum(n.op == "scan" for n in module.nodes) == 3  # the user's, the one stacking carries, the reverse
    shared, count = share_forward(module)
    assert count == 1 and sum(n.op == "scan" for n in shared.nodes) == 2
    for want, got in zip(evaluate(module.outputs, feed), evaluate(shared.outputs, feed)):
        np.testing.assert_array_equal(got, want)
    segmented, loops = checkpoint_loops(shared)  # values and carries from one scan over segments
    assert len(loops) == 1 and sum(n.op == "scan" for n in segmented.nodes) == 2  # (segments give the values)
    for want, got in zip(evaluate(module.outputs, feed), evaluate(segmented.outputs, feed)):
        np.testing.assert_array_equal(got, want)


def _replay(length: int, slots: int) -> int:
    """Run the schedule on positions: every reverse step must find the carry it needs."""
    sched = schedule(length, slots)
    held = {0: 0}
    for t, slot in enumerate(sched.store):
        if slot >= 0:
            held[slot] = t
    for p in reversed(range(length)):
        pos = held[sched.restore[p]]
        assert pos == sched.start[p]
        for k in range(sched.count[p]):
            pos += 1
            if sched.dst[sched.offset[p] + k] >= 0:
                held[sched.dst[sched.offset[p] + k]] = pos
        assert pos == p, (length, slots, p)
    assert set(held) <= set(range(sched.slots + 2))
    return sched.recomputed


def test_the_schedule_provides_every_carry_with_the_fewest_recomputed_iterations():
    for length in range(2, 40):
        for slots in range(1, 6):
            n, s = length - 1, min(slots, length - 1)
            assert _replay(length, slots) == min_steps(n, s) - n, (length, slots)
    assert _replay(1000, 4) == 5285  # r = 8 sweeps: C(999, 4) - 999


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("slots", [1, 2, 4])
def test_revolved_scans_give_the_same_values_and_gradients_bit_for_bit(reverse, slots):
    g, fetches, feed = _rnn(13, reverse)
    module, _ = share_forward(Module(tuple(fetches), frozenset(g.adjoint)))
    stacked = stored_bytes(loop_pairs(module)[0])
    out, loops = revolve_loops(module, slots)
    n = min(slots, 12)
    assert [(r.stored_before, r.stored_after, r.recomputed) for r in loops] == \
        [(stacked, (n + 2) * 96, min_steps(12, n) - 12)]
    for want, got in zip(evaluate(module.outputs, feed), evaluate(out.outputs, feed)):
        np.testing.assert_array_equal(got, want)


def _compiled(options: dict, steps: int = 300, graph=_rnn):
    g, fetches, feed = graph(steps)
    with gc.Session(g, options=gc.CompileOptions(**options)) as sess:
        program = sess.compile(fetches, feed)
        values = sess.run(fetches, feed)
    return program, values


def test_planned_peak_falls_with_the_policy_and_the_slots_on_the_llvm_backend():
    none, want = _compiled({})
    peaks = {"none": none.plan.arena_bytes}
    for label, options in (("sqrt", {"checkpoint": "sqrt"}), *((f"revolve({s})", {"checkpoint": "revolve", "slots": s})
                                                              for s in (8, 4, 2, 1))):
        program, got = _compiled(options)
        peaks[label] = program.plan.arena_bytes
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
        if label.startswith("revolve"):
            slots = int(label[8:-1])
            # residuals 57600 B and the summed ys (sunk, passes/sink.py; 300 x 3 float64); carries of 96 B
            # and the sum's accumulator (8 B) in each slot
            assert f"300 iterations on revolve's schedule for {slots} slots: stored 64800 B of residuals -> " \
                   f"{(slots + 2) * 104} B of carries, {min_steps(299, slots) - 299} iterations recomputed" \
                   in program.report()
    print(peaks)
    assert peaks["none"] >= peaks["sqrt"]
    assert all(peaks[f"revolve({a})"] >= peaks[f"revolve({b})"] for a, b in ((8, 4), (4, 2), (2, 1)))
    assert peaks["revolve(1)"] < peaks["none"]


def test_a_memory_budget_chooses_a_loop_policy():
    none, want = _compiled({})
    sqrt, _ = _compiled({"checkpoint": "sqrt"})
    budget = (none.plan.arena_bytes + sqrt.plan.arena_bytes) // 2
    program, got = _compiled({"memory_budget": budget})
    assert program.plan.arena_bytes <= budget
    report = program.report()
    assert "loops in segments" in report or "loops revolve" in report, report
    assert "300 iterations" in report
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def _bounded_while(steps):
    rng = np.random.default_rng(1)
    g = gc.Graph()
    with g.as_default():
        w = gc.Variable(rng.standard_normal((4, 4)) * 0.4, name="w")
        x0 = gc.placeholder(gc.float64, (2, 4), name="x0")

        def body(carry):
            i, h = carry
            return i + 1, gc.tanh(h @ w + 0.1)

        _, h = gc.while_loop(lambda c: c[0] < steps - 5, body, (gc.constant(0), x0), max_iterations=steps)
        loss = gc.sum(h * h)
        fetches = [loss, *gc.gradients(loss, [w, x0])]
    return g, fetches, {x0: rng.standard_normal((2, 4))}


@pytest.mark.parametrize("options", [{"checkpoint": "sqrt"}, {"checkpoint": "revolve", "slots": 2}])
def test_a_bounded_while_loop_is_checkpointed_too(options):
    _, want = _compiled({}, 100, _bounded_while)
    program, got = _compiled(options, 100, _bounded_while)
    assert "loop " in program.report() and "100 iterations" in program.report()
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
