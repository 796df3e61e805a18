"""On-disk cache of finished symbolic templates, so a second process skips the probing.

`build_template` optimizes, plans and generates code at every probe size before the
template's IR (and so its object-code key) is known. An entry here is keyed before any of
that (`program_entries.entry_key`), with the feed shapes at the probe points (the symbolic
signature) and which (placeholder, axis) each symbol is; it holds the arena and output
shape formulas besides what a specialized program's entry holds (`program_entries`, which
also caches programs specialized to their feed shapes: `specialized_program`). `counts()`
says how many templates were probed and loaded, and how many specialized programs loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...ir.graph import Tensor
from ...options import CompileOptions
from . import cache
from . import program_entries as entries
from .collector import fewer_collections
from .probes import MAX_SYMBOLS, probes, small_probes
from .program_entries import COUNTS, counts, specialized_program

if TYPE_CHECKING:
    from .symbolic import SymbolicProgram

__all__ = ["counts", "specialized_program", "symbolic_program"]

_VERSION = "graphc-symbolic-template-v1"


@fewer_collections
def symbolic_program(fetches: Sequence[Tensor], assigns: Sequence[Tensor], where: Sequence[tuple[Tensor, int]],
                     shapes_at: Callable[[tuple[int, ...]], Mapping[Tensor, tuple[int, ...]]],
                     options: CompileOptions | None = None, build: bool = True) -> SymbolicProgram | None:
    """`SymbolicProgram(...)`, loaded from the disk cache when an entry for it is there (else
    built by probing and stored; with `build` False, None). Raises `NotSymbolicError` as
    `SymbolicProgram` does."""
    options = options or CompileOptions()
    fetches, assigns = list(fetches), list(assigns)
    order, key = _template_key(fetches, assigns, where, shapes_at, options)
    entry = entries.read_entry(key, order, _affine)
    if not build and entry is None:
        return None
    from .symbolic import LoadedTemplate, SymbolicProgram  # the template machinery: not for a first size

    if entry is not None:
        COUNTS["loaded"] += 1
        return LoadedTemplate(fetches, assigns, where, shapes_at, options, entry)
    COUNTS["probed"] += 1
    program = SymbolicProgram(fetches, assigns, where, shapes_at, options)
    if key is not None:
        cache.store(key, entries.encode(program, order, program.arena_formula.size, program.out_shapes))
    return program


def _template_key(fetches: list[Tensor], assigns: list[Tensor], where: Sequence[tuple[Tensor, int]],
                  shapes_at: Callable, options: CompileOptions) -> tuple[list[Tensor], str | None]:
    """`program_entries.entry_key` of a template: the feed shapes at every probe, and which
    (placeholder, axis) each symbol is (no key for more symbols than a template takes)."""
    if len(where) > MAX_SYMBOLS:
        return [], None
    points = probes(len(where)) + small_probes(len(where))

    def fields(index: dict) -> dict:
        return {"where": [[index[ph], axis] for ph, axis in where],
                "signature": [sorted((index[ph], list(shape)) for ph, shape in shapes_at(p).items() if ph in index)
                              for p in points]}
    return entries.entry_key(fetches, assigns, fields, options, _VERSION)


def _affine(coefs: tuple, const: int | float) -> Any:
    """A symbolic size of an entry read from disk: `template.Affine` (imported with an entry)."""
    from .template import Affine

    return Affine(coefs, const)
