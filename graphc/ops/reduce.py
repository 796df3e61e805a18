"""Reductions over axes (numpy's axis=None|int|tuple, keepdims, negative axes)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..dtypes import int64, is_float, normalize_axes
from ..ir.graph import Tensor
from .core import promote
from .registry import OpDef, register
from .shape import broadcast_like, expand_reduced

__all__ = ["sum"]


def reduced_shape(shape: tuple, axes: tuple[int, ...], keepdims: bool) -> tuple:
    """The shape left after reducing `axes`."""
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def canon_axis(inputs: tuple, attrs: dict) -> dict:
    """axis=None|int|tuple becomes a sorted tuple of non-negative axes; keepdims a bool."""
    attrs["axis"] = normalize_axes(attrs.get("axis"), inputs[0].ndim)
    if "keepdims" in attrs:
        attrs["keepdims"] = bool(attrs["keepdims"])
    return attrs


def _reduce_type(inputs: tuple, attrs: dict):
    x = inputs[0]
    dtype = x.dtype if is_float(x.dtype) else int64
    return reduced_shape(x.shape, attrs["axis"], attrs["keepdims"]), dtype


def _sum_ref(x: np.ndarray, *, axis: tuple, keepdims: bool) -> np.ndarray:
    return np.asarray(np.sum(x, axis=axis, keepdims=keepdims))


register(OpDef(
    "sum", "reduce", _reduce_type, ref=_sum_ref, reduce="sum", canon=canon_axis,
    vjp=lambda g, out, x, *, axis, keepdims: (broadcast_like(expand_reduced(g, axis, keepdims), x),),
    jvp=lambda t, out, x, *, axis, keepdims: sum(t[0], axis, keepdims),
    doc="sum over axes"))


def sum(x: Any, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001 (numpy's name)
    """Sum of elements over `axis` (None: all)."""
    (t,) = promote(x)
    return t.graph.make("sum", (t,), {"axis": axis, "keepdims": keepdims})
