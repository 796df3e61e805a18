"""The deterministic text form of a graph: one SSA line per node, in topological order."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ..dtypes import shape_str
from .graph import Const, Graph, Tensor, is_auto_name
from .region import Region
from .traverse import toposort

_HIDDEN_ATTRS = {"uid"}
_SHORT = {"float32": "f32", "float64": "f64", "int32": "i32", "int64": "i64", "bool": "bool"}


def type_str(node: Tensor) -> str:
    """A node's type as the printer writes it: ``f32(3,4)``, ``()`` for a node without a value."""
    if node.dtype is None:
        return "()"
    return type_str_of(node.dtype, node.shape)


def type_str_of(dtype: np.dtype, shape: tuple[int, ...]) -> str:
    """``f32(3,4)`` for a dtype and a shape."""
    return _SHORT[np.dtype(dtype).name] + shape_str(tuple(shape)).replace(" ", "").replace(",)", ")")


def _attr_str(value: Any) -> str:
    if isinstance(value, Const):
        arr = value.array
        if arr.size <= 8:
            return np.array2string(arr, separator=", ", precision=8, floatmode="maxprec_equal")
        return f"<{_SHORT[arr.dtype.name]}{list(arr.shape)} array>"
    if isinstance(value, np.dtype):
        return value.name
    if isinstance(value, tuple):
        return "(" + ", ".join(_attr_str(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


def node_names(order: list[Tensor]) -> dict[Tensor, str]:
    """Printer names: placeholders and variables keep their names, others are %0, %1, ..."""
    names: dict[Tensor, str] = {}
    for n in order:
        names[n] = f"%{n.name}" if n.op in ("placeholder", "variable") else f"%{len(names)}"
    return names


def as_text(fetches: Tensor | Iterable[Tensor] | Graph, *, show_names: bool = False) -> str:
    """One line per node: ``%3 = add(%1, %2) {attrs} : f32(?,3)``; last line lists outputs.

    A whole Graph prints every node; its outputs are the nodes nothing else reads. A node
    named by the user (``name=``) or inside a ``name_scope`` ends its line with ``# <name>``;
    ``show_names=True`` adds the automatic names (``add_3``) too. A region op's regions
    print nested under it, indented: ``body(%4: f32(3), ...) {``, the body's nodes,
    ``yield %7, %8``, ``}`` (names continue the numbering of the enclosing graph).
    """
    if isinstance(fetches, Graph):
        used = {i for n in fetches.nodes for i in n.inputs}
        fetches = [n for n in fetches.nodes if n not in used]
    outputs = [fetches] if isinstance(fetches, Tensor) else list(fetches)
    names: dict[Tensor, str] = {}
    lines: list[str] = []
    _print_nodes(toposort(outputs), names, lines, "", show_names)
    lines.append("return " + ", ".join(names[o] for o in outputs))
    return "\n".join(lines) + "\n"


def _print_nodes(order: list[Tensor], names: dict[Tensor, str], lines: list[str], indent: str,
                 show_names: bool) -> None:
    for n in order:
        if n in names:
            continue
        names[n] = f"%{n.name}" if n.op in ("placeholder", "variable") else f"%{len(names)}"
        attrs = {k: v for k, v in n.attrs.items() if k not in _HIDDEN_ATTRS and not _is_region(v)}
        if n.op in ("placeholder", "variable"):
            attrs = {k: v for k, v in attrs.items() if k not in ("shape", "dtype", "initial")}
        attr = (" {" + ", ".join(f"{k}={_attr_str(v)}" for k, v in attrs.items()) + "}") if attrs else ""
        args = ", ".join(names[i] for i in n.inputs)
        shown = show_names or not is_auto_name(n)
        comment = f"  # {n.name}" if shown and n.op not in ("placeholder", "variable") else ""
        lines.append(f"{indent}{names[n]} = {n.op}({args}){attr} : {type_str(n)}{comment}")
        for key, region in ((k, v) for k, v in n.attrs.items() if _is_region(v)):
            for p in region.params:
                names[p] = f"%{len(names)}"
            header = ", ".join(f"{names[p]}: {type_str(p)}" for p in region.params)
            lines.append(f"{indent}  {key}({header}) {{")
            _print_nodes(toposort(region.results, set(region.params)), names, lines, indent + "    ", show_names)
            lines.append(f"{indent}    yield " + ", ".join(names[r] for r in region.results))
            lines.append(f"{indent}  }}")


def _is_region(value: Any) -> bool:
    return isinstance(value, Region)
