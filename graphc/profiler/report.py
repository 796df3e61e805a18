"""`Profile` (what ``gc.profile()`` yields) and `RunMetadata`: traces and their reports.

`table` aggregates the steps of every run by kind and by step (a step names the graph
nodes it computes) with time, share of the wall time, calls, attained GFLOP/s and GB/s,
and a roofline verdict against the machine's peak (`graphc.profiler.peak`).
`export_chrome_trace` writes the Chrome trace event format (JSON) that Perfetto and
chrome://tracing open: one track per thread, each run enclosing its steps, each parallel
step enclosing the pieces the calling thread ran; workers' pieces on their own tracks.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import GraphcError
from ..tables import table as aligned
from .peak import Peak, machine_peak
from .records import STEP_KINDS, RunTrace, StepRecord

SORT_KEYS: dict[str, Callable[[Any], Any]] = {
    "time": lambda r: -r.ns, "calls": lambda r: -r.calls, "flops": lambda r: -r.flops,
    "bytes": lambda r: -r.bytes, "step": lambda r: r.order}


@dataclass
class _Row:
    label: str
    order: tuple
    kind: str = ""
    ns: int = 0
    calls: int = 0
    flops: int = 0
    bytes: int = 0
    threads: int = 0
    nodes: str = ""
    durations: list[int] = field(default_factory=list)

    def add(self, s: StepRecord) -> None:
        self.durations.append(s.duration_ns)
        self.ns += s.duration_ns
        self.calls += 1
        self.flops += s.flops
        self.bytes += s.bytes
        self.threads = max(self.threads, s.threads)


class Profile:
    """The traces of some runs (``with gc.profile() as prof``); reports over all of them."""

    def __init__(self) -> None:
        self.runs: list[RunTrace] = []
        self._lock = threading.Lock()

    def add(self, run: RunTrace) -> None:
        with self._lock:
            self.runs.append(run)

    def clear(self) -> None:
        with self._lock:
            self.runs = []

    @property
    def steps(self) -> list[StepRecord]:
        """Every step record of every run, in run order."""
        return [s for run in self.runs for s in run.steps]

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {len(self.runs)} run(s), {len(self.steps)} step record(s)>"

    # --- reports ---------------------------------------------------------------------------
    def table(self, sort: str = "time", rows: int | None = 30, peak: Peak | bool | None = None) -> str:
        """The steps aggregated by kind and by step, as text (``print(prof.table())``).

        `sort`: time, calls, flops, bytes or step (program order). `rows` caps the by-step
        rows (None: all). `peak`: the machine peak for the roofline columns; None measures
        it (once per machine, cached), False leaves those columns out.
        """
        if sort not in SORT_KEYS:
            raise GraphcError(f"table(sort={sort!r}): choose one of {', '.join(SORT_KEYS)}")
        if rows is not None and (not isinstance(rows, int) or rows < 1):
            raise GraphcError(f"table(rows={rows!r}): a positive number of rows or None")
        if peak is not None and not isinstance(peak, (Peak, bool)):
            raise GraphcError(f"table(peak=...) takes a Peak, True/None (measure) or False, not {peak!r}")
        runs = list(self.runs)
        if not runs:
            return "no traced runs\n"
        if peak is None or peak is True:
            peak = machine_peak(max(r.threads for r in runs))
        wall = sum(r.wall_ns for r in runs)
        kinds: dict[str, _Row] = {}
        steps: dict[tuple, _Row] = {}
        for r in runs:
            for s in r.steps:
                kinds.setdefault(s.kind, _Row(s.kind, (STEP_KINDS.index(s.kind),), s.kind)).add(s)
                key = (r.program, s.step)
                if key not in steps:
                    steps[key] = _Row(s.name, key, s.kind, nodes=_nodes_text(s))
                steps[key].add(s)
        covered = sum(row.ns for row in kinds.values())
        backends = sorted({r.backend for r in runs})
        threads = sorted({r.threads for r in runs})
        out = [f"{len(runs)} run(s) on {'/'.join(backends)}, {'/'.join(map(str, threads))} thread(s): "
               f"wall {wall / len(runs) / 1e6:.3f} ms per run, steps {covered / len(runs) / 1e6:.3f} ms "
               f"({100 * covered / max(wall, 1):.1f}% of the wall time)"]
        dropped = sum(r.dropped for r in runs)
        if dropped:
            out.append(f"({dropped} parallel pieces did not fit the trace buffer; their steps are timed in full)")
        if peak:
            out.append(f"machine peak at {peak.threads} thread(s): {peak.gflops:.1f} GFLOP/s (sgemm), "
                       f"{peak.gbps:.1f} GB/s (triad); ridge {peak.balance:.1f} FLOP/byte "
                       f"(measured {peak.measured})")
        key = SORT_KEYS[sort]
        out += ["", "by kind"]
        out += _format(sorted(kinds.values(), key=key), wall, peak or None, by_step=False)
        ordered = sorted(steps.values(), key=key)
        shown = ordered if rows is None else ordered[:rows]
        out += ["", "by step (the graph nodes each step computes)"]
        out += _format(shown, wall, peak or None, by_step=True)
        if len(shown) < len(ordered):
            out.append(f"... {len(ordered) - len(shown)} more step(s); table(rows=None) shows all")
        return "\n".join(out) + "\n"

    def export_chrome_trace(self, path: str | os.PathLike) -> None:
        """Write the runs as a Chrome trace JSON file (open it in Perfetto or chrome://tracing)."""
        if not isinstance(path, (str, os.PathLike)):
            raise GraphcError(f"export_chrome_trace needs a file path, not {type(path).__name__}")
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise GraphcError(f"cannot write the trace to {path!r}: directory {folder!r} does not exist")
        if os.path.isdir(path):
            raise GraphcError(f"cannot write the trace to {path!r}: it is a directory")
        text = json.dumps(chrome_trace(list(self.runs)))
        try:
            with open(path, "w") as f:
                f.write(text)
        except OSError as exc:
            raise GraphcError(f"cannot write the trace to {path!r}: {exc.strerror or exc}") from None


class RunMetadata(Profile):
    """TensorFlow 1's ``tf.RunMetadata``: ``sess.run(..., options=gc.RunOptions(trace=True),
    run_metadata=meta)`` replaces its contents with that run's trace (`steps`, one record
    per compiled step); `step_stats` is an alias of `steps`."""

    @property
    def step_stats(self) -> list[StepRecord]:
        return self.steps


def _nodes_text(s: StepRecord, most: int = 3) -> str:
    names = [n.name for n in s.nodes]
    text = ", ".join(names[:most]) + (f" +{len(names) - most}" if len(names) > most else "")
    located = next((n.loc for n in s.nodes if n.loc and n.loc != "<unknown>"), "")
    if located:
        file, _, line = located.rpartition(":")
        text += f"  ({os.path.basename(file)}:{line})"
    return text


def _format(rows: Sequence[_Row], wall: int, peak: Peak | None, by_step: bool) -> list[str]:
    head = ["step" if by_step else "kind"] + (["kind"] if by_step else [])
    head += ["calls", "time ms"] + (["median us"] if by_step else []) + ["% run", "GFLOP/s", "GB/s"]
    if peak is not None:
        head += ["FLOP/B", "bound", "% peak"]
    if by_step:
        head += ["threads", "nodes"]
    table = [head]
    import statistics  # here only: with fractions and decimal, it slows `import graphc` (docs/benchmarks.md)

    for r in rows:
        sec = r.ns / 1e9
        gflops = r.flops / sec / 1e9 if sec else 0.0
        gbps = r.bytes / sec / 1e9 if sec else 0.0
        cells = [r.label] + ([r.kind] if by_step else [])
        cells += [str(r.calls), f"{r.ns / 1e6:.3f}"]
        cells += [f"{statistics.median(r.durations) / 1e3:.1f}"] if by_step else []
        cells += [f"{100 * r.ns / max(wall, 1):.1f}", f"{gflops:.2f}", f"{gbps:.2f}"]
        if peak is not None:
            intensity = r.flops / r.bytes if r.bytes else float("inf")
            compute = r.flops > 0 and intensity >= peak.balance
            share = gflops / peak.gflops if compute else gbps / peak.gbps
            cells += ["-" if not r.bytes else f"{intensity:.2f}", "compute" if compute else "memory",
                      f"{100 * share:.1f}"]
        if by_step:
            cells += [str(r.threads), r.nodes]
        table.append(cells)
    return aligned(table, left=2 if by_step else 1, ragged_last=by_step).split("\n")


def chrome_trace(runs: Sequence[RunTrace]) -> dict:
    """The Chrome trace event format ("X" complete events, microseconds) of `runs`."""
    pid = os.getpid()
    if not runs:
        return {"traceEvents": [], "displayTimeUnit": "ns"}
    origin = min(r.start_ns for r in runs)
    tids: dict[int, int] = {}
    names: dict[int, str] = {}

    def tid(thread: int, run: RunTrace) -> int:
        if thread not in tids:
            tids[thread] = len(tids) + 1
            name = run.thread_names.get(thread, f"thread {thread}")
            taken = sum(n == name or n.startswith(name + " #") for n in names.values())
            names[thread] = f"{name} #{taken + 1}" if taken else name  # workers share one name
        return tids[thread]

    def event(name: str, cat: str, thread: int, start: int, end: int, run: RunTrace, args: dict) -> dict:
        return {"name": name, "cat": cat, "ph": "X", "pid": pid, "tid": tid(thread, run),
                "ts": round((start - origin) / 1e3, 3), "dur": round((end - start) / 1e3, 3), "args": args}

    events = []
    for k, run in enumerate(runs):
        caller = run.steps[0].thread if run.steps else next(iter(run.thread_names), 0)
        events.append(event(f"run {k}", "run", caller, run.start_ns, run.end_ns, run,
                            {"backend": run.backend, "threads": run.threads, "steps": len(run.steps),
                             "dropped pieces": run.dropped}))
        for s in run.steps:
            args = {"step": s.step, "kind": s.kind, "flops": s.flops, "bytes": s.bytes, "threads": s.threads,
                    "nodes": [f"{n.name} = {n.op} {list(n.shape)} ({n.loc})" for n in s.nodes]}
            events.append(event(f"{s.name} {s.kind}", s.kind, s.thread, s.start_ns, s.end_ns, run, args))
            for p in s.pieces:
                events.append(event(s.name, "piece", p.thread, p.start_ns, p.end_ns, run, {"step": s.step}))
    meta = [{"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": "graphc"}}]
    meta += [{"name": "thread_name", "ph": "M", "pid": pid, "tid": t, "args": {"name": names[thread]}}
             for thread, t in tids.items()]
    return {"traceEvents": meta + events, "displayTimeUnit": "ns"}
