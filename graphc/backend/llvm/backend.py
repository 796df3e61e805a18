"""The LLVM backend as the compile pipeline sees it: its late passes and its measurements.

The late passes are its stages, each a pure function from one immutable stage to the next
(grouping.py, plan.py):

    Nodes --fusion--> Groups --schedule--> Units --steps--> Steps --memory--> Plan

`LLVMBackend.lower` runs them with the pipeline driver (`graphc.passes.manager.run_pipeline`)
so they are timed, measured, printed and dumped like graph passes; `measure` is what the
checkpoint pass and `graphc passes` use to see kernels and peak bytes of a module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ...compiler import split_outputs
from ...ir.graph import Tensor
from ...passes.manager import Instrumentation, Pass, PassRecord, run_pipeline
from ...passes.module import Module
from .grouping import Groups, Nodes, Units, group_kernels, order_units, program_nodes
from .plan import Steps, build_steps, place_arena
from .steps import Plan


def _fusion(nodes: Nodes, options: object = None) -> tuple[Groups, int]:
    groups = group_kernels(nodes)
    return groups, groups.fused


def _schedule(groups: Groups, options: object = None) -> tuple[Units, int]:
    units = order_units(groups)
    return units, len(units.units)


def _steps(units: Units, options: object = None) -> tuple[Steps, int]:
    steps = build_steps(units, LLVM.lower_region)
    return steps, len(steps.draft.steps)


def _memory(steps: Steps, options: object = None) -> tuple[Plan, int]:
    plan = place_arena(steps)
    return plan, sum(1 for b in plan.buffers if b.kind == "arena" and b not in steps.draft.buffers)


LATE_PASSES = (
    Pass("fusion", "kernel grouping: inline single-use producers, fuse siblings and row kernels, attach GEMM epilogues",
         _fusion),
    Pass("schedule", "order kernels, GEMMs and views by dependencies, in memory-aware node order", _schedule),
    Pass("steps", "buffers, views and steps for the units; output copies; in-place assignments", _steps),
    Pass("memory", "arena placement by liveness over the steps (buffers with disjoint lifetimes share)", _memory),
)


class LLVMBackend:
    """Owns the late passes (`passes`, run in `late_pipeline` order) and the measurements."""

    name = "llvm"
    passes = {p.name: p for p in LATE_PASSES}
    late_pipeline = tuple(p.name for p in LATE_PASSES)

    def lower(self, fetches: Sequence[Tensor], assigns: Sequence[Tensor] = (),
              instrument: Instrumentation | None = None, first: int = 1) -> tuple[Plan, list[PassRecord]]:
        """The `Plan` of a program computing `fetches` (bound, static shapes) and applying `assigns`,
        and one record per late pass (dump files numbered from `first`, after the graph passes)."""
        plan, records = run_pipeline(program_nodes(fetches, assigns), self.late_pipeline, instrument,
                                     passes=self.passes, first=first)
        return replace(plan, records=tuple(records)), records

    def lower_region(self, results: Sequence[Tensor], prefix: str) -> Plan:
        """The `Plan` of a region (a loop body, a branch) computing `results` from its params (its
        feeds): the same late passes, uninstrumented, its step names prefixed."""
        from .control import prefixed  # loaded with the first region (docs/architecture.md)

        plan, _ = run_pipeline(program_nodes(results), self.late_pipeline, passes=self.passes)
        return prefixed(plan, prefix)

    def measure(self, module: Module) -> dict[str, int]:
        """Steps (kernels and GEMM calls) and arena bytes of the module's plan."""
        plan, _ = self.lower(*split_outputs(module))
        return {"kernels": len(plan.steps), "peak_bytes": plan.arena_bytes}


LLVM = LLVMBackend()
