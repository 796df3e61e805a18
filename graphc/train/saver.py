"""`Saver`: a session's variable values to a checkpoint file and back, TensorFlow 1 style.

``saver = gc.train.Saver()`` then ``saver.save(sess, "model.ckpt")`` and, in any process
that built the same graph, ``saver.restore(sess, "model.ckpt")``. The file format (the
safetensors layout plus a checksum) is in `graphc.runtime.checkpoint` and docs/runtime.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..dtypes import shape_str
from ..errors import CheckpointError, GraphcError
from ..ir.graph import Tensor
from ..runtime import checkpoint

__all__ = ["Saver"]


class Saver:
    """Saves and restores variables by name.

    `var_list` is None (every variable of the session's graph when saving or restoring,
    optimizer slots and step counters included, since they are variables), a list of
    variables (saved under their names), or a dict {name in the file: variable}.
    Restoring checks every variable before changing any: a name missing from the file, a
    different shape or a different dtype is an error that lists each mismatch. Entries of
    the file that the saver does not name are ignored (as in TensorFlow 1), so an inference
    graph without optimizer slots restores from a training checkpoint.
    """

    def __init__(self, var_list: list[Tensor] | Mapping[str, Tensor] | None = None):
        if var_list is None:
            self._named = None
            return
        pairs = list(var_list.items()) if isinstance(var_list, Mapping) else [
            (getattr(v, "name", None), v) for v in var_list]
        named: dict[str, Tensor] = {}
        for name, var in pairs:
            if not isinstance(var, Tensor) or var.op != "variable":
                raise GraphcError(f"Saver: {var!r} is not a Variable")
            if not isinstance(name, str) or not name or name == "__metadata__":
                raise GraphcError(f"Saver: bad checkpoint name {name!r} for {var.name}")
            if name in named:
                raise GraphcError(f"Saver: two variables are saved under the name {name!r}")
            named[name] = var
        if len({id(v) for v in named.values()}) != len(named):
            raise GraphcError("Saver: var_list names a variable twice")
        self._named = named

    def _variables(self, sess: Any) -> dict[str, Tensor]:
        if self._named is None:
            return {v.name: v for v in sess.graph.variables}
        for name, var in self._named.items():
            if var.graph is not sess.graph:
                raise GraphcError(f"Saver: variable {name} belongs to another graph than the session's")
        return self._named

    def save(self, sess: Any, path: str | os.PathLike) -> str:
        """Write the session's current values to `path` atomically; returns the path."""
        values = {name: sess.variable_value(var) for name, var in self._variables(sess).items()}
        checkpoint.write(path, values)
        return os.fspath(path)

    def restore(self, sess: Any, path: str | os.PathLike) -> None:
        """Set the session's variables from the checkpoint at `path` (all or none of them)."""
        arrays = checkpoint.read(path)
        variables = self._variables(sess)
        problems = []
        for name, var in variables.items():
            arr = arrays.get(name)
            if arr is None:
                problems.append(f"{name}: not in the file (the graph has {var.dtype} {shape_str(var.shape)})")
            elif arr.shape != var.shape or arr.dtype != var.dtype:
                problems.append(f"{name}: the file has {arr.dtype} {shape_str(arr.shape)}, "
                                f"the graph {var.dtype} {shape_str(var.shape)}")
        if problems:
            raise CheckpointError(f"checkpoint {os.fspath(path)!r} does not match the graph's variables:\n  "
                                  + "\n  ".join(problems))
        for name, var in variables.items():
            sess.set_variable_value(var, arrays[name])
