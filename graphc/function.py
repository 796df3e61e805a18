"""`gc.function`: a compiled callable over positional numpy arrays (as PyTensor's `function`).

    f = gc.function([x, labels], [loss, *grads], updates=[(w, w - 0.1 * gw)])
    loss_value, *grad_values = f(x_batch, label_batch)

Variables live in a `Session`: the one passed as ``session=`` (shared with its `run` calls
and with every other function built on it), else a new private one (``f.session``; pass
it to other functions to share their variables). A call reads the variables' values at
its start; `updates` are applied together at its end, like assignments in `Session.run`.
Calls that touch variables hold the session's variable lock (readers share it, a call
with updates holds it alone), so calls from several threads are safe.

Inputs whose dims are None get one symbolic program that serves every value of those dims
(docs/runtime.md); otherwise programs are compiled per input-shape signature.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .dtypes import as_shape
from .errors import GraphcError, out_of_memory
from .ir.graph import Tensor
from .ir.traverse import toposort
from .ops.random import counter_steps
from .ops.state import assign, check_single_assignments
from .options import CompileOptions
from .profiler import recording
from .runtime.feeds import convert_feed
from .runtime.lru import LRU
from .runtime.symbolic import CompileStats, SymbolicExecutable, pattern_of, shapes_at, symbolic_program

if TYPE_CHECKING:
    from pathlib import Path

    from .profiler.report import RunMetadata

MISS = object()

__all__ = ["Function", "function"]


def function(inputs: Tensor | Sequence[Tensor], outputs: Tensor | Sequence[Tensor],
             updates: Sequence[tuple[Tensor, Any]] | Mapping[Tensor, Any] | None = None,
             options: CompileOptions | None = None, session: Any = None) -> Function:
    """A callable computing `outputs` from numpy arrays given positionally for `inputs`.

    `inputs` are placeholders (one or a list); `outputs` one tensor (the call returns one
    array) or a list (it returns a list). `updates` are (variable, new value) pairs applied
    after the call. `session` supplies the variable values (default: a private session).
    """
    return Function(inputs, outputs, updates, options, session)


class Function:
    """A compiled function; see `function`. Set ``trust_input = True`` to skip input checks.

    With `trust_input`, arguments go to the compiled code as they are: each must be a
    C-contiguous numpy array of exactly its input's dtype and of the shapes of the previous
    call. Anything else reads out of bounds or gives wrong results: use it only when the
    caller guarantees its arrays.
    """

    def __init__(self, inputs: Tensor | Sequence[Tensor], outputs: Tensor | Sequence[Tensor],
                 updates: Sequence[tuple[Tensor, Any]] | Mapping[Tensor, Any] | None = None,
                 options: CompileOptions | None = None, session: Any = None):
        self.inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
        self.single_output = isinstance(outputs, Tensor)  # the call returns one array, not a list
        self.outputs = [outputs] if self.single_output else list(outputs)
        self.options = options or CompileOptions()
        for t in self.inputs:
            if not isinstance(t, Tensor) or t.op != "placeholder":
                raise GraphcError(f"function inputs must be placeholders, not {t!r}")
        if len(set(self.inputs)) != len(self.inputs):
            raise GraphcError("function inputs repeat a placeholder")
        if not self.outputs and not updates:
            raise GraphcError("function has no outputs and no updates")
        for t in self.outputs:
            if not isinstance(t, Tensor) or t.dtype is None:
                raise GraphcError(f"function outputs must be tensors with values, not {t!r} "
                                  "(give side effects as updates)")
        self.updates = _update_nodes(updates)
        nodes = self.outputs + self.updates
        graphs = {t.graph for t in self.inputs + nodes}
        if len(graphs) != 1:
            raise GraphcError("function inputs, outputs and updates must belong to one graph")
        (self.graph,) = graphs
        order = toposort(nodes)
        self.assigns = [n for n in order if n.op == "assign"]
        check_single_assignments(self.assigns, "updated", "call")
        self.assigns += counter_steps(order, self.assigns)  # a call that draws random numbers advances the counter
        given = set(self.inputs)
        missing = [n.name for n in order if n.op == "placeholder" and n not in given]
        if missing:
            raise GraphcError("the outputs need placeholder(s) that are not inputs: " + ", ".join(missing))
        self.variables = [n for n in order if n.op == "variable"]
        self._used = set(order)
        if session is None:
            from .runtime.session import Session

            session = Session(self.graph)
        elif session.graph is not self.graph:
            raise GraphcError("the session runs another graph than the function's")
        session.on_close(self)  # raises for a closed session
        self.session = session
        self._n = len(self.inputs)
        self._runners = LRU(self.options.program_cache)
        self._templates = LRU(self.options.program_cache)  # ("symbolic", pattern) -> symbolic program
        self._first_sizes: dict = {}  # symbolic pattern -> the symbol values first called with (`symbolic_program`)
        self._traced = LRU(self.options.program_cache)  # shapes -> executable of a specialized program
        self._template_lock = threading.Lock()
        self._stats = CompileStats()
        self._trust = False
        self._select(None)
        self._compile_lock = threading.Lock()

    # --- calling ------------------------------------------------------------------------
    @property
    def trust_input(self) -> bool:
        """Skip the argument checks (unsafe: see the class docstring)."""
        return self._trust

    @trust_input.setter
    def trust_input(self, value: bool) -> None:
        self._trust = bool(value)
        self._select(self._last)

    def _select(self, runner: _Runner | None) -> None:
        self._last = runner
        self._fast = None if runner is None else runner.trusted if self._trust else runner.checked

    def session_closed(self) -> None:
        """Drop the fast path: a program without variables would keep running (`Session.close`)."""
        self._select(None)

    def _check_open(self) -> None:
        if self.session.closed:
            self._select(None)  # a call racing close may have selected a runner after `session_closed`
            raise GraphcError("the function's session is closed")

    def __call__(self, *args: Any) -> Any:
        if recording.active:  # inside `with gc.profile()`: the call is traced
            return self._call_traced(args, None)
        try:
            fast = self._fast
            if fast is not None:
                out = fast(*args)
                if out is not MISS:
                    return out
            return self._call_checked(args)
        except MemoryError as exc:  # the outputs or the workspace
            raise out_of_memory("gc.function call", exc) from None
        except KeyError:  # a variable missing from the session's values
            if self.session.closed:
                raise GraphcError("the function's session is closed") from None
            raise

    def _call_checked(self, args: tuple) -> Any:
        """Convert and check every argument as `Session.run` does, then call."""
        if len(args) != self._n:
            raise TypeError(f"function takes {self._n} input array(s), got {len(args)}")
        arrays = tuple(_exact(convert_feed(ph, a), np.dtype(ph.dtype)) for ph, a in zip(self.inputs, args))
        runner = self._runner(tuple(a.shape for a in arrays))
        out = runner.checked(*arrays)
        if out is MISS:
            raise GraphcError("internal: checked arguments were rejected by the compiled call")
        return out

    def profile(self, *args: Any) -> tuple[Any, RunMetadata]:
        """Call the function once with a trace: ``(outputs, gc.RunMetadata)`` (docs/profiling.md)."""
        from .profiler.report import RunMetadata  # the profiler loads on first use

        meta = RunMetadata()
        return self._call_traced(args, meta), meta

    def _call_traced(self, args: tuple, meta: RunMetadata | None) -> Any:
        if len(args) != self._n:
            raise TypeError(f"function takes {self._n} input array(s), got {len(args)}")
        arrays = tuple(_exact(convert_feed(ph, a), np.dtype(ph.dtype)) for ph, a in zip(self.inputs, args))
        shapes = tuple(a.shape for a in arrays)
        executable = self._runner(shapes).executable
        if isinstance(executable, SymbolicExecutable):  # the profiler instruments a specialized program
            executable = self._specialized(shapes)
        from .profiler.records import RunOptions

        to = recording.targets(None if meta is None else RunOptions(trace=True), meta)
        self._check_open()
        values = executable.run(dict(zip(self.inputs, arrays)), functools.partial(recording.traced_run, to=to))
        fetches = list(dict.fromkeys(self.outputs))
        result = [values[fetches.index(t)] for t in self.outputs]
        return result[0] if self.single_output else result

    def _runner(self, shapes: tuple[tuple[int, ...], ...]) -> _Runner:
        """The compiled program for these input shapes (compiled on first use)."""
        runner = self._runners.get(shapes)
        if runner is None:
            with self._compile_lock:
                runner = self._runners.get(shapes)
                if runner is None:
                    runner = _Runner(self, shapes)
                    self._runners.put(shapes, runner)
        self._select(runner)
        self._check_open()  # after selecting: a close racing this call clears the selection again
        return runner

    def program(self, shapes: Sequence[Sequence[int]] | None = None, specialize: bool = False) -> Any:
        """The compiled program for `shapes` (one per input; default: the last call's, or the
        static shapes); with `specialize`, one compiled for exactly these shapes."""
        if shapes is None:
            if self._last is not None:
                return self._last.program
            if any(d is None for ph in self.inputs for d in ph.shape):
                raise GraphcError("inputs have unknown dims: call the function first or give shapes")
            shapes = [ph.shape for ph in self.inputs]
        shapes = tuple(as_shape(s) for s in shapes)
        if len(shapes) != len(self.inputs):
            raise GraphcError(f"expected {len(self.inputs)} shape(s), one per input, got {len(shapes)}")
        for ph, shape in zip(self.inputs, shapes):
            convert_feed(ph, np.empty(shape, ph.dtype))  # the same shape checks as a call
        runner = self._runner(shapes)
        symbolic = isinstance(runner.executable, SymbolicExecutable)
        return self._specialized(shapes).program if specialize and symbolic else runner.program

    def as_text(self, stage: str = "kernels", shapes: Sequence[Sequence[int]] | None = None) -> str:
        """The compiled program at one stage: graph, kernels, llvm, llvm-opt or asm."""
        return self.program(shapes).as_text(stage)

    def export(self, directory: str | Path, name: str, signatures: Sequence[Sequence[Sequence[int]]] | None = None,
               cpu: str = "x86-64-v3", output_names: Sequence[str] | None = None) -> Path:
        """Write lib<name>.so, <name>.h, <name>.json and <name>.state.bin to `directory`.

        `signatures`: input shapes to compile, each a list with one shape per input
        (default: every signature called so far, or the static shapes). See docs/export.md.
        """
        from .export import export_function

        return export_function(self, directory, name, signatures, cpu, output_names)

    def signatures(self) -> list[tuple[tuple[int, ...], ...]]:
        """The input-shape signatures called so far (each a program, or a symbolic program at those shapes)."""
        return list(self._runners)

    def stats(self) -> dict[str, Any]:
        """Compile counts, as `Session.stats` (one symbolic program serves every batch size)."""
        return self._stats.as_dict()

    def _compile(self, fetches: list[Tensor], shapes: tuple[tuple[int, ...], ...]) -> Any:
        """The program for these input shapes: the symbolic one of their pattern (at these
        values) when there is one, else one compiled for the shapes."""
        from .backend.llvm.shared import prepare_for

        used = [(ph, s) for ph, s in zip(self.inputs, shapes) if ph in self._used]
        prepare_for(toposort(fetches + self.assigns))  # the GEMM kernel compiles while the rest loads and plans
        if not self.options.specialize:
            found = symbolic_program(self._templates, self._template_lock, self._stats, [p for p, _ in used],
                                     [s for _, s in used], fetches, self.assigns, self.options,
                                     first=None if self.options.specialize is False else self._first_sizes)
            if found is not None:
                return found[0]
        program = compile_program(fetches, self.assigns, dict(used), self.options)
        self._stats.count(symbolic=False)
        return program

    def symbolic_program(self) -> Any:
        """The symbolic program an export uses (docs/export.md), or None: the pattern of the calls
        so far (None when they had several), else every None dim of the inputs one symbol."""
        used = [ph for ph in self.inputs if ph in self._used]
        if self.options.specialize or not any(d is None for ph in used for d in ph.shape) or len(used) < self._n:
            return None
        patterns = {pattern_of(used, [s for ph, s in zip(self.inputs, sig) if ph in self._used])[0]
                    for sig in self._runners}
        if len(patterns) > 1:
            return None
        pattern = patterns.pop() if patterns else tuple(tuple(-1 if d is None else d for d in ph.shape) for ph in used)
        k = -min([d for dims in pattern for d in dims] + [0])
        found = symbolic_program(self._templates, self._template_lock, self._stats, used,
                                 list(shapes_at(used, pattern, [j + 2 for j in range(k)]).values()),
                                 list(dict.fromkeys(self.outputs)), self.assigns, self.options)
        return None if found is None else found[0]

    def _specialized(self, shapes: tuple[tuple[int, ...], ...]) -> Any:
        """The executable of a program for exactly these shapes (traced calls and exports: the
        profiler and the exporter work on concrete plans)."""
        from .runtime.executable import Executable

        exe = self._traced.get(shapes)
        if exe is None:
            used = {ph: s for ph, s in zip(self.inputs, shapes) if ph in self._used}
            program = compile_program(list(dict.fromkeys(self.outputs)), self.assigns, used, self.options)
            self._stats.count(symbolic=False)
            exe = Executable(program, self.session.variable_store)
            self._traced.put(shapes, exe)
        return exe


def _update_nodes(updates: Sequence[tuple[Tensor, Any]] | Mapping[Tensor, Any] | None) -> list[Tensor]:
    pairs = list(updates.items()) if isinstance(updates, Mapping) else list(updates or ())
    nodes = []
    for pair in pairs:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise GraphcError(f"an update is a (variable, new value) pair, not {pair!r}")
        nodes.append(assign(*pair))
    return nodes


def compile_program(fetches: Sequence[Tensor], assigns: Sequence[Tensor],
                    shapes: Mapping[Tensor, tuple[int, ...]], options: CompileOptions) -> Any:
    """An LLVM program for `fetches` and `assigns` at these placeholder shapes (from the disk
    cache when there: `program_entries.specialized_program`)."""
    from .backend.llvm.program_entries import specialized_program

    return specialized_program(fetches, assigns, shapes, options)


def _exact(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """`a` carrying the canonical dtype object itself (the compiled call compares identity)."""
    return a if a.dtype is dtype else a.view(dtype)


class _Runner:
    """One compiled program, its executable and the executable's two generated callers,
    `checked` and `trusted` (`Executable.callers`)."""

    def __init__(self, fn: Function, shapes: tuple[tuple[int, ...], ...]):
        from .backend.llvm.symbolic import SymbolicProgram
        from .runtime.executable import Executable

        fetches = list(dict.fromkeys(fn.outputs))
        self.program = program = fn._compile(fetches, shapes)
        make = SymbolicExecutable if isinstance(program, SymbolicProgram) else Executable
        self.executable = make(program, fn.session.variable_store)
        picks = [program.fetch_index[fetches.index(t)] for t in fn.outputs]
        self.checked, self.trusted = self.executable.callers(fn.inputs, shapes, picks, fn.single_output, MISS)
