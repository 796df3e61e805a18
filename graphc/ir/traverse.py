"""Deterministic graph walks."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .graph import Tensor


def toposort(outputs: Iterable[Tensor], done: set[Tensor] | None = None) -> list[Tensor]:
    """Every node the outputs depend on, inputs before users, in a fixed order.

    Depth-first post-order visiting inputs left to right (iterative: deep chains are fine).
    Nodes in `done` (taken as computed, with all their ancestors) are neither visited
    nor returned; the set is extended with the nodes returned.
    """
    order: list[Tensor] = []
    done = set() if done is None else done
    for root in outputs:
        if root in done:
            continue
        stack: list[tuple[Tensor, Iterator[Tensor]]] = [(root, iter(root.inputs))]  # each with its inputs to go
        on_stack = {root}
        while stack:
            node, inputs = stack[-1]
            for child in inputs:
                if child not in done and child not in on_stack:
                    stack.append((child, iter(child.inputs)))
                    on_stack.add(child)
                    break
            else:
                stack.pop()
                on_stack.discard(node)
                done.add(node)
                order.append(node)
    return order


def consumers(order: list[Tensor]) -> dict[Tensor, list[Tensor]]:
    """For each node in `order`, the nodes in `order` that read it (in order, repeats kept)."""
    users: dict[Tensor, list[Tensor]] = {n: [] for n in order}
    for n in order:
        for i in n.inputs:
            users[i].append(n)
    return users
