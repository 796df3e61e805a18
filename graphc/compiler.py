"""The compile pipeline up to the backend: bind shapes, run the graph passes, hand over.

`optimize` is what `Session` (LLVM backend), `gc.function` and the `graphc` CLI share:
fetches and assignments of a user graph, plus the fed shapes, become a `Module` with
static shapes, which the pass pipeline of the chosen optimisation level rewrites. A
`Backend` (given by the caller; this module imports none) measures candidate modules for
the passes that need it (checkpointing under a memory budget) and, when asked, lowers
the result through its own late passes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from .errors import GraphcError
from .ir.bind import bind_shapes
from .ir.graph import Tensor
from .options import CompileOptions
from .passes.checkpoint import CheckpointReport, report
from .passes.manager import Instrumentation, PassRecord, run_pipeline
from .passes.module import Module
from .passes.pipeline import pipeline_for


class Backend(Protocol):
    """What the middle of the pipeline asks of a backend (graphc/backend/llvm/backend.py is one)."""

    name: str

    def measure(self, module: Module) -> dict[str, int]:
        """Kernels and peak bytes the backend would need for `module`."""
        ...

    def lower(self, fetches: Sequence[Tensor], assigns: Sequence[Tensor] = (),
              instrument: Instrumentation | None = None, first: int = 1) -> tuple[Any, list[PassRecord]]:
        """The backend's program for the bound fetches and assignments, through its late passes."""
        ...


@dataclass
class Optimized:
    """A bound, optimised module and how it got there."""

    module: Module
    records: list[PassRecord]  # graph passes, then the backend's late passes when lowered
    mapping: dict[Tensor, Tensor]  # user graph node -> bound node, for the bound nodes the module still has
    user_names: dict[tuple[str, str], str] = field(default_factory=dict)  # (bound name, op) -> user's name, all
    plan: Any = field(default=None)  # the backend's lowered program when `optimize(lower=True)`
    reports: dict[str, Any] = field(default_factory=dict)  # what passes reported ("checkpoint")

    def checkpoint_report(self, policy: str) -> CheckpointReport:
        """The checkpoint pass's own report (it says when a policy was not used), else one for `policy`."""
        return self.reports.get("checkpoint") or report(self.module, policy)


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
             passes: Sequence[str] | None = None, backend: Backend | None = None,
             lower: bool = False) -> Optimized:
    """Bind shapes and run the pipeline of ``options.opt_level`` (or the given pass names).

    `backend` measures modules for the checkpoint pass's memory budget (without one, the
    graph-level estimate of `graphc.passes.checkpoint` is used). With `lower`, the
    backend's late passes run too, under the same instrumentation (measured by the
    stages themselves), and their records follow the graph passes'.
    """
    options = options or CompileOptions()
    module, mapping = bind(outputs, feed_shapes)
    names = list(passes) if passes is not None else pipeline_for(options.opt_level)
    if options.check_numerics:  # last, so the checks see the values the program computes
        names.append("check_numerics")
    context = PassContext(options, backend)
    module, records = run_pipeline(module, names, instrument, options=context)
    kept = set(module.nodes)  # what refers to nodes the passes replaced would keep them alive for nothing
    module = Module(module.outputs, frozenset(n for n in module.adjoint if n in kept))
    result = Optimized(module, records, {old: new for old, new in mapping.items() if new in kept},
                       {(new.name, new.op): old.name for old, new in mapping.items()}, reports=context.reports)
    if lower:
        if backend is None:
            raise GraphcError("optimize(lower=True) needs a backend")
        late = None if instrument is None else replace(instrument, measure=None)
        result.plan, late_records = backend.lower(*split_outputs(module), late, first=len(records))
        result.records = records + late_records
    return result


class PassContext:
    """What passes read: the compile options, plus the backend's measure of a module's peak bytes."""

    def __init__(self, options: CompileOptions, backend: Backend | None = None):
        self.options = options
        self.peak_bytes = None if backend is None else (lambda module: backend.measure(module)["peak_bytes"])
        self.reports: dict[str, Any] = {}  # a pass may leave its report here (Optimized.reports)

    def __getattr__(self, name: str):
        return getattr(self.options, name)


def split_outputs(module: Module) -> tuple[list[Tensor], list[Tensor]]:
    """A module's fetches and its assignments."""
    return ([o for o in module.outputs if o.op != "assign"], [o for o in module.outputs if o.op == "assign"])
