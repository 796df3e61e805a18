"""Size-independent planning: decisions taken once and reused at every size.

Planning takes decisions from sizes: the memory-aware schedule, the fusion guard that
compares bytes kept alive, row-kernel limits, split reductions, parallel or serial
loops, GEMM splits and pairing. Two kinds of program must take the same decisions at
different sizes:

* a program with collectives: ranks holding shards of other shapes must build the same
  program, without talking to each other;
* a symbolic-dim template (`graphc.backend.llvm.template`): it is built at several values
  of its dims, and one build must serve them all.

Both are *size-free* (`size_free`): decisions that have a size-free answer take it (the
schedule keeps its depth-first order, fusion has no memory guard). A template also runs
its builds under a `Tape`: every other size-dependent decision goes through `decide`,
which records the answer at the template's nominal build (its dims large, beyond any
value it serves) and replays that answer at every other build (large and small values),
so those builds differ only in sizes, offsets and trip counts. A build whose decisions
come in another order or number than the recorded ones (its structure differs) raises
`SizesDivergedError`. Outside a tape, `decide` returns the value it is given.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterable, Iterator
from typing import TypeVar

from ..errors import GraphcError
from ..ir.graph import Tensor
from ..ops.registry import OpKind

T = TypeVar("T")
_TAPE: contextvars.ContextVar[Tape | None] = contextvars.ContextVar("graphc_sizing_tape", default=None)


class SizesDivergedError(GraphcError):
    """A replayed build asked for other decisions than the recorded one."""


class Tape:
    """The decisions of a nominal build, recorded, then replayed by the other builds."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, object]] = []
        self.replaying = False
        self.at = 0
        self.overridden: list[str] = []  # replayed decisions whose own answer differed (for reports)

    def take(self, label: str, value: T) -> T:
        if not self.replaying:
            self.entries.append((label, value))
            return value
        if self.at >= len(self.entries) or self.entries[self.at][0] != label:
            got = self.entries[self.at][0] if self.at < len(self.entries) else "the end"
            raise SizesDivergedError(f"planning diverged from the nominal build at decision {self.at} "
                                f"({label}, recorded: {got})")
        recorded = self.entries[self.at][1]
        self.at += 1
        if recorded != value and label not in self.overridden:
            self.overridden.append(label)
        return recorded  # type: ignore[return-value]

    def rewind(self) -> None:
        """Replay from the start (for the next build)."""
        self.replaying, self.at = True, 0

    def finished(self) -> None:
        """A replayed build is over: it must have taken every recorded decision."""
        if self.replaying and self.at != len(self.entries):
            raise SizesDivergedError(f"planning took {self.at} decisions, the nominal build {len(self.entries)}")


@contextlib.contextmanager
def taping(tape: Tape) -> Iterator[Tape]:
    """Run a build under `tape` (recording first, replaying after `tape.rewind()`)."""
    token = _TAPE.set(tape)
    try:
        yield tape
    finally:
        _TAPE.reset(token)


def templating() -> bool:
    """Is a symbolic-dim template being built? Then a size heuristic whose choice for large
    sizes costs at usual ones and that the run time cannot undo (a reduction over the batch
    split in parts, a column reduction kept apart from the map before it) takes its choice
    for usual sizes; the choices the run time scales (parallel calls and GEMM splits, whose
    pieces follow the dims) are recorded at the nominal build (`decide`)."""
    return _TAPE.get() is not None


def decide(label: str, value: T) -> T:
    """A size-dependent decision: `value` itself, or under a tape the nominal build's answer."""
    tape = _TAPE.get()
    return value if tape is None else tape.take(label, value)


def size_free(nodes: Iterable[Tensor]) -> bool:
    """Must this program's decisions that have a size-free answer take it? (collectives, templates)"""
    return _TAPE.get() is not None or any(n.opdef.kind is OpKind.COLLECTIVE for n in nodes)


def same(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Are two shapes equal? (a decision: shapes that differ at a template's nominal build
    may coincide at small dims, (N, 5) and (1, 5) at N = 1)"""
    return decide("same shape", a == b)


def unit_dim(d: int) -> bool:
    """Is a dim 1? (a decision, as `same`: a batch dim of 1 stays a batch dim)"""
    return decide("unit dim", d == 1)


def empty(shape: tuple[int, ...]) -> bool:
    """Has a shape no element? (a decision, as `same`: code for an array that is empty at some
    dims only is kept; it runs no iteration there)"""
    return decide("empty", 0 in shape)


def proven(label: str, fact: T | None) -> T | None:
    """A fact proven from loop ranges (a folded comparison, an affine division), or None.
    A decision, as `same`: a fact not proven at a template's nominal build is not used
    (the code computes it); one proven there must hold here too."""
    if decide(label, fact is not None):
        if fact is None:
            raise SizesDivergedError(f"{label}: a fact proven at the nominal build does not hold at these dims")
        return fact
    return None
