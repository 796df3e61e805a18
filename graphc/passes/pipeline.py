"""The graph pass pipelines: one explicit ordered list per optimisation level.

Importing this module registers every graph pass (`import graphc` does). The backend's
late passes belong to the backend (graphc/backend/llvm/backend.py).
"""

from __future__ import annotations

from ..errors import GraphcError
from . import checkpoint, cse, dce, fold, hoist, numerics, simplify, sink, stabilize  # noqa: F401  (register the passes)

PIPELINES: dict[int, list[str]] = {
    0: ["checkpoint"],
    1: ["simplify", "fold", "cse", "dce", "sink", "checkpoint", "hoist"],
    2: ["stabilize", "simplify", "fold", "cse", "simplify", "dce", "sink", "checkpoint", "hoist"],
}


def pipeline_for(opt_level: int) -> list[str]:
    """The pass names run at `opt_level` (0, 1 or 2)."""
    if opt_level not in PIPELINES:
        raise GraphcError(f"opt_level must be one of {sorted(PIPELINES)}, got {opt_level!r}")
    return list(PIPELINES[opt_level])
