"""The pass registry, the pipelines per optimisation level, and the instrumented driver."""

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
