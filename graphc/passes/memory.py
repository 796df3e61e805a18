"""Memory placement: buffer liveness over a schedule, and offsets in one arena with reuse."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..ir.graph import Tensor
from .cost import is_source, nbytes

ALIGNMENT = 64  # bytes; every buffer starts on a cache line (and an AVX boundary)
# Output arrays of at least this many bytes are reused from a program's previous run when
# nothing holds them any more (graphc.runtime.executable, arraycall): glibc maps arrays this
# large afresh, and every page of a fresh array costs a page fault when the program first
# writes it (W4's 64 weight gradients: about 4,000 faults per step, a quarter of its CPU
# time; docs/benchmarks.md). Smaller outputs come from memory malloc reuses anyway.
RECYCLE_BYTES = 1 << 17


@dataclass(frozen=True)
class Interval:
    """A buffer of `size` bytes live from step `start` through step `end` (inclusive)."""

    key: object
    size: int
    start: int
    end: int


def _aligned(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def place(intervals: Sequence[Interval]) -> tuple[dict[object, int], int]:
    """Offsets for every interval such that buffers live at the same time never overlap.

    Greedy, each at the lowest offset that fits beside the already placed buffers whose
    lifetimes intersect its own, largest first: by size, and by size x lifetime; the
    smaller arena wins (neither order is always better). Returns (offsets, arena bytes).
    """
    named = [(v, str(v.key)) for v in intervals]  # (the names break ties: the order is deterministic)
    by_size = _first_fit([v for v, _ in sorted(named, key=lambda p: (-p[0].size, p[0].start, p[1]))])
    by_area = _first_fit([v for v, _ in sorted(named, key=lambda p: (-p[0].size * (p[0].end - p[0].start + 1),
                                                                      p[0].start, p[1]))])
    return by_area if by_area[1] < by_size[1] else by_size


def place_in_order(intervals: Sequence[Interval]) -> tuple[dict[object, int], int]:
    """Offsets one after another in the given order, no sharing: what a symbolic-dim template
    uses for the arenas of loop bodies (`graphc.passes.sizing.templating`), where sizes
    grow with the dims, so that every offset is a sum of sizes and no choice depends on
    them (no rounding either: the template gives each element 8 bytes, so sizes are
    multiples of 8 and stay affine in the dims). Returns (offsets, arena bytes)."""
    offsets: dict[object, int] = {}
    end = 0
    for iv in intervals:
        offsets[iv.key] = end
        end += iv.size
    return offsets, end


def _first_fit(intervals: Sequence[Interval]) -> tuple[dict[object, int], int]:
    placed: list[tuple[int, int, int, int]] = []  # (start, end, offset, end of its bytes)
    offsets: dict[object, int] = {}
    for iv in intervals:
        size, start, end = _aligned(max(iv.size, 1)), iv.start, iv.end
        busy = sorted((lo, hi) for first, last, lo, hi in placed if first <= end and start <= last)
        offset = 0
        for lo, hi in busy:
            if offset + size <= lo:
                break
            offset = max(offset, hi)
        placed.append((start, end, offset, offset + size))
        offsets[iv.key] = offset
    peak = max((hi for _, _, _, hi in placed), default=0)
    return offsets, peak


def liveness(order: Sequence[Tensor], outputs: Sequence[Tensor],
             needs_buffer: Callable[[Tensor], bool] | None = None) -> list[Interval]:
    """One interval per node that needs an arena buffer: from its step to its last reader's step.

    By default every valued node needs one except sources (placeholders, variables and
    constants live outside the arena) and outputs (computed straight into the arrays
    returned to the caller).
    """
    output_set = set(outputs)
    needs = needs_buffer or (lambda n: not is_source(n) and n.dtype is not None and n not in output_set)
    step = {n: k for k, n in enumerate(order)}
    last = {n: step[n] for n in order}
    for n in order:
        for i in n.inputs:
            last[i] = max(last[i], step[n])
    return [Interval(n, nbytes(n), step[n], last[n]) for n in order if needs(n)]


def arena_peak(outputs: Sequence[Tensor]) -> int:
    """Arena bytes for running the scheduled `outputs` with one buffer per intermediate value."""
    from .schedule import schedule

    return place(liveness(schedule(outputs), outputs))[1]
