"""A template's symbol range and probe values, and `NotSymbolicError`: what is needed before
any template is built (`graphc.runtime.symbolic`, the disk keys of `template_cache`), without
the template machinery (`template`, `symbolic`), which a first size's program does not load
(docs/architecture.md, "Import structure")."""

from __future__ import annotations

from ...errors import GraphcError

LIMIT = 1 << 20  # a template serves symbol values 1..LIMIT; others compile a specialized program
_BASE = (1048583, 1048601, 1048609, 1048627)  # per symbol; > LIMIT, different residues
STEPS = (263, 419, 541, 653)  # the fit probes move one symbol by its step
MAX_SYMBOLS = len(_BASE)


class NotSymbolicError(GraphcError):
    """The program cannot be a symbolic-dim template; compile it for the fed shapes."""


def small_probes(k: int) -> list[tuple[int, ...]]:
    """Small values every fit is checked at: the bound shapes (clamps such as ``x[:5]`` show
    there) and the template's code, built there under the nominal build's decisions."""
    return [(1,) * k, (2, 3, 5, 7)[:k], (37, 41, 43, 47)[:k]]


def probes(k: int) -> list[tuple[int, ...]]:
    """The large probe values of `k` symbols: the base (the nominal build), then one per
    symbol moved by its step; the affine fits are taken there."""
    base = _BASE[:k]
    moved = [tuple(b + (STEPS[j] if j == i else 0) for j, b in enumerate(base)) for i in range(k)]
    return [base, *moved]
