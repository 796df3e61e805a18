"""`Session`: owns variable values, compiles fetches once per signature, runs them."""

from __future__ import annotations

import dataclasses
import functools
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..dtypes import out_of_range, shape_str
from ..errors import DTypeError, GraphcError, ShapeError, out_of_memory
from ..ir.bind import bind_shapes
from ..ir.graph import Graph, Tensor, get_default_graph
from ..ir.traverse import toposort
from ..ops.random import counter_steps
from ..ops.registry import OpKind
from ..ops.state import check_single_assignments
from ..options import CompileOptions
from ..profiler import recording
from .executable import Executable, VariableStore
from .feeds import check_feeds
from .fetches import flatten, unflatten
from .lru import LRU
from .symbolic import CompileStats, SymbolicExecutable, symbolic_program

BACKENDS = ("llvm", "reference")
MAX_CALLABLES = 256  # cached callables kept per session (one per fetch structure and feed keys)
MISS = object()


def _callable_key(fetches: Any, feed_dict: Mapping[Any, Any] | None) -> tuple:
    """(fetch structure, feed keys...): hashable for a tensor and flat lists or tuples of them."""
    kind = type(fetches)
    head = (kind, *fetches) if kind is list or kind is tuple else fetches
    return (head, *feed_dict) if feed_dict else (head,)


class Session:
    """Runs fetches of one graph, TensorFlow 1 style; usable as a context manager.

    Variables live here, as numpy buffers that runs update in place: every read in a run
    sees the value at the start of the run and all assignments of the run apply together
    at its end. `backend` is "llvm" (compiled; the default) or "reference" (numpy).
    `threads` caps the LLVM backend's thread pool (default: ``GRAPHC_THREADS`` or the
    CPU count); large kernels split their rows across it, small ones stay serial.
    Compiled programs are cached per (fetches, feed shapes): one request per fetch list, a
    program per feed-shape signature within it (options are fixed per session), at most
    `options.program_cache` programs per request, least recently used dropped first.
    """

    def __init__(self, graph: Graph | None = None, backend: str = "llvm", options: CompileOptions | None = None,
                 threads: int | None = None):
        if backend not in BACKENDS:
            raise GraphcError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.graph = graph or get_default_graph()
        self.backend = backend
        options = options if options is not None else CompileOptions()
        if not isinstance(options, CompileOptions):
            raise GraphcError(f"options must be a gc.CompileOptions, not {type(options).__name__}")
        self.options = options if threads is None else dataclasses.replace(options, threads=threads)
        self.threads = self.options.threads
        self._store = VariableStore()  # runs that assign variables exclude all other runs
        self._requests: dict[tuple[Tensor, ...], _Request] = {}
        self._callables: dict[tuple, Callable[..., Any] | None] = {}  # (fetch structure, feed keys) -> callable
        self._lock = threading.Lock()  # guards the dict above
        self._compile_lock = threading.Lock()
        self._stats = CompileStats()
        self._closed = False
        self._closers: weakref.WeakSet = weakref.WeakSet()  # gc.functions on this session (`on_close`)
        self._store.arrays(self.graph.variables)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Release compiled programs and variable storage.

        Waits for runs in flight that use variables; runs that start later (and
        `variable_value`) raise GraphcError("this session is closed").
        """
        self._closed = True
        with self._lock:  # a run in flight adds no callable or request after this (`_keep_callable`, `_request_for`)
            self._callables.clear()
            self._requests.clear()
        for closer in list(self._closers):
            closer.session_closed()  # a gc.function drops its fast path (programs without variables)
        self._store.close()  # new runs refuse at once (also compiled fast paths); waits for runs in flight

    def on_close(self, obj: Any) -> None:
        """Call ``obj.session_closed()`` when this session closes (held weakly)."""
        self._check_open()
        self._closers.add(obj)

    @property
    def closed(self) -> bool:
        """True once `close` was called."""
        return self._closed

    @property
    def variable_store(self) -> VariableStore:
        """Where this session's variable values live (shared with the `gc.function`s built on it)."""
        return self._store

    def _check_open(self) -> None:
        if self._closed:
            raise GraphcError("this session is closed")

    def run(self, fetches: Any, feed_dict: Mapping[Any, Any] | None = None, options: Any = None,
            run_metadata: Any = None) -> Any:
        """Evaluate fetches (a tensor, an op, or nested lists/tuples/dicts of them).

        ``options=gc.RunOptions(trace=True)`` with ``run_metadata=gc.RunMetadata()`` traces
        the run into the metadata, as in TensorFlow 1; so does any open ``gc.profile()``
        block (docs/profiling.md).
        """
        if options is None and run_metadata is None and not recording.active:
            kind = type(fetches)  # the key of `_callable_key`, inline (this is the hot path)
            head = (kind, *fetches) if kind is list or kind is tuple else fetches
            try:
                fast = self._callables.get((head, *feed_dict) if feed_dict else (head,))
            except TypeError:  # unhashable fetches (nested, dicts): no callable
                fast = None
            if fast is not None:  # a repeated run: its callable checks the feeds natively and runs
                try:
                    out = fast(feed_dict)
                except MemoryError as exc:  # its outputs or workspace
                    raise out_of_memory("Session.run", exc) from None
                if out is not MISS:
                    return out
        self._check_open()
        trace = None
        if options is not None or run_metadata is not None or recording.active:
            trace = recording.targets(options, run_metadata) or None
        if type(fetches) is Tensor:
            outputs, spec = [fetches], 0
        else:
            outputs, spec = flatten(fetches)
        req = self._request_for(outputs)
        feeds = req.fast_feeds(feed_dict)
        if feeds is None:
            feeds = check_feeds(feed_dict, self.graph, req.placeholders)
        traced = None if trace is None else functools.partial(recording.traced_run, to=trace)
        exe = self._executable(req, feeds, specialize=traced is not None)
        try:
            values = exe.run(feeds, traced)
        except MemoryError as exc:  # the outputs, the workspace, an array of the reference backend
            raise out_of_memory("Session.run", exc) from None
        if trace is None and self.backend == "llvm":
            self._keep_callable(fetches, spec, feed_dict, req, feeds, exe)
        return values[0] if spec == 0 else unflatten(spec, values)

    def _keep_callable(self, fetches: Any, spec: Any, feed_dict: Mapping[Any, Any] | None, req: _Request,
                       feeds: dict[Tensor, np.ndarray], exe: Executable) -> None:
        """Keep a callable for a run whose fetches are a tensor or a flat list or tuple of them and
        whose feed keys are exactly the needed placeholders (TF1's `Session.make_callable`, made
        for the user): ``callable(feed_dict)`` passes the fed arrays to the executable's checked
        caller (`Executable.callers`), which runs the
        program for arrays of exactly these dtypes and shapes, C-contiguous, and returns MISS
        for anything else (then `run` checks and converts as on a first run). The callable is
        made at the second such run (the first marks its key with None): a run done once,
        like a fresh process's first result, does not pay for compiling its caller."""
        kind = type(fetches)
        if not (spec == 0 or ((kind is list or kind is tuple) and spec[1] == list(range(len(req.outputs))))):
            return
        keys = list(feed_dict or ())
        if len(keys) != len(req.placeholders):
            return
        key = _callable_key(fetches, feed_dict)
        with self._lock:
            if self._closed:  # closed during this run: a callable kept now would keep running (no variables)
                return
            if len(self._callables) >= MAX_CALLABLES:  # fetch structures come and go: start over
                self._callables.clear()
            if key not in self._callables:
                self._callables[key] = None
                return
        fed = {k if isinstance(k, Tensor) else self.graph.get_tensor_by_name(k): k for k in keys}
        keys = [fed[p] for p in req.placeholders]
        shapes = [feeds[p].shape for p in req.placeholders]
        checked, _ = exe.callers(req.placeholders, shapes, exe.program.fetch_index, spec == 0, MISS, keys,
                                 kind is tuple)
        with self._lock:
            if not self._closed:
                self._callables[key] = checked

    def compile(self, fetches: Any, feed_dict: Mapping[Any, Any] | None = None) -> Any:
        """The compiled program `run(fetches, feed_dict)` would use (compiling it if needed).

        Its `as_text(stage)` shows the graph, kernels, LLVM IR or assembly, and `report()`
        the checkpoint decisions, FLOPs and planned peak bytes.
        """
        self._check_open()
        outputs, _ = flatten(fetches)
        req = self._request_for(outputs)
        feeds = check_feeds(feed_dict, self.graph, req.placeholders)
        return self._executable(req, feeds).program_for(feeds)

    def _request_for(self, outputs: list[Tensor]) -> _Request:
        key = tuple(outputs)
        req = self._requests.get(key)
        if req is None:
            for t in outputs:
                if t.graph is not self.graph:
                    raise GraphcError(f"fetch {t.name} belongs to another graph than the session's")
            req = _Request(outputs, self.options.program_cache)
            with self._lock:
                self._check_open()
                self._requests[key] = req
        return req

    def _executable(self, req: _Request, feeds: dict[Tensor, np.ndarray], specialize: bool = False) -> Executable:
        """The executable of a request for these feed shapes (compiled on first use): the symbolic
        program of their pattern when there is one (docs/runtime.md), else one for the shapes."""
        shapes = [feeds[p].shape for p in req.placeholders]
        sig = tuple(shapes)
        exe = req.programs.get(sig)
        if exe is not None:
            return exe
        if self.backend == "llvm":
            from ..backend.llvm.shared import prepare_for

            prepare_for(toposort(req.outputs + req.assigns))  # the GEMM kernel compiles while the rest loads and plans
        if req.symbolic and self.backend == "llvm" and not (specialize or self.options.specialize):
            found = symbolic_program(req.programs, self._compile_lock, self._stats, req.placeholders, shapes,
                                     req.outputs, req.assigns, self.options,
                                     lambda program: SymbolicExecutable(program, self._store),
                                     None if self.options.specialize is False else req.first_sizes)
            if found is not None:
                if isinstance(found[0], Executable):
                    return found[0]
                exe = Executable(found[0], self._store)  # a first size's program (the template is deferred)
                req.programs.put(sig, exe)
                return exe
        with self._compile_lock:
            exe = req.programs.get(sig)
            if exe is None:
                exe = Executable(self._compile(req, feeds), self._store)
                req.programs.put(sig, exe)
                if self.backend == "llvm":
                    self._stats.count(symbolic=False)
        return exe

    def stats(self) -> dict[str, Any]:
        """Compile counts of this session's LLVM programs: ``compiles`` (programs built),
        ``symbolic`` (programs serving every value of their symbolic dims), ``specialized``
        (programs for one set of feed shapes), ``first_sizes`` (of those, programs for the
        first sizes fed to None dims, while the symbolic program was deferred to a second
        size), ``not_symbolic`` (the last 16 reasons why a fetch list with None dims got
        specialized programs; docs/runtime.md)."""
        return self._stats.as_dict()

    def _compile(self, req: _Request, feeds: dict[Tensor, np.ndarray]) -> Any:
        if self.backend == "reference":
            bind_shapes(req.outputs + req.assigns, {p: feeds[p].shape for p in req.placeholders})  # type checks
            return _ReferenceRun(req, self.options.check_numerics)
        from ..backend.llvm.program_entries import specialized_program

        return specialized_program(req.outputs, req.assigns, {p: feeds[p].shape for p in req.placeholders},
                                   self.options)

    def variable_value(self, var: Tensor) -> np.ndarray:
        """A copy of a variable's current value in this session."""
        self._check_variable(var)
        return self._store.value(var)

    def set_variable_value(self, var: Tensor, value: Any) -> None:
        """Set a variable of this session's graph to `value` (its exact shape; an array of its dtype,
        or a Python number/list that casts to it within its kind). Waits for running steps."""
        self._check_variable(var)
        arr = np.asarray(value)
        if arr.dtype.byteorder in "<>":  # big-endian (non-native) data: native order, as for feeds
            arr = arr.astype(arr.dtype.newbyteorder("="))
        if isinstance(value, (np.ndarray, np.generic)) and arr.dtype != var.dtype:
            raise DTypeError(f"set_variable_value: {var.name} is {var.dtype}, the value is {arr.dtype}")
        if not np.can_cast(arr.dtype, var.dtype, "same_kind"):
            raise DTypeError(f"set_variable_value: cannot cast {arr.dtype} to {var.name}'s {var.dtype}")
        if arr.shape != var.shape:
            raise ShapeError(f"set_variable_value: {var.name} has shape {shape_str(var.shape)}, "
                             f"the value {shape_str(arr.shape)}")
        bad = out_of_range(arr, var.dtype)  # a Python int list for an int32 variable, say: never wrapped
        if bad is not None:
            raise DTypeError(f"set_variable_value: {var.name}: {bad}")
        self._store.assign(var, arr)

    def _check_variable(self, var: Any) -> None:
        if self._closed:
            raise GraphcError("this session is closed")
        if not isinstance(var, Tensor) or var.op != "variable":
            raise GraphcError(f"{var!r} is not a Variable")
        if var.graph is not self.graph:
            raise GraphcError(f"variable {var.name} belongs to another graph than the session's")


class _Request:
    """What one fetch list needs: its placeholders, variables and assignments."""

    def __init__(self, outputs: list[Tensor], cache_size: int):
        order = toposort(outputs)
        self.outputs = outputs
        self.placeholders = [n for n in order if n.op == "placeholder"]
        self.variables = [n for n in order if n.op == "variable"]
        self.assigns = [n for n in order if n.op == "assign"]
        check_single_assignments(self.assigns)
        self.assigns += counter_steps(order, self.assigns)  # a run that draws random numbers advances the counter
        self.programs = LRU(cache_size)  # feed shapes, or ("symbolic", pattern) -> executable
        self.first_sizes: dict = {}  # symbolic pattern -> the symbol values first fed (`symbolic_program`)
        self.symbolic = any(d is None for p in self.placeholders for d in p.shape)
        self._declared = [(p, p.dtype, p.shape) for p in self.placeholders]

    def fast_feeds(self, feed_dict: Mapping[Any, Any] | None) -> dict[Tensor, np.ndarray] | None:
        """The feeds as they are when each is already a C-contiguous array of the exact dtype
        and a compatible shape for exactly the needed placeholders; None means "check fully"."""
        if not feed_dict or len(feed_dict) != len(self._declared):
            return {} if not feed_dict and not self._declared else None
        feeds = {}
        for ph, dtype, shape in self._declared:
            v = feed_dict.get(ph)
            if (type(v) is not np.ndarray or v.dtype != dtype or not v.flags.c_contiguous
                    or len(v.shape) != len(shape)):
                return None
            for d, a in zip(shape, v.shape):
                if d is not None and d != a:
                    return None
            feeds[ph] = v
        return feeds


class _ReferenceRun:
    """The numpy interpreter behind the same interface as a compiled program."""

    def __init__(self, req: _Request, check_numerics: bool = False):
        from ..backend.interpreter import ReferenceProgram

        self.n = len(req.outputs)
        self.assigned = [a.inputs[0] for a in req.assigns]
        self.program = ReferenceProgram(list(req.outputs) + req.assigns, check_numerics)
        self.variables = [n for n in self.program.order if n.op == "variable"]
        self.writes = bool(self.assigned)
        self.workspace_bytes = 0
        collectives = [n for n in self.program.order if n.opdef.kind is OpKind.COLLECTIVE]
        if collectives:  # every rank must run the same collectives (checked at the first run)
            from .mpi_check import check_program

            check_program(collectives)

    def run(self, feeds: Mapping[Tensor, np.ndarray], variables: Mapping[Tensor, np.ndarray],
            workspace: np.ndarray | None = None, clock: list | None = None) -> list:
        values = self.program.run(feeds, variables, clock)
        results = [None if v is None else np.array(v, copy=True) for v in values[:self.n]]
        new = [np.array(v, dtype=var.dtype, copy=True) for var, v in zip(self.assigned, values[self.n:])]
        for var, value in zip(self.assigned, new):
            np.copyto(variables[var], value)
        return results
