"""Scheduling: the order kernels run in, chosen to keep few values alive at once.

Outputs are scheduled one at a time, each time the one with the fewest ancestors not yet
scheduled, and each by a depth-first walk of its inputs. So a value is computed right
before its first use (recomputed checkpoints land just before the backward step that
reads them), and in a backward chain the gradient of the last layer completes before
the walk descends to earlier layers, freeing each activation as soon as it is read.

Cost: one pass to find which outputs need each node (bitsets), then each node is
visited once when scheduled and updates the pending counts of the outputs needing it.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..ir.graph import Tensor
from ..ir.traverse import toposort


def schedule(outputs: Sequence[Tensor]) -> list[Tensor]:
    """A topological order of everything `outputs` need (deterministic)."""
    roots = list(dict.fromkeys(outputs))
    order = toposort(roots)
    needed_by: dict[Tensor, int] = {n: 0 for n in order}  # bit k: roots[k] needs the node
    for k, r in enumerate(roots):
        needed_by[r] |= 1 << k
    for n in reversed(order):
        for i in n.inputs:
            needed_by[i] |= needed_by[n]
    remaining = [0] * len(roots)
    for mask in needed_by.values():
        while mask:
            low = mask & -mask
            remaining[low.bit_length() - 1] += 1
            mask ^= low
    done: set[Tensor] = set()
    result: list[Tensor] = []
    pending = list(range(len(roots)))
    while pending:
        best = min(pending, key=lambda k: (remaining[k], k))
        pending.remove(best)
        for node in toposort([roots[best]], done):
            result.append(node)
            mask = needed_by[node]
            while mask:
                low = mask & -mask
                remaining[low.bit_length() - 1] -= 1
                mask ^= low
    return result
