"""Binomial checkpointing (Griewank–Walther "revolve") over the iterations of a scan.

Reverse mode through a scan of T iterations needs each iteration's residuals, the last
iteration's first (graphc/control/rules.py); they are computed from the carry entering the
iteration, C_t. With `slots` places to keep carries, revolve provides C_{T-1}, ..., C_0 with
the fewest recomputed iterations (passes/revolve.py's dynamic program: C(T-1, slots) -
(T-1) iterations more than the forward loop; T = 1000, 4 slots: 5,285). The schedule is
computed at compile time and given to the loops as integer tables, so the graph (and the
generated code) does not grow with T:

* forward: the user's scan carrying a slot array ``[slots + 2, *carry]`` besides its carry;
  iteration t writes the carry entering it into the slot the table names (slot 0 holds
  the initial carry, slot ``slots + 1`` the carry entering the last iteration);
* reverse: a scan in the opposite order carrying the slot array beside the cotangents;
  iteration t restores its table's slot, advances a `while_loop` over the iterations from
  that slot's position to t (writing the carries the schedule keeps into slots), computes
  iteration t's residuals from C_t and runs the original reverse body on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..control.rules import results_of
from ..ir.graph import Tensor
from ..ir.region import Region, build_region, clone
from ..ops.core import constant
from ..ops.elementwise import add, apply, subtract, where
from ..ops.shape import broadcast_to, expand_dims, take
from .cost import nbytes
from .loop_checkpoint import LoopPair, LoopReport, body_flops, loop_pairs, replace_pair, stored_bytes
from .module import Module
from .revolve import griewank_walther


def _steps(n: int, s: int) -> int:
    """C(n, s): the fewest advances to provide chain states n..1 with s slots (closed form)."""
    return griewank_walther(n + 1, s + 1)


def _first_advance(count: int, s: int) -> int:
    """An advance m of revolve's dynamic program that reaches C(count, s)."""
    if s == 0:
        return count
    best, cost = count, count + _steps(count - 1, s)
    for m in range(1, count):
        c = m + _steps(count - m, s - 1) + _steps(m - 1, s)
        if c < cost:
            best, cost = m, c
    return best


@dataclass
class Schedule:
    """Revolve's schedule over T iterations with `slots` slots, as tables over iterations.

    Positions count iterations in the order they run (0 = the first). ``store[t]``: the slot
    the forward loop writes the carry entering iteration t into (-1: none). Before the
    reverse step of iteration t: restore slot ``restore[t]`` (at position ``start[t]``),
    advance ``count[t]`` iterations; advance k of them stores its new carry into slot
    ``dst[offset[t] + k]`` (-1: none).
    """

    length: int
    slots: int
    store: list[int]
    restore: list[int] = field(default_factory=list)
    start: list[int] = field(default_factory=list)
    count: list[int] = field(default_factory=list)
    offset: list[int] = field(default_factory=list)
    dst: list[int] = field(default_factory=list)

    @property
    def recomputed(self) -> int:
        """Iterations run in the reverse loop (beyond the forward loop's T)."""
        return len(self.dst)


def schedule(length: int, slots: int) -> Schedule:
    """The binomial schedule for a loop of `length` > 1 iterations and 1 <= `slots` slots."""
    n = length - 1  # chain states C_1..C_{T-1}; C_0 (the initial carry) is slot 0
    slots = max(1, min(slots, n))
    last = slots + 1
    sched = Schedule(length, slots, [-1] * length)
    rows: dict[int, tuple[int, int, int, int]] = {}  # position -> (restore, start, count, offset)
    pos_of = {0: 0}
    state = {"pos": 0, "open": None, "start": 0, "count": 0, "offset": 0}

    def restore(slot: int) -> None:
        if state["open"] is not None:  # the current carry is that slot's already
            assert state["pos"] == pos_of[slot]
            return
        state.update(pos=pos_of[slot], open=slot, start=pos_of[slot], count=0, offset=len(sched.dst))

    def advance(m: int, top: bool) -> None:
        state["pos"] += m
        if not top:
            state["count"] += m
            sched.dst.extend([-1] * m)

    def keep(slot: int, top: bool) -> None:
        pos_of[slot] = state["pos"]
        if top:
            sched.store[state["pos"]] = slot
        else:
            sched.dst[-1] = slot

    def reverse(p: int) -> None:
        rows[p] = (state["open"], state["start"], state["count"], state["offset"])
        state["open"] = None

    state["open"] = -1  # the forward loop's sweep
    tasks: list[tuple] = [("slot", 0, 0), ("rev", 0, n, 0, slots, True)]
    while tasks:
        task = tasks.pop()
        if task[0] == "slot":
            restore(task[2])
            reverse(task[1])
            continue
        _, a, count, base, s, top = task
        if count == 0:
            continue
        m = _first_advance(count, s)
        if not top:
            restore(base)
        advance(m, top)
        if m == count:
            if top:  # the carry entering the last iteration: kept by the forward loop
                keep(last, True)
                state.update(open=last, start=n, count=0, offset=len(sched.dst))
            reverse(a + count)
            tasks.append(("rev", a, count - 1, base, s, False))
        else:
            slot = slots - s + 1
            keep(slot, top)
            tasks += [("rev", a, m - 1, base, s, False), ("slot", a + m, slot),
                      ("rev", a + m, count - m, slot, s - 1, top)]
    for p in range(length):
        r, st, c, o = rows[p]
        sched.restore.append(r)
        sched.start.append(st)
        sched.count.append(c)
        sched.offset.append(o)
    return sched


def _table(values: list[int], graph, reverse: bool) -> Tensor:
    """An int32 table over positions as a constant laid out in the scan's xs order."""
    arr = np.asarray(values, np.int32)
    return constant(arr[::-1].copy() if reverse else arr, graph=graph)


def _write(slots: Tensor, slot: Tensor, value: Tensor) -> Tensor:
    """`slots` with row `slot` replaced by `value` (no row when slot is -1)."""
    rows = constant(np.arange(slots.shape[0], dtype=np.int32).reshape((-1,) + (1,) * value.ndim), graph=slots.graph)
    return where(apply("equal", rows, slot), broadcast_to(expand_dims(value, 0), slots.shape), slots)


def revolve_pair(module: Module, pair: LoopPair, slots: int) -> tuple[Module, LoopReport]:
    """The module with `pair`'s carries provided by the binomial schedule for `slots` slots."""
    f, r, n, ny = pair.forward, pair.backward, pair.length, pair.ny
    nc, nk = f.attrs["num_consts"], f.attrs["num_carry"]
    rev = bool(f.attrs["reverse"])
    keep: Region = f.attrs["body"]
    nres = len(keep.results) - nk - ny
    sched = schedule(n, slots)
    width = sched.slots + 2
    consts, init, xs = list(f.inputs[:nc]), list(f.inputs[nc:nc + nk]), list(f.inputs[nc + nk:])
    ctypes = [(c.shape, c.dtype) for c in consts]
    ktypes = [(c.shape, c.dtype) for c in init]
    stypes = [((width, *s), d) for s, d in ktypes]
    slice_types = [(x.shape[1:], x.dtype) for x in xs]
    scalar = ((), np.dtype(np.int32))
    advance_body = Region(keep.params, keep.results[:nk])

    def forward(g, *ps):
        c, carry, slot_arrays = ps[:nc], ps[nc:nc + nk], ps[nc + nk:nc + 2 * nk]
        x, where_to = ps[nc + 2 * nk:-1], ps[-1]
        outs = clone(Region(keep.params, keep.results[:nk + ny]), g, [*c, *carry, *x])
        return [*outs[:nk], *(_write(s, where_to, v) for s, v in zip(slot_arrays, carry)), *outs[nk:]]

    fwd_body = build_region(ctypes + ktypes + stypes + slice_types + [scalar], forward, keep.graph.what)
    slots0 = [broadcast_to(expand_dims(c, 0), (width, *c.shape)) for c in init]
    store = _table(sched.store, f.graph, rev)
    fwd = f.graph.make("scan", (*consts, *init, *slots0, *xs, store),
                       {"num_consts": nc, "num_carry": 2 * nk, "length": None, "reverse": rev, "body": fwd_body},
                       loc=f.loc)
    outs = results_of(fwd)
    values = [*outs[:nk], *outs[2 * nk:2 * nk + ny]]
    filled = outs[nk:2 * nk]

    def advance_region() -> Region:
        """while_loop body: (consts, xs, dst, start, offset; j, carry, slots) -> (j + 1, carry', slots')."""
        def build(g, *ps):
            c, x_all = ps[:nc], ps[nc:nc + len(xs)]
            dst, start, offset, j = ps[nc + len(xs):nc + len(xs) + 4]
            carry, slot_arrays = ps[nc + len(xs) + 4:nc + len(xs) + 4 + nk], ps[nc + len(xs) + 4 + nk:]
            pos = add(start, j)
            index = subtract(constant(np.int32(n - 1), graph=g), pos) if rev else pos
            new = clone(advance_body, g, [*c, *carry, *(take(x, index, axis=0) for x in x_all)])
            to = take(dst, add(offset, j), axis=0)
            return [add(j, constant(np.int32(1), graph=g)), *new, *(_write(s, to, v) for s, v in zip(slot_arrays, new))]
        xtypes = [(x.shape, x.dtype) for x in xs]
        return build_region(ctypes + xtypes + [((len(sched.dst) or 1,), np.dtype(np.int32))] + [scalar] * 3 + ktypes
                            + stypes, build, keep.graph.what)

    test = build_region([scalar, scalar, *ktypes, *stypes], lambda g, count, j, *_: [apply("less", j, count)],
                        keep.graph.what)
    advance = advance_region()

    def reverse_phase(r: Tensor) -> tuple[dict[Tensor, Tensor], set[Tensor]]:
        step: Region = r.attrs["body"]
        n_rc, rnc = r.attrs["num_carry"], r.attrs["num_consts"]
        r_consts = list(r.inputs[:rnc])  # f's consts, then the reverse scan's own
        ct_carry = list(r.inputs[rnc:rnc + n_rc])
        ct_ys = list(r.inputs[rnc + n_rc + nres + len(xs):])
        dst = constant(np.asarray(sched.dst or [-1], np.int32), graph=r.graph)
        tables = [_table(t, r.graph, rev) for t in (sched.restore, sched.start, sched.count, sched.offset)]

        def build(g, *ps):
            it = iter(ps)
            rc = [next(it) for _ in range(rnc)]
            c = rc[:nc]
            x_all = [next(it) for _ in xs]
            dst_p = next(it)
            cts = [next(it) for _ in range(n_rc)]
            slot_arrays = [next(it) for _ in range(nk)]
            x = [next(it) for _ in xs]
            cty = [next(it) for _ in ct_ys]
            restore, start, count, offset = list(it)
            carry = [take(s, restore, axis=0) for s in slot_arrays]
            loop = g.make("while_loop", (count, *c, *x_all, dst_p, start, offset, constant(np.int32(0), graph=g),
                                         *carry, *slot_arrays),
                          {"cond": test, "body": advance, "cond_nconsts": 1, "body_nconsts": nc + len(xs) + 3})
            done = results_of(loop)
            carry, slot_arrays = done[1:1 + nk], done[1 + nk:]
            residuals = clone(keep, g, [*c, *carry, *x])[nk + ny:]  # iteration t's, from C_t
            back = clone(step, g, [*rc, *cts, *residuals, *x, *cty])
            return [*back[:n_rc], *slot_arrays, *back[n_rc:]]

        types = ([(t.shape, t.dtype) for t in r_consts] + [(x.shape, x.dtype) for x in xs] + [(dst.shape, dst.dtype)]
                 + [(t.shape, t.dtype) for t in ct_carry] + stypes + slice_types
                 + [(t.shape[1:], t.dtype) for t in ct_ys] + [scalar] * 4)
        body = build_region(types, build, step.graph.what)
        node = r.graph.make("scan", (*r_consts, *xs, dst, *ct_carry, *filled, *xs, *ct_ys, *tables),
                            {"num_consts": rnc + len(xs) + 1, "num_carry": n_rc + nk, "length": None,
                             "reverse": r.attrs["reverse"], "body": body}, loc=r.loc)
        new = results_of(node)
        return dict(zip(results_of(r), [*new[:n_rc], *new[n_rc + nk:]])), set()

    forward_nodes = {fwd, *outs, *slots0, store}
    out = replace_pair(module, f, r, dict(zip(results_of(f)[:nk + ny], values)), forward_nodes, reverse_phase)
    carry = sum(nbytes(c) for c in init)
    rep = LoopReport(f.name, n, 0, stored_bytes(pair), width * carry, sched.recomputed,
                     f"on revolve's schedule for {sched.slots} slots", body_flops(advance_body))
    return out, rep


def revolve_loops(module: Module, slots: int) -> tuple[Module, list[LoopReport]]:
    """Every reverse-mode loop pair of the module on the binomial schedule for `slots` slots."""
    reports = []
    for pair in loop_pairs(module):
        if pair.forward in module.nodes and pair.backward in module.nodes:
            module, rep = revolve_pair(module, pair, slots)
            reports.append(rep)
    return module, reports
