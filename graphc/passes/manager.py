"""The pass registries (graph passes, late backend passes) and the instrumented drivers."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import GraphcError
from .module import Module


@dataclass(frozen=True)
class Pass:
    """A named function from Module to Module (it reports how many rewrites it made)."""

    name: str
    description: str
    run: Callable[[Module, Any], tuple[Module, int]]


_PASSES: dict[str, Pass] = {}


def register_pass(name: str, description: str):
    """Decorator: register `fn(module, options) -> (module, changes)` under `name`."""
    def wrap(fn: Callable[[Module, Any], tuple[Module, int]]):
        if name in _PASSES:
            raise GraphcError(f"pass {name!r} registered twice")
        _PASSES[name] = Pass(name, description, fn)
        return fn
    return wrap


def get_pass(name: str) -> Pass:
    _load_all()
    try:
        return _PASSES[name]
    except KeyError:
        raise GraphcError(f"unknown pass {name!r}; known: {', '.join(sorted(_PASSES))}") from None


def all_passes() -> dict[str, Pass]:
    _load_all()
    return dict(_PASSES)


def _load_all() -> None:
    from . import pipeline  # noqa: F401  (imports every pass module)


@dataclass(frozen=True)
class LatePass:
    """A named stage of the backend: a function from a program in progress to the next.

    The program object is the backend's (e.g. the LLVM planner's); it provides
    ``as_text()`` (the stage's listing) and ``stats()`` (kernels, peak bytes so far).
    """

    name: str
    description: str
    run: Callable[[Any, Any], tuple[Any, int]]


_LATE_PASSES: dict[str, LatePass] = {}


def register_late_pass(name: str, description: str):
    """Decorator: register a late pass `fn(program, options) -> (program, changes)` under `name`."""
    def wrap(fn: Callable[[Any, Any], tuple[Any, int]]):
        if name in _LATE_PASSES or name in _PASSES:
            raise GraphcError(f"pass {name!r} registered twice")
        _LATE_PASSES[name] = LatePass(name, description, fn)
        return fn
    return wrap


def all_late_passes() -> dict[str, LatePass]:
    from ..backend.llvm import plan  # noqa: F401  (registers the LLVM planner's stages)

    return dict(_LATE_PASSES)


def run_late_passes(program: Any, names: list[str], options: Any = None,
                    instrument: Instrumentation | None = None, first: int = 1) -> tuple[Any, list[PassRecord]]:
    """Run the named late passes in order, timed and measured with `program.stats()`.

    Printing and dumping follow `instrument` (dump files are numbered from `first`, after
    the graph passes); `nodes` is the node count of the program's graph.
    """
    inst = instrument or Instrumentation()
    late = all_late_passes()
    records = []
    for k, name in enumerate(names, start=first):
        if name not in late:
            raise GraphcError(f"unknown late pass {name!r}; known: {', '.join(sorted(late))}")
        start = time.perf_counter()
        program, changes = late[name].run(program, options)
        elapsed = time.perf_counter() - start
        text = program.as_text()
        records.append(PassRecord(name, elapsed, program.node_count(), changes, text, program.stats()))
        if inst.print_after == "all" or name in inst.print_after:
            inst.printer(f"# after {name}\n{text}")
        if inst.dump_dir:
            os.makedirs(inst.dump_dir, exist_ok=True)
            _dump(inst.dump_dir, k, name, text)
    return program, records


@dataclass
class PassRecord:
    """One row of the pipeline report."""

    name: str
    seconds: float
    nodes: int
    changes: int
    text: str = ""
    stats: dict[str, int] = field(default_factory=dict)  # from Instrumentation.measure


@dataclass
class Instrumentation:
    """What to observe while the pipeline runs."""

    print_after: set[str] | str = field(default_factory=set)  # pass names, or "all"
    dump_dir: str | None = None
    verify: bool = True
    printer: Callable[[str], None] = print
    measure: Callable[[Module], dict[str, int]] | None = None  # e.g. kernels and peak bytes


def run_passes(module: Module, names: list[str], options: Any = None,
               instrument: Instrumentation | None = None) -> tuple[Module, list[PassRecord]]:
    """Run the named passes in order; return the final module and one record per pass."""
    from .verify import verify

    inst = instrument or Instrumentation()
    def stats(m: Module) -> dict[str, int]:
        return inst.measure(m) if inst.measure else {}

    records = [PassRecord("input", 0.0, len(module.nodes), 0, module.as_text(), stats(module))]
    if inst.dump_dir:
        os.makedirs(inst.dump_dir, exist_ok=True)
        _dump(inst.dump_dir, 0, "input", records[0].text)
    for k, name in enumerate(names, start=1):
        p = get_pass(name)
        start = time.perf_counter()
        module, changes = p.run(module, options)
        elapsed = time.perf_counter() - start
        if inst.verify:
            verify(module, after=name)
        text = module.as_text()
        records.append(PassRecord(name, elapsed, len(module.nodes), changes, text, stats(module)))
        if inst.print_after == "all" or name in inst.print_after:
            inst.printer(f"# after {name}\n{text}")
        if inst.dump_dir:
            _dump(inst.dump_dir, k, name, text)
    return module, records


def _dump(directory: str, index: int, name: str, text: str) -> None:
    with open(os.path.join(directory, f"{index:03d}_{name}.txt"), "w", encoding="utf-8") as f:
        f.write(text)
