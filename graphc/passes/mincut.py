"""The minimum cut that picks which forward values a backward part keeps (PyTorch AOTAutograd's partitioner).

Used by the checkpoint policy ``mincut`` (passes/checkpoint.py) and by a scan's gradient
to choose what each iteration stores (control/rules.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..ir.graph import Tensor
from ..ops.registry import OpKind

RECOMPUTABLE_KINDS = frozenset({OpKind.ELEMENTWISE, OpKind.INDEX})  # cheap to recompute: never stored for them


def keep_by_min_cut(forward: Iterable[Tensor], read: Iterable[Tensor], cost: Callable[[Tensor], int],
                    computed: Callable[[Tensor], bool]) -> set[Tensor]:
    """The forward values of least total `cost` from which the `read` ones are recomputed by
    cheap ops (RECOMPUTABLE_KINDS) only. `computed(n)`: n is an input or too costly to
    recompute (it is computed in the forward part, then kept or not); values read from
    outside `forward` are free."""
    import networkx as nx

    forward = list(forward)
    g = nx.DiGraph()
    src, sink = "source", "sink"
    for n in forward:
        g.add_edge(("in", n), ("out", n), capacity=cost(n))
        if computed(n) or n.opdef.kind not in RECOMPUTABLE_KINDS:
            g.add_edge(src, ("in", n))
        for i in n.inputs:
            g.add_edge(("out", i), ("in", n))
    for r in read:
        g.add_edge(("out", r), sink)
    if sink not in g or src not in g:
        return set(read)
    _, (reachable, _) = nx.minimum_cut(g, src, sink)
    return {n for n in forward if ("in", n) in reachable and ("out", n) not in reachable}
