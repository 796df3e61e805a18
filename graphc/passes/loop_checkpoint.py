"""Checkpointing of loops: store every k-th carry of a scan instead of every iteration's residuals.

Reverse mode through a scan (graphc/control/rules.py) runs a forward scan that also stacks
each of the T iterations' residuals (the values its VJP reads), then a reverse scan whose
body runs the VJP over them. With segments of k iterations (k divides T, S = T/k
segments), `segment` rewrites that pair:

* forward: a scan over the S segments, each an inner scan of the user's body over its k
  iterations, stacking only the carry entering each segment (S carries stored); it gives
  the loop's values too (final carry, ys), so the forward loop still runs once;
* reverse: a scan over the segments in the opposite order whose body first re-runs the
  segment from its stored carry with the residual-stacking body, then runs the original
  reverse scan over that segment's residuals.

So the stored values fall from T iterations' residuals to S carries (plus k iterations'
residuals while a segment is reversed) and every iteration is computed once more: k = √T
gives O(√T) memory for one more forward pass (Chen et al. 2016, over iterations). Values
are the same computations in the same order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from ..control.rules import results_of
from ..ir.graph import Tensor
from ..ir.region import Region, build_region
from ..ops.shape import reshape
from .cost import flops, nbytes
from .module import Module


@dataclass(frozen=True)
class LoopPair:
    """A forward scan whose last results are stacked per-iteration residuals (its own
    results are `ny` ys before them) and the reverse scan that reads them (its consts are
    the forward scan's, then any of its own: the sink pass adds some)."""

    forward: Tensor
    backward: Tensor
    length: int
    ny: int


@dataclass(frozen=True)
class LoopReport:
    """One checkpointed loop: iterations, segment length (0: revolve), stored carry bytes
    before and after, iterations recomputed, and how (the report's words)."""

    name: str
    iterations: int
    segment: int
    stored_before: int
    stored_after: int
    recomputed: int
    how: str
    body_flops: int  # FLOPs of one iteration (passes/cost.py's estimate)

    def __str__(self) -> str:
        """The checkpoint report's line for the loop."""
        return (f"{self.name}: {self.iterations} iterations {self.how}: stored {self.stored_before} B of "
                f"residuals -> {self.stored_after} B of carries, {self.recomputed} iterations recomputed")


def loop_pairs(module: Module) -> list[LoopPair]:
    """The (forward, reverse) scan pairs that reverse mode built, in module order."""
    pairs = []
    for r in module.nodes:
        if r.op != "scan":
            continue
        for f in {i.inputs[0] for i in r.inputs if i.op == "result" and i.inputs[0].op == "scan"}:
            pair = _stacking(f, r)
            if pair is not None:
                pairs.append(pair)
    return pairs


def _stacking(f: Tensor, r: Tensor) -> LoopPair | None:
    """The pair when `r` reads `f`'s last results (stacked per iteration, cf. rules.scan_vjp)
    right after its carry, then `f`'s xs, with `f`'s consts first, in the opposite order."""
    nc, nk = f.attrs["num_consts"], f.attrs["num_carry"]
    count = len(f.attrs["body"].results)
    start = r.attrs["num_consts"] + r.attrs["num_carry"]
    nres = 0
    while start + nres < len(r.inputs) and r.inputs[start + nres].op == "result" \
            and r.inputs[start + nres].inputs[0] is f:
        nres += 1
    ny = count - nk - nres
    n_xs = len(f.inputs) - nc - nk
    if nk == 0 or nres == 0 or ny < 0 or r.attrs["num_consts"] < nc or tuple(r.inputs[:nc]) != tuple(f.inputs[:nc]) \
            or tuple(r.inputs[start + nres:start + nres + n_xs]) != tuple(f.inputs[nc + nk:]) \
            or r.attrs["reverse"] == f.attrs["reverse"] \
            or [s.attrs["index"] for s in r.inputs[start:start + nres]] != list(range(nk + ny, count)):
        return None
    length = f.opdef.results(f.inputs, f.attrs)[nk + ny][0][0]
    return LoopPair(f, r, length, ny) if isinstance(length, int) and length > 1 else None


def stored_bytes(pair: LoopPair) -> int:
    """Bytes the forward scan stacks for the reverse scan (all iterations)."""
    return sum(nbytes(r) for r in results_of(pair.forward)[pair.forward.attrs["num_carry"] + pair.ny:])


def share_forward(module: Module) -> tuple[Module, int]:
    """Read a differentiated scan's values from the scan that also stacks its residuals.

    Reverse mode leaves two forward scans over the same operands: the user's, and the one
    that also stacks the residuals for the reverse loop (its body has the same params and
    returns the same results, then more). The second gives both, so the first is dropped:
    the body runs once forward instead of twice, and its ys are stored once. The stacking
    scan becomes a forward node (its values are the forward part's now).
    """
    scans = [n for n in module.nodes if n.op == "scan"]
    replace: dict[Tensor, Tensor] = {}
    stackers = set()
    for f in scans:
        body = f.attrs["body"]
        for o in scans:
            ob = o.attrs["body"]
            if o is not f and o.inputs == f.inputs and ob.params == body.params \
                    and len(ob.results) < len(body.results) \
                    and tuple(ob.results) == tuple(body.results[:len(ob.results)]) \
                    and all(o.attrs[k] == f.attrs[k] for k in ("num_consts", "num_carry", "length", "reverse")):
                for old, new in zip(results_of(o), results_of(f)):
                    replace[old] = new
                stackers.add(f)
    if not replace:
        return module, 0
    out = module.remap(_rebuilt(module, replace))
    return Module(out.outputs, frozenset(n for n in out.adjoint if n not in stackers)), len(stackers)


def segment_length(length: int) -> int:
    """The divisor of `length` nearest √length (1 when there is none but 1 and length)."""
    best = 1
    for k in range(2, length):
        if length % k == 0 and abs(k - math.sqrt(length)) < abs(best - math.sqrt(length)):
            best = k
    return best


def segment(module: Module, pair: LoopPair, k: int) -> tuple[Module, LoopReport]:
    """The module with `pair` running in segments of `k` iterations (k divides its length)."""
    f, r, n, ny = pair.forward, pair.backward, pair.length, pair.ny
    nc, nk = f.attrs["num_consts"], f.attrs["num_carry"]
    keep: Region = f.attrs["body"]
    nres = len(keep.results) - nk - ny
    segs = n // k
    consts, init, xs = list(f.inputs[:nc]), list(f.inputs[nc:nc + nk]), list(f.inputs[nc + nk:])
    fold = lambda t: reshape(t, (segs, k, *t.shape[1:]))  # noqa: E731
    carry_types = [(c.shape, c.dtype) for c in init]
    seg_types = lambda ts: [((k, *t.shape[1:]), t.dtype) for t in ts]  # noqa: E731
    const_types = [(c.shape, c.dtype) for c in consts]
    fwd_attrs = {"num_consts": nc, "reverse": f.attrs["reverse"]}
    body = Region(keep.params, keep.results[:nk + ny])  # the user's body: carry and ys

    def forward_segment(g, *ps):
        c, carry, x = ps[:nc], ps[nc:nc + nk], ps[nc + nk:]
        inner = g.make("scan", (*c, *carry, *x), {**fwd_attrs, "body": body, "num_carry": nk,
                                                   "length": None if x else k})
        return [*results_of(inner), *carry]  # new carry, the segment's ys, the carry entering it

    seg_xs = [fold(x) for x in xs]
    fwd_body = build_region(const_types + carry_types + seg_types(xs), forward_segment, keep.graph.what)
    fwd = f.graph.make("scan", (*consts, *init, *seg_xs),
                       {**fwd_attrs, "body": fwd_body, "num_carry": nk, "length": None if xs else segs}, loc=f.loc)
    outs = results_of(fwd)
    checkpoints = outs[nk + ny:]
    values = [*outs[:nk], *(reshape(y, old.shape) for y, old in zip(outs[nk:nk + ny], results_of(f)[nk:nk + ny]))]
    step: Region = r.attrs["body"]

    def reverse(r: Tensor) -> tuple[dict[Tensor, Tensor], set[Tensor]]:
        n_rc, rnc = r.attrs["num_carry"], r.attrs["num_consts"]
        r_consts = list(r.inputs[:rnc])  # f's consts, then the reverse scan's own
        ct_carry = list(r.inputs[rnc:rnc + n_rc])
        ct_ys = list(r.inputs[rnc + n_rc + nres + len(xs):])

        def reverse_segment(g, *ps):
            it = iter(ps)
            c = [next(it) for _ in range(rnc)]
            cts = [next(it) for _ in range(n_rc)]
            start = [next(it) for _ in range(nk)]
            x = [next(it) for _ in xs]
            cty = list(it)
            again = g.make("scan", (*c[:nc], *start, *x), {**fwd_attrs, "body": keep, "num_carry": nk,
                                                           "length": None if x else k})
            stacked = results_of(again)[nk + ny:]
            back = g.make("scan", (*c, *cts, *stacked, *x, *cty),
                          {"num_consts": rnc, "num_carry": n_rc, "length": None, "reverse": r.attrs["reverse"],
                           "body": step})
            return results_of(back)

        types = ([(t.shape, t.dtype) for t in r_consts] + [(t.shape, t.dtype) for t in ct_carry] + carry_types
                 + seg_types(xs) + seg_types(ct_ys))
        rev_body = build_region(types, reverse_segment, step.graph.what)
        rev = r.graph.make("scan", (*r_consts, *ct_carry, *checkpoints, *seg_xs, *map(fold, ct_ys)),
                           {"num_consts": rnc, "num_carry": n_rc, "length": None, "reverse": r.attrs["reverse"],
                            "body": rev_body}, loc=r.loc)
        new = results_of(rev)
        return {o: (m if i < n_rc else reshape(m, o.shape)) for i, (o, m) in enumerate(zip(results_of(r), new))}, set()

    out = replace_pair(module, f, r, dict(zip(results_of(f)[:nk + ny], values)), {fwd, *outs, *seg_xs}, reverse)
    carry = sum(nbytes(c) for c in init)
    return out, LoopReport(f.name, n, k, stored_bytes(pair), segs * carry, n, f"in segments of {k}", body_flops(keep))


def body_flops(body: Region) -> int:
    """One iteration's FLOPs (passes/cost.py's estimate; nested loops count nothing)."""
    return sum(flops(node) for node in body.nodes)


def replace_pair(module: Module, f: Tensor, r: Tensor, values: dict[Tensor, Tensor], forward: set[Tensor],
                 reverse: Callable[[Tensor], tuple[dict[Tensor, Tensor], set[Tensor]]]) -> Module:
    """The module with forward scan `f`'s results read from `values` (new forward nodes, with
    `forward`) and reverse scan `r`'s results from ``reverse(r)`` (r as rebuilt on the new
    values; its mapping, and any further forward nodes it made); new nodes that are not
    forward are tagged as the adjoint's."""
    first = _rebuilt(module, values)
    tagged = module.adjoint | {first[n] for n in module.adjoint if n in first}
    module = module.remap(first)
    mapping, more = reverse(first.get(r, r))
    rebuilt = _rebuilt(module, mapping)
    out = module.remap(rebuilt)
    before = set(module.nodes)
    forward = forward | more | set(values.values()) | {v for k, v in {**first, **rebuilt}.items() if k not in tagged}
    adjoint = out.adjoint | {n for n in out.nodes if n not in before and n not in forward}
    return Module(out.outputs, frozenset(adjoint))


def _rebuilt(module: Module, replace: dict[Tensor, Tensor]) -> dict[Tensor, Tensor]:
    """A mapping of every node of the module that reads a replaced node (transitively) to its rebuild."""
    mapping: dict[Tensor, Tensor] = {}
    for n in module.nodes:
        if n in replace:
            mapping[n] = replace[n]
            continue
        inputs = tuple(mapping.get(i, i) for i in n.inputs)
        if inputs != n.inputs:
            mapping[n] = n.graph.make(n.op, inputs, n.attrs, name=n.name, loc=n.loc)
    return mapping


def checkpoint_loops(module: Module) -> tuple[Module, list[LoopReport]]:
    """Every reverse-mode loop pair of the module in segments of about √T iterations."""
    reports = []
    for pair in loop_pairs(module):
        k = segment_length(pair.length)
        if k > 1 and pair.forward in module.nodes and pair.backward in module.nodes:
            module, rep = segment(module, pair, k)
            reports.append(rep)
    return module, reports
