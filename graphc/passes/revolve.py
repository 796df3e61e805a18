"""Binomial checkpointing (Griewank–Walther "revolve") for chains of residuals.

Model: the residuals R_1..R_n form a chain (each computed from the previous one and
graph inputs); the backward part reads them in reverse order, R_n first. With `slots`
places to keep states (besides the chain input R_0, which is always available), the
fewest steps to advance is the dynamic program

    C(n, s) = min( n + C(n-1, s),                                  # advance to the end
                   min_{1<=m<n} m + C(n-m, s-1) + C(m-1, s) )      # keep R_m in a slot

with C(0, s) = 0 and C(n, 0) = n(n+1)/2. It equals Griewank and Walther's closed form
t(n+1, s+1), t(l, s) = r*l - binom(s+r, r-1) with the least r such that binom(s+r, s) >= l.
The first sweep reuses the forward part's own nodes; every other advance is a clone
(tagged ``_remat``), so the graph recomputes exactly C(n, s) - n steps.
"""

from __future__ import annotations

from functools import cache
from math import comb

from ..errors import GraphcError
from ..ir.graph import Tensor
from ..ir.traverse import toposort
from .cost import is_source
from .module import Module


@cache
def _best(n: int, s: int) -> tuple[int, int]:
    """(minimal steps C(n, s), the first advance m achieving it)."""
    if n == 0:
        return 0, 0
    best = (n + _best(n - 1, s)[0], n)
    if s >= 1:
        for m in range(1, n):
            cost = m + _best(n - m, s - 1)[0] + _best(m - 1, s)[0]
            if cost < best[0]:
                best = (cost, m)
    return best


def min_steps(n: int, slots: int) -> int:
    """C(n, slots): the fewest steps advanced to provide R_n..R_1 in reverse order."""
    return _best(n, slots)[0]


def griewank_walther(steps: int, snaps: int) -> int:
    """Griewank–Walther's minimal forward steps to reverse `steps` steps with `snaps` snapshots."""
    r = 0
    while comb(snaps + r, snaps) < steps:
        r += 1
    return r * steps - comb(snaps + r, r - 1) if r else 0


def chain_steps(residuals: list[Tensor], forward: set[Tensor], free: frozenset[Tensor] = frozenset(),
                ) -> list[list[Tensor]]:
    """For each residual, the forward nodes that compute it from the previous one (inputs and
    the `free` residuals, views of inputs, are available everywhere).

    Raises GraphcError when the residuals do not form a chain.
    """
    steps: list[list[Tensor]] = []
    seen: set[Tensor] = set(free)
    for j, r in enumerate(residuals):
        step = [n for n in toposort([r]) if n in forward and not is_source(n) and n not in seen]
        allowed = set(step) | ({residuals[j - 1]} if j else set()) | free
        for n in step:
            for i in n.inputs:
                if i not in allowed and not is_source(i):
                    raise GraphcError(f"checkpoint='revolve' needs a chain: {n.name} ({n.op}) reads {i.name}, "
                                      f"which is neither the previous residual nor an input")
        seen.update(step)
        steps.append(step)
    return steps


def revolve(module: Module, parts, slots: int) -> Module:
    """Rewrite backward reads of the chain's residuals to follow the optimal binomial schedule."""
    residuals = parts.residuals
    forward = set(parts.forward)
    steps = chain_steps(residuals, forward, parts.free)
    n = len(residuals)
    provided: dict[int, Tensor] = {}
    tags = iter(range(1, 10**9))

    def advance(j: int, prev: Tensor | None, original: bool) -> Tensor:
        """The node holding R_j computed from `prev` (R_{j-1}); j counts from 1."""
        if original:
            return residuals[j - 1]
        tag = next(tags)
        mapping: dict[Tensor, Tensor] = {residuals[j - 2]: prev} if j > 1 else {}
        for node in steps[j - 1]:
            inputs = tuple(mapping.get(i, i) for i in node.inputs)
            mapping[node] = node.graph.make(node.op, inputs, {**node.attrs, "_remat": tag},
                                            name=node.name, loc=node.loc)
        return mapping[residuals[j - 1]]

    def rev(a: int, count: int, base: Tensor | None, s: int, top: bool) -> None:
        """Provide R_{a+count} .. R_{a+1}, starting from `base` (R_a; None for the chain input)."""
        if count == 0:
            return
        m = _best(count, s)[1]
        cur = base
        for k in range(1, m + 1):
            cur = advance(a + k, cur, top)
        if m == count:
            provided[a + count] = cur
            rev(a, count - 1, base, s, False)
        else:
            rev(a + m, count - m, cur, s - 1, top)
            provided[a + m] = cur
            rev(a, m - 1, base, s, False)

    rev(0, n, None, slots, True)
    replace = {residuals[j - 1]: node for j, node in provided.items()}
    mapping: dict[Tensor, Tensor] = {}
    for node in module.nodes:
        if node in forward:
            continue
        inputs = tuple(replace.get(i, mapping.get(i, i)) for i in node.inputs)
        mapping[node] = node if inputs == node.inputs else \
            node.graph.make(node.op, inputs, node.attrs, name=node.name, loc=node.loc)
    out = module.remap(mapping)
    clones = {n for n in toposort(out.outputs) if "_remat" in n.attrs}
    return Module(out.outputs, out.adjoint | frozenset(mapping.values()) | frozenset(clones))
