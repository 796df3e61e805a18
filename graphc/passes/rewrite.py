"""Declarative rewrite rules: patterns over nodes, a matcher, and a rule-set pass driver.

A pattern is `P(op, *args, when=...)`, a variable `V(name)` (the same name must bind
the same node — interning makes that an identity test), or `S(value)`, a constant
(possibly broadcast) whose every element equals `value`. Operands of commutative ops match in either order.
A `Rule` pairs a pattern with a builder from bindings to the replacement node.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import GraphcError
from ..ir.graph import Tensor
from .module import Module, rebuild


@dataclass(frozen=True)
class V:
    """A pattern variable."""

    name: str


@dataclass(frozen=True)
class S:
    """A constant whose elements all equal `value`."""

    value: float


class P:
    """An op pattern; `when(node)` may restrict attributes or types; `variadic` allows more inputs."""

    def __init__(self, op: str, *args: Any, when: Callable[[Tensor], bool] | None = None, variadic: bool = False):
        self.op, self.args, self.when, self.variadic = op, args, when, variadic

    def __repr__(self) -> str:
        return f"{self.op}({', '.join(map(repr, self.args))})"


def _match(pat: Any, node: Tensor, env: dict[str, Tensor]) -> bool:
    if isinstance(pat, V):
        bound = env.get(pat.name)
        if bound is None:
            env[pat.name] = node
            return True
        return bound is node
    if isinstance(pat, S):
        while node.op in ("broadcast_to", "broadcast_like"):  # a broadcast constant is still that constant
            node = node.inputs[0]
        return node.op == "constant" and node.attrs["value"].array.size > 0 and \
            bool(np.all(node.attrs["value"].array == pat.value))
    if node.op != pat.op or len(node.inputs) < len(pat.args):
        return False
    if len(node.inputs) != len(pat.args) and not pat.variadic:
        return False
    if pat.when is not None and not pat.when(node):
        return False
    orders = [node.inputs]
    if node.opdef.commutative and len(node.inputs) == 2:
        orders.append(node.inputs[::-1])
    for inputs in orders:
        trial = dict(env)
        if all(_match(p, i, trial) for p, i in zip(pat.args, inputs[:len(pat.args)])):
            env.clear()
            env.update(trial)
            return True
    return False


def match(pat: P, node: Tensor) -> dict[str, Tensor] | None:
    """Bindings (plus "_" for the matched node) if `pat` matches `node`, else None."""
    env: dict[str, Tensor] = {}
    if not _match(pat, node, env):
        return None
    env["_"] = node
    return env


@dataclass(frozen=True)
class Rule:
    """`pattern -> build(bindings)`; build may return None to decline."""

    name: str
    pattern: P
    build: Callable[[dict[str, Tensor]], Tensor | None]
    doc: str = ""


def apply_rules(rules: list[Rule], node: Tensor, fired: deque | None = None) -> Tensor | None:
    """The first rule's replacement whose result keeps the node's type, else None.

    The name of the rule that fired is appended to `fired`, if given.
    """
    for rule in rules:
        env = match(rule.pattern, node)
        if env is None:
            continue
        out = rule.build(env)
        if out is not None and out is not node and out.shape == node.shape and out.dtype == node.dtype:
            if fired is not None:
                fired.append(rule.name)
            return out
    return None


def _by_root_op(rules: list[Rule]) -> Callable[[str], list[Rule]]:
    """``candidates(op)``: the rules, in their order, that can match a node of `op` (a
    pattern's root op must be the node's; a root that is not an op pattern fits any op)."""
    anywhere = [r for r in rules if not isinstance(r.pattern, P)]
    index: dict[str, list[Rule]] = {}
    for op in {r.pattern.op for r in rules if isinstance(r.pattern, P)}:
        index[op] = [r for r in rules if not isinstance(r.pattern, P) or r.pattern.op == op]
    return lambda op: index.get(op, anywhere)


def run_rules(module: Module, rules: list[Rule], max_rounds: int = 8) -> tuple[Module, int]:
    """Apply rules over the whole module until nothing changes.

    A rule set that still rewrites after `max_rounds` walks does not settle (two rules
    undoing each other, say): that raises GraphcError naming the last rules that fired.
    """
    total = 0
    fired: deque[str] = deque(maxlen=8)
    candidates = _by_root_op(rules)
    for _ in range(max_rounds):
        module, changes = rebuild(module, lambda n: apply_rules(candidates(n.op), n, fired))
        total += changes
        if not changes:
            return module, total
    raise GraphcError(f"rewrite rules did not reach a fixed point in {max_rounds} walks ({total} rewrites); "
                      f"the last rules to fire: {', '.join(fired)}")
