"""The profiler: where a run's time goes, per compiled step, against the machine's limits.

``sess.run(..., options=gc.RunOptions(trace=True), run_metadata=meta)``, ``f.profile(*args)``
on a `gc.function`, and ``with gc.profile() as prof`` record one `StepRecord` per compiled
step; `Profile.table` and `Profile.export_chrome_trace` report them (docs/profiling.md).
`profile` lives in `graphc.profiler.recording` and is not imported here: the LLVM
backend's traced programs import the records below, and recording imports the backend
lazily, so importing this package never pulls in the backend.
"""

from .peak import Peak, machine_peak
from .records import NodeInfo, Piece, RunOptions, RunTrace, StepFacts, StepRecord
from .report import Profile, RunMetadata

__all__ = ["NodeInfo", "Peak", "Piece", "Profile", "RunMetadata", "RunOptions", "RunTrace", "StepFacts",
           "StepRecord", "machine_peak"]
