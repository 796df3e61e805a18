"""Stabilizing rewrites: forms that stay finite where the literal expression overflows.

These change results only where the original under- or overflowed (that is their purpose):
log(softmax(x)) -> log_softmax(x) (via log(exp(z)/d) -> z - log(d)), log(sum(exp(x))) ->
logsumexp(x), log(1 + x) -> log1p(x), exp(x) - 1 -> expm1(x).
"""

from __future__ import annotations

from ..ops import elementwise as ew
from ..ops import reduce as rd
from .manager import register_pass
from .module import Module
from .rewrite import P, Rule, S, V, run_rules

x, d = V("x"), V("d")


def _is_shifted(x) -> bool:
    """True when x is already z - max(z) (the stable form), so rewriting it again would loop."""
    if x.op != "subtract":
        return False
    m = x.inputs[1]
    while m.opdef.carries is not None:
        m = m.inputs[m.opdef.carries]
    return m.op == "max"


def _logsumexp(env):
    if _is_shifted(env["x"]):
        return None
    node = env["_"].inputs[0]
    return rd.logsumexp(env["x"], node.attrs["axis"], node.attrs["keepdims"])


RULES = [
    Rule("log-softmax", P("log", P("divide", P("exp", x), d)), lambda e: ew.subtract(e["x"], ew.log(e["d"])),
         "log(exp(z) / d) -> z - log(d): log(softmax(x)) becomes log_softmax(x)"),
    Rule("logsumexp", P("log", P("sum", P("exp", x))), _logsumexp, "log(sum(exp(x))) -> logsumexp(x)"),
    Rule("log1p", P("log", P("add", x, S(1.0))), lambda e: ew.log1p(e["x"]), "log(1 + x) -> log1p(x)"),
    Rule("expm1", P("subtract", P("exp", x), S(1.0)), lambda e: ew.expm1(e["x"]), "exp(x) - 1 -> expm1(x)"),
]


@register_pass("stabilize", "numerically stable forms: log_softmax, logsumexp, log1p, expm1")
def stabilize(module: Module, options: object = None) -> tuple[Module, int]:
    return run_rules(module, RULES)
