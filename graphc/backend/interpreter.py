"""The numpy reference interpreter: runs any graph op by op. The oracle of every test."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np

from ..ir.graph import Tensor
from ..ir.traverse import toposort
from ..ops.debug import check_finite


class ReferenceProgram:
    """A fixed evaluation order for some outputs; `run` evaluates it with numpy.

    Ops with a `host` rule (gc.print, gc.check_numerics) call it with their value; with
    `check_numerics` every float op's result is checked too (CompileOptions(check_numerics=True)).
    """

    def __init__(self, outputs: Sequence[Tensor], check_numerics: bool = False):
        self.outputs = list(outputs)
        self.order = toposort(self.outputs)
        self.check_numerics = check_numerics

    def run(self, feeds: Mapping[Tensor, np.ndarray],
            variables: Mapping[Tensor, np.ndarray], clock: list | None = None) -> list[np.ndarray | None]:
        """Values of the outputs. Placeholders (and a region's params) come from feeds, variables
        from `variables`; a node with several results (a region op) holds their tuple.

        `clock` (the profiler's) receives ``(node, start_ns, end_ns, inputs, value)`` for each
        node evaluated.
        """
        env: dict[Tensor, np.ndarray | None] = {}
        for node in self.order:
            if node.op in ("placeholder", "param"):  # params: a region's values (graphc.ir.region)
                env[node] = feeds[node]
            elif node.op == "variable":
                env[node] = variables[node]
            else:
                start = time.monotonic_ns() if clock is not None else 0
                args = [env[i] for i in node.inputs]
                with np.errstate(all="ignore"):
                    value = node.opdef.ref(*args, **node.params)
                env[node] = value if node.opdef.results else None if node.dtype is None else _as_type(value, node)
                if node.opdef.host is not None:
                    node.opdef.host(node, env[node])
                elif self.check_numerics and node.dtype is not None and node.dtype.kind == "f":
                    check_finite(node, env[node], "CompileOptions(check_numerics=True)", node.loc)
                if clock is not None:
                    clock.append((node, start, time.monotonic_ns(), args, env[node]))
        return [env[o] for o in self.outputs]


def _as_type(value: np.ndarray, node: Tensor) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype != node.dtype:
        arr = arr.astype(node.dtype)
    return arr


def evaluate(outputs: Sequence[Tensor], feeds: Mapping[Tensor, np.ndarray] | None = None,
             variables: Mapping[Tensor, np.ndarray] | None = None) -> list[np.ndarray | None]:
    """One-shot evaluation (variables default to their initial values)."""
    prog = ReferenceProgram(outputs)
    variables = dict(variables or {})
    for n in prog.order:
        if n.op == "variable" and n not in variables:
            variables[n] = n.attrs["initial"].array.copy()
    return prog.run(feeds or {}, variables)
