"""The attribute types an `OpDef` declares, and the checks every new node passes.

An op declares its attributes as ``attrs={"axis": "ints", "keepdims": "bool"}``: name ->
type (a key of `TYPES`). A type ending in ``?`` is optional (absent or None). Attribute
names starting with ``_`` are compiler annotations and are not declared. `check_arity` and
`check_attrs` run in `Graph.make` for every new node, so a loaded file and the user's code
pass the same checks: unknown or missing attributes, wrong types and a wrong number of
inputs are GraphcErrors.

The op's arity (min, max inputs; max None = any) is derived from its rules when not
declared: the `scalar` form of an elementwise op, else the `ref` form.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..dtypes import SUPPORTED
from ..errors import GraphcError, user_location

Arity = tuple[int, "int | None"]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _nested(leaf: Callable[[Any], bool]) -> Callable[[Any], bool]:
    def check(v: Any) -> bool:
        return isinstance(v, tuple) and all(check(x) if isinstance(x, tuple) else leaf(x) for x in v)
    return check


def _is_slice_spec(v: Any) -> bool:
    """One entry per axis: an int, or a (start, stop, step) triple of ints or None."""
    return isinstance(v, tuple) and all(
        _is_int(e) or (isinstance(e, tuple) and len(e) == 3 and all(x is None or _is_int(x) for x in e)) for e in v)


def _is_number(v: Any) -> bool:
    return isinstance(v, (bool, int, float))


def _is_array(v: Any) -> bool:  # a graphc.ir.graph.Const (attribute arrays are frozen into one)
    return isinstance(getattr(v, "array", None), np.ndarray) and not isinstance(v, np.ndarray)


def _is_region(v: Any) -> bool:  # a graphc.ir.region.Region
    return type(v).__name__ == "Region" and hasattr(v, "params") and hasattr(v, "results")


TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "bool": (lambda v: isinstance(v, bool), "a bool"),
    "int": (_is_int, "an int"),
    "number": (_is_number, "a number"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "dtype": (lambda v: isinstance(v, np.dtype) and v in SUPPORTED, "a supported dtype"),
    "shape": (lambda v: isinstance(v, tuple) and all(_is_int(d) and d >= 0 for d in v),
              "a tuple of non-negative ints"),
    "dims": (lambda v: isinstance(v, tuple) and all(d is None or (_is_int(d) and d >= 0) for d in v),
             "a tuple of non-negative ints or None"),
    "ints": (lambda v: isinstance(v, tuple) and all(_is_int(d) for d in v), "a tuple of ints"),
    "index": (_nested(lambda x: x is None or _is_int(x)), "nested tuples of ints or None"),
    "numbers": (_nested(_is_number), "nested tuples of numbers"),
    "slice": (_is_slice_spec, "a slice spec (per axis an int or a (start, stop, step) triple)"),
    "array": (_is_array, "an array"),
    "region": (_is_region, "a region (a sub-graph: graphc.ir.region.Region)"),
    "object": (lambda v: True, "any value (objects such as a custom gradient are not saved to files)"),
}


def check_declaration(name: str, attrs: Mapping[str, str]) -> None:
    """An OpDef's attrs use only known types."""
    for attr, kind in attrs.items():
        if kind.rstrip("?") not in TYPES:
            raise GraphcError(f"op {name!r}: attribute {attr!r} has unknown type {kind!r}; "
                              f"choose one of {', '.join(TYPES)}")


def derive_arity(kind: str, scalar: Callable | None, ref: Callable | None) -> Arity | None:
    """(min, max) inputs from the op's scalar form (elementwise) or reference; None if unknown."""
    if kind == "source":
        return 0, 0
    fn, skip = (scalar, 1) if kind == "elementwise" else (ref, 0)
    if isinstance(fn, np.ufunc):
        return fn.nin, fn.nin
    if inspect.isfunction(fn) and not hasattr(fn, "__wrapped__") and not hasattr(fn, "__signature__"):
        code = fn.__code__  # a plain function: its code says what inspect.signature would, faster
        required = max(code.co_argcount - len(fn.__defaults__ or ()) - skip, 0)
        return required, None if code.co_flags & inspect.CO_VARARGS else required
    try:
        params = list(inspect.signature(fn).parameters.values())[skip:]
    except (TypeError, ValueError):
        return None
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                  and p.default is p.empty]
    variadic = any(p.kind is p.VAR_POSITIONAL for p in params)
    return len(positional), None if variadic else len(positional)


def check_arity(opdef: Any, inputs: tuple, loc: str | None) -> None:
    """GraphcError unless `opdef` takes len(inputs) inputs."""
    low, high = opdef.arity or (0, None)
    if len(inputs) < low or (high is not None and len(inputs) > high):
        want = f"{low}" if low == high else f"{low} to {high}" if high is not None else f"at least {low}"
        raise GraphcError(f"{opdef.name}: takes {want} input(s), got {len(inputs)}\n  at {loc or user_location()}")


def check_attrs(opdef: Any, attrs: Mapping[str, Any], loc: str) -> None:
    """GraphcError unless `attrs` are the attributes `opdef` declares, of their types."""
    declared = opdef.attrs
    for key, value in attrs.items():
        kind = declared.get(key)
        if kind is None:
            if key.startswith("_"):
                continue
            known = ", ".join(declared) or "none"
            raise GraphcError(f"{opdef.name}: unknown attribute {key!r} (its attributes: {known})\n  at {loc}")
        if value is None and kind.endswith("?"):
            continue
        check, what = TYPES[kind.rstrip("?")]
        if not check(value):
            raise GraphcError(f"{opdef.name}: attribute {key!r} must be {what}, got {value!r}\n  at {loc}")
    for key, kind in declared.items():
        if key not in attrs and not kind.endswith("?"):
            raise GraphcError(f"{opdef.name}: missing attribute {key!r}\n  at {loc}")
