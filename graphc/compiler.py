"""The compile pipeline up to the backend: bind shapes, then run the graph passes.

`optimize` is what `Session` (LLVM backend), `gc.function` and the `graphc` CLI share:
fetches and assignments of a user graph, plus the fed shapes, become a `Module` with
static shapes, which the pass pipeline of the chosen optimisation level rewrites.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .ir.bind import bind_shapes
from .ir.graph import Tensor
from .options import CompileOptions
from .passes.checkpoint import CheckpointReport, report
from .passes.manager import Instrumentation, PassRecord, run_passes
from .passes.module import Module
from .passes.pipeline import pipeline_for


@dataclass
class Optimized:
    """A bound, optimised module and how it got there."""

    module: Module
    records: list[PassRecord]  # graph passes, then the backend's late passes when planned
    mapping: dict[Tensor, Tensor]  # user graph node -> bound node (inputs and variables)
    plan: object = None  # the LLVM plan (graphc.backend.llvm.steps.Plan) when `optimize(plan=True)`

    def checkpoint_report(self, policy: str) -> CheckpointReport:
        return report(self.module, policy)


def bind(outputs: Sequence[Tensor], feed_shapes: Mapping[Tensor, tuple[int, ...]]) -> tuple[Module, dict]:
    """The outputs rebuilt with static shapes, as a Module that keeps autodiff's tags."""
    bound, mapping = bind_shapes(list(outputs), feed_shapes)
    adjoint = set()
    for old, new in mapping.items():
        if old in old.graph.adjoint:
            adjoint.add(new)
    return Module(tuple(bound), frozenset(adjoint)), mapping


def optimize(outputs: Sequence[Tensor], feed_shapes: Mapping[Tensor, tuple[int, ...]],
             options: CompileOptions | None = None, instrument: Instrumentation | None = None,
             passes: Sequence[str] | None = None, plan: bool = False) -> Optimized:
    """Bind shapes and run the pipeline of ``options.opt_level`` (or the given pass names).

    With `plan`, the LLVM backend's late passes (fusion, schedule, steps, memory) run
    too, under the same instrumentation, and their records follow the graph passes'.
    """
    options = options or CompileOptions()
    module, mapping = bind(outputs, feed_shapes)
    names = list(passes) if passes is not None else pipeline_for(options.opt_level)
    module, records = run_passes(module, names, PassContext(options), instrument)
    result = Optimized(module, records, mapping)
    if plan:
        from .backend.llvm.plan import make_plan

        fetches, assigns = split_outputs(module)
        result.plan = make_plan(fetches, assigns, instrument, first=len(records))
        result.records = records + result.plan.records
    return result


class PassContext:
    """What passes read: the compile options, plus the backend's measure of a module's arena."""

    def __init__(self, options: CompileOptions):
        self.options = options

    def __getattr__(self, name: str):
        return getattr(self.options, name)

    @staticmethod
    def peak_bytes(module: Module) -> int:
        return plan_stats(module)["peak_bytes"]


def plan_stats(module: Module) -> dict[str, int]:
    """Steps (kernels and GEMM calls) and arena bytes of the LLVM plan for a module."""
    from .backend.llvm.plan import make_plan

    plan = make_plan(*split_outputs(module))
    return {"kernels": len(plan.steps), "peak_bytes": plan.arena_bytes}


def split_outputs(module: Module) -> tuple[list[Tensor], list[Tensor]]:
    """A module's fetches and its assignments."""
    return ([o for o in module.outputs if o.op != "assign"], [o for o in module.outputs if o.op == "assign"])
