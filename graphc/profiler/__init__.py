"""The profiler: where a run's time goes, per compiled step, against the machine's limits.

``sess.run(..., options=gc.RunOptions(trace=True), run_metadata=meta)``, ``f.profile(*args)``
on a `gc.function`, and ``with gc.profile() as prof`` record one `StepRecord` per compiled
step; `Profile.table` and `Profile.export_chrome_trace` report them (docs/profiling.md).
`profile` lives in `graphc.profiler.recording` and is not imported here: the LLVM
backend's traced programs import the records below, and recording imports the backend
lazily, so importing this package never pulls in the backend. The names below load on first
use (PEP 562): a session imports `recording` on every ``import graphc``.
"""

from typing import Any

__all__ = ["NodeInfo", "Peak", "Piece", "Profile", "RunMetadata", "RunOptions", "RunTrace", "StepFacts",
           "StepRecord", "machine_peak"]


def __getattr__(name: str) -> Any:
    if name in ("Peak", "machine_peak"):
        from . import peak as module
    elif name in ("NodeInfo", "Piece", "RunOptions", "RunTrace", "StepFacts", "StepRecord"):
        from . import records as module
    elif name in ("Profile", "RunMetadata"):
        from . import report as module
    else:
        raise AttributeError(f"module 'graphc.profiler' has no attribute {name!r}")
    value = globals()[name] = getattr(module, name)
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
