"""Regions: the sub-graphs a control-flow op owns (a loop body, the branches of a cond).

A `Region` is a closed function written as graph nodes: ``params`` (nodes of op
``param``, local to it) and ``results`` (nodes computed from the params and constants
only). Its nodes live in their own `RegionGraph`, so they never mix with the enclosing
graph's nodes; the op holds the region as an attribute (hashed by identity), and its
operands bind the params, in order. Closed means no free variables: while a body is
traced, every outer tensor it reads is *captured* (`RegionGraph.capture`) as a new param,
and the op gets the outer tensor as an extra operand (JAX lifts closed-over values to
operands the same way). Printing, saving, verifying and every pass recurse into regions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..dtypes import Shape
from ..errors import GraphcError, user_location
from ..ops.registry import OpKind, get_op
from .graph import Graph, Tensor, get_default_graph, open_region
from .traverse import toposort

Type = tuple[Shape, np.dtype]


class Region:
    """``params -> results``: a closed sub-graph (see the module docstring); immutable."""

    __slots__ = ("params", "results", "graph", "_program")

    def __init__(self, params: Sequence[Tensor], results: Sequence[Tensor]):
        object.__setattr__(self, "params", tuple(params))
        object.__setattr__(self, "results", tuple(results))
        graphs = {n.graph for n in (*self.params, *self.results)}
        if len(graphs) > 1:
            raise GraphcError("a region's params and results must belong to one region graph")
        object.__setattr__(self, "graph", graphs.pop() if graphs else RegionGraph(None, "region"))
        if not isinstance(self.graph, RegionGraph):
            raise GraphcError("a region's nodes must live in a region graph")
        object.__setattr__(self, "_program", None)
        for p in self.params:
            if p.op != "param":
                raise GraphcError(f"a region's params must be param nodes, not {p.op} {p.name}")
        if len(set(self.params)) != len(self.params):
            raise GraphcError("a region lists one param twice")

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("regions are immutable")

    def __repr__(self) -> str:
        return f"<Region {len(self.params)} params -> {len(self.results)} results>"

    @property
    def param_types(self) -> list[Type]:
        return [(p.shape, p.dtype) for p in self.params]

    @property
    def result_types(self) -> list[Type]:
        return [(r.shape, r.dtype) for r in self.results]

    @property
    def nodes(self) -> list[Tensor]:
        """The body's nodes reachable from the results, inputs first (params that are read included)."""
        return toposort(self.results)

    def program(self) -> Any:
        """The cached reference-interpreter program of the body (see `graphc.backend.interpreter`)."""
        if self._program is None:
            from ..backend.interpreter import ReferenceProgram

            object.__setattr__(self, "_program", ReferenceProgram(self.results))
        return self._program


class RegionGraph(Graph):
    """The graph a region's nodes live in; `parent` is the graph it was traced in (None when
    derived: rebuilt, differentiated or loaded). Closed once tracing ends: capturing into
    it then means a body tensor leaked out of its function."""

    def __init__(self, parent: Graph | None, what: str, keep_all: bool = True):
        super().__init__(keep_all=keep_all)
        self.parent = parent
        self.what = what  # "gc.scan body", ... for error messages
        self.captures: dict[Tensor, Tensor] = {}  # outer tensor -> its param here
        self.closed = parent is None
        self._params = 0

    def make(self, op: str, inputs: tuple[Tensor, ...] = (), attrs: dict[str, Any] | None = None,
             name: str | None = None, loc: str | None = None) -> Tensor:
        opdef = get_op(op)
        if opdef.host is not None:
            raise GraphcError(f"{op}: gc.print and gc.check_numerics are not supported inside a {self.what} (a "
                              f"compiled loop body cannot call the host); apply them to the loop's results after "
                              f"it (its final carry, or its stacked ys to see every iteration)\n"
                              f"  at {loc or user_location()}")
        if opdef.effect or (opdef.kind is OpKind.SOURCE and op not in ("constant", "param")):
            what = "assigned" if opdef.effect else f"created ({op})"
            raise GraphcError(f"{op}: a variable or placeholder cannot be {what} inside a {self.what}; "
                              f"create it outside, read it inside, and assign the loop's results after it\n"
                              f"  at {loc or user_location()}")
        return super().make(op, inputs, attrs, name, loc)

    def param(self, shape: Shape, dtype: np.dtype, name: str = "arg") -> Tensor:
        """A new param of this graph (index = creation order)."""
        node = self.make("param", (), {"index": self._params, "shape": tuple(shape), "dtype": np.dtype(dtype)},
                         name=name)
        self._params += 1
        return node

    def capture(self, outer: Tensor) -> Tensor:
        """The param standing for the outer tensor `outer` (made on first use)."""
        if self.closed or self.parent is None:
            raise GraphcError(f"{outer.name} is used in a {self.what} after it was built: values computed "
                              "inside a control-flow function must leave it as its results")
        param = self.captures.get(outer)
        if param is None:
            if outer.graph is not self.parent:
                self.parent.capture(outer)
            param = self.captures[outer] = self.param(outer.shape, outer.dtype, name=outer.name)
        return param


def new_params(types: Sequence[Type], what: str, names: Sequence[str] | None = None,
               parent: Graph | None = None) -> tuple[RegionGraph, list[Tensor]]:
    """A new region graph with params of `types`."""
    g = RegionGraph(parent, what)
    return g, [g.param(s, d, name=(names[i] if names else "arg")) for i, (s, d) in enumerate(types)]


def trace(fn: Callable[..., Any], types: Sequence[Type], what: str,
          names: Sequence[str] | None = None) -> tuple[RegionGraph, list[Tensor], Any]:
    """Call ``fn(*params)`` in a new region graph nested in the default graph: (graph, params,
    what fn returned). Outer tensors fn reads become captured params (`RegionGraph.captures`)."""
    g, params = new_params(types, what, names, parent=get_default_graph())
    try:
        with open_region(g):
            out = fn(*params)
    finally:
        g.closed = True
    return g, params, out


def clone(region: Region, graph: Graph, args: Sequence[Tensor]) -> list[Tensor]:
    """The region's results computed from `args` (tensors of `graph`): its nodes re-made in
    `graph`, where their types are inferred again (nested regions are shared: they are closed)."""
    if len(args) != len(region.params):
        raise GraphcError(f"a region of {len(region.params)} params applied to {len(args)} values")
    env: dict[Tensor, Tensor] = dict(zip(region.params, args))
    for n in toposort(region.results, set(region.params)):
        if n.op == "param":
            raise GraphcError(f"{n.name}: a param that is not one of its region's params")
        env[n] = graph.make(n.op, tuple(env[i] for i in n.inputs), n.attrs, name=n.name, loc=n.loc)
    return [env[r] for r in region.results]


def build_region(types: Sequence[Type], build: Callable[..., Sequence[Tensor]], what: str = "region",
                 names: Sequence[str] | None = None) -> Region:
    """A derived region: params of `types` in a new graph, results ``build(graph, *params)``."""
    g, params = new_params(types, what, names)
    return Region(params, build(g, *params))


def retype(region: Region, types: Sequence[Type]) -> Region:
    """The same region for params of `types` (e.g. bound shapes): every type rule runs again."""
    if [(tuple(s), np.dtype(d)) for s, d in types] == region.param_types:
        return region
    return build_region(types, lambda g, *ps: clone(region, g, ps), region.graph.what,
                        [p.name for p in region.params])


def regions_of(node: Tensor) -> list[tuple[str, Region]]:
    """The (attribute name, region) pairs a node owns, in attribute order."""
    return [(k, v) for k, v in node.attrs.items() if isinstance(v, Region)]


def walk(outputs: Sequence[Tensor]) -> list[Tensor]:
    """Every node the outputs depend on, the nodes of their regions (nested) included."""
    seen: list[Tensor] = []
    stack = [toposort(outputs)]
    while stack:
        for node in stack.pop():
            seen.append(node)
            stack.extend(r.params + tuple(toposort(r.results, set(r.params))) for _, r in regions_of(node))
    return seen
