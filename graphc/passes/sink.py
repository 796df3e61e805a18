"""Sink the readout of a scan's stacked ys into its loops, so the stack need not exist.

A scan stacks each iteration's y slice into ``ys`` (``[T, *shape]``). When a stack is read
only by elementwise maps of it (whose other operands are loop-invariant: of lower rank, or
a leading dim of 1, or a constant equal along the stack axis, or maps of such) ending in
sums over the stack axis (``sum`` with axis 0 among its axes, so ``mean`` too), and by the
reverse scan of the loop's own gradient as its ys cotangent, the compiler rewrites it away:

* forward: the scan carries one accumulator per sum and adds each iteration's slice of the
  map (summed over the sum's other axes); the sum reads the final accumulator;
* backward: the reverse scan computes iteration t's ys cotangent from y_t inside its body,
  and carries an accumulator for each sum of the backward part (a readout weight's
  gradient, ``sum(hs * g)``); the forward scan gives y_t as one more per-iteration residual,
  its residuals chosen again by the minimum cut (W8: y_t = tanh(...) is stored, 1 - tanh²
  recomputed from it), and the checkpoint policies store them under none and recompute them
  from the carries under sqrt and revolve;
* a stacked y nobody reads is no longer stacked.

Reverse mode builds the scan's adjoint eagerly (a forward scan stacking residuals and a
reverse scan, graphc/control/rules.py), so both loops are in the module this pass sees:
it runs before `checkpoint` (after letting the forward loop run once, `share_forward`).
Values are the same computations except the order of the sums' additions. A stack also
fetched, also read by another op (a GEMM, a slice, another loop) or whose map reads a
stacked operand is left as it is. Loops inside bodies are rewritten too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..control.rules import results_of
from ..ir.graph import Const, Tensor
from ..ir.region import Region, build_region, clone, regions_of
from ..ir.traverse import toposort
from ..ops.core import constant
from ..ops.elementwise import add, cast
from ..ops.reduce import sum as reduce_sum
from ..ops.registry import OpKind
from ..ops.shape import broadcast_to, reshape
from .cost import nbytes
from .loop_checkpoint import LoopPair, _rebuilt, loop_pairs, share_forward
from .manager import register_pass
from .mincut import keep_by_min_cut
from .module import Module, rebuild


@dataclass
class Readout:
    """What reads a scan's stacked ys and can be sunk: the maps computed slice by slice from
    the stacks (`local`, in module order, with their loop-invariant operands), the sums over
    the stack axis they end in, the reverse scan's ys-cotangent operands among them
    (operand position -> node), and the invariants each side reads (forward: the sums',
    backward: the cotangents')."""

    roots: dict[int, Tensor | None]  # y index -> its stack (None: nobody reads it)
    local: list[Tensor] = field(default_factory=list)
    invariants: dict[Tensor, list[Tensor]] = field(default_factory=dict)
    sums: list[Tensor] = field(default_factory=list)  # into the forward loop
    backward_sums: list[Tensor] = field(default_factory=list)  # of backward values: into the reverse loop
    cts: dict[int, Tensor] = field(default_factory=dict)
    forward_inv: list[Tensor] = field(default_factory=list)
    backward_inv: list[Tensor] = field(default_factory=list)
    ct_roots: list[int] = field(default_factory=list)  # the ys the reverse scan needs per iteration


def _invariant(v: Tensor, ndim: int, length: int) -> bool:
    """Whether `v`, an operand of a map over stacks of rank `ndim`, has one value for every slice:
    of lower rank, of leading dim 1, a constant equal along the leading axis, or a broadcast or
    an elementwise map of such operands."""
    if v.ndim < ndim or (v.ndim == ndim and v.shape[0] == 1):
        return True
    if v.ndim != ndim or v.shape[0] != length:
        return False
    if v.op == "broadcast_to" or v.opdef.kind is OpKind.ELEMENTWISE:
        return all(_invariant(i, ndim, length) for i in v.inputs)
    if v.op != "constant":
        return False
    arr = v.attrs["value"].array
    return bool(np.array_equal(arr, np.broadcast_to(arr[:1], arr.shape)))


def _sources(v: Tensor, ndim: int) -> list[Tensor]:
    """The values an invariant operand is computed from inside the loop, passed in (constants are made inside)."""
    if v.op == "constant":
        return []
    if v.ndim < ndim or v.shape[0] == 1:
        return [v]
    return [s for i in v.inputs for s in _sources(i, ndim)]


def _operand(v: Tensor, ndim: int, env: dict[Tensor, Tensor], g) -> Tensor:
    """One slice of invariant operand `v` of a map over stacks of rank `ndim`, made in body graph `g`."""
    if v.op == "constant":
        arr = v.attrs["value"].array
        return g.make("constant", (), {"value": Const(arr[0] if v.ndim == ndim else arr)})
    if v.ndim < ndim:
        return env[v]
    if v.shape[0] == 1 and v in env:
        return reshape(env[v], v.shape[1:])
    args = tuple(_operand(i, ndim, env, g) for i in v.inputs)
    if v.op == "broadcast_to":
        return broadcast_to(args[0], v.shape[1:])
    return g.make(v.op, args, v.attrs, name=v.name, loc=v.loc)


def _ancestors(starts: list[Tensor], within: set[Tensor]) -> set[Tensor]:
    """The nodes of `within` that `starts` read (transitively through `within`), starts included."""
    seen: set[Tensor] = set()
    todo = [n for n in starts if n in within]
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(i for i in n.inputs if i in within)
    return seen


def _readout(f: Tensor, module: Module, pair: LoopPair | None) -> Readout | None:
    """The readout of `f`'s stacked ys that can be sunk (None: nothing to rewrite)."""
    nk = f.attrs["num_carry"]
    count = len(f.attrs["body"].results)
    ny = pair.ny if pair is not None else count - nk
    if not ny:
        return None
    length = f.opdef.results(f.inputs, f.attrs)[nk][0][0]
    if not isinstance(length, int):
        return None
    outputs = set(module.outputs)
    stacks = {u.attrs["index"] - nk: u for u in module.nodes
              if u.op == "result" and u.inputs[0] is f and nk <= u.attrs["index"] < nk + ny}
    dead = [j for j in range(ny) if j not in stacks]
    candidates = {j: s for j, s in stacks.items() if s not in outputs}
    ct_start = None
    if pair is not None:
        r = pair.backward
        ct_start = r.attrs["num_consts"] + r.attrs["num_carry"] + count - nk - ny + len(f.inputs) - \
            f.attrs["num_consts"] - nk
    late: set[Tensor] = set()  # what the forward loop cannot read: its own results, the backward part
    after: set[Tensor] = set()  # what the reverse loop cannot read: its own results
    for n in module.nodes:
        if n is f or n in module.adjoint or any(i in late for i in n.inputs):
            late.add(n)
        if (pair is not None and n is pair.backward) or any(i in after for i in n.inputs):
            after.add(n)
    out: Readout | set[int] = Readout({})
    while candidates:
        out = _closure(candidates, module, length, pair, ct_start, (late, after))
        if isinstance(out, Readout):
            break
        candidates = {j: s for j, s in candidates.items() if j not in out}
    if not isinstance(out, Readout) or not candidates:
        out = Readout({})
    if not out.roots and not dead:
        return None
    out.roots.update({j: None for j in dead})
    return out


def _closure(roots: dict[int, Tensor], module: Module, length: int, pair: LoopPair | None,
             ct_start: int | None, late: tuple[set[Tensor], set[Tensor]]) -> Readout | set[int]:
    """The readout of the stacks `roots`, or the y indices whose stacks cannot be sunk. `late`: what
    the forward loop cannot read (a sum reading it goes into the reverse loop), what the reverse
    loop cannot read."""
    of: dict[Tensor, set[int]] = {s: {j} for j, s in roots.items()}  # a stack or map -> the ys it reads
    outputs = set(module.outputs)
    out = Readout(dict(roots))
    bad: set[int] = set()
    for u in module.nodes:
        stacked = [i for i in u.inputs if i in of]
        if not stacked or u in of:
            continue
        reads = set().union(*(of[i] for i in stacked))
        if u.op == "sum" and 0 in u.attrs["axis"]:
            out.sums.append(u)
        elif pair is not None and u is pair.backward:
            at = [k for k, i in enumerate(u.inputs) if i in of]
            if all(k >= ct_start for k in at):
                out.cts.update((k, u.inputs[k]) for k in at)
            else:
                bad |= reads
        elif u.opdef.kind is OpKind.ELEMENTWISE and u not in outputs and u.ndim >= 1 and u.shape[0] == length \
                and all(i.ndim == u.ndim for i in stacked) \
                and all(_invariant(v, u.ndim, length) for v in u.inputs if v not in of):
            of[u] = reads
            out.local.append(u)
            out.invariants[u] = [s for v in u.inputs if v not in of for s in _sources(v, u.ndim)]
        else:
            bad |= reads
    if bad:
        return bad
    local = set(out.local)

    def invariants(ends: list[Tensor]) -> list[Tensor]:
        side = _ancestors(ends, local)
        return list(dict.fromkeys(v for n in out.local if n in side for v in out.invariants[n]))

    out.backward_sums = [s for s in out.sums if any(v in late[0] for v in invariants([s.inputs[0]]))]
    out.sums = [s for s in out.sums if s not in out.backward_sums]
    ends = [*out.cts.values(), *(s.inputs[0] for s in out.backward_sums)]
    out.backward_inv = invariants(ends)
    if out.backward_sums and (pair is None or any(v in late[1] for v in out.backward_inv)
                              or any(s not in module.adjoint for s in out.backward_sums)):
        return set().union(*(of[s.inputs[0]] for s in out.backward_sums))
    out.forward_inv = invariants([s.inputs[0] for s in out.sums])
    backward_side = _ancestors(ends, local | set(roots.values()))
    out.ct_roots = sorted(j for j, s in roots.items() if s in backward_side)
    return out


def _slice(n: Tensor, env: dict[Tensor, Tensor], stacked: set[Tensor], g) -> Tensor:
    """Map `n`'s slice for one iteration, made in body graph `g` (`env`: the stacks' slices and
    the invariants' params; filled in as it goes)."""
    if n not in env:
        args = [_slice(v, env, stacked, g) if v in stacked else _operand(v, n.ndim, env, g) for v in n.inputs]
        env[n] = g.make(n.op, tuple(args), n.attrs, name=n.name, loc=n.loc)
    return env[n]


def _partial(value: Tensor, total: Tensor) -> Tensor:
    """One iteration's share of the sum `total` over a stack: `value` (its slice) summed over the other axes."""
    axes = tuple(a - 1 for a in total.attrs["axis"] if a)
    part = reduce_sum(value, axes) if axes else value
    return part if part.dtype == total.dtype else cast(part, total.dtype)


def _total(acc: Tensor, total: Tensor) -> Tensor:
    """The sum `total` from its loop's final accumulator (reshaped for keepdims)."""
    return acc if acc.shape == total.shape else reshape(acc, total.shape)


def _acc_shape(total: Tensor) -> tuple:
    x = total.inputs[0]
    return tuple(d for a, d in enumerate(x.shape) if a not in total.attrs["axis"])


def _stored(body: Region, nc: int, nk: int, read: list[Tensor]) -> list[Tensor]:
    """The body values to stack per iteration, of fewest bytes, from which cheap ops recompute
    `read` (the minimum cut of rules._split_body, again: the reverse loop now also reads y_t)."""
    variant = set(body.params[nc:])
    forward = list(body.params[nc:])
    for n in toposort(body.results, set(body.params)):
        if any(i in variant for i in n.inputs):
            variant.add(n)
            forward.append(n)
    xparams = set(body.params[nc + nk:])
    kept = keep_by_min_cut(forward, read, lambda v: 0 if v in xparams else 1 << 62 if v.dtype is None else nbytes(v),
                           lambda v: v.op == "param")
    return [n for n in forward if n in kept and n not in xparams]


def _sink(module: Module, f: Tensor, pair: LoopPair | None, ro: Readout) -> Module:
    """The module with `ro` sunk into `f` (and into the reverse scan of `pair`)."""
    body: Region = f.attrs["body"]
    nc, nk = f.attrs["num_consts"], f.attrs["num_carry"]
    ny = pair.ny if pair is not None else len(body.results) - nk
    consts, init, xs = list(f.inputs[:nc]), list(f.inputs[nc:nc + nk]), list(f.inputs[nc + nk:])
    finv, sums = ro.forward_inv, ro.sums
    kept = [j for j in range(ny) if j not in ro.roots]
    residuals = list(body.results[nk + ny:])
    ys_read = [body.results[nk + j] for j in ro.ct_roots]  # the ys the reverse loop now reads per iteration
    stored = residuals if all(y in residuals for y in ys_read) else _stored(body, nc, nk, [*residuals, *ys_read])
    stacked = set(ro.local) | {s for s in ro.roots.values() if s is not None}
    types = body.param_types
    acc_types = [(_acc_shape(s), s.dtype) for s in sums]

    def forward(g, *ps):
        it = iter(ps)
        c, fi, carry, acc = ([next(it) for _ in range(k)] for k in (nc, len(finv), nk, len(sums)))
        args = [*c, *carry, *it]
        outs = clone(body, g, args)
        env = {s: outs[nk + j] for j, s in ro.roots.items() if s is not None}
        env.update(zip(finv, fi))
        total = [add(a, _partial(_slice(s.inputs[0], env, stacked, g), s)) for a, s in zip(acc, sums)]
        return [*outs[:nk], *total, *(outs[nk + j] for j in kept), *clone(Region(body.params, stored), g, args)]

    new_body = build_region([*types[:nc], *((v.shape, v.dtype) for v in finv), *types[nc:nc + nk], *acc_types,
                             *types[nc + nk:]], forward, body.graph.what)
    zeros = [constant(np.zeros(s, d), graph=f.graph) for s, d in acc_types]
    fwd = f.graph.make("scan", (*consts, *finv, *init, *zeros, *xs),
                       {**f.attrs, "body": new_body, "num_consts": nc + len(finv), "num_carry": nk + len(sums)},
                       name=f.name, loc=f.loc)
    new = results_of(fwd)
    old = results_of(f)
    na = nk + len(sums)
    values = {**dict(zip(old[:nk], new[:nk])),
              **{old[nk + j]: new[na + k] for k, j in enumerate(kept)},
              **{s: _total(new[nk + k], s) for k, s in enumerate(sums)}}
    if stored is residuals:  # (otherwise the reverse loop is rebuilt on the new ones below)
        values.update(zip(old[nk + ny:], new[na + len(kept):]))
    first = _rebuilt(module, values)
    module = module.remap(first)
    if not ro.cts and not ro.backward_sums:
        return module
    r = first.get(pair.backward, pair.backward)
    step: Region = r.attrs["body"]
    rnc, rk = r.attrs["num_consts"], r.attrs["num_carry"]
    nres = len(residuals)
    ct_start = rnc + rk + nres + len(xs)
    binv, bsums = ro.backward_inv, ro.backward_sums
    bacc_types = [(_acc_shape(s), s.dtype) for s in bsums]
    st = step.param_types
    kept_cts = [k for k in range(ct_start, len(r.inputs)) if k not in ro.cts]

    def backward(g, *ps):
        it = iter(ps)
        c0, _, c1, bi, carry, acc, res, x = ([next(it) for _ in range(k)] for k in
                                             (nc, len(finv), rnc - nc, len(binv), rk, len(bsums), len(stored), len(xs)))
        env = {**dict(zip(stored, res)), **dict(zip(body.params[:nc], c0)), **dict(zip(body.params[nc + nk:], x))}
        for n in toposort([*residuals, *ys_read], set(env)):  # what the cut left to recompute
            env[n] = g.make(n.op, tuple(env[i] for i in n.inputs), n.attrs, name=n.name, loc=n.loc)
        env.update((ro.roots[j], env[y]) for j, y in zip(ro.ct_roots, ys_read))
        env.update(zip(binv, bi))
        cts = [_slice(ro.cts[k], env, stacked, g) if k in ro.cts else next(it) for k in range(ct_start, len(r.inputs))]
        back = clone(step, g, [*c0, *c1, *carry, *(env[v] for v in residuals), *x, *cts])
        total = [add(a, _partial(_slice(s.inputs[0], env, stacked, g), s)) for a, s in zip(acc, bsums)]
        return [*back[:rk], *total, *back[rk:]]

    rtypes = [*st[:nc], *((v.shape, v.dtype) for v in finv), *st[nc:rnc], *((v.shape, v.dtype) for v in binv),
              *st[rnc:rnc + rk], *bacc_types, *((v.shape, v.dtype) for v in stored), *st[rnc + rk + nres:ct_start],
              *(st[k] for k in kept_cts)]
    ins = r.inputs
    rev = r.graph.make("scan", (*ins[:nc], *finv, *ins[nc:rnc], *(first.get(v, v) for v in binv),
                                *ins[rnc:rnc + rk], *(constant(np.zeros(s, d), graph=r.graph) for s, d in bacc_types),
                                *new[na + len(kept):], *ins[rnc + rk + nres:ct_start], *(ins[k] for k in kept_cts)),
                       {**r.attrs, "body": build_region(rtypes, backward, step.graph.what),
                        "num_consts": rnc + len(finv) + len(binv), "num_carry": rk + len(bsums)},
                       name=r.name, loc=r.loc)
    was, now = results_of(r), results_of(rev)
    second = _rebuilt(module, {**dict(zip(was[:rk], now[:rk])), **dict(zip(was[rk:], now[rk + len(bsums):])),
                               **{s: _total(now[rk + k], s) for k, s in enumerate(bsums)}})
    out = module.remap(second)
    return Module(out.outputs, out.adjoint | {rev})


def _sink_once(module: Module) -> Module | None:
    """The module with one scan's readout sunk, or None when none can be."""
    pairs = {p.forward: p for p in loop_pairs(module)}
    for f in module.nodes:
        if f.op == "scan":
            ro = _readout(f, module, pairs.get(f))
            if ro is not None:
                return _sink(module, f, pairs.get(f), ro)
    return None


def sink_loops(module: Module) -> tuple[Module, int]:
    """Every scan's sinkable readout sunk (see the module docstring), and how many scans were rewritten."""
    module, _ = share_forward(module)
    changes = 0
    while changes < 256:
        out = _sink_once(module)
        if out is None:
            break
        module, changes = out, changes + 1
    return module, changes


def _in_regions(node: Tensor) -> Tensor | None:
    """`node` with the loops inside its regions sunk (None: nothing changed)."""
    attrs = dict(node.attrs)
    for key, region in regions_of(node):
        out, n = sink_loops(Module(region.results))
        if n:
            attrs[key] = Region(region.params, out.outputs)
    if attrs == node.attrs:
        return None
    return node.graph.make(node.op, node.inputs, attrs, name=node.name, loc=node.loc)


@register_pass("sink", "sink sums of a scan's stacked ys (and their cotangents) into its loops")
def sink(module: Module, options: object = None) -> tuple[Module, int]:
    module, inner = rebuild(module, _in_regions)
    module, changes = sink_loops(module)
    return module, inner + changes
