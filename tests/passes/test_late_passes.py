"""Late passes: the LLVM planner's stages, registered and instrumented like graph passes."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.backend.llvm.plan import _Planner, make_plan
from graphc.compiler import optimize, split_outputs
from graphc.errors import GraphcError
from graphc.passes.manager import Instrumentation, all_late_passes, run_late_passes
from graphc.passes.pipeline import LATE_PIPELINE


def _module():
    rng = np.random.default_rng(0)
    x = gc.placeholder(gc.float32, (16, 12), name="x")
    w = gc.Variable(rng.standard_normal((12, 8)).astype(np.float32))
    b = gc.Variable(rng.standard_normal(8).astype(np.float32))
    v = gc.Variable(rng.standard_normal((8, 3)).astype(np.float32))
    loss = gc.sum(gc.tanh(gc.relu(x @ w + b) @ v))
    step = gc.train.SGD(0.1).minimize(loss)
    fetches = [loss, step]
    assigns = [n for n in gc.ir.traverse.toposort(fetches) if n.op == "assign"]
    return optimize(fetches + assigns, {x: (16, 12)}).module


def test_late_passes_are_registered_with_descriptions():
    late = all_late_passes()
    assert LATE_PIPELINE == ["fusion", "schedule", "steps", "memory"]
    for name in LATE_PIPELINE:
        assert late[name].name == name and late[name].description and "\n" not in late[name].description


def test_make_plan_is_the_late_pipeline_and_records_each_stage():
    module = _module()
    printed = []
    plan = make_plan(*split_outputs(module), Instrumentation(print_after={"fusion", "memory"}, printer=printed.append))
    assert [r.name for r in plan.records] == LATE_PIPELINE
    fusion, schedule, steps, memory = plan.records
    assert "peak_bytes" not in fusion.stats and "peak_bytes" not in schedule.stats
    assert steps.stats["kernels"] == memory.stats["kernels"] == len(plan.steps)
    assert memory.stats["peak_bytes"] == plan.arena_bytes <= steps.stats["peak_bytes"]
    assert fusion.changes > 0  # nodes joined other nodes' kernels
    assert [p.split("\n")[0] for p in printed] == ["# after fusion", "# after memory"]
    assert "epilogue" in printed[1]


def test_the_stages_run_one_by_one_build_the_same_plan():
    module = _module()
    planner = _Planner(*split_outputs(module))
    for name in LATE_PIPELINE:
        planner, _ = run_late_passes(planner, [name])
        if name == "fusion":
            assert planner.group and planner.units is None and not planner.steps
        if name == "schedule":
            assert planner.units and not planner.steps
        if name == "steps":
            assert planner.steps and planner.result is None
    whole = make_plan(*split_outputs(module))
    assert planner.result.as_text() == whole.as_text()


def test_unknown_late_pass_is_an_error():
    planner = _Planner(*split_outputs(_module()))
    with pytest.raises(GraphcError, match="unknown late pass 'fuse'"):
        run_late_passes(planner, ["fuse"])


def test_optimize_with_plan_reports_graph_then_late_passes():
    x = gc.placeholder(gc.float64, (5, 3), name="x")
    y = gc.exp(x @ gc.ones((3, 4), gc.float64)) + 1.0
    result = optimize([y], {x: (5, 3)}, plan=True)
    names = [r.name for r in result.records]
    assert names[-4:] == LATE_PIPELINE and names[0] == "input"
    assert result.plan is not None and len(result.plan.steps) == 1  # the GEMM with its epilogue


def test_arena_placement_keeps_the_better_of_two_greedy_orders():
    from graphc.passes.memory import Interval, plan

    spans = [(256, 1, 2), (128, 3, 4), (192, 5, 6), (192, 0, 5), (128, 3, 6)]
    intervals = [Interval(k, size, a, b) for k, (size, a, b) in enumerate(spans)]
    offsets, peak = plan(intervals)
    assert peak == 512  # largest-first by size alone needs 576; the maximum live is 512
    for u in intervals:
        for v in intervals:
            if u.key < v.key and u.start <= v.end and v.start <= u.end:
                assert offsets[u.key] + u.size <= offsets[v.key] or offsets[v.key] + v.size <= offsets[u.key]
