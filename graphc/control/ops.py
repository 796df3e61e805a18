"""The control-flow ops: `param`, `result`, `cond`, `scan`, `while_loop` (one OpDef each).

A region op's operands bind its regions' params (graphc/ir/region.py); it has several
results (its node's value is a tuple, `OpDef.results` gives their types), each read by a
``result`` node. The canonical form (`canon`) of a region op retypes its regions to its
operands' types, so binding shapes, rewriting operands or loading a file re-infers the
bodies. The `ref` forms run the bodies with the reference interpreter; only the taken
branch of a cond runs.

Operand layouts (as jaxpr's):

* ``cond(pred, *args)``: both branches take ``args`` (the user's operands, then what each
  branch captured) and return results of the same types.
* ``scan(*consts, *init, *xs)``: the body takes ``consts, carry, x slices`` and returns
  ``new carry, y slices``; results are the final carry then the stacked ys. ``length`` is
  given when there are no xs, else the xs' leading dim.
* ``while_loop(*cond_consts, *body_consts, *init)``: ``cond(cond_consts, carry)`` is a bool
  scalar, ``body(body_consts, carry)`` the next carry; results are the final carry.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..dtypes import shape_str
from ..errors import DTypeError, ShapeError
from ..ir.printer import type_str_of
from ..ir.region import Region, retype
from ..ops.registry import OpDef, register
from . import rules

REGION_OPS = ("cond", "scan", "while_loop")


def _types(tensors: Sequence) -> list:
    return [(t.shape, t.dtype) for t in tensors]


def types_str(types: Sequence) -> str:
    return "(" + ", ".join(type_str_of(d, s) for s, d in types) + ")"


def carry_fits(got: Sequence, want: Sequence) -> bool:
    """Whether the types a loop body returns fit its carry's: the same dtypes and ranks, each dim
    equal or unknown (None) on one side, as when the body makes an unknown dim known. When the
    graph runs every dim is bound, so the types must then be equal."""
    return len(got) == len(want) and all(
        np.dtype(gd) == np.dtype(wd) and len(gs) == len(ws)
        and all(a is None or b is None or a == b for a, b in zip(gs, ws))
        for (gs, gd), (ws, wd) in zip(got, want))


def _check_params(what: str, region: Region, types: list) -> None:
    """The region's params have exactly the types of the values bound to them."""
    if region.param_types != [(tuple(s), np.dtype(d)) for s, d in types]:
        raise ShapeError(f"the {what} takes {types_str(region.param_types)} but is given {types_str(types)}")


# --- param, result ---------------------------------------------------------------------------

register(OpDef("param", "source", lambda inputs, attrs: (attrs["shape"], attrs["dtype"]),
               attrs={"index": "int", "shape": "dims", "dtype": "dtype"},
               doc="a parameter of the region (sub-graph) it belongs to, bound by its op's operands"))


def _result_type(inputs: tuple, attrs: dict):
    (src,) = inputs
    if src.opdef.results is None:
        raise ShapeError(f"result reads an op with several results, not a {src.op}")
    types = src.opdef.results(src.inputs, src.attrs)
    if not 0 <= attrs["index"] < len(types):
        raise ShapeError(f"result index {attrs['index']} out of range for a {src.op} of {len(types)} results")
    return types[attrs["index"]]


register(OpDef("result", "region", _result_type, ref=lambda values, *, index: values[index],
               vjp=lambda g, out, src, *, index: ((index, g),),
               jvp=lambda t, out, src, *, index: None if t[0] is None else t[0][index],
               attrs={"index": "int"}, arity=(1, 1),
               doc="result `index` of a region op (cond, scan, while_loop)"))


# --- cond ------------------------------------------------------------------------------------

def _cond_canon(inputs: tuple, attrs: dict) -> dict:
    types = _types(inputs[1:])
    return {**attrs, "true_branch": retype(attrs["true_branch"], types),
            "false_branch": retype(attrs["false_branch"], types)}


def _cond_type(inputs: tuple, attrs: dict):
    pred, args = inputs[0], inputs[1:]
    if pred.shape != () or pred.dtype != np.bool_:
        raise DTypeError(f"the predicate must be a bool scalar, got {pred.dtype}{shape_str(pred.shape)}")
    true, false = attrs["true_branch"], attrs["false_branch"]
    _check_params("true branch", true, _types(args))
    _check_params("false branch", false, _types(args))
    if true.result_types != false.result_types:
        raise ShapeError(f"the branches must return the same types: the true branch returns "
                         f"{types_str(true.result_types)}, the false branch {types_str(false.result_types)}")
    return (), None


def _cond_ref(pred, *args, true_branch: Region, false_branch: Region):
    return tuple(run_region(true_branch if bool(pred) else false_branch, args))


register(OpDef("cond", "region", _cond_type, ref=_cond_ref, canon=_cond_canon, vjp=rules.cond_vjp,
               jvp=rules.cond_jvp, results=lambda inputs, attrs: attrs["true_branch"].result_types,
               attrs={"true_branch": "region", "false_branch": "region"}, arity=(1, None),
               doc="the true branch's results if the bool scalar input 0 holds, else the false branch's; "
                   "only the taken branch runs"))


# --- scan ------------------------------------------------------------------------------------

def split_scan(inputs: Sequence, attrs: dict) -> tuple[list, list, list]:
    """(consts, init, xs) of a scan's operands."""
    nc, nk = attrs["num_consts"], attrs["num_carry"]
    return list(inputs[:nc]), list(inputs[nc:nc + nk]), list(inputs[nc + nk:])


def _slice_types(xs: Sequence) -> list:
    return [(x.shape[1:], x.dtype) for x in xs]


def _scan_canon(inputs: tuple, attrs: dict) -> dict:
    consts, init, xs = split_scan(inputs, attrs)
    if any(x.ndim == 0 for x in xs) or attrs["num_consts"] + attrs["num_carry"] > len(inputs):
        return attrs  # the type rule reports it
    return {**attrs, "body": retype(attrs["body"], _types(consts + init) + _slice_types(xs))}


def scan_length(xs: Sequence, length: int | None) -> int | None:
    """The trip count: `length`, else the xs' common leading dim (None = known at run time)."""
    if not xs:
        if length is None or length < 0:
            raise ShapeError(f"a scan without xs needs a length >= 0, got {length!r}")
        return length
    if length is not None:
        raise ShapeError("a scan over xs takes its length from their leading dim (length must be None)")
    for x in xs:
        if x.ndim == 0:
            raise ShapeError(f"scanned input {x.name} is a scalar; xs need a leading axis to scan over")
    dims = {x.shape[0] for x in xs} - {None}
    if len(dims) > 1:
        raise ShapeError("scanned inputs have different leading dims: " + ", ".join(shape_str(x.shape) for x in xs))
    return dims.pop() if dims else None


def _scan_type(inputs: tuple, attrs: dict):
    if attrs["num_consts"] < 0 or attrs["num_carry"] < 0 or attrs["num_consts"] + attrs["num_carry"] > len(inputs):
        raise ShapeError(f"num_consts={attrs['num_consts']}, num_carry={attrs['num_carry']} do not fit "
                         f"{len(inputs)} operands")
    consts, init, xs = split_scan(inputs, attrs)
    scan_length(xs, attrs["length"])
    body = attrs["body"]
    _check_params("body", body, _types(consts + init) + _slice_types(xs))
    out = body.result_types
    if not carry_fits(out[:len(init)], _types(init)):
        raise ShapeError(f"the body must return its carry's types {types_str(_types(init))} first, "
                         f"but returns {types_str(out[:len(init)])}")
    return (), None


def _scan_results(inputs: tuple, attrs: dict) -> list:
    _, init, xs = split_scan(inputs, attrs)
    n = scan_length(xs, attrs["length"])
    return _types(init) + [((n, *s), d) for s, d in attrs["body"].result_types[len(init):]]


def _scan_ref(*arrays, body: Region, num_consts: int, num_carry: int, length: int | None, reverse: bool):
    consts, carry = list(arrays[:num_consts]), list(arrays[num_consts:num_consts + num_carry])
    xs = arrays[num_consts + num_carry:]
    n = xs[0].shape[0] if xs else length
    ys: list[list] = [[] for _ in body.results[num_carry:]]
    for t in (range(n - 1, -1, -1) if reverse else range(n)):
        out = run_region(body, consts + carry + [x[t] for x in xs])
        carry = out[:num_carry]
        for acc, y in zip(ys, out[num_carry:]):
            acc.append(y)
    if reverse:
        ys = [acc[::-1] for acc in ys]
    if n == 0:  # the ys' types, bound to these operands (the body may have unknown dims)
        bound = retype(body, [(a.shape, a.dtype) for a in [*consts, *carry]] + [(x.shape[1:], x.dtype) for x in xs])
        return (*carry, *(np.zeros((0, *s), d) for s, d in bound.result_types[num_carry:]))
    return (*carry, *(np.stack(acc) for acc in ys))


register(OpDef("scan", "region", _scan_type, ref=_scan_ref, canon=_scan_canon, vjp=rules.scan_vjp,
               jvp=rules.scan_jvp, results=_scan_results, body_consts=("num_consts", 0),
               attrs={"body": "region", "num_consts": "int", "num_carry": "int", "length": "int?",
                      "reverse": "bool"}, arity=(0, None),
               doc="jax.lax.scan: the body maps (consts, carry, x slice) to (carry, y slice) along the "
                   "xs' leading axis (or `length` times); results: the final carry, the stacked ys"))


# --- while_loop ------------------------------------------------------------------------------

def split_while(inputs: Sequence, attrs: dict) -> tuple[list, list, list]:
    """(cond consts, body consts, init) of a while_loop's operands."""
    nc, nb = attrs["cond_nconsts"], attrs["body_nconsts"]
    return list(inputs[:nc]), list(inputs[nc:nc + nb]), list(inputs[nc + nb:])


def _while_canon(inputs: tuple, attrs: dict) -> dict:
    if attrs["cond_nconsts"] + attrs["body_nconsts"] > len(inputs):
        return attrs
    cc, bc, init = split_while(inputs, attrs)
    return {**attrs, "cond": retype(attrs["cond"], _types(cc + init)), "body": retype(attrs["body"], _types(bc + init))}


def _while_type(inputs: tuple, attrs: dict):
    if min(attrs["cond_nconsts"], attrs["body_nconsts"]) < 0 or \
            attrs["cond_nconsts"] + attrs["body_nconsts"] > len(inputs):
        raise ShapeError(f"cond_nconsts={attrs['cond_nconsts']}, body_nconsts={attrs['body_nconsts']} do not "
                         f"fit {len(inputs)} operands")
    cc, bc, init = split_while(inputs, attrs)
    _check_params("condition", attrs["cond"], _types(cc + init))
    _check_params("body", attrs["body"], _types(bc + init))
    if attrs["cond"].result_types != [((), np.dtype(np.bool_))]:
        raise DTypeError(f"the condition must return one bool scalar, got {types_str(attrs['cond'].result_types)}")
    if not carry_fits(attrs["body"].result_types, _types(init)):
        raise ShapeError(f"the body must return its carry's types {types_str(_types(init))}, "
                         f"but returns {types_str(attrs['body'].result_types)}")
    return (), None


def _while_ref(*arrays, cond: Region, body: Region, cond_nconsts: int, body_nconsts: int):
    cc, bc = list(arrays[:cond_nconsts]), list(arrays[cond_nconsts:cond_nconsts + body_nconsts])
    carry = list(arrays[cond_nconsts + body_nconsts:])
    while bool(run_region(cond, cc + carry)[0]):
        carry = run_region(body, bc + carry)
    return tuple(carry)


register(OpDef("while_loop", "region", _while_type, ref=_while_ref, canon=_while_canon, vjp=rules.while_vjp,
               jvp=rules.while_jvp, results=lambda inputs, attrs: attrs["body"].result_types,
               body_consts=("body_nconsts", "cond_nconsts"),
               attrs={"cond": "region", "body": "region", "cond_nconsts": "int", "body_nconsts": "int"},
               arity=(0, None),
               doc="jax.lax.while_loop: the body maps the carry to the next while the condition holds; "
                   "results: the final carry"))


def run_region(region: Region, values: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The region's results for these param values, on the reference interpreter."""
    return region.program().run(dict(zip(region.params, values)), {})
