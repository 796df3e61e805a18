"""Saving graphs as JSON and loading them back (never pickle: loading runs no code).

File format (version 1), one JSON object::

    {"format": "graphc-graph", "version": 1,
     "nodes": [{"op": "placeholder", "name": "x", "inputs": [], "attrs": {...}}, ...],
     "fetches": <structure>}

Nodes are listed inputs-first; ``inputs`` are indices of earlier nodes. Attribute values
are JSON scalars, or tagged objects: ``{"tuple": [...]}``, ``{"dtype": "float32"}``,
``{"float": "nan" | "inf" | "-inf"}`` and ``{"array": {"dtype", "shape", "base64"}}``
(C-order bytes, little-endian). ``fetches`` is a node index, or
``{"list": [...]}``, ``{"tuple": [...]}``, ``{"dict": [[key, value], ...]}``.
Placeholders and variables get fresh identities when loaded.
"""

from __future__ import annotations

import base64
import json
import math
import os
from typing import Any

import numpy as np

from ..dtypes import as_dtype
from ..errors import GraphcError
from .graph import Const, Graph, Tensor
from .traverse import toposort

FORMAT = "graphc-graph"
VERSION = 1
_FRESH_IDENTITY = "uid"


def _encode_attr(value: Any) -> Any:
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


def _decode_attr(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if not isinstance(value, dict) or len(value) != 1:
        raise GraphcError(f"bad attribute encoding {value!r}")
    (tag, body), = value.items()
    if tag == "tuple" and isinstance(body, list):
        return tuple(_decode_attr(v) for v in body)
    if tag == "dtype" and isinstance(body, str):
        return as_dtype(body)
    if tag == "float" and body in ("nan", "inf", "-inf"):
        return float(body)
    if tag == "array" and isinstance(body, dict):
        dtype = as_dtype(body["dtype"])
        shape = tuple(int(d) for d in body["shape"])
        raw = base64.b64decode(body["base64"], validate=True)
        count = int(np.prod(shape))
        if len(raw) != count * dtype.itemsize:
            raise GraphcError(f"array data has {len(raw)} bytes, expected {count * dtype.itemsize}")
        return Const(np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape))
    raise GraphcError(f"bad attribute encoding {value!r}")


def to_json(fetches: Any, session: Any = None) -> dict:
    """The JSON-ready dict for fetches (a tensor or nested lists/tuples/dicts of tensors).

    With a `session`, each variable's saved initial value is its current value in that session.
    """
    from ..runtime.fetches import flatten

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

    nodes = [{"op": n.op, "name": n.name, "inputs": [index[i] for i in n.inputs], "attrs": attrs(n)}
             for n in order]

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


def from_json(doc: Any, graph: Graph | None = None) -> Any:
    """Rebuild the fetches saved by `to_json` in `graph` (a new Graph by default)."""
    from ..ops.core import next_leaf_id
    from ..ops.registry import get_op

    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise GraphcError("not a graphc graph file")
    if doc.get("version") != VERSION:
        raise GraphcError(f"unsupported graphc graph file version {doc.get('version')!r}")
    g = graph or Graph()
    built: list[Tensor] = []
    for i, entry in enumerate(doc["nodes"]):
        op, inputs = entry["op"], entry["inputs"]
        if not isinstance(op, str) or not isinstance(inputs, list):
            raise GraphcError(f"node {i}: bad op or inputs")
        get_op(op)
        for j in inputs:
            if not isinstance(j, int) or not 0 <= j < i:
                raise GraphcError(f"node {i}: input index {j!r} does not name an earlier node")
        attrs = {str(k): _decode_attr(v) for k, v in entry["attrs"].items()}
        if op in ("placeholder", "variable"):
            attrs[_FRESH_IDENTITY] = next_leaf_id()
        name = entry.get("name")
        built.append(g.make(op, tuple(built[j] for j in inputs), attrs,
                            name=name if isinstance(name, str) else None, loc="<loaded graph>"))

    def decode_spec(s: Any) -> Any:
        if isinstance(s, int) and not isinstance(s, bool):
            if not 0 <= s < len(built):
                raise GraphcError(f"fetch index {s} out of range")
            return built[s]
        if isinstance(s, dict) and len(s) == 1:
            (tag, body), = s.items()
            if tag == "list":
                return [decode_spec(x) for x in body]
            if tag == "tuple":
                return tuple(decode_spec(x) for x in body)
            if tag == "dict":
                return {str(k): decode_spec(v) for k, v in body}
        raise GraphcError(f"bad fetch structure {s!r}")

    return decode_spec(doc["fetches"])


def save(fetches: Any, path: str | os.PathLike, session: Any = None) -> None:
    """Write the graph needed by `fetches` to a JSON file.

    Variables keep their initial values, or with ``session=sess`` their current values in it
    (so a loaded trained model predicts as the trained one).
    """
    doc = to_json(fetches, session)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, separators=(",", ":"))


def load(path: str | os.PathLike, graph: Graph | None = None) -> Any:
    """Read a file written by `save`; returns the fetches in their saved structure.

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
