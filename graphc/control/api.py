"""The public control flow: `cond`, `scan`, `fori_loop`, `while_loop` (as jax.lax's).

Each traces the user's functions once into regions (graphc/ir/region.py) and builds one
region op (graphc/control/ops.py). Carries, operands, xs and results may be pytrees:
tensors (or numbers and arrays, made constants) nested in tuples, lists and dicts (dicts
in sorted key order, as JAX); None is an empty subtree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..dtypes import shape_str
from ..errors import GraphcError, ShapeError, user_location
from ..ir.graph import Tensor, get_default_graph
from ..ir.printer import type_str
from ..ir.region import Region, RegionGraph, trace
from ..ops.core import as_tensor
from ..ops.elementwise import not_equal
from ..runtime.fetches import unflatten
from .ops import carry_fits  # (importing it registers the region ops)
from .rules import results_of

__all__ = ["cond", "fori_loop", "scan", "while_loop"]


# --- pytrees ---------------------------------------------------------------------------------

def tree_flatten(tree: Any) -> tuple[list[Any], Any]:
    """(leaves, structure): tuples, lists and dicts (sorted keys) are nodes, None is empty."""
    leaves: list[Any] = []

    def walk(t: Any) -> Any:
        if t is None:
            return None
        if isinstance(t, (tuple, list)):
            return (type(t), [walk(x) for x in t])
        if isinstance(t, dict):
            keys = sorted(t)
            return (dict, [(k, walk(t[k])) for k in keys])
        leaves.append(t)
        return len(leaves) - 1

    return leaves, walk(tree)


def tree_unflatten(spec: Any, leaves: Sequence[Any]) -> Any:
    """The structure `spec` (of `tree_flatten`) holding `leaves`."""
    return unflatten(spec, list(leaves))


def _spec_str(spec: Any) -> str:
    if spec is None:
        return "None"
    if isinstance(spec, int):
        return "*"
    kind, items = spec
    if kind is dict:
        return "{" + ", ".join(f"{k!r}: {_spec_str(v)}" for k, v in items) + "}"
    inner = ", ".join(_spec_str(x) for x in items)
    return f"[{inner}]" if kind is list else f"({inner}{',' if len(items) == 1 else ''})"


def _leaves(tree: Any, what: str, loc: str) -> tuple[list[Tensor], Any]:
    leaves, spec = tree_flatten(tree)
    out = []
    for leaf in leaves:
        try:
            out.append(as_tensor(leaf))
        except GraphcError as exc:
            raise GraphcError(f"{what}: {exc}\n  at {loc}") from None
    return out, spec


def _types_str(ts: Sequence[Tensor]) -> str:
    return "(" + ", ".join(type_str(t) for t in ts) + ")"


def _trace(fn: Callable[..., Any], params_to_args: Callable[[list[Tensor]], tuple], types: list, what: str,
           names: Sequence[str] | None = None) -> tuple[RegionGraph, list[Tensor], list[Tensor], Any]:
    """Trace fn into a region graph: (graph, params, result leaves in it, result structure)."""
    spec_box: list[Any] = []

    def body(*params: Tensor) -> list[Tensor]:
        out = fn(*params_to_args(list(params)))
        leaves, spec = tree_flatten(out)
        spec_box.append(spec)
        g = get_default_graph()
        result = []
        for leaf in leaves:
            t = as_tensor(leaf)
            result.append(t if t.graph is g else g.capture(t))
        return result

    g, params, leaves = trace(body, types, what, names)
    return g, params, leaves, spec_box[0]


def _region(g: RegionGraph, params: list[Tensor], results: list[Tensor], extra: Sequence[Tensor] = ()) -> Region:
    """The traced region with params: captures first, then `params`, then params for `extra`
    (values another function captured, unused here)."""
    caps = list(g.captures.values())
    more = [g.param(t.shape, t.dtype, name=t.name) for t in extra]
    return Region([*caps, *params, *more], results)


# --- cond ------------------------------------------------------------------------------------

def cond(pred: Any, true_fn: Callable[..., Any], false_fn: Callable[..., Any], *operands: Any) -> Any:
    """``true_fn(*operands)`` if pred else ``false_fn(*operands)``, as `jax.lax.cond`.

    `pred` is a scalar (bool, or a number compared with 0). Both functions must return the
    same structure of shapes and dtypes. Only the taken branch runs.
    """
    loc = user_location()
    pred_t = as_tensor(pred)
    if pred_t.shape != ():
        raise ShapeError(f"gc.cond: the predicate must be a scalar, got {pred_t.dtype}{shape_str(pred_t.shape)}"
                         f"\n  at {loc}")
    if pred_t.dtype != np.bool_:
        pred_t = not_equal(pred_t, 0)
    args, spec = _leaves(list(operands), "gc.cond operands", loc)
    types = [(a.shape, a.dtype) for a in args]

    def unpack(ps: list[Tensor]) -> tuple:
        return tuple(tree_unflatten(spec, ps))

    tg, tp, tres, tspec = _trace(true_fn, unpack, types, "gc.cond true_fn")
    fg, fp, fres, fspec = _trace(false_fn, unpack, types, "gc.cond false_fn")
    if tspec != fspec or [(r.shape, r.dtype) for r in tres] != [(r.shape, r.dtype) for r in fres]:
        raise ShapeError(f"gc.cond: true_fn {_name(true_fn)} returns {_spec_str(tspec)} of {_types_str(tres)} but "
                         f"false_fn {_name(false_fn)} returns {_spec_str(fspec)} of {_types_str(fres)}; both "
                         f"branches must return the same structure of shapes and dtypes\n  at {loc}")
    tcaps, fcaps = list(tg.captures), list(fg.captures)
    true_region = Region([*tp, *tg.captures.values(), *(tg.param(t.shape, t.dtype, name=t.name) for t in fcaps)],
                         tres)
    false_region = Region([*fp, *(fg.param(t.shape, t.dtype, name=t.name) for t in tcaps), *fg.captures.values()],
                          fres)
    node = get_default_graph().make("cond", (pred_t, *args, *tcaps, *fcaps),
                                    {"true_branch": true_region, "false_branch": false_region}, loc=loc)
    return tree_unflatten(tspec, results_of(node))


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", type(fn).__name__)


# --- scan ------------------------------------------------------------------------------------

def scan(f: Callable[[Any, Any], tuple[Any, Any]], init: Any, xs: Any = None, length: int | None = None,
         reverse: bool = False) -> tuple[Any, Any]:
    """``(final carry, stacked ys)`` of ``carry, y = f(carry, x)`` over the leading axis of xs, as
    `jax.lax.scan`. Without xs, `length` steps (x is None). The xs' leading dim may be None
    (bound when the graph runs); ``reverse=True`` scans from the end (ys keep xs' order).
    """
    loc = user_location()
    carry, cspec = _leaves(init, "gc.scan init", loc)
    xs_l, xspec = _leaves(xs, "gc.scan xs", loc)
    for x in xs_l:
        if x.ndim == 0:
            raise ShapeError(f"gc.scan: xs leaves need a leading axis to scan over, got the scalar {x.name}"
                             f"\n  at {loc}")
    if length is not None:
        if isinstance(length, Tensor) or int(length) != length or length < 0:
            raise GraphcError(f"gc.scan: length must be a non-negative Python int, got {length!r}\n  at {loc}")
        length = int(length)
        lead = {x.shape[0] for x in xs_l} - {None}
        if lead and lead != {length}:
            raise ShapeError(f"gc.scan: length={length} but the xs have leading dims "
                             f"{', '.join(shape_str(x.shape) for x in xs_l)}\n  at {loc}")
    elif not xs_l:
        raise GraphcError(f"gc.scan: give xs or a length\n  at {loc}")
    nk = len(carry)
    types = [(c.shape, c.dtype) for c in carry] + [(x.shape[1:], x.dtype) for x in xs_l]

    def unpack(ps: list[Tensor]) -> tuple:
        return tree_unflatten(cspec, ps[:nk]), tree_unflatten(xspec, ps[nk:])

    def step(c: Any, x: Any) -> Any:
        out = f(c, x)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise GraphcError(f"gc.scan: {_name(f)} must return a pair (new carry, y), got {type(out).__name__}"
                              f"\n  at {loc}")
        return tuple(out)

    g, params, res, rspec = _trace(step, unpack, types, "gc.scan body")
    _, (ok_spec, y_spec) = rspec
    new = res[:_count(ok_spec)]
    if ok_spec != cspec or not carry_fits([(t.shape, t.dtype) for t in new], [(t.shape, t.dtype) for t in carry]):
        raise ShapeError(f"gc.scan: {_name(f)} takes a carry {_spec_str(cspec)} of {_types_str(carry)} but returns "
                         f"a carry {_spec_str(ok_spec)} of {_types_str(new)}; the carry must keep its structure, "
                         f"shapes (an unknown dim may become known) and dtypes\n  at {loc}")
    body = _region(g, params, res)
    node = get_default_graph().make("scan", (*g.captures, *carry, *xs_l),
                                    {"body": body, "num_consts": len(g.captures), "num_carry": nk,
                                     "length": None if xs_l else length, "reverse": bool(reverse)}, loc=loc)
    outs = results_of(node)
    return tree_unflatten(cspec, outs[:nk]), tree_unflatten(_shift(y_spec, -_count(ok_spec)), outs[nk:])


def _count(spec: Any) -> int:
    if spec is None:
        return 0
    if isinstance(spec, int):
        return 1
    return sum(_count(v if spec[0] is not dict else v[1]) for v in spec[1])


def _shift(spec: Any, by: int) -> Any:
    """The structure with its leaf indices moved by `by`."""
    if spec is None:
        return None
    if isinstance(spec, int):
        return spec + by
    kind, items = spec
    if kind is dict:
        return (dict, [(k, _shift(v, by)) for k, v in items])
    return (kind, [_shift(v, by) for v in items])


# --- while_loop, fori_loop -------------------------------------------------------------------

def while_loop(cond_fn: Callable[[Any], Any], body_fn: Callable[[Any], Any], init: Any,
               max_iterations: int | None = None) -> Any:
    """Repeat ``carry = body_fn(carry)`` while ``cond_fn(carry)`` holds, as `jax.lax.while_loop`.

    The trip count is known only at run time. With ``max_iterations=n`` the loop stops after
    at most n steps and is a scan of conds, so reverse mode differentiates it; without, only
    forward mode does (reverse mode raises, as in JAX).
    """
    loc = user_location()
    carry, cspec = _leaves(init, "gc.while_loop init", loc)
    if max_iterations is not None:
        if isinstance(max_iterations, Tensor) or int(max_iterations) != max_iterations or max_iterations < 0:
            raise GraphcError(f"gc.while_loop: max_iterations must be a non-negative Python int, got "
                              f"{max_iterations!r}\n  at {loc}")

        def step(c: Any, _: Any) -> tuple[Any, None]:
            return cond(cond_fn(c), body_fn, lambda v: v, c), None

        return scan(step, tree_unflatten(cspec, carry), length=int(max_iterations))[0]
    types = [(c.shape, c.dtype) for c in carry]

    def unpack(ps: list[Tensor]) -> tuple:
        return (tree_unflatten(cspec, ps),)

    cg, cp, cres, _ = _trace(cond_fn, unpack, types, "gc.while_loop cond_fn")
    if len(cres) != 1 or cres[0].shape != () or cres[0].dtype != np.bool_:
        raise ShapeError(f"gc.while_loop: cond_fn {_name(cond_fn)} must return a bool scalar, got "
                         f"{_types_str(cres)}\n  at {loc}")
    bg, bp, bres, bspec = _trace(body_fn, unpack, types, "gc.while_loop body")
    if bspec != cspec or not carry_fits([(t.shape, t.dtype) for t in bres], types):
        raise ShapeError(f"gc.while_loop: body_fn {_name(body_fn)} takes a carry {_spec_str(cspec)} of "
                         f"{_types_str(carry)} but returns {_spec_str(bspec)} of {_types_str(bres)}; the carry "
                         f"must keep its structure, shapes (an unknown dim may become known) and dtypes\n  at {loc}")
    node = get_default_graph().make("while_loop", (*cg.captures, *bg.captures, *carry),
                                    {"cond": _region(cg, cp, cres), "body": _region(bg, bp, bres),
                                     "cond_nconsts": len(cg.captures), "body_nconsts": len(bg.captures)}, loc=loc)
    return tree_unflatten(cspec, results_of(node))


def fori_loop(lower: Any, upper: Any, body: Callable[[Any, Any], Any], init: Any) -> Any:
    """``for i in range(lower, upper): val = body(i, val)``, as `jax.lax.fori_loop`.

    With Python int bounds it is a scan of ``upper - lower`` steps (reverse mode works); with
    tensor bounds a while_loop (trip count at run time; forward mode only). i is int32.
    """
    if _is_int(lower) and _is_int(upper):
        lo, n = int(lower), max(0, int(upper) - int(lower))

        def step(c: tuple, _: Any) -> tuple[tuple, None]:
            i, val = c
            return (i + 1, body(i, val)), None

        return scan(step, (np.int32(lo), init), length=n)[0][1]
    lo_t, up_t = as_tensor(lower), as_tensor(upper)
    if lo_t.shape != () or up_t.shape != () or lo_t.dtype.kind not in "iu" or up_t.dtype.kind not in "iu":
        raise GraphcError(f"gc.fori_loop: the bounds must be integer scalars, got {type_str(lo_t)} and "
                          f"{type_str(up_t)}\n  at {user_location()}")
    return while_loop(lambda c: c[0] < up_t, lambda c: (c[0] + 1, body(c[0], c[1])), (lo_t, init))[1]


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)
