"""Shape binding: rebuild a graph with the fed shapes, so every type is static."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..dtypes import is_static, shape_str
from ..errors import GraphcError
from .composite import composite_scope
from .graph import Graph, Tensor
from .traverse import toposort


def bind_shapes(outputs: Sequence[Tensor], feed_shapes: Mapping[Tensor, tuple[int, ...]],
                ) -> tuple[list[Tensor], dict[Tensor, Tensor]]:
    """Rebuild `outputs` in a fresh Graph where each placeholder has its fed shape.

    Every node is re-made with `Graph.make`, so the type rules run again and all shapes
    become concrete. Returns the new outputs and the old -> new node mapping (nodes
    the fetches do not need are left out).
    """
    new = Graph(keep_all=False)  # a compiled program then keeps only its final module's nodes
    mapping: dict[Tensor, Tensor] = {}
    for node in toposort(outputs):
        attrs = dict(node.attrs)
        if node.op == "param":
            what = getattr(node.graph, "what", "region")
            raise GraphcError(f"{node.name} is a value of a {what} (a control-flow function's argument) used "
                              "outside it; values leave a body as its results")
        if node.op == "placeholder":
            if node not in feed_shapes:
                raise GraphcError(f"placeholder {node.name} has no bound shape")
            attrs["shape"] = tuple(int(d) for d in feed_shapes[node])
        inputs = tuple(mapping[i] for i in node.inputs)
        with composite_scope(node.graph.composite.get(node)):  # errors name the function the user called
            made = new.make(node.op, inputs, attrs, name=node.name, loc=node.loc)
        if made.dtype is not None and not is_static(made.shape):
            raise GraphcError(f"{node.op} {node.name} still has shape {shape_str(made.shape)} after binding")
        mapping[node] = made
    return [mapping[o] for o in outputs], mapping
