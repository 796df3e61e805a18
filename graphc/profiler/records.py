"""What a traced run records: one `StepRecord` per compiled step, grouped in `RunTrace`s.

Times are ``time.monotonic_ns`` nanoseconds (the generated code reads the same clock),
so the records of the native code and the Python-side wall times compare directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import GraphcError

STEP_KINDS = ("gemm", "lapack", "map", "reduce", "copy", "host call", "collective")


@dataclass(frozen=True)
class NodeInfo:
    """A graph node a step computes: its name (the user's, when given), op, source line, shape."""

    name: str
    op: str
    loc: str
    shape: tuple[int, ...] = ()


@dataclass(frozen=True)
class StepFacts:
    """What a step of a program is, the same in every run: kind, nodes, FLOPs, bytes."""

    name: str  # the plan's step name (k3, g0) or, on the reference backend, the node's
    kind: str  # one of STEP_KINDS
    nodes: tuple[NodeInfo, ...]
    flops: int
    bytes: int  # distinct bytes read plus bytes written, each counted once


@dataclass(frozen=True)
class Piece:
    """A part of a parallel step that one thread ran."""

    thread: int
    start_ns: int
    end_ns: int


@dataclass(frozen=True)
class StepRecord:
    """One compiled step of one run (TF1's NodeExecStats, per step rather than per op)."""

    step: int
    facts: StepFacts
    thread: int  # the thread that ran the entry (and the step's serial parts)
    start_ns: int
    end_ns: int
    pieces: tuple[Piece, ...] = ()

    name = property(lambda self: self.facts.name)
    kind = property(lambda self: self.facts.kind)
    nodes = property(lambda self: self.facts.nodes)
    flops = property(lambda self: self.facts.flops)
    bytes = property(lambda self: self.facts.bytes)

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def threads(self) -> int:
        """How many threads ran a part of this step (1 for a serial step)."""
        return max(1, len({p.thread for p in self.pieces}))


@dataclass
class RunTrace:
    """One traced run: its steps, wall time (around the program's run, Python side included).

    `steps` may be given as a function that makes them: the records of a compiled run are
    built from its raw trace when first read, not while the program runs.
    """

    backend: str
    program: int  # identifies the compiled program (steps of one program aggregate by index)
    start_ns: int
    end_ns: int
    _steps: list[StepRecord] | Callable[[], list[StepRecord]]
    threads: int  # the pool size the program was compiled for
    thread_names: dict[int, str] = field(default_factory=dict)
    dropped: int = 0  # parallel pieces that did not fit the trace buffer

    @property
    def steps(self) -> list[StepRecord]:
        if callable(self._steps):
            self._steps = self._steps()
        return self._steps

    @property
    def wall_ns(self) -> int:
        return self.end_ns - self.start_ns


class RunOptions:
    """Options of one `Session.run` (TF1's ``tf.RunOptions``): ``trace=True`` records a trace."""

    __slots__ = ("trace",)

    def __init__(self, trace: bool = False):
        if not isinstance(trace, bool):
            raise GraphcError(f"RunOptions(trace=...) must be True or False, not {trace!r}")
        self.trace = trace

    def __repr__(self) -> str:
        return f"RunOptions(trace={self.trace})"
