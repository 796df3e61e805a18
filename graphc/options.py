"""`CompileOptions`: what a Session or gc.function compiles with."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import GraphcError

CHECKPOINT_POLICIES = ("none", "sqrt", "mincut", "revolve")


@dataclass(frozen=True)
class CompileOptions:
    """Compilation settings (hashable: they are part of a compiled program's cache key).

    opt_level: which graph passes run, the list `graphc.passes.pipeline.PIPELINES[opt_level]`
    (`graphc passes` prints it, docs/passes.md lists it): 0 the checkpoint pass alone, 1 the
    exact rewrites and loop passes too, 2 also the stabilizing rewrites; the backend's late
    passes (fusion, ...) run at every level. checkpoint: one of
    CHECKPOINT_POLICIES. memory_budget: bytes the
    planned peak must fit (picks the least recomputation that fits). slots: checkpoint
    slots for "revolve". threads: worker threads for large kernels (None: all cores).
    program_cache: compiled programs kept in memory per fetch list of a Session, or per
    gc.function: one per feed-shape signature, the least recently used dropped beyond it
    (compiling one again is fast when the disk cache holds its object code).
    check_numerics: check every float op's result for NaN and Inf, as if each were wrapped
    in `gc.check_numerics` (a slow mode for debugging; docs/runtime.md).
    specialize: True compiles one program per concrete feed shape (graphc before symbolic
    dims; what `jax.jit` does). False: placeholder dims declared None stay symbolic and one
    program serves every value of them from the first run (docs/runtime.md, "Symbolic
    dims"). None (the default): as False, but the first values fed to a fetch list's None
    dims get a program specialized to them, and the symbolic program is built when other
    values come (unless the disk cache holds it already: then it serves from the first run).
    """

    opt_level: int = 2
    checkpoint: str = "none"
    memory_budget: int | None = None
    slots: int | None = None
    threads: int | None = None
    program_cache: int = 64
    check_numerics: bool = False
    specialize: bool | None = None

    def __post_init__(self) -> None:
        if self.opt_level not in (0, 1, 2):
            raise GraphcError(f"opt_level must be 0, 1 or 2, got {self.opt_level!r}")
        if self.checkpoint not in CHECKPOINT_POLICIES:
            raise GraphcError(f"checkpoint must be one of {', '.join(CHECKPOINT_POLICIES)}, "
                              f"got {self.checkpoint!r}")
        if self.memory_budget is not None and self.memory_budget <= 0:
            raise GraphcError(f"memory_budget must be a positive number of bytes, got {self.memory_budget!r}")
        if self.checkpoint == "revolve" and (self.slots is None or self.slots < 1):
            raise GraphcError("checkpoint='revolve' needs slots >= 1 (CompileOptions(slots=...))")
        if type(self.program_cache) is not int or self.program_cache < 1:
            raise GraphcError(f"program_cache must be an int >= 1, got {self.program_cache!r}")
        if self.specialize is not None and not isinstance(self.specialize, bool):
            raise GraphcError(f"specialize must be True, False or None, got {self.specialize!r}")
        if self.threads is not None and self.threads < 1:
            raise GraphcError(f"threads must be >= 1, got {self.threads!r}")
