"""Scheduling: the order kernels run in, chosen to keep few values alive at once.

Outputs are scheduled one at a time, each time the one with the fewest ancestors not yet
scheduled, and each by a depth-first walk of its inputs. So a value is computed right
before its first use (recomputed checkpoints land just before the backward step that
reads them), and in a backward chain the gradient of the last layer completes before
the walk descends to earlier layers, freeing each activation as soon as it is read.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..ir.graph import Tensor
from ..ir.traverse import toposort


def schedule(outputs: Sequence[Tensor]) -> list[Tensor]:
    """A topological order of everything `outputs` need (deterministic)."""
    ancestors = {o: set(toposort([o])) for o in outputs}
    done: set[Tensor] = set()
    order: list[Tensor] = []
    pending = list(dict.fromkeys(outputs))
    while pending:
        best = min(pending, key=lambda o: (len(ancestors[o] - done), pending.index(o)))
        pending.remove(best)
        for node in toposort([best]):
            if node not in done:
                done.add(node)
                order.append(node)
    return order
