"""Turning runs into traces: which runs are traced, and running their traced variants.

A run is traced when it asks for it (``options=gc.RunOptions(trace=True)`` with a
``run_metadata``) or while a ``with gc.profile()`` block is open (in any thread). The
LLVM backend then runs the program's traced variant (`graphc.backend.llvm.trace`),
compiled on the first traced run and kept as long as the program; the reference backend
times each node it evaluates. Untraced runs take none of these paths, and the records,
reports and cost model load on the first traced run (sessions import this module).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import GraphcError

if TYPE_CHECKING:
    from ..ir.graph import Tensor
    from .records import RunTrace, StepFacts, StepRecord
    from .report import Profile

active: list[Profile] = []  # the profiles of the open `with gc.profile()` blocks
_lock = threading.Lock()
_variants: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # program -> (id, traced, facts)
_ids = itertools.count()


@contextlib.contextmanager
def profile() -> Iterator[Profile]:
    """``with gc.profile() as prof:`` traces every run inside the block (any session, any thread)."""
    from .report import Profile

    prof = Profile()
    with _lock:
        active.append(prof)
    try:
        yield prof
    finally:
        with _lock:
            active.remove(prof)


def targets(options: Any, run_metadata: Any) -> list[Profile]:
    """The profiles this run's trace goes to (empty: run untraced); checks the arguments."""
    from .records import RunOptions
    from .report import RunMetadata

    if options is not None and not isinstance(options, RunOptions):
        raise GraphcError(f"options must be a gc.RunOptions, not {type(options).__name__}")
    if run_metadata is not None and not isinstance(run_metadata, RunMetadata):
        raise GraphcError(f"run_metadata must be a gc.RunMetadata, not {type(run_metadata).__name__}")
    out = list(active)
    if options is not None and options.trace:
        if run_metadata is None and not out:
            raise GraphcError("RunOptions(trace=True) needs run_metadata=gc.RunMetadata() to receive the trace")
        if run_metadata is not None:
            run_metadata.clear()  # as in TF1, the metadata describes the latest run
            out.append(run_metadata)
    return out


def traced_run(executable: Any, feeds: Mapping[Tensor, np.ndarray], variables: Mapping[Tensor, np.ndarray],
               to: list[Profile]) -> list:
    """Run `executable` (of an LLVMProgram or a reference program) traced, with its variable
    lock held; add the trace to `to`."""
    from ..backend.llvm.program import LLVMProgram

    if isinstance(executable.program, LLVMProgram):
        outputs, run = _llvm_run(executable, feeds, variables)
    else:
        outputs, run = _reference_run(executable.program, feeds, variables)
    for prof in to:
        prof.add(run)
    return outputs


def _llvm_run(executable: Any, feeds: Mapping, variables: Mapping) -> tuple[list, RunTrace]:
    program = executable.program
    with _lock:
        variant = _variants.get(program)
    if variant is None:
        from ..backend.llvm.trace import TracedProgram, step_facts

        variant = (next(_ids), executable.sibling(TracedProgram(program)), step_facts(program))
        with _lock:
            variant = _variants.setdefault(program, variant)
    from .records import RunTrace

    ident, traced, facts = variant
    start = time.monotonic_ns()
    outputs, raw = traced.program.run_traced(lambda: traced.call(feeds, variables), traced.clear)
    end = time.monotonic_ns()
    steps = functools.partial(_llvm_steps, facts, raw)
    return outputs, RunTrace("llvm", ident, start, end, steps, traced.program.threads, _thread_names(), raw.dropped)


def _llvm_steps(facts: list[StepFacts], raw: Any) -> list[StepRecord]:
    from .records import Piece, StepRecord

    pieces: list[list[Piece]] = [[] for _ in facts]
    for step, thread, t0, t1 in raw.pieces.tolist():
        pieces[step].append(Piece(thread, t0, t1))
    return [StepRecord(i, f, raw.thread, t0, t1, tuple(p))
            for i, (f, (t0, t1), p) in enumerate(zip(facts, raw.steps.tolist(), pieces))]


def _reference_run(program: Any, feeds: Mapping, variables: Mapping) -> tuple[list, RunTrace]:
    from .records import RunTrace, StepRecord

    with _lock:
        ident = _variants.get(program)
        if ident is None:
            ident = _variants[program] = next(_ids)
    clock: list = []
    start = time.monotonic_ns()
    outputs = program.run(feeds, variables, clock=clock)
    end = time.monotonic_ns()
    thread = threading.get_ident()
    steps = [StepRecord(i, node_facts(node, args, value), thread, t0, t1)
             for i, (node, t0, t1, args, value) in enumerate(clock)]
    return outputs, RunTrace("reference", ident, start, end, steps, 1, _thread_names())


def node_facts(node: Tensor, args: list, value: Any) -> StepFacts:
    """A reference-backend step: one node, its kind, FLOPs and the bytes of its inputs and result."""
    from ..passes.cost import flops_of
    from .records import NodeInfo, StepFacts

    kind = {"matmul": "gemm", "reduce": "reduce", "elementwise": "map", "lapack": "lapack",
            "collective": "collective", "host": "host call"}.get(node.opdef.kind, "copy")
    arrays = [np.asarray(a) for a in args if a is not None]
    result = () if value is None else np.shape(value)
    count = flops_of(node.opdef.kind, result, arrays[0].shape if arrays else ())
    moved = sum(a.nbytes for a in arrays) + (0 if value is None else np.asarray(value).nbytes)
    return StepFacts(node.name, kind, (NodeInfo(node.name, node.op, node.loc, tuple(result)),), count, moved)


def _thread_names() -> dict[int, str]:
    return {t.ident: t.name for t in threading.enumerate() if t.ident is not None}
