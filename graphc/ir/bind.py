"""Shape binding: rebuild a graph with the fed shapes, so every type is static."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..dtypes import is_static, shape_str
from ..errors import DTypeError, GraphcError, ShapeError
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
    order = toposort(outputs)
    for node in order:
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
        try:
            composite = node.graph.composite.get(node)
            if composite is None:
                made = new.make(node.op, inputs, attrs, name=node.name, loc=node.loc)
            else:
                with composite_scope(composite):  # errors name the function the user called
                    made = new.make(node.op, inputs, attrs, name=node.name, loc=node.loc)
        except (ShapeError, DTypeError):
            if node not in node.graph.builders:
                raise
            composite, loc = _builder_used(node, order, outputs)  # a node shared by several functions
            with composite_scope(composite):
                new.make(node.op, inputs, attrs, name=node.name, loc=loc)  # raises, naming that one
            raise
        if made.dtype is not None and not is_static(made.shape):
            raise GraphcError(f"{node.op} {node.name} still has shape {shape_str(made.shape)} after binding")
        mapping[node] = made
    return [mapping[o] for o in outputs], mapping


def _builder_used(node: Tensor, order: Sequence[Tensor], outputs: Sequence[Tensor]) -> tuple[str | None, str]:
    """Which of the functions that built the interned `node` (`Graph.builders_of`) the fetches use.

    A builder is used if the fetches (`order`: everything they need) reach, from `node`
    through nodes that builder made too, a node it alone made (say logsumexp's final add,
    which softmax, sharing the max, never made); or, for a direct call, if `node` itself is
    fetched. The first used builder wins, else the first builder.
    """
    builders = node.graph.builders_of(node)
    consumers: dict[Tensor, list[Tensor]] = {}
    for n in order:
        for i in n.inputs:
            consumers.setdefault(i, []).append(n)
    for composite, loc in builders:
        if composite is None and node in outputs:
            return composite, loc
        seen, todo = {node}, [node]
        while todo:
            for user in consumers.get(todo.pop(), ()):
                names = {c for c, _ in user.graph.builders_of(user)}
                if composite not in names or user in seen:
                    continue
                if names == {composite}:
                    return composite, loc
                seen.add(user)
                todo.append(user)
    return builders[0]
