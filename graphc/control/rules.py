"""VJP and JVP rules of the region ops, built from VJP/JVP regions of their bodies.

* cond: the VJP is a cond of the branches' VJPs (each branch recomputes its forward part
  from the operands, then differentiates it); the JVP a cond of the branches' JVPs.
* scan: reverse mode differentiates one iteration and splits the joint graph: a forward
  scan also stacks each iteration's residuals (the values of the carry or the x slice that
  the VJP reads), then a reverse scan runs the VJP part over them, carrying the carry's
  cotangent and accumulating the consts' cotangents (values of the consts alone are
  recomputed there, the x slices read again). Forward mode is one scan carrying the
  tangents next to the values.
* while_loop: forward mode as scan; reverse mode is refused (as JAX does): a bounded
  ``gc.while_loop(..., max_iterations=n)`` is a scan and differentiates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..autodiff.forward import jvp
from ..autodiff.reverse import gradients, zeros_like_tensor
from ..dtypes import is_float
from ..errors import GraphcError
from ..ir.graph import Tensor
from ..ir.region import Region, build_region, clone, new_params
from ..ir.traverse import toposort
from ..passes.mincut import keep_by_min_cut


def results_of(node: Tensor) -> list[Tensor]:
    """A region op's results as `result` nodes."""
    count = len(node.opdef.results(node.inputs, node.attrs))
    return [node.graph.make("result", (node,), {"index": i}, loc=node.loc) for i in range(count)]


def _float(types: Sequence) -> list[int]:
    return [i for i, (_, d) in enumerate(types) if is_float(d)]


def vjp_region(region: Region, wrt: Sequence[int], cts_for: Sequence[int]) -> Region:
    """``(params, cotangents of results[cts_for]) -> cotangents of params[wrt]`` (zeros if unconnected)."""
    n = len(region.params)
    types = region.param_types + [region.result_types[i] for i in cts_for]

    def build(g, *ps):
        outs = clone(region, g, ps[:n])
        return gradients([outs[i] for i in cts_for], [ps[i] for i in wrt], grad_ys=list(ps[n:]), unconnected="zero")

    return build_region(types, build, f"gradient of a {region.graph.what}")


def jvp_region(region: Region, with_tangent: Sequence[int]) -> Region:
    """``(params, tangents of params[with_tangent]) -> (results, tangents of the float results)``."""
    n = len(region.params)
    types = region.param_types + [region.param_types[i] for i in with_tangent]
    floats = _float(region.result_types)

    def build(g, *ps):
        outs = clone(region, g, ps[:n])
        tans = jvp([outs[i] for i in floats], [ps[i] for i in with_tangent], list(ps[n:]), unconnected="zero") \
            if floats else []
        return [*outs, *tans]

    return build_region(types, build, f"derivative of a {region.graph.what}")


def _cts(cts: Sequence, results: Sequence[Tensor], which: Sequence[int]) -> list[Tensor]:
    """The given cotangents of results[which], zeros where none was given."""
    return [cts[i] if cts[i] is not None else zeros_like_tensor(results[i]) for i in which]


# --- cond ------------------------------------------------------------------------------------

def cond_vjp(cts: list, out: Tensor, pred: Tensor, *args: Tensor, true_branch: Region, false_branch: Region):
    results = results_of(out)
    which = [i for i in _float(true_branch.result_types) if cts[i] is not None]
    wrt = _float(true_branch.param_types)
    attrs = {"true_branch": vjp_region(true_branch, wrt, which), "false_branch": vjp_region(false_branch, wrt, which)}
    node = out.graph.make("cond", (pred, *args, *_cts(cts, results, which)), attrs, loc=out.loc)
    grads = iter(results_of(node))
    return (None, *(next(grads) if i in wrt else None for i in range(len(args))))


def cond_jvp(tangents: Sequence, out: Tensor, pred: Tensor, *args: Tensor, true_branch: Region,
             false_branch: Region):
    have = [i for i, t in enumerate(tangents[1:]) if t is not None and is_float(args[i].dtype)]
    attrs = {"true_branch": jvp_region(true_branch, have), "false_branch": jvp_region(false_branch, have)}
    node = out.graph.make("cond", (pred, *args, *(tangents[1 + i] for i in have)), attrs, loc=out.loc)
    results = results_of(node)
    n = len(true_branch.results)
    tans = iter(results[n:])
    return tuple(next(tans) if is_float(d) else None for _, d in true_branch.result_types)


# --- scan ------------------------------------------------------------------------------------

def scan_vjp(cts: list, out: Tensor, *inputs: Tensor, body: Region, num_consts: int, num_carry: int,
             length: int | None, reverse: bool):
    nc, nk = num_consts, num_carry
    consts, xs = list(inputs[:nc]), list(inputs[nc + nk:])
    results = results_of(out)
    fc = _float(body.param_types[:nc])
    fk = _float(body.param_types[nc:nc + nk])  # float carries
    fx = _float(body.param_types[nc + nk:])
    fy = [j for j in _float(body.result_types[nk:]) if cts[nk + j] is not None]
    forward, backward = _split_body(body, nc, nk, fc, fk, fx, fy)
    # forward: the same scan, also stacking each iteration's residuals (none: nothing to run)
    ny = len(body.results) - nk
    attrs = {"num_consts": nc, "num_carry": nk, "length": length, "reverse": reverse}
    stacked = results_of(out.graph.make("scan", inputs, {**attrs, "body": forward}, loc=out.loc))[nk + ny:] \
        if len(forward.results) > len(body.results) else []
    carry0 = [*_cts(cts, results, fk), *(zeros_like_tensor(consts[i]) for i in fc)]
    ct_ys = _cts(cts, results, [nk + j for j in fy])
    node = out.graph.make("scan", (*consts, *carry0, *stacked, *xs, *ct_ys),
                          {"body": backward, "num_consts": nc, "num_carry": len(carry0),
                           "length": length if not (stacked or xs or ct_ys) else None, "reverse": not reverse},
                          loc=out.loc)
    back = results_of(node)
    ct_init, ct_consts, ct_xs = back[:len(fk)], back[len(fk):len(carry0)], back[len(carry0):]
    grads: list = [None] * len(inputs)
    for i, g in zip(fc, ct_consts):
        grads[i] = g
    for i, g in zip(fk, ct_init):
        grads[nc + i] = g
    for i, g in zip(fx, ct_xs):
        grads[nc + nk + i] = g
    return tuple(grads)


def _stored_bytes(node: Tensor) -> int:
    """What stacking the node per iteration costs (unknown dims count 1; a region op, whose
    value is its results, cannot be stored)."""
    if node.dtype is None:
        return 1 << 62
    return int(np.prod([1 if d is None else d for d in node.shape], dtype=np.int64)) * node.dtype.itemsize


def _split_body(body: Region, nc: int, nk: int, fc: list, fk: list, fx: list, fy: list) -> tuple[Region, Region]:
    """The forward body (the body's params and results, then the residuals one iteration's
    VJP reads, made in the body's graph so that the checkpoint pass's `share_forward` sees
    the user's scan in it) and the backward body (the reverse scan's). One iteration is
    differentiated, then the joint graph is split: values the VJP reads that depend on the
    carry or the x slice are residuals (stacked by the forward scan); values of the consts
    alone are recomputed in the reverse body; the x slices are read again from xs.

    The reverse body takes (consts; carry cotangents, const accumulators; residuals, x slices,
    y cotangents) and returns (earlier carry cotangents, accumulators; x cotangents)."""
    n = len(body.params)
    types = body.param_types
    g, ps = new_params([*types, *(body.result_types[i] for i in fk), *(body.result_types[nk + j] for j in fy)],
                       f"{body.graph.what}")
    prm, cts = ps[:n], ps[n:]
    outs = clone(body, g, prm)
    wrt = [*(prm[i] for i in fc), *(prm[nc + i] for i in fk), *(prm[nc + nk + i] for i in fx)]
    grads = gradients([*(outs[i] for i in fk), *(outs[nk + j] for j in fy)], wrt, grad_ys=list(cts),
                      unconnected="zero")
    order = toposort(grads)
    backward, variant = set(cts), set(prm[nc:])
    for node in order:
        if any(i in backward for i in node.inputs):
            backward.add(node)
        if any(i in variant for i in node.inputs):
            variant.add(node)
    xparams = set(prm[nc + nk:])
    forward_part = [node for node in order if node in variant and node not in backward]
    read = dict.fromkeys([*(i for node in order if node in backward for i in node.inputs if i in variant
                            and i not in backward), *(r for r in grads if r in variant and r not in backward)])
    # store the fewest bytes from which cheap ops recompute what the VJP reads (x slices are free: read again)
    kept = keep_by_min_cut(forward_part, read, lambda v: 0 if v in xparams else _stored_bytes(v),
                           lambda v: v.op == "param")
    residuals = [node for node in forward_part if node in kept and node not in xparams]
    forward = Region(body.params, [*body.results, *clone(Region(prm, residuals), body.graph, body.params)])
    x_types = types[nc + nk:]
    layout = [*types[:nc], *(types[nc + i] for i in fk), *(types[i] for i in fc),
              *((r.shape, r.dtype) for r in residuals), *x_types, *(body.result_types[nk + j] for j in fy)]

    def build(rg, *qs):
        it = iter(qs)
        env = {prm[i]: next(it) for i in range(nc)}
        env.update((cts[k], next(it)) for k in range(len(fk)))
        acc = [next(it) for _ in fc]
        env.update((r, next(it)) for r in residuals)
        env.update((prm[nc + nk + i], next(it)) for i in range(len(x_types)))
        env.update((cts[len(fk) + k], next(it)) for k in range(len(fy)))
        for node in toposort(grads, set(env)):  # backward nodes and values of the consts alone
            env[node] = rg.make(node.op, tuple(env[i] for i in node.inputs), node.attrs, name=node.name, loc=node.loc)
        mapped = [env[d] for d in grads]
        gc_, gk, gx = mapped[:len(fc)], mapped[len(fc):len(fc) + len(fk)], mapped[len(fc) + len(fk):]
        return [*gk, *(a + b for a, b in zip(acc, gc_)), *gx]

    return forward, build_region(layout, build, f"gradient of a {body.graph.what}")


def scan_jvp(tangents: Sequence, out: Tensor, *inputs: Tensor, body: Region, num_consts: int, num_carry: int,
             length: int | None, reverse: bool):
    nc, nk = num_consts, num_carry
    ny = len(body.results) - nk
    n_in = len(inputs)
    tc = [i for i in range(nc) if tangents[i] is not None and is_float(inputs[i].dtype)]
    tk = _float(body.param_types[nc:nc + nk])
    tx = [i for i in range(n_in - nc - nk) if tangents[nc + nk + i] is not None and is_float(inputs[nc + nk + i].dtype)]
    inner = jvp_region(body, [*tc, *(nc + i for i in tk), *(nc + nk + i for i in tx)])
    # reorder the params to the scan layout: consts, const tangents, carry, carry tangents, xs, x tangents
    n = len(body.params)
    p = inner.params
    order = [*p[:nc], *p[n:n + len(tc)], *p[nc:nc + nk], *p[n + len(tc):n + len(tc) + len(tk)],
             *p[nc + nk:n], *p[n + len(tc) + len(tk):]]
    fy = _float(body.result_types[nk:])
    r = inner.results  # results, then tangents of the float results
    tan_of = dict(zip(_float(body.result_types), r[len(body.results):]))
    res = [*r[:nk], *(tan_of[i] for i in tk), *r[nk:nk + ny], *(tan_of[nk + j] for j in fy)]
    step = Region(order, res)
    tin = [tangents[nc + i] if tangents[nc + i] is not None else zeros_like_tensor(inputs[nc + i]) for i in tk]
    operands = (*inputs[:nc], *(tangents[i] for i in tc), *inputs[nc:nc + nk], *tin, *inputs[nc + nk:],
                *(tangents[nc + nk + i] for i in tx))
    node = out.graph.make("scan", operands, {"body": step, "num_consts": nc + len(tc), "num_carry": nk + len(tk),
                                             "length": length, "reverse": reverse}, loc=out.loc)
    results = results_of(node)
    carry_t = dict(zip(tk, results[nk:nk + len(tk)]))
    y_t = dict(zip(fy, results[nk + len(tk) + ny:]))
    return tuple([*(carry_t.get(i) for i in range(nk)), *(y_t.get(j) for j in range(ny))])


# --- while_loop ------------------------------------------------------------------------------

def while_vjp(cts: list, out: Tensor, *inputs: Tensor, cond: Region, body: Region, cond_nconsts: int,
              body_nconsts: int):
    raise GraphcError(f"reverse-mode differentiation of while_loop {out.name} needs a bounded loop: pass "
                      "gc.while_loop(..., max_iterations=n), or use gc.scan / gc.fori_loop with static bounds "
                      f"(JAX refuses it too; forward mode, gc.jvp, works)\n  at {out.loc}")


def while_jvp(tangents: Sequence, out: Tensor, *inputs: Tensor, cond: Region, body: Region, cond_nconsts: int,
              body_nconsts: int):
    ncc, nbc = cond_nconsts, body_nconsts
    nk = len(inputs) - ncc - nbc
    tb = [i for i in range(nbc) if tangents[ncc + i] is not None and is_float(inputs[ncc + i].dtype)]
    tk = _float(body.param_types[nbc:])
    inner = jvp_region(body, [*tb, *(nbc + i for i in tk)])
    n = len(body.params)
    p = inner.params
    order = [*p[:nbc], *p[n:n + len(tb)], *p[nbc:n], *p[n + len(tb):]]
    tan_of = dict(zip(_float(body.result_types), inner.results[nk:]))
    step = Region(order, [*inner.results[:nk], *(tan_of[i] for i in tk)])
    carry_types = body.param_types[nbc:]
    test = build_region([*cond.param_types, *(carry_types[i] for i in tk)],
                        lambda g, *ps: clone(cond, g, ps[:len(cond.params)]), cond.graph.what)
    tin = [tangents[ncc + nbc + i] if tangents[ncc + nbc + i] is not None
           else zeros_like_tensor(inputs[ncc + nbc + i]) for i in tk]
    operands = (*inputs[:ncc], *inputs[ncc:ncc + nbc], *(tangents[ncc + i] for i in tb), *inputs[ncc + nbc:], *tin)
    node = out.graph.make("while_loop", operands, {"cond": test, "body": step, "cond_nconsts": ncc,
                                                   "body_nconsts": nbc + len(tb)}, loc=out.loc)
    results = results_of(node)
    carry_t = dict(zip(tk, results[nk:]))
    return tuple(carry_t.get(i) for i in range(nk))
