"""`Session`: owns variable values, compiles fetches once per signature, runs them."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import GraphcError
from ..ir.graph import Graph, Tensor, get_default_graph
from ..ir.traverse import toposort
from .feeds import check_feeds
from .fetches import flatten, unflatten

BACKENDS = ("reference",)


class Session:
    """Runs fetches of one graph, TensorFlow 1 style; usable as a context manager.

    Variables live here: every read in a run sees the value at the start of the run and
    all assignments of the run apply together at its end.
    """

    def __init__(self, graph: Graph | None = None, backend: str = "reference", options: Any = None,
                 threads: int | None = None):
        if backend not in BACKENDS:
            raise GraphcError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.graph = graph or get_default_graph()
        self.backend = backend
        self.options = options
        self.threads = threads
        self._values: dict[Tensor, np.ndarray] = {}
        self._programs: dict[tuple, Any] = {}
        self._lock = threading.Lock()
        self._closed = False
        for var in self.graph.variables:
            self._values[var] = var.attrs["initial"].array.copy()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Release compiled programs and variable storage."""
        self._closed = True
        self._programs.clear()
        self._values.clear()

    def run(self, fetches: Any, feed_dict: Mapping[Any, Any] | None = None) -> Any:
        """Evaluate fetches (a tensor, an op, or nested lists/tuples/dicts of them)."""
        if self._closed:
            raise GraphcError("this session is closed")
        outputs, spec = flatten(fetches)
        for t in outputs:
            if t.graph is not self.graph:
                raise GraphcError(f"fetch {t.name} belongs to another graph than the session's")
        key = tuple(outputs)
        plan = self._programs.get(key)
        if plan is None:
            plan = self._programs[key] = _Plan(outputs)
        feeds = check_feeds(feed_dict, self.graph, plan.placeholders)
        with self._lock:
            variables = {v: self._variable(v) for v in plan.variables}
        values = plan.program.run(feeds, variables)
        results = values[:len(outputs)]
        updates = dict(zip(plan.assigned, values[len(outputs):]))
        with self._lock:
            for var, value in updates.items():
                self._values[var] = np.array(value, dtype=var.dtype, copy=True)
        return unflatten(spec, [None if v is None else np.array(v, copy=True) for v in results])

    def _variable(self, var: Tensor) -> np.ndarray:
        value = self._values.get(var)
        if value is None:  # created after the session started
            value = self._values[var] = var.attrs["initial"].array.copy()
        return value

    def variable_value(self, var: Tensor) -> np.ndarray:
        """A copy of a variable's current value in this session."""
        with self._lock:
            return self._variable(var).copy()


class _Plan:
    """What one fetch list needs: its placeholders, variables and assignments."""

    def __init__(self, outputs: list[Tensor]):
        from ..backend.interpreter import ReferenceProgram

        order = toposort(outputs)
        self.placeholders = [n for n in order if n.op == "placeholder"]
        self.variables = [n for n in order if n.op == "variable"]
        assigns = [n for n in order if n.op == "assign"]
        seen: dict[Tensor, Tensor] = {}
        for a in assigns:
            var = a.inputs[0]
            if var in seen:
                raise GraphcError(f"variable {var.name} is assigned twice in one run ({seen[var].name} and {a.name})")
            seen[var] = a
        self.assigned = list(seen)
        self.program = ReferenceProgram(list(outputs) + assigns)
