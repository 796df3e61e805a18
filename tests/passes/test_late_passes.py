"""Late passes: the LLVM backend's stages, immutable values run by the one pipeline driver."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import graphc as gc
from graphc.backend.llvm.backend import LLVM
from graphc.backend.llvm.grouping import Groups, Nodes, Units, group_kernels, order_units, program_nodes
from graphc.backend.llvm.plan import Steps, build_steps, place_arena
from graphc.backend.llvm.steps import Plan
from graphc.compiler import optimize, split_outputs
from graphc.errors import GraphcError
from graphc.passes.manager import PASSES, Instrumentation, run_pipeline


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


def test_the_backend_owns_its_late_passes_apart_from_the_graph_passes():
    assert LLVM.late_pipeline == ("fusion", "schedule", "steps", "memory")
    for name in LLVM.late_pipeline:
        p = LLVM.passes[name]
        assert p.name == name and p.description and "\n" not in p.description
        assert name not in PASSES


def test_lower_is_the_late_pipeline_and_records_each_stage():
    module = _module()
    printed = []
    plan, records = LLVM.lower(*split_outputs(module), Instrumentation(print_after={"fusion", "memory"},
                                                                       printer=printed.append))
    assert [r.name for r in records] == list(LLVM.late_pipeline) and plan.records == tuple(records)
    fusion, schedule, steps, memory = records
    assert "peak_bytes" not in fusion.stats and "peak_bytes" not in schedule.stats
    assert steps.stats["kernels"] == memory.stats["kernels"] == len(plan.steps)
    assert memory.stats["peak_bytes"] == plan.arena_bytes <= steps.stats["peak_bytes"]
    assert fusion.changes > 0  # nodes joined other nodes' kernels
    assert [p.split("\n")[0] for p in printed] == ["# after fusion", "# after memory"]
    assert "epilogue" in printed[1]


def test_each_stage_is_an_immutable_value_made_from_the_previous_one():
    module = _module()
    nodes = program_nodes(*split_outputs(module))
    groups = group_kernels(nodes)
    units = order_units(groups)
    steps = build_steps(units, LLVM.lower_region)
    plan = place_arena(steps)
    assert (type(nodes), type(groups), type(units), type(steps), type(plan)) == (Nodes, Groups, Units, Steps, Plan)
    assert groups.nodes is nodes and units.groups is groups and steps.units is units
    assert groups.as_text().startswith("kernels:") and units.as_text().startswith("units:")
    assert "arena: 0 bytes" in steps.as_text() and f"arena: {plan.arena_bytes} bytes" in plan.as_text()
    for stage in (nodes, groups, units, steps, plan):
        with pytest.raises(dataclasses.FrozenInstanceError):
            stage.x = 1
    assert all(b.slot == 0 for b in steps.draft.buffers if b.kind == "arena")  # placing made new buffers
    assert place_arena(steps).as_text() == plan.as_text()  # pure: the same stage gives the same plan
    whole, _ = LLVM.lower(*split_outputs(module))
    assert whole.as_text() == plan.as_text()


def test_unknown_late_pass_is_an_error():
    nodes = program_nodes(*split_outputs(_module()))
    with pytest.raises(GraphcError, match="unknown pass 'fuse'"):
        run_pipeline(nodes, ["fuse"], passes=LLVM.passes, first=1)


def test_optimize_with_lower_reports_graph_then_late_passes():
    x = gc.placeholder(gc.float64, (5, 3), name="x")
    y = gc.exp(x @ gc.ones((3, 4), gc.float64)) + 1.0
    result = optimize([y], {x: (5, 3)}, backend=LLVM, lower=True)
    names = [r.name for r in result.records]
    assert names[-4:] == list(LLVM.late_pipeline) and names[0] == "input"
    assert result.plan is not None and len(result.plan.steps) == 1  # the GEMM with its epilogue
    with pytest.raises(GraphcError, match="needs a backend"):
        optimize([y], {x: (5, 3)}, lower=True)


def test_arena_placement_keeps_the_better_of_two_greedy_orders():
    from graphc.passes.memory import Interval, place

    spans = [(256, 1, 2), (128, 3, 4), (192, 5, 6), (192, 0, 5), (128, 3, 6)]
    intervals = [Interval(k, size, a, b) for k, (size, a, b) in enumerate(spans)]
    offsets, peak = place(intervals)
    assert peak == 512  # largest-first by size alone needs 576; the maximum live is 512
    for u in intervals:
        for v in intervals:
            if u.key < v.key and u.start <= v.end and v.start <= u.end:
                assert offsets[u.key] + u.size <= offsets[v.key] or offsets[v.key] + v.size <= offsets[u.key]
