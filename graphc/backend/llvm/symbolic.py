"""`SymbolicProgram`: one compiled program for every value of the symbolic dims (see `template`).

A run reads the symbol values from the feeds, evaluates the output shapes and the arena
size for them, writes the values into the program's ``graphc_dims`` global and makes the
native call. The global belongs to the program, so runs of one symbolic program are
serialized by a lock (runs of different programs still overlap).
"""

from __future__ import annotations

import contextlib
import ctypes
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ...compiler import optimize
from ...errors import GraphcError
from ...ir.bind import bind_shapes
from ...ir.graph import Tensor
from ...ir.traverse import toposort
from ...options import CompileOptions
from ...passes.sizing import SizesDivergedError, Tape, taping
from . import program_entries as entries
from . import shared
from .backend import LLVM
from .codegen import ENTRY, module_text
from .jit import Compiling, compile_ir
from .probes import LIMIT, MAX_SYMBOLS, NotSymbolicError, probes, small_probes
from .program import LLVMProgram, link_symbols
from .steps import Collective, Lapack, Plan, host_nodes
from .template import DIMS, ArenaFormula, affine_arena, check_shapes, fit_ir, fit_shapes, same_consts


def build_template(fetches: Sequence[Tensor], assigns: Sequence[Tensor],
                   shapes_at: Callable[[tuple[int, ...]], Mapping[Tensor, tuple[int, ...]]], k: int,
                   options: CompileOptions, early: Callable[[str, Plan], None] | None = None
                   ) -> tuple[tuple, Any, list[tuple]]:
    """((optimized, plan, ir_text) of the base probe with the template IR, arena formula, output shapes).

    The template is fitted on the large probes (`probes`) and checked at the small ones
    (`small_probes`). `early(ir_text, plan)`, when given, is called with the template as the
    large probes give it, before the small probes are built: the caller may start compiling
    it while they are. The result is what the builds at all probes give; its IR text is the
    one `early` saw unless the small probes changed a fit (then `early`'s is not the template).

    Raises `NotSymbolicError` when the program cannot be one template for all values.
    """
    if k > MAX_SYMBOLS:
        raise NotSymbolicError(f"{k} independent symbolic dims (a template has at most {MAX_SYMBOLS})")
    fetches, assigns = list(fetches), list(assigns)
    shared.prepare_for(toposort(fetches + assigns))  # the GEMM kernel compiles while the probes plan
    large, points = probes(k), probes(k) + small_probes(k)
    mappings = []
    for point in points:
        try:
            mappings.append(bind_shapes(fetches + assigns, shapes_at(point))[1])
        except GraphcError as e:
            raise NotSymbolicError(f"the graph does not bind for every value of its symbolic dims ({e})") from e
    check_shapes(mappings, points)
    del mappings
    # planned at the base probe (dims beyond any value served); every other build, at large and
    # at small values, replays its decisions (`graphc.passes.sizing`) and must then agree with it
    planning, codegen = Tape(), Tape()
    built = [_plan_at(fetches, assigns, shapes_at(point), options, planning) for point in large]
    optimized, plans = built[0][0], [plan for _, plan in built]
    del built
    placed, _ = affine_arena(plans, large)
    texts = [_text(plan, codegen) for plan in placed]
    scans: dict[str, Any] = {}  # each text's scan, for the fit at every probe
    if early is not None:
        with contextlib.suppress(NotSymbolicError):  # the fit at every probe below says why
            early(fit_ir(texts, large, scans, guess=True), placed[0])
    # the small probes: the template is what the builds at every probe give
    plans += [_plan_at(fetches, assigns, shapes_at(point), options, planning)[1] for point in points[len(large):]]
    same_consts(plans)
    all_placed, arena = affine_arena(plans, points)
    for i, (a, b) in enumerate(zip(placed, all_placed)):
        if [x.slot for x in a.buffers] != [x.slot for x in b.buffers]:  # placed otherwise: built again
            texts[i] = _text(b, codegen)
    if any(len(p.feeds) != len(all_placed[0].feeds) or len(p.outputs) != len(all_placed[0].outputs)
           for p in all_placed):
        raise NotSymbolicError("the program's arguments depend on the dim values")
    texts += [_text(plan, codegen) for plan in all_placed[len(large):]]
    ir_text = fit_ir(texts, points, scans)
    out_shapes = fit_shapes([[o.shape for o in p.outputs] for p in all_placed], points)
    return (optimized, all_placed[0], ir_text), arena, out_shapes


def _plan_at(fetches: list[Tensor], assigns: list[Tensor], shapes: Mapping[Tensor, tuple[int, ...]],
             options: CompileOptions, planning: Tape) -> tuple[Any, Plan]:
    """The optimized graph and plan at one probe, under the planning tape (recording at the
    first build, replaying after); raises `NotSymbolicError` for what a template cannot do."""
    with _diverging():
        try:
            with taping(planning):
                opt = optimize(fetches + assigns, shapes, options, backend=LLVM)
                bound = list(opt.module.outputs)
                plan, _ = LLVM.lower(bound[:len(fetches)], bound[len(fetches):])
                planning.finished()
        except SizesDivergedError:
            raise
        except GraphcError as e:
            raise NotSymbolicError(f"the graph does not bind with independent symbolic dims ({e})") from e
    planning.rewind()
    for step in plan.steps:
        if isinstance(step, (Lapack, Collective)):
            raise NotSymbolicError(f"{step.node.op} (LAPACK and collective steps) needs static shapes")
    if host_nodes(plan):  # the host callback shapes what it prints or checks by the node's static shape
        raise NotSymbolicError("gc.print and gc.check_numerics (host callbacks) need static shapes")
    return opt, plan


def _text(plan: Plan, codegen: Tape) -> str:
    """The plan's LLVM IR text, under the code generation tape."""
    with _diverging(), taping(codegen):
        text = module_text(plan)
        codegen.finished()
    codegen.rewind()
    return text


@contextlib.contextmanager
def _diverging() -> Iterator[None]:
    """A build whose decisions diverge from the nominal build's: not one template."""
    try:
        yield
    except SizesDivergedError as e:
        raise NotSymbolicError(f"the program's structure depends on the dim values: {e}") from e


class SymbolicProgram(LLVMProgram):
    """A compiled template: it serves feeds with any values of the symbolic dims (1..LIMIT).

    `at(values)` is the program seen at some values (output slots, arena size), which an
    executable runs after `set_dims(values)`, both under `lock` (the dims are the program's).
    """

    def __init__(self, fetches: Sequence[Tensor], assigns: Sequence[Tensor],
                 where: Sequence[tuple[Tensor, int]],
                 shapes_at: Callable[[tuple[int, ...]], Mapping[Tensor, tuple[int, ...]]],
                 options: CompileOptions | None = None):
        """`where[j]` is a (placeholder, axis) whose fed dim is symbol j; `shapes_at(values)` the feed shapes."""
        options = options or CompileOptions()
        early: list[tuple[str, Compiling]] = []

        def compile_early(ir_text: str, plan: Plan) -> None:  # while the small probes are built
            early.append((ir_text, Compiling(lambda: compile_ir(ir_text, ENTRY, lambda: link_symbols(plan, ir_text)))))

        built, self.arena_formula, self.out_shapes = build_template(fetches, assigns, shapes_at, len(where), options,
                                                                    compile_early)
        compiling = early[0][1] if early and early[0][0] == built[2] else None
        try:
            super().__init__(fetches, assigns, None, options, built=built, compiling=compiling)
        except Exception as e:  # a literal replaced where LLVM wants a constant: never a failed run
            raise NotSymbolicError(f"the template does not compile ({type(e).__name__}: {str(e)[:200]})") from e
        self._init_symbolic(where, fetches, assigns)

    def _init_symbolic(self, where: Sequence[tuple[Tensor, int]], fetches: Sequence[Tensor],
                       assigns: Sequence[Tensor]) -> None:
        """The symbolic program's own state, once the template is compiled."""
        self.where = list(where)
        self.user_outputs = list(fetches) + list(assigns)  # before binding: `SymbolicAt.report` binds them
        address = self.compiled.engine.get_global_value_address(DIMS)
        if not address:
            raise GraphcError(f"internal: the symbolic program has no {DIMS}")
        self._dims = np.frombuffer((ctypes.c_int64 * len(where)).from_address(address), np.int64)
        self.lock = threading.Lock()
        self._views: dict[tuple, SymbolicAt] = {}

    def symbols(self, feeds: Mapping[Tensor, np.ndarray]) -> tuple[int, ...]:
        """The symbol values of these feeds (checked: 1..LIMIT)."""
        values = tuple(int(feeds[ph].shape[axis]) for ph, axis in self.where)
        for (ph, axis), v in zip(self.where, values):
            if not 1 <= v <= LIMIT:
                raise GraphcError(f"symbolic dim {axis} of {ph.name} is {v}: a symbolic program serves 1..{LIMIT}")
        return values

    def arena_at(self, values: tuple[int, ...]) -> int:
        """Arena bytes at these symbol values."""
        return self.arena_formula.bytes_at(values)

    def at(self, values: tuple[int, ...], arena: int | None = None) -> SymbolicAt:
        """The program at these symbol values, with an arena of `arena` bytes (default: what they need)."""
        key = (values, arena)
        view = self._views.get(key)
        if view is None:
            if len(self._views) > 256:
                self._views.clear()
            view = self._views[key] = SymbolicAt(self, values, self.arena_at(values) if arena is None else arena)
        return view

    def plan_at(self, arena: int) -> Any:
        """The plan with an arena of `arena` bytes."""
        return replace(self.plan, arena_bytes=arena)

    def set_dims(self, values: Sequence[int]) -> None:
        """Set the dims the next native call runs with (hold `lock` from here through the call)."""
        self._dims[:] = values

    def as_text(self, stage: str = "kernels") -> str:
        """As `LLVMProgram.as_text`; in the graph and kernels stages the base probe's symbol
        values read ``s0``, ``s1``, ... (derived sizes stay numbers)."""
        text = super().as_text(stage)
        if stage in ("graph", "kernels"):
            for j, value in enumerate(probes(len(self.where))[0]):
                text = re.sub(rf"\b{value}\b", f"s{j}", text)
        return text

    def report(self) -> str:
        return (f"symbolic program ({self._symbol_names()}); arena bytes {self.arena_formula.size}; the listing "
                f"below is at s = {probes(len(self.where))[0]}\n" + super().report())

    def _symbol_names(self) -> str:
        return ", ".join(f"s{j} = dim {axis} of {ph.name}" for j, (ph, axis) in enumerate(self.where))


class SymbolicAt:
    """A `SymbolicProgram` at one set of symbol values: its output slots and its plan's arena
    size are those of the values; everything else is the program's. `call(fn)` wraps a native
    caller so the program's dims are set (under its lock) for each call."""

    def __init__(self, program: SymbolicProgram, values: tuple[int, ...], arena: int,
                 feed_shapes: Mapping[Tensor, tuple[int, ...]] | None = None):
        """`feed_shapes` (the feeds' shapes at these values) lets `report` give figures at them."""
        self.program, self.values, self.feed_shapes = program, values, feed_shapes
        self.out_slots = [(tuple(d if isinstance(d, int) else int(d.at(values)) for d in shape), dtype, slot)
                          for shape, (_, dtype, slot) in zip(program.out_shapes, program.out_slots)]
        self.plan = program.plan_at(arena)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.program, name)

    def report(self) -> str:
        """`LLVMProgram.report` at these values: the arena is the formula's value; the checkpoint
        figures are those of the pipeline run at the feed shapes when it makes the template's
        decisions (the same residuals and recomputations), else the template's, marked so."""
        program = self.program
        head = (f"symbolic program ({program._symbol_names()}) at s = {self.values}; arena bytes "
                f"{program.arena_formula.size}")
        nominal = program.checkpoint_report()
        if self.feed_shapes is not None:
            here = optimize(program.user_outputs, self.feed_shapes, program.options,
                            backend=LLVM).checkpoint_report(nominal.policy)
            if _decisions(here) == _decisions(nominal):
                return f"{head}\n{program.report_of(here, self.plan)}"
        return (f"{head}; the checkpoint figures are at s = {probes(len(program.where))[0]}\n"
                + program.report_of(nominal, self.plan))

    def call(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        program, values = self.program, self.values

        def call(*args: Any) -> Any:
            with program.lock:
                program.set_dims(values)
                return fn(*args)
        return call


def _decisions(report: Any) -> tuple:
    """What a checkpoint report decided, apart from sizes: residuals, recomputations, loops."""
    return ([name for name, *_ in report.saved], [(name, op) for name, op, _ in report.recomputed],
            [(x.name, x.iterations, x.segment, x.recomputed) for x in report.loops])


class LoadedTemplate(SymbolicProgram):
    """A `SymbolicProgram` made from a `template_cache` entry: compiled (object code from `cache`)
    without probing; the optimized graph and plan are built on first use."""

    def __init__(self, fetches: list[Tensor], assigns: list[Tensor], where: Sequence[tuple[Tensor, int]],
                 shapes_at: Callable, options: CompileOptions, entry: dict):
        self._rebuild = (fetches, assigns, shapes_at, len(where), options)
        self.arena_formula, self.out_shapes = ArenaFormula(entry["arena"]), entry["out_shapes"]
        entries.load_into(self, assigns, options, entry)
        self._init_symbolic(where, fetches, assigns)

    def __getattr__(self, name: str) -> Any:
        if name not in ("optimized", "plan", "fetches", "assigns"):
            raise AttributeError(name)
        fetches, assigns, shapes_at, k, options = self._rebuild
        (optimized, plan, _), _, _ = build_template(fetches, assigns, shapes_at, k, options)
        bound = list(optimized.module.outputs)
        self.optimized, self.plan = optimized, plan
        self.fetches, self.assigns = bound[:len(fetches)], bound[len(fetches):]
        return getattr(self, name)

    def plan_at(self, arena: int) -> Any:
        return entries.PlanAt(lambda: self.plan, arena)
