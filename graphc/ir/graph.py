"""The IR: immutable, interned `Tensor` nodes and the `Graph` that interns them.

A node is one op application with one result. Nodes are created only through
`Graph.make`, which returns the existing node when an identical one (same op, same
input nodes, same attributes) already exists: structurally equal means identical,
so common subexpressions are shared as they are built and a rewrite can never
mutate a subgraph someone else holds.

The same class is the user's handle (operator overloads live in `graphc.ops.methods`),
so autodiff rules, passes and user code all speak one vocabulary.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import re
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..dtypes import Shape, shape_str
from ..errors import GraphcError, user_location
from ..ops.attrtypes import check_arity, check_attrs
from ..ops.registry import OpDef, canonical_attrs, get_op, infer_type
from .composite import composite_stack


class Const:
    """A hashable, read-only wrapper of a numpy array used as an attribute value.

    Equal means the same dtype, shape and bytes. The hash is a CRC-32 of the bytes, read in
    place: a copy of them (``tobytes``) and Python's hash of it took about 20 of the 50 ms W4's
    graph (64 weights of 256 KB) took to build; the bytes are compared only when hashes agree.
    """

    __slots__ = ("array", "_kind", "_hash")

    def __init__(self, array: np.ndarray):
        import zlib  # here, not at the top: `import graphc` does not need it (docs/benchmarks.md)

        arr = np.array(array, copy=True, order="C")
        arr.setflags(write=False)
        self.array = arr
        self._kind = (arr.dtype.str, arr.shape)
        self._hash = hash((self._kind, zlib.crc32(arr.tobytes() if arr.dtype.hasobject else arr)))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Const) and self._hash == other._hash and self._kind == other._kind
                and self.array.tobytes() == other.array.tobytes())

    def __repr__(self) -> str:
        return np.array2string(self.array, separator=", ", threshold=8, precision=8)


def freeze(value: Any) -> Any:
    """Make an attribute value hashable: lists become tuples, arrays become Const."""
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, np.ndarray):
        return Const(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def attr_key(value: Any) -> Any:
    """An interning key part that tells -0.0 from 0.0 (they compare equal, but pad(-0.0) is not pad(0.0))."""
    if isinstance(value, float) and value == 0:
        return (value, math.copysign(1.0, value))
    if isinstance(value, tuple):
        return tuple(attr_key(v) for v in value)
    return value


class Tensor:
    """One node of the graph: op name, input nodes, attributes, static shape and dtype."""

    __slots__ = ("op", "opdef", "inputs", "attrs", "shape", "dtype", "graph", "name", "loc", "uid", "__weakref__")
    __array_ufunc__ = None  # make numpy defer to our reflected operators

    op: str
    opdef: OpDef  # the op's declaration (read for every node by every pass: a field, not a registry lookup)
    inputs: tuple[Tensor, ...]
    attrs: dict[str, Any]
    shape: Shape
    dtype: np.dtype | None
    graph: Graph
    name: str
    loc: str
    uid: int

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("graphc tensors are immutable")

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def params(self) -> dict[str, Any]:
        """The attributes an op's rules receive: all but identities and compiler annotations ("_...")."""
        return {k: v for k, v in self.attrs.items() if k != "uid" and not k.startswith("_")}

    def __repr__(self) -> str:
        dt = "op" if self.dtype is None else self.dtype.name
        return f"<Tensor {self.name} {self.op} {dt}{shape_str(self.shape)}>"

    def __bool__(self) -> bool:
        raise GraphcError(f"the truth value of symbolic tensor {self.name} is not known while building "
                          "the graph; use gc.where or comparisons inside the graph")

    def __iter__(self) -> Iterator[Tensor]:
        if not self.shape or self.shape[0] is None:
            raise GraphcError(f"cannot iterate over tensor {self.name} of shape {shape_str(self.shape)}")
        return (self[i] for i in range(self.shape[0]))

    def __len__(self) -> int:
        if not self.shape or self.shape[0] is None:
            raise GraphcError(f"len() of tensor {self.name} of shape {shape_str(self.shape)} is not known")
        return self.shape[0]


_state = threading.local()
_uids = itertools.count()


class Graph:
    """A container of interned nodes; the unit users build in (TF1's tf.Graph).

    A user's graph keeps every node built in it, as TF1's graph keeps every op (`nodes`,
    whole-graph printing). ``Graph(keep_all=False)`` holds its nodes weakly instead (like
    tinygrad's weak-reference cache): a node lives as long as something reaches it and a
    dropped subgraph is freed at once. The compiler binds shapes into such graphs, so a
    compiled program keeps only the nodes of its final module, not what the passes
    replaced. Either way the graph keeps its variables (what `gc.global_variables()` lists).
    """

    parent: Graph | None = None  # the enclosing graph of a region's graph (graphc.ir.region)

    def __init__(self, keep_all: bool = True) -> None:
        table = dict if keep_all else weakref.WeakValueDictionary
        self.keep_all = keep_all
        self._table: dict[tuple, Tensor] = table()
        self._name_counts: dict[str, int] = {}
        self._names: dict[str, Tensor] = table()  # the nodes' names
        self._scopes: set[str] = set()  # names `unique_name` handed out for other uses (name scopes)
        self._scope_local = threading.local()  # this thread's stack of open name scopes
        self._lock = threading.RLock()
        self.variables: list[Tensor] = []
        self.adjoint: set[Tensor] = set() if keep_all else weakref.WeakSet()  # nodes autodiff built (backward)
        self._no_grad_depth = 0
        self._adjoint_depth = 0
        self.warned_float64 = False  # float64 mixed into float32 arithmetic was reported (gc.enable_x64)
        self.composite: dict[Tensor, str] = {} if keep_all else weakref.WeakKeyDictionary()  # node -> the
        # composite function that built it
        self.builders: dict[Tensor, list[tuple[str | None, str]]] = {}  # a node asked for again by other
        # functions (interning returned it): every (composite or None, user's line), the first builder first

    @property
    def nodes(self) -> list[Tensor]:
        """The (live) nodes, in creation order."""
        with self._lock:
            return list(self._table.values())

    def __repr__(self) -> str:
        return f"<Graph with {len(self._table)} nodes>"

    @contextlib.contextmanager
    def as_default(self) -> Iterator[Graph]:
        stack = _graph_stack()
        stack.append(self)
        try:
            yield self
        finally:
            stack.pop()

    def unique_name(self, base: str) -> str:
        """A name not yet used in this graph: base, base_1, base_2, ... under the open name scope
        (TF1's ``graph.unique_name``); reserved for good."""
        with self._lock:
            name = self._fresh_name(self._scoped(base))
            self._scopes.add(name)
            return name

    def unique_name_exact(self, name: str) -> str:
        """`name` itself (no open scope is added) made unique and reserved."""
        with self._lock:
            name = self._fresh_name(name)
            self._scopes.add(name)
            return name

    def _scope_stack(self) -> list[str]:
        stack = getattr(self._scope_local, "stack", None)
        if stack is None:
            stack = self._scope_local.stack = []
        return stack

    def _scoped(self, name: str) -> str:
        stack = self._scope_stack()
        return f"{stack[-1]}/{name}" if stack and stack[-1] else name

    @contextlib.contextmanager
    def name_scope(self, name: str | None) -> Iterator[str]:
        """TF1's ``name_scope``: nodes built inside are named ``<scope>/<name>``; yields ``"<scope>/"``.

        Scopes nest (``outer/inner/add``); opening a used scope name again gives a fresh one
        (``block1_1``), as in TF1. A name ending in "/" re-enters that exact (absolute) scope,
        and ``None`` or ``""`` returns to the top level.
        """
        if name is not None and not isinstance(name, str):
            raise GraphcError(f"name_scope: the name must be a string, not {type(name).__name__}")
        if not name:
            scope = ""
        elif name.endswith("/"):
            scope = name[:-1]
        else:
            check_name(name, "name_scope")
            scope = self.unique_name(name)
        stack = self._scope_stack()
        stack.append(scope)
        try:
            yield scope + "/" if scope else ""
        finally:
            stack.pop()

    def set_name(self, node: Tensor, name: str) -> str:
        """Give `node` the (already scoped and reserved) `name`; names never split or merge nodes.

        A node that still has its automatic name (its op's, e.g. ``add_3``) takes `name`,
        so the first name a user gives a node wins; its old name stays as an alias for
        lookups. A node already named by the user (and placeholders and variables) keeps
        its name, and `name` becomes an alias that ``get_tensor_by_name`` finds.
        """
        with self._lock:
            self._scopes.discard(name)
            if is_auto_name(node) and node.op not in ("placeholder", "variable"):
                object.__setattr__(node, "name", name)
            self._names[name] = node
        return node.name

    def _fresh_name(self, base: str) -> str:
        n = self._name_counts.get(base, 0)
        name = base if n == 0 else f"{base}_{n}"
        while name in self._names or name in self._scopes:
            n += 1
            name = f"{base}_{n}"
        self._name_counts[base] = n + 1
        return name

    def get_operation_by_name(self, name: str) -> Tensor:
        """The node called `name` (TF1's ``graph.get_operation_by_name``; in graphc an op is its node)."""
        if not isinstance(name, str):
            raise GraphcError(f"get_operation_by_name: the name must be a string, not {type(name).__name__}")
        with self._lock:
            node = self._names.get(name)
            if node is None:
                import difflib  # here only: importing it slows `import graphc` (docs/benchmarks.md)

                close = difflib.get_close_matches(name, list(self._names), n=3)
                hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
                raise GraphcError(f"the graph has no node named {name!r}{hint}")
        return node

    def get_tensor_by_name(self, name: str) -> Tensor:
        """The node called `name`; TF1's ``"name:0"`` (its only output) is accepted too."""
        if not isinstance(name, str):
            raise GraphcError(f"get_tensor_by_name: the name must be a string, not {type(name).__name__}")
        base, sep, index = name.rpartition(":")
        if not (sep and index.isdigit()) or name in self._names:
            return self.get_operation_by_name(name)
        node = self.get_operation_by_name(base)
        if index != "0":
            raise GraphcError(f"get_tensor_by_name({name!r}): a graphc node has one output, {base}:0")
        return node

    def make(self, op: str, inputs: tuple[Tensor, ...] = (), attrs: dict[str, Any] | None = None,
             name: str | None = None, loc: str | None = None) -> Tensor:
        """Return the node op(inputs, attrs), creating and type-checking it if new."""
        opdef = get_op(op)
        target = self
        for t in inputs:
            if not isinstance(t, Tensor):
                raise GraphcError(f"{op}: inputs must be graphc tensors, got {type(t).__name__}")
            if t.graph is not target:
                target = _deeper(target, t, op)
        if _open_regions[0] and op != "param":  # a param belongs to the region that asks for it
            target = _tracing_target(target)
        if target is not self:
            return target.make(op, inputs, attrs, name, loc)
        if any(t.graph is not self for t in inputs):
            inputs = tuple(t if t.graph is self else self.capture(t) for t in inputs)
        check_arity(opdef, inputs, loc)
        if opdef.canon is not None:
            loc = loc or user_location()
            attrs = canonical_attrs(opdef, inputs, attrs or {}, loc)
        attrs = {k: freeze(v) for k, v in sorted((attrs or {}).items())}
        key = (op, inputs, tuple((k, attr_key(v)) for k, v in attrs.items()))
        try:
            hash(key)
        except TypeError as exc:
            raise GraphcError(f"{op}: unhashable attribute in {attrs!r}") from exc
        with self._lock:
            node = self._table.get(key)
            if node is not None:
                if self.keep_all and not self._adjoint_depth:  # autodiff re-asking is no user's call
                    self._built_again(node, loc)
                return node
            loc = loc or user_location()
            check_attrs(opdef, attrs, loc)
            shape, dtype = infer_type(opdef, inputs, attrs, loc)
            node = object.__new__(Tensor)
            init = object.__setattr__  # (Tensor's own refuses: nodes are immutable)
            init(node, "op", op)
            init(node, "opdef", opdef)
            init(node, "inputs", inputs)
            init(node, "attrs", attrs)
            init(node, "shape", tuple(shape))
            init(node, "dtype", dtype)
            init(node, "graph", self)
            init(node, "loc", loc)
            init(node, "uid", next(_uids))
            init(node, "name", self._fresh_name(self._scoped(name or op)))
            self._table[key] = node
            self._names[node.name] = node
            if op == "variable":
                self.variables.append(node)
            if self._adjoint_depth:
                self.adjoint.add(node)
            if composite_stack():
                self.composite[node] = composite_stack()[0]
        if self._no_grad_depth and opdef.differentiable:
            return self.make("stop_gradient", (node,), loc=loc)
        return node

    def _built_again(self, node: Tensor, loc: str | None) -> None:
        """Record the function asking for an interned `node` again, if another than its builders."""
        stack = composite_stack()
        name = stack[0] if stack else None
        known = self.builders.get(node)
        if known is None:
            if self.composite.get(node) == name:
                return
            known = self.builders[node] = [(self.composite.get(node), node.loc)]
        elif any(n == name for n, _ in known):
            return
        known.append((name, loc or user_location()))

    def builders_of(self, node: Tensor) -> list[tuple[str | None, str]]:
        """Every (composite function or None for a direct call, user's line) that built `node`."""
        return self.builders.get(node) or [(self.composite.get(node), node.loc)]

    def capture(self, outer: Tensor) -> Tensor:
        """A tensor of an enclosing graph, as a node of this graph (only region graphs have them)."""
        raise GraphcError(f"{outer.name} belongs to another graph")


_NAME_CHARS = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.\-/]*")


def check_name(name: object, what: str) -> str:
    """A user's node or scope name: a non-empty string of letters, digits and ``_ . - /`` (TF1's rule)."""
    if not isinstance(name, str) or not _NAME_CHARS.fullmatch(name) or name.endswith("/"):
        raise GraphcError(f"{what}: {name!r} is not a valid name (letters, digits, '_', '.', '-', '/' "
                          "between parts; not starting with '-' or '/')")
    return name


def is_auto_name(node: Tensor) -> bool:
    """Whether the node's name is the one graphc made up from its op (``add``, ``block1/add_3``)."""
    base = node.name.rpartition("/")[2]
    auto = "const" if node.op == "constant" else node.op
    return re.fullmatch(re.escape(auto) + r"(_\d+)?", base) is not None


_open_regions = [0]  # how many region bodies are being traced (graphc.ir.region.tracing)


def encloses(outer: Graph, inner: Graph) -> bool:
    """Whether `outer` is `inner` or a graph that `inner` (a region's graph) is nested in."""
    g: Graph | None = inner
    while g is not None:
        if g is outer:
            return True
        g = g.parent
    return False


def _deeper(target: Graph, t: Tensor, op: str) -> Graph:
    """The graph among `target` and t's that the other encloses (a node goes in the innermost)."""
    if encloses(t.graph, target):
        return target
    if encloses(target, t.graph):
        return t.graph
    raise GraphcError(f"{op}: input {t.name} belongs to another graph")


def _tracing_target(graph: Graph) -> Graph:
    """While a region body is traced, nodes asked of an enclosing graph go into the body."""
    default = get_default_graph()
    if default is not graph and not getattr(default, "closed", True) and encloses(graph, default):
        return default
    return graph


@contextlib.contextmanager
def open_region(graph: Graph) -> Iterator[Graph]:
    """Trace into region graph `graph` (the default graph inside the block)."""
    _open_regions[0] += 1
    try:
        with graph.as_default():
            yield graph
    finally:
        _open_regions[0] -= 1


@contextlib.contextmanager
def adjoint_scope(graph: Graph) -> Iterator[None]:
    """Nodes first created inside the block are recorded in ``graph.adjoint``."""
    graph._adjoint_depth += 1
    try:
        yield
    finally:
        graph._adjoint_depth -= 1


def _graph_stack() -> list[Graph]:
    stack = getattr(_state, "stack", None)
    if stack is None:
        stack = _state.stack = []
    return stack


_default_graph = Graph()


def get_default_graph() -> Graph:
    """The innermost graph of `with g.as_default()`, else the global default graph."""
    stack = _graph_stack()
    return stack[-1] if stack else _default_graph


def name_scope(name: str | None) -> contextlib.AbstractContextManager[str]:
    """``gc.name_scope("block1")``: TF1's name scope on the default graph (see `Graph.name_scope`)."""
    return get_default_graph().name_scope(name)


def reset_default_graph() -> None:
    """Replace the global default graph with a new, empty one."""
    global _default_graph
    if _graph_stack():
        raise GraphcError("reset_default_graph() inside a `with graph.as_default()` block")
    _default_graph = Graph()


@contextlib.contextmanager
def no_grad(graph: Graph | None = None) -> Iterator[None]:
    """Ops built inside the block are constants to `gradients` and `jvp`."""
    g = graph or get_default_graph()
    g._no_grad_depth += 1
    try:
        yield
    finally:
        g._no_grad_depth -= 1
