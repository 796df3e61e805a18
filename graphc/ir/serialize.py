"""Saving graphs as JSON and loading them back (never pickle: loading runs no code).

File format (version 1), one JSON object::

    {"format": "graphc-graph", "version": 1,
     "nodes": [{"op": "placeholder", "name": "x", "inputs": [], "attrs": {...}}, ...],
     "fetches": <structure>}

Nodes are listed inputs-first; ``inputs`` are indices of earlier nodes. Attribute values
are JSON scalars, or tagged objects: ``{"tuple": [...]}``, ``{"dtype": "float32"}``,
``{"float": "nan" | "inf" | "-inf"}``, ``{"array": {"dtype", "shape", "base64"}}``
(C-order bytes, little-endian) and ``{"region": {"nodes": [...], "params": [...],
"results": [...]}}`` (a control-flow op's sub-graph: its own node list, indices local to
it; params are its ``param`` nodes, all of them). ``fetches`` is a node index, or
``{"list": [...]}``, ``{"tuple": [...]}``, ``{"dict": [[key, value], ...]}``.
Placeholders and variables get fresh identities when loaded.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import os
from typing import Any

import numpy as np

from ..dtypes import as_dtype
from ..errors import GraphcError
from .graph import Const, Graph, Tensor
from .region import Region, RegionGraph
from .traverse import toposort

FORMAT = "graphc-graph"
VERSION = 1
_FRESH_IDENTITY = "uid"


@dataclasses.dataclass(frozen=True)
class LoadedGraph:
    """What `load` returns: the saved fetch structure, the placeholders by name, the graph."""

    outputs: Any
    inputs: dict[str, Tensor]
    graph: Graph

    def __repr__(self) -> str:
        return f"<LoadedGraph inputs={list(self.inputs)} nodes={len(self.graph.nodes)}>"


def _encode_attr(value: Any) -> Any:
    if isinstance(value, Region):
        order = [*value.params, *toposort(value.results, set(value.params))]
        index = {n: i for i, n in enumerate(order)}
        return {"region": {"nodes": _encode_nodes(order, index), "params": list(range(len(value.params))),
                           "results": [index[r] for r in value.results]}}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, tuple):
        return {"tuple": [_encode_attr(v) for v in value]}
    if isinstance(value, np.dtype):
        return {"dtype": value.name}
    if isinstance(value, Const):
        arr = value.array
        data = base64.b64encode(arr.astype(arr.dtype.newbyteorder("<")).tobytes()).decode("ascii")
        return {"array": {"dtype": arr.dtype.name, "shape": list(arr.shape), "base64": data}}
    raise GraphcError(f"cannot save attribute value {value!r} of type {type(value).__name__}")


def _encode_nodes(order: list[Tensor], index: dict[Tensor, int], attrs: Any = None) -> list[dict]:
    attrs = attrs or (lambda n: {k: _encode_attr(v) for k, v in n.attrs.items() if k != _FRESH_IDENTITY})
    return [{"op": n.op, "name": n.name, "inputs": [index[i] for i in n.inputs], "attrs": attrs(n)} for n in order]


def _decode_attr(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if not isinstance(value, dict) or len(value) != 1:
        raise GraphcError(f"bad attribute encoding {value!r}")
    (tag, body), = value.items()
    if tag == "region" and isinstance(body, dict) and set(body) == {"nodes", "params", "results"}:
        return _load_region(body)
    if tag == "tuple" and isinstance(body, list):
        return tuple(_decode_attr(v) for v in body)
    if tag == "dtype" and isinstance(body, str):
        return as_dtype(body)
    if tag == "float" and body in ("nan", "inf", "-inf"):
        return float(body)
    if tag == "array" and isinstance(body, dict) and set(body) == {"dtype", "shape", "base64"}:
        dtype = as_dtype(body["dtype"])
        shape = body["shape"]
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise GraphcError(f"bad array shape {shape!r}")
        shape = tuple(shape)
        raw = base64.b64decode(body["base64"], validate=True)
        count = math.prod(shape)  # Python ints: no wrap-around
        if len(raw) != count * dtype.itemsize:
            raise GraphcError(f"array data has {len(raw)} bytes, expected {count * dtype.itemsize}")
        return Const(np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape))
    raise GraphcError(f"bad attribute encoding {value!r}")


def encode_program(outputs: list[Tensor]) -> tuple[list[Tensor], list[dict]]:
    """(toposort(outputs), their encoding as `save` writes it without the variables' initial
    values): everything a compiled program of these outputs depends on but the feed shapes."""
    order = toposort(outputs)
    index = {n: i for i, n in enumerate(order)}

    def attrs(n: Tensor) -> dict:
        return {k: _encode_attr(v) for k, v in n.attrs.items()
                if k != _FRESH_IDENTITY and not (k == "initial" and n.op == "variable")}

    return order, _encode_nodes(order, index, attrs)


def to_json(fetches: Any, session: Any = None) -> dict:
    """The JSON-ready dict for fetches (a tensor or nested lists/tuples/dicts of tensors).

    With a `session`, each variable's saved initial value is its current value in that session.
    """
    from ..runtime.fetches import flatten

    if isinstance(fetches, LoadedGraph):
        fetches = fetches.outputs
    outputs, spec = flatten(fetches)
    order = toposort(outputs)
    index = {n: i for i, n in enumerate(order)}

    def attrs(n: Tensor) -> dict:
        values = dict(n.attrs)
        if session is not None and n.op == "variable":
            if n.graph is not session.graph:
                raise GraphcError(f"save: variable {n.name} belongs to another graph than the session's")
            values["initial"] = Const(session.variable_value(n))
        return {k: _encode_attr(v) for k, v in values.items() if k != _FRESH_IDENTITY}

    nodes = _encode_nodes(order, index, attrs)

    def encode_spec(s: Any) -> Any:
        if isinstance(s, int):
            return index[outputs[s]]
        kind, items = s
        if kind is dict:
            for k, _ in items:
                if not isinstance(k, str):
                    raise GraphcError(f"cannot save a fetch dict with non-string key {k!r}")
            return {"dict": [[k, encode_spec(v)] for k, v in items]}
        return {"tuple" if issubclass(kind, tuple) else "list": [encode_spec(x) for x in items]}

    return {"format": FORMAT, "version": VERSION, "nodes": nodes, "fetches": encode_spec(spec)}


def from_json(doc: Any, graph: Graph | None = None) -> LoadedGraph:
    """Rebuild the fetches saved by `to_json` in `graph` (a new Graph by default)."""

    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise GraphcError("not a graphc graph file")
    if doc.get("version") != VERSION:
        raise GraphcError(f"unsupported graphc graph file version {doc.get('version')!r}")
    g = graph or Graph()
    built = _load_nodes(g, doc.get("nodes"))

    def decode_spec(s: Any) -> Any:
        if isinstance(s, int) and not isinstance(s, bool):
            if not 0 <= s < len(built):
                raise GraphcError(f"fetch index {s} out of range")
            return built[s]
        if isinstance(s, dict) and len(s) == 1:
            (tag, body), = s.items()
            if tag == "list" and isinstance(body, list):
                return [decode_spec(x) for x in body]
            if tag == "tuple" and isinstance(body, list):
                return tuple(decode_spec(x) for x in body)
            if tag == "dict" and isinstance(body, list) and all(
                    isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in body):
                return {k: decode_spec(v) for k, v in body}
        raise GraphcError(f"bad fetch structure {s!r}")

    outputs = decode_spec(doc["fetches"])
    return LoadedGraph(outputs, {n.name: n for n in built if n.op == "placeholder"}, g)


def _load_nodes(g: Graph, nodes: Any) -> list[Tensor]:
    """The nodes of a node list, built in `g` in order."""
    if not isinstance(nodes, list):
        raise GraphcError("the graph file has no node list")
    built: list[Tensor] = []
    for i, entry in enumerate(nodes):
        try:
            built.append(_load_node(g, entry, built))
        except Exception as exc:  # noqa: BLE001 (untrusted input: every failure is the file's fault)
            what = entry.get("op") if isinstance(entry, dict) else None
            raise GraphcError(f"node {i}{f' ({what})' if isinstance(what, str) else ''}: {exc}") from None
    return built


def _load_region(body: dict) -> Region:
    """A region of a file: its nodes in a region graph of their own, checked as every node is;
    its params must be exactly its param nodes (so it is closed)."""
    g = RegionGraph(None, "loaded region")
    built = _load_nodes(g, body["nodes"])

    def pick(indices: Any, what: str) -> list[Tensor]:
        if not isinstance(indices, list) or not all(type(j) is int and 0 <= j < len(built) for j in indices):
            raise GraphcError(f"bad region {what} {indices!r}")
        return [built[j] for j in indices]

    params, results = pick(body["params"], "params"), pick(body["results"], "results")
    if {n for n in built if n.op == "param"} != set(params):
        raise GraphcError("a region's param nodes must be exactly its params")
    return Region(params, results)


def _load_node(g: Graph, entry: Any, built: list[Tensor]) -> Tensor:
    """One node of a file, checked as user code is (arity, attributes, types) by Graph.make.

    A file holds canonical attributes, so their types are checked before the op's canon
    rule sees them too (canon rules expect the types they declare).
    """
    from ..ops.attrtypes import check_attrs
    from ..ops.core import next_leaf_id
    from ..ops.registry import get_op

    if not isinstance(entry, dict) or not {"op", "inputs", "attrs"} <= set(entry) <= {"op", "name", "inputs", "attrs"}:
        raise GraphcError("a node is an object with op, name, inputs and attrs")
    op, inputs, attrs, name = entry["op"], entry["inputs"], entry["attrs"], entry.get("name")
    if not isinstance(op, str) or not isinstance(inputs, list) or not isinstance(attrs, dict):
        raise GraphcError("bad op, inputs or attrs")
    if name is not None and not isinstance(name, str):
        raise GraphcError(f"bad name {name!r}")
    opdef = get_op(op)
    if op == "param" and not isinstance(g, RegionGraph):
        raise GraphcError("a param node outside a region")
    for j in inputs:
        if type(j) is not int or not 0 <= j < len(built):
            raise GraphcError(f"input index {j!r} does not name an earlier node")
    if _FRESH_IDENTITY in attrs:
        raise GraphcError(f"attribute {_FRESH_IDENTITY!r} is not saved")
    attrs = {k: _decode_attr(v) for k, v in attrs.items()}
    if op in ("placeholder", "variable"):
        attrs[_FRESH_IDENTITY] = next_leaf_id()
    check_attrs(opdef, attrs, "<loaded graph>")
    return g.make(op, tuple(built[j] for j in inputs), attrs, name=name, loc="<loaded graph>")


def save(fetches: Any, path: str | os.PathLike, session: Any = None) -> None:
    """Write the graph needed by `fetches` (or a `LoadedGraph`'s outputs) to a JSON file.

    Variables keep their initial values, or with ``session=sess`` their current values in it
    (so a loaded trained model predicts as the trained one).
    """
    doc = to_json(fetches, session)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, separators=(",", ":"))


def load(path: str | os.PathLike, graph: Graph | None = None) -> LoadedGraph:
    """Read a file written by `save`: ``.outputs`` are the fetches in their saved structure,
    ``.inputs`` the placeholders by name, ``.graph`` the graph they were built in.

    A garbled or foreign file raises GraphcError; nothing in the file is executed.
    """
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        return from_json(doc, graph)
    except GraphcError:
        raise
    except (OSError, ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError) as exc:
        raise GraphcError(f"cannot load graph from {os.fspath(path)!r}: {type(exc).__name__}: {exc}") from None
