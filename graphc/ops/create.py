"""Tensors filled with one value: zeros, ones, fill, and their *_like forms."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..dtypes import as_shape
from ..errors import GraphcError, ShapeError
from ..ir.graph import Tensor
from .core import constant, to_array
from .shape import broadcast_to, filled_like

__all__ = ["fill", "ones", "ones_like", "zeros", "zeros_like"]


def _static_shape(shape: Any) -> tuple[int, ...]:
    dims = (shape,) if np.isscalar(shape) else tuple(shape)
    if any(d is None for d in dims):
        raise ShapeError(f"shape {dims} has an unknown dim; use zeros_like/ones_like for run-time shapes")
    out = as_shape(dims)
    if any(d < 0 for d in out):
        raise ShapeError(f"shape {out} has a negative dim")
    return out


def fill(shape: Any, value: Any, dtype: Any = None) -> Tensor:
    """A tensor of `shape` holding `value` everywhere (tf.fill; numpy.full).

    Without `dtype`, Python floats give float32 and ints int32.
    """
    if isinstance(value, Tensor):
        raise GraphcError("fill: value must be a scalar, not a tensor (use broadcast_to)")
    arr = to_array(value, dtype)
    if arr.ndim:
        raise ShapeError(f"fill: value must be a scalar, got shape {arr.shape}")
    return broadcast_to(constant(arr), _static_shape(shape))


def zeros(shape: Any, dtype: Any = np.float32) -> Tensor:
    """numpy.zeros (float32 by default, like TensorFlow)."""
    return fill(shape, 0, dtype)


def ones(shape: Any, dtype: Any = np.float32) -> Tensor:
    """numpy.ones (float32 by default, like TensorFlow)."""
    return fill(shape, 1, dtype)


def zeros_like(x: Tensor, dtype: Any = None) -> Tensor:
    """Zeros shaped like x (dims unknown until run time included), of x's dtype unless given."""
    return filled_like(x, 0, dtype)


def ones_like(x: Tensor, dtype: Any = None) -> Tensor:
    """Ones shaped like x (dims unknown until run time included), of x's dtype unless given."""
    return filled_like(x, 1, dtype)
