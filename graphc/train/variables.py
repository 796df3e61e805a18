"""Collections of a graph's variables and the op that resets them."""

from __future__ import annotations

from ..ir.graph import Graph, Tensor, get_default_graph
from ..ops.core import constant
from ..ops.state import assign, group

__all__ = ["global_variables", "global_variables_initializer", "trainable_variables", "variables_initializer"]


def global_variables(graph: Graph | None = None) -> list[Tensor]:
    """Every variable of the graph (default graph if None), in creation order."""
    return list((graph or get_default_graph()).variables)


def trainable_variables(graph: Graph | None = None) -> list[Tensor]:
    """The variables created with ``trainable=True``, in creation order."""
    return [v for v in global_variables(graph) if v.attrs["trainable"]]


def variables_initializer(var_list: list[Tensor], graph: Graph | None = None) -> Tensor:
    """An op that sets each variable of `var_list` back to its initial value when run."""
    g = graph or (var_list[0].graph if var_list else get_default_graph())
    with g.as_default():
        return group(*(assign(v, constant(v.attrs["initial"].array, graph=g)) for v in var_list))


def global_variables_initializer(graph: Graph | None = None) -> Tensor:
    """An op resetting every variable that exists now (optimizer slots included) to its initial value."""
    g = graph or get_default_graph()
    return variables_initializer(global_variables(g), graph=g)
