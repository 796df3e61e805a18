"""Passes and the one instrumented pipeline driver, `run_pipeline`.

A pass is a named function from a stage to the next stage of the same kind (and how many
rewrites it made). Graph passes take a `Module` and are registered here by
`register_pass`; a backend owns its late passes (over its own stage values) and hands
them to `run_pipeline` itself. Every stage offers the `Stage` methods, so the driver
times, verifies, measures, prints and dumps graph and backend stages alike.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import GraphcError


class Stage(Protocol):
    """What the driver asks of a stage: a listing, a size, its own measurements, a self-check."""

    def as_text(self) -> str: ...

    def node_count(self) -> int: ...

    def stats(self) -> dict[str, int]: ...

    def verify(self, after: str) -> None: ...


@dataclass(frozen=True)
class Pass:
    """A named function from a stage to the next: ``run(stage, options) -> (stage, changes)``."""

    name: str
    description: str
    run: Callable[[Any, Any], tuple[Any, int]]


PASSES: dict[str, Pass] = {}  # the graph passes (Module -> Module), filled as their modules import


def register_pass(name: str, description: str):
    """Decorator: register the graph pass `fn(module, options) -> (module, changes)` under `name`."""
    def wrap(fn: Callable[[Any, Any], tuple[Any, int]]):
        if name in PASSES:
            raise GraphcError(f"pass {name!r} registered twice")
        PASSES[name] = Pass(name, description, fn)
        return fn
    return wrap


@dataclass
class PassRecord:
    """One row of the pipeline report."""

    name: str
    seconds: float
    nodes: int
    changes: int
    stats: dict[str, int] = field(default_factory=dict)  # the stage's own, or Instrumentation.measure's


@dataclass
class Instrumentation:
    """What to observe while a pipeline runs."""

    print_after: set[str] | str = field(default_factory=set)  # pass names, or "all"
    dump_dir: str | None = None
    verify: bool = True
    printer: Callable[[str], None] = print
    measure: Callable[[Any], dict[str, int]] | None = None  # replaces the stage's own stats (e.g. a backend's)


def run_pipeline(stage: Stage, names: Sequence[str], instrumentation: Instrumentation | None = None, *,
                 passes: Mapping[str, Pass] = PASSES, options: Any = None,
                 first: int = 0) -> tuple[Any, list[PassRecord]]:
    """Run the passes `names` (looked up in `passes`) in order; return the last stage and one record per pass.

    Each pass is timed; its result is verified (unless switched off), measured, listed,
    printed and dumped as `instrumentation` asks. Dump files are numbered from `first`;
    with ``first=0`` the input stage is recorded (and dumped) as row 0, "input".
    """
    inst = instrumentation or Instrumentation()
    for name in names:
        if name not in passes:
            raise GraphcError(f"unknown pass {name!r}; known: {', '.join(sorted(passes))}")

    def record(name: str, seconds: float, changes: int) -> PassRecord:
        stats = inst.measure(stage) if inst.measure else stage.stats()
        return PassRecord(name, seconds, stage.node_count(), changes, stats)

    def show(index: int, name: str) -> None:
        """Print and dump the stage's listing when asked (it is not made otherwise: it costs compile time)."""
        printed = inst.print_after == "all" or name in inst.print_after
        if printed or inst.dump_dir:
            text = stage.as_text()
            if printed:
                inst.printer(f"# after {name}\n{text}")
            _dump(inst, index, name, text)

    records = []
    if first == 0:
        records.append(record("input", 0.0, 0))
        if inst.dump_dir:
            _dump(inst, 0, "input", stage.as_text())
    for k, name in enumerate(names, start=first + (first == 0)):
        start = time.perf_counter()
        stage, changes = passes[name].run(stage, options)
        elapsed = time.perf_counter() - start
        if inst.verify:
            stage.verify(after=name)
        records.append(record(name, elapsed, changes))
        show(k, name)
    return stage, records


def _dump(inst: Instrumentation, index: int, name: str, text: str) -> None:
    if inst.dump_dir:
        os.makedirs(inst.dump_dir, exist_ok=True)
        with open(os.path.join(inst.dump_dir, f"{index:03d}_{name}.txt"), "w", encoding="utf-8") as f:
            f.write(text)
