"""Symbolic signatures: which fed dims of a program are symbols, and which of them are equal.

A placeholder dim declared ``None`` is symbolic. Feeds with the same *pattern* share one
compiled program: the static dims, and for the symbolic ones only which are equal to
which (dims fed equal are one symbol; the graph may need them equal, as a batch dim of
the inputs and of the labels). A feed whose dims break an equality the graph needs has
another pattern, so it compiles (or fails to bind, with the op's shape error) separately.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..ir.graph import Tensor
from .executable import Executable, VariableStore

Pattern = tuple[tuple[int, ...], ...]  # per placeholder, per dim: the static dim, or -(symbol + 1)


def pattern_of(placeholders: Sequence[Tensor], shapes: Sequence[tuple[int, ...]]
               ) -> tuple[Pattern, tuple[int, ...], list[tuple[Tensor, int]]]:
    """(pattern, symbol values, where each symbol is first fed: (placeholder, axis))."""
    symbol_of: dict[int, int] = {}
    values: list[int] = []
    where: list[tuple[Tensor, int]] = []
    pattern = []
    for ph, shape in zip(placeholders, shapes):
        dims = []
        for axis, (declared, fed) in enumerate(zip(ph.shape, shape)):
            if declared is not None:
                dims.append(int(fed))
                continue
            j = symbol_of.get(fed)
            if j is None:
                j = symbol_of[fed] = len(values)
                values.append(int(fed))
                where.append((ph, axis))
            dims.append(-(j + 1))
        pattern.append(tuple(dims))
    return tuple(pattern), tuple(values), where


def shapes_at(placeholders: Sequence[Tensor], pattern: Pattern, values: Sequence[int]
              ) -> Mapping[Tensor, tuple[int, ...]]:
    """The feed shapes of `pattern` when the symbols have `values`."""
    return {ph: tuple(d if d >= 0 else values[-d - 1] for d in dims) for ph, dims in zip(placeholders, pattern)}


class NotSymbolicRecord:
    """Kept in a program cache for a pattern that needs specialized programs, with the reason.
    (A plain class: a dataclass would cost ``import graphc`` 0.4 ms to make.)"""

    __slots__ = ("reason",)

    def __init__(self, reason: str):
        self.reason = reason


class CompileStats:
    """What a Session or gc.function compiled (`stats()`)."""

    def __init__(self) -> None:
        self.compiles = self.symbolic = self.specialized = self.first_sizes = 0
        self.not_symbolic: list[str] = []

    def as_dict(self) -> dict[str, Any]:
        return {"compiles": self.compiles, "symbolic": self.symbolic, "specialized": self.specialized,
                "first_sizes": self.first_sizes, "not_symbolic": list(self.not_symbolic)}

    def count(self, symbolic: bool) -> None:
        self.compiles += 1
        if symbolic:
            self.symbolic += 1
        else:
            self.specialized += 1


def symbolic_program(cache: Any, lock: threading.Lock, stats: CompileStats, placeholders: Sequence[Tensor],
                     shapes: Sequence[tuple[int, ...]], fetches: Sequence[Tensor], assigns: Sequence[Tensor],
                     options: Any, make: Any = None, first: dict | None = None
                     ) -> tuple[Any, tuple[int, ...]] | None:
    """(the symbolic program for the pattern of `shapes`, made into `make(program)` if given;
    the symbol values), or None when those values are out of its range or the program needs
    static shapes (the reason goes to `stats`).

    `first` (pattern -> the symbol values first fed), when given, defers the template
    (docs/runtime.md): unless the disk cache holds it, a pattern's first values get a program
    specialized to them (`program_entries.specialized_program`; returned as it is, not made, nor kept
    in `cache`: the caller keeps it per shapes), and the template is built when other values
    come. `cache` (an LRU) keeps what `make` made, or the NotSymbolicRecord, per ("symbolic", pattern).
    """
    from ..backend.llvm.probes import LIMIT, MAX_SYMBOLS

    pattern, values, where = pattern_of(placeholders, shapes)
    if not values or not all(1 <= v <= LIMIT for v in values):
        return None
    key = ("symbolic", pattern)
    program = cache.get(key)
    if program is None:
        with lock:
            program = cache.get(key)
            if program is None:
                at = functools.partial(shapes_at, placeholders, pattern)
                deferred = (first is not None and len(where) <= MAX_SYMBOLS
                            and first.setdefault(pattern, values) == values)
                program = _compile(fetches, assigns, where, at, options, stats, build=not deferred)
                if program is None:  # the first values, and no template on disk
                    from ..backend.llvm.program_entries import specialized_program

                    program = specialized_program(fetches, assigns, at(values), options, first=True)
                    stats.count(symbolic=False)
                    stats.first_sizes += 1
                    return program, values
                if not isinstance(program, NotSymbolicRecord):
                    program.placeholders, program.pattern = list(placeholders), pattern  # what export reads
                if make is not None and not isinstance(program, NotSymbolicRecord):
                    program = make(program)
                cache.put(key, program)
    return None if isinstance(program, NotSymbolicRecord) else (program, values)


def _compile(fetches: Sequence[Tensor], assigns: Sequence[Tensor], where: list, at: Any, options: Any,
             stats: CompileStats, build: bool = True) -> Any:
    """The template (loaded, or with `build` built), a NotSymbolicRecord, or None (not on disk, not built)."""
    from ..backend.llvm.probes import NotSymbolicError
    from ..backend.llvm.template_cache import symbolic_program as cached_program

    try:
        program = cached_program(fetches, assigns, where, at, options, build=build)
    except NotSymbolicError as e:
        stats.not_symbolic = (stats.not_symbolic + [str(e)])[-16:]
        return NotSymbolicRecord(str(e))
    if program is not None:
        stats.count(symbolic=True)
    return program


class SymbolicExecutable(Executable):
    """The executable of a symbolic program (`graphc.backend.llvm.symbolic`): each run reads
    the symbol values from its feeds, runs the program seen at them and sets its dims, under
    the program's lock. Pooled tables have arenas of the largest size needed so far."""

    def __init__(self, program: Any, store: VariableStore | None):
        super().__init__(program, store)
        self.symbolic = program
        self._capacity = 0

    def call(self, feeds: Mapping[Any, np.ndarray], values: Mapping[Any, np.ndarray]) -> list:
        program = self.symbolic
        dims = program.symbols(feeds)
        with program.lock:
            need = program.arena_at(dims)
            if need > self._capacity:
                self.clear()
                self._capacity = need
            self.program = program.at(dims, self._capacity)
            program.set_dims(dims)
            try:
                return super().call(feeds, values)
            finally:
                self.program = program

    def program_for(self, feeds: Mapping[Any, np.ndarray]) -> Any:
        """The program seen at the symbol values of these feeds; its `report` gives figures at them."""
        program = self.symbolic
        dims = program.symbols(feeds)
        return type(program.at(dims))(program, dims, program.arena_at(dims), {p: feeds[p].shape for p in feeds})

    def _make_callers(self, inputs: Sequence[Tensor], shapes: Sequence[tuple[int, ...]], *args: Any) -> tuple:
        """`Executable.callers` for the program at the symbol values of these input shapes: the
        callers take exactly these shapes (others return the miss value) and set the dims for
        each call."""
        program = self.symbolic
        fed = dict(zip(inputs, shapes))
        at = program.at(tuple(int(fed[ph][axis]) for ph, axis in program.where))
        with program.lock:  # the callers are built from the program at these values
            self.program = at
            try:
                checked, trusted = super()._make_callers(inputs, shapes, *args)
            finally:
                self.program = program
        return at.call(checked), at.call(trusted)
