"""Flattening nested fetch structures (lists, tuples, dicts) and rebuilding them."""

from __future__ import annotations

from typing import Any

from ..errors import GraphcError
from ..ir.graph import Tensor


def flatten(fetches: Any) -> tuple[list[Tensor], Any]:
    """Return (the tensors in order, a spec that `unflatten` uses to rebuild the structure)."""
    flat: list[Tensor] = []

    def walk(item: Any) -> Any:
        if isinstance(item, Tensor):
            flat.append(item)
            return len(flat) - 1
        if isinstance(item, (list, tuple)):
            return (type(item), [walk(x) for x in item])
        if isinstance(item, dict):
            return (dict, [(k, walk(v)) for k, v in item.items()])
        raise GraphcError(f"cannot fetch {item!r}: fetches are tensors, ops, or lists/tuples/dicts of them")

    return flat, walk(fetches)


def unflatten(spec: Any, values: list[Any]) -> Any:
    """Rebuild the fetch structure described by `spec` with `values` (a None spec is None)."""
    if spec is None:
        return None
    if isinstance(spec, int):
        return values[spec]
    kind, items = spec
    if kind is dict:
        return {k: unflatten(v, values) for k, v in items}
    built = [unflatten(x, values) for x in items]
    if kind is list:
        return built
    if hasattr(kind, "_fields"):  # namedtuple
        return kind(*built)
    return kind(built)
