"""Algebraic simplification: exact identities, each rule toward one canonical form.

Only rewrites that give the same value for every input, NaN and Inf included, are here
(x*0 -> 0 is not: NaN*0 is NaN). Canonical forms: no identity/stop_gradient nodes (gradients
are built before compilation), no double negation, subtraction rather than adding a
negation, one reshape/transpose instead of chains, no shape op that keeps the shape.
"""

from __future__ import annotations

from ..ops import elementwise as ew
from ..ops import shape as sh
from .manager import register_pass
from .module import Module
from .rewrite import P, Rule, S, V, run_rules
from .sizing import same

x, y = V("x"), V("y")


def _compose_perm(env):
    inner, outer = env["_"].inputs[0].attrs["perm"], env["_"].attrs["perm"]
    perm = tuple(inner[p] for p in outer)
    return env["x"] if perm == tuple(range(len(perm))) else sh.transpose(env["x"], perm)


def _same_shape(env):
    node = env["_"]
    return env["x"] if same(node.inputs[0].shape, node.shape) else None


RULES = [
    Rule("add-zero", P("add", x, S(0.0)), lambda e: e["x"], "x + 0 -> x"),
    Rule("sub-zero", P("subtract", x, S(0.0)), lambda e: e["x"], "x - 0 -> x"),
    Rule("mul-one", P("multiply", x, S(1.0)), lambda e: e["x"], "x * 1 -> x"),
    Rule("div-one", P("divide", x, S(1.0)), lambda e: e["x"], "x / 1 -> x"),
    Rule("pow-one", P("power", x, S(1.0)), lambda e: e["x"], "x ** 1 -> x"),
    Rule("pow-two", P("power", x, S(2.0)), lambda e: ew.square(e["x"]), "x ** 2 -> square(x)"),
    Rule("mul-minus-one", P("multiply", x, S(-1.0)), lambda e: ew.negative(e["x"]), "x * -1 -> -x"),
    Rule("neg-neg", P("negative", P("negative", x)), lambda e: e["x"], "-(-x) -> x"),
    Rule("add-neg", P("add", x, P("negative", y)), lambda e: ew.subtract(e["x"], e["y"]), "x + (-y) -> x - y"),
    Rule("sub-neg", P("subtract", x, P("negative", y)), lambda e: ew.add(e["x"], e["y"]), "x - (-y) -> x + y"),
    Rule("identity", P("identity", x), lambda e: e["x"], "identity(x) -> x"),
    Rule("stop-gradient", P("stop_gradient", x), lambda e: e["x"],
         "stop_gradient(x) -> x (gradients are already built when a program compiles)"),
    Rule("custom-gradient", P("custom_vjp", x, variadic=True), lambda e: e["x"],
         "custom_vjp(y, xs...) -> y (its gradient function is used while building gradients only)"),
    Rule("reshape-reshape", P("reshape", P("reshape", x)),
         lambda e: sh.reshape(e["x"], e["_"].shape), "reshape(reshape(x)) -> reshape(x)"),
    Rule("transpose-transpose", P("transpose", P("transpose", x)), _compose_perm,
         "transpose(transpose(x)) -> one transpose (or x)"),
    Rule("noop-transpose", P("transpose", x, when=lambda n: n.attrs["perm"] == tuple(range(n.ndim))),
         lambda e: e["x"], "transpose with the identity permutation -> x"),
    Rule("noop-reshape", P("reshape", x), _same_shape, "reshape to the same shape -> x"),
    Rule("noop-reshape-like", P("reshape_like", x, y), _same_shape, "reshape_like to the same shape -> x"),
    Rule("noop-broadcast", P("broadcast_to", x), _same_shape, "broadcast to the same shape -> x"),
    Rule("noop-broadcast-like", P("broadcast_like", x, y), _same_shape, "broadcast_like to the same shape -> x"),
    Rule("noop-sum", P("sum", x, when=lambda n: not n.attrs["axis"]), _same_shape, "sum over no axes -> x"),
    Rule("cast-same", P("cast", x, when=lambda n: n.inputs[0].dtype == n.dtype), lambda e: e["x"],
         "cast to the same dtype -> x"),
]


@register_pass("simplify", "exact algebraic identities to a fixed point (x*1, -(-x), reshape chains, ...)")
def simplify(module: Module, options: object = None) -> tuple[Module, int]:
    return run_rules(module, RULES)


