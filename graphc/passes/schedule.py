"""Scheduling: the order kernels run in, chosen to keep few values alive at once.

Two candidate orders are built and the one whose values need fewer bytes alive at once
wins (as XLA's memory scheduler tries several algorithms and keeps the best):

* depth-first: outputs one at a time, each time the one with the fewest ancestors not
  yet scheduled, each by a depth-first walk of its inputs. A value is computed right
  before its first use, and recomputed checkpoints land just before the backward step
  that reads them.
* list: among the nodes whose inputs are all computed, the one that adds the fewest
  bytes (its value, minus the inputs it is the last reader of), ties broken by the
  depth-first position. Where outputs share a long chain (the gradients of weights a
  recurrent network reuses at every step), the depth-first walk finishes one output's
  chain and leaves every step's cotangent alive for the others; the list order consumes
  each step's cotangent into every accumulation as soon as it exists.

A program with collectives gets neither: its order must not depend on sizes (ranks whose
shards differ in shape must build the same program), so it is the depth-first order with
the readers of collectives' results moved last (`readers_of_collectives_last`).

Cost: O(E log V) for the list order (a heap with stale entries skipped), linear otherwise.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Sequence

import numpy as np

from ..ir.graph import Tensor
from ..ir.traverse import toposort
from ..ops.registry import OpKind
from .cost import is_source, nbytes
from .sizing import size_free

SizeFn = Callable[[Tensor], int]
BaseFn = Callable[[Tensor], "Tensor | None"]
VIEW_FIRST = -(1 << 62)  # the key of a view: scheduled as soon as its base exists


def schedule(outputs: Sequence[Tensor], size: SizeFn | None = None, view_of: BaseFn | None = None) -> list[Tensor]:
    """A topological order of everything `outputs` need (deterministic), of low peak bytes.

    `size(node)` is the bytes a node's value occupies while alive (default: its bytes, 0
    for sources and outputs, which live outside the arena). `view_of(node)` is the input
    whose memory a view reads (None for values of their own): a view costs nothing, and
    its readers keep its base alive.
    """
    roots = list(dict.fromkeys(outputs))
    if size is None:
        out = set(roots)
        size = lambda n: 0 if is_source(n) or n in out else nbytes(n)  # noqa: E731
    order = toposort(roots)
    base = _bases(order, view_of)
    first = depth_first(roots)
    if size_free(first):  # collectives (ranks with shards of other shapes), symbolic-dim templates (`sizing`)
        return readers_of_collectives_last(first)  # no size-driven order
    size = {n: size(n) for n in order}.__getitem__  # once per node: the list order and the peaks ask often
    second = list_order(first, size, base)
    best = second if live_peak(second, size, base) < live_peak(first, size, base) else first
    return interleave_recomputation(best, size, base) if any("_remat" in n.attrs for n in best) else best


def readers_of_collectives_last(order: list[Tensor]) -> list[Tensor]:
    """`order` with every node that depends on a collective's result moved after all the
    others (each part keeps its order): a collective then starts as soon as its input
    exists and the rest of the work (the rest of the backward pass, for gradient buckets)
    runs before the first reader waits for it. A structural choice, the same on every rank."""
    late: set[Tensor] = set()
    for n in order:
        if any(i in late or i.opdef.kind is OpKind.COLLECTIVE for i in n.inputs):
            late.add(n)
    return [n for n in order if n not in late] + [n for n in order if n in late]


def _reads(n: Tensor) -> list[Tensor]:
    """The inputs whose data n reads (not those read for their shape, nothing for a `group`)."""
    if n.opdef.kind is OpKind.CONTROL:
        return []
    skip = n.opdef.shape_only
    return [i for k, i in enumerate(n.inputs) if k not in skip]


def _bases(order: list[Tensor], view_of: BaseFn | None) -> dict[Tensor, Tensor]:
    """Each node's buffer owner: itself, or for a view the owner of the node it views."""
    base: dict[Tensor, Tensor] = {}
    for n in order:
        v = view_of(n) if view_of is not None else None
        base[n] = n if v is None else base[v]
    return base


def depth_first(roots: list[Tensor]) -> list[Tensor]:
    """Outputs one at a time (fewest unscheduled ancestors first), each depth-first."""
    order = toposort(roots)
    needed_by: dict[Tensor, int] = {n: 0 for n in order}  # bit k: roots[k] needs the node
    for k, r in enumerate(roots):
        needed_by[r] |= 1 << k
    for n in reversed(order):
        for i in n.inputs:
            needed_by[i] |= needed_by[n]
    remaining = _bit_counts(list(needed_by.values()), len(roots))  # [k]: unscheduled nodes roots[k] needs
    done: set[Tensor] = set()
    result: list[Tensor] = []
    pending = list(range(len(roots)))  # ascending: the first of the fewest is the lowest k
    while pending:
        best = pending.pop(int(np.argmin(remaining[pending])))
        batch = toposort([roots[best]], done)
        result += batch
        remaining -= _bit_counts([needed_by[n] for n in batch], len(roots))
    return result


def _bit_counts(masks: list[int], width: int) -> np.ndarray:
    """How many of `masks` have bit k set, for each k < width (numpy: a loop over the set bits
    of W4's masks took 10 of its 30 ms of scheduling)."""
    size = (width + 7) // 8
    raw = np.frombuffer(b"".join(m.to_bytes(size, "little") for m in masks), np.uint8).reshape(len(masks), size)
    return np.unpackbits(raw, axis=1, count=width, bitorder="little").sum(axis=0, dtype=np.int64)


def list_order(order: list[Tensor], size: SizeFn, base: dict[Tensor, Tensor]) -> list[Tensor]:
    """Greedy list scheduling of the nodes of `order` (a topological order: the tie-break)."""
    position = {n: k for k, n in enumerate(order)}
    consumers: dict[Tensor, list[Tensor]] = {n: [] for n in order}
    users: dict[Tensor, list[Tensor]] = {n: [] for n in order}  # a buffer's readers, through views too
    reads = {n: list(dict.fromkeys(base[i] for i in _reads(n))) for n in order}  # the buffers n reads
    for n in order:
        for i in dict.fromkeys(n.inputs):
            consumers[i].append(n)
        if base[n] is n:
            for b in reads[n]:
                users[b].append(n)
    left = {n: len(users[n]) for n in order}  # readers of the buffer not yet scheduled
    waiting = {n: len(set(n.inputs)) for n in order}  # inputs (and reads of its variable) not yet scheduled
    after: dict[Tensor, list[Tensor]] = {}  # node -> the nodes that also wait for it
    for a in order:
        if a.op == "assign":  # after every other read of the variable: then it can write in place
            for u in users[a.inputs[0]]:
                if u is not a:
                    after.setdefault(u, []).append(a)
                    waiting[a] += 1
    done: set[Tensor] = set()

    def gain(n: Tensor, also: Tensor | None = None) -> int:
        """Bytes that scheduling n adds (less those it frees; `also` counts as freed too)."""
        return size(n) - sum(size(b) for b in reads[n] if left[b] == 1 or b is also)

    def key(n: Tensor) -> tuple[int, int]:
        """n's gain, or n's and its only reader's together when n is all that reader waits for
        (a weight-gradient term and the accumulation that consumes it); views come first."""
        if base[n] is not n:
            return VIEW_FIRST, position[n]
        d = gain(n)
        if len(users[n]) == 1 and all(i in done or base[i] is n for i in users[n][0].inputs):
            d = min(d, d + gain(users[n][0], also=n))
        return d, position[n]

    def update(n: Tensor) -> None:
        current[n] = key(n)
        heapq.heappush(heap, (current[n], n))

    current = {n: key(n) for n in order if waiting[n] == 0}  # ready nodes and their keys (which only fall)
    heap = [(k, n) for n, k in current.items()]
    heapq.heapify(heap)
    result: list[Tensor] = []
    while heap:
        k, n = heapq.heappop(heap)
        if current.get(n) != k:
            continue  # stale: scheduled already, or its key fell since
        del current[n]
        result.append(n)
        done.add(n)
        if base[n] is n:
            for b in reads[n]:
                left[b] -= 1
                if left[b] == 1:  # its last reader, if ready, now frees it
                    for u in users[b]:
                        if u in current:
                            update(u)
        for u in consumers[n] + after.get(n, []):
            waiting[u] -= 1
            if waiting[u] == 0:
                update(u)
            elif waiting[u] == 1:  # u waits for one input only: that one's key may fall
                for i in u.inputs:
                    if base[i] in current:
                        update(base[i])
    return result if len(result) == len(order) else order  # (an assignment that waits for its own reader)


def live_peak(order: Sequence[Tensor], size: SizeFn, base: dict[Tensor, Tensor] | None = None) -> int:
    """The most bytes alive at once when `order` runs (a value lives from its node to its last
    reader; a view's readers read its base)."""
    return max(live_bytes(order, size, base), default=0)


def live_bytes(order: Sequence[Tensor], size: SizeFn, base: dict[Tensor, Tensor] | None = None) -> list[int]:
    """The bytes alive while each node of `order` runs (as `live_peak` counts them)."""
    step = {n: k for k, n in enumerate(order)}
    last = dict(step)
    read = {}  # a variable's (or any buffer's) last reader other than assignments
    for n in order:
        for i in _reads(n):
            b = base[i] if base else i
            last[b] = max(last[b], step[n])
            if n.op != "assign":
                read[b] = step[n]
    for a in order:  # an assignment before a read of its variable keeps its value to the end
        v = a.inputs[0] if a.op == "assign" else None
        if v is not None and read.get(base[v] if base else v, -1) > step[a]:
            last[a] = len(order) - 1
    delta = [0] * (len(order) + 1)
    for n in order:
        delta[step[n]] += size(n)
        delta[last[n] + 1] -= size(n)
    return list(itertools.accumulate(delta[:-1]))


def interleave_recomputation(order: list[Tensor], size: SizeFn, base: dict[Tensor, Tensor]) -> list[Tensor]:
    """`order` with runs of recomputed products spread over the products before them, each run
    only where that needs no more bytes alive at once than `order`.

    A run is a stretch of consecutive recomputed nodes (`_remat` clones, the checkpoint
    pass's) holding n > 1 products (MATMUL nodes); each product starts a *part* (the product
    and the recomputed nodes after it, such as its activation). The products before the run,
    back to the previous run, are the backward steps that precede it (under sqrt: the weight
    and input gradients of the segment above, two per layer). Part j moves up to just before
    the (2j + 2)-th of the last 2n of them (or later, when an input it reads from outside the
    run is computed later): one part after each layer's two products. The backend can then
    run each recomputed product beside a backward one (`pairs.py`) instead of splitting it
    over the pool alone, and the values of the segment above die as fast as the recomputed
    ones appear. A run is spread only where that cannot raise the program's peak: a pair's
    two products run at one time, and pairing moves a product up past a few others, so the
    bytes are weighed with each part one product earlier still (`_spread(..., early=True)`)
    plus a part's values and a product's (`_margin`), and that must not exceed `order`'s peak
    anywhere the run moved.
    """
    limit = live_peak(order, size, base)
    out = list(order)
    first = end = 0  # `before` starts where the previous run ended
    while end < len(out):
        start = next((k for k in range(end, len(out)) if "_remat" in out[k].attrs), len(out))
        end = next((k for k in range(start, len(out)) if "_remat" not in out[k].attrs), len(out))
        before, run, rest = out[first:start], out[start:end], out[end:]
        spread = _spread(before, run, early=False)
        if spread is not None:
            early = live_bytes(out[:first] + _spread(before, run, early=True) + rest, size, base)
            if max(early[first:end]) + _margin(run, before, size) <= limit:
                out = out[:first] + spread + rest
        first = end
    return out


def _parts(run: list[Tensor]) -> list[list[Tensor]]:
    """A run's parts: each product with the recomputed nodes after it."""
    parts: list[list[Tensor]] = []
    for n in run:
        if n.opdef.kind is OpKind.MATMUL or not parts:
            parts.append([])
        parts[-1].append(n)
    return parts


def _margin(run: list[Tensor], before: list[Tensor], size: SizeFn) -> int:
    """The bytes a spread run may hold beyond what its order counts: a part's values (its product's
    and the clones' after it) and a product's (one that pairing moves up past others)."""
    return max(sum(map(size, part)) for part in _parts(run)) + \
        max((size(n) for n in before if n.opdef.kind is OpKind.MATMUL), default=0)


def _spread(before: list[Tensor], run: list[Tensor], early: bool) -> list[Tensor] | None:
    """`before` + `run` with the run's parts moved up (None when the run has fewer than two
    products or `before` too few): as `interleave_recomputation` says, or with `early` each
    part one product earlier (right after the product two before its place)."""
    parts = _parts(run)
    anchors = [k for k, n in enumerate(before) if n.opdef.kind is OpKind.MATMUL]
    if len(parts) < 2 or len(anchors) < 2 * len(parts):
        return None
    anchors = anchors[-2 * len(parts):]
    position = {n: k for k, n in enumerate(before)}
    inside = set(run)
    at: dict[int, list[list[Tensor]]] = {}  # index in `before` -> the parts that go just before it
    floor = 0  # parts keep their order
    for j, part in enumerate(parts):
        a = 2 * j + 2
        target = anchors[a] if a < len(anchors) else len(before)
        if early:
            target = anchors[a - 2] + 1
        need = max((position[i] + 1 for n in part for i in n.inputs if i not in inside and i in position), default=0)
        floor = max(target, need, floor)
        at.setdefault(floor, []).append(part)
    out: list[Tensor] = []
    for k in range(len(before) + 1):
        for part in at.get(k, []):
            out += part
        if k < len(before):
            out.append(before[k])
    return out
