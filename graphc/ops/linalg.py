"""Matrix products; they lower to BLAS GEMM calls."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..dtypes import broadcast_shapes, is_float, shape_str
from ..errors import DTypeError, ShapeError
from ..ir.graph import Tensor
from .core import promote
from .registry import OpDef, register
from .shape import expand_dims, matrix_transpose, squeeze

__all__ = ["matmul", "dot"]


def _matmul_type(inputs: tuple, attrs: dict):
    a, b = inputs
    if a.dtype != b.dtype or not is_float(a.dtype):
        raise DTypeError("needs floating operands of one dtype")
    if a.ndim < 2 or b.ndim < 2:
        raise ShapeError("operands must have rank >= 2")
    k1, k2 = a.shape[-1], b.shape[-2]
    if k1 is not None and k2 is not None and k1 != k2:
        raise ShapeError(f"inner dims differ: {shape_str(a.shape)} @ {shape_str(b.shape)}")
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return batch + (a.shape[-2], b.shape[-1]), a.dtype


register(OpDef(
    "matmul", "matmul", _matmul_type,
    ref=lambda a, b: np.matmul(a, b),
    vjp=lambda g, out, a, b: (matmul(g, matrix_transpose(b)), matmul(matrix_transpose(a), g)),
    jvp=lambda t, out, a, b: _add_opt(None if t[0] is None else matmul(t[0], b),
                                      None if t[1] is None else matmul(a, t[1])),
    doc="batched matrix product of rank>=2 operands, batch dims broadcast"))


def _add_opt(x: Tensor | None, y: Tensor | None) -> Tensor | None:
    if x is None or y is None:
        return x if y is None else y
    return x + y


def matmul(a: Any, b: Any) -> Tensor:
    """numpy.matmul: 1-D operands are promoted to matrices and the added axis removed."""
    a, b = promote(a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul: scalar operand ({a.name}: {shape_str(a.shape)}, {b.name}: {shape_str(b.shape)})")
    a2 = expand_dims(a, 0) if a.ndim == 1 else a
    b2 = expand_dims(b, -1) if b.ndim == 1 else b
    out = a.graph.make("matmul", (a2, b2))
    added = (-2,) * (a.ndim == 1) + (-1,) * (b.ndim == 1)  # remove the axes added above
    return squeeze(out, added) if added else out


def dot(a: Any, b: Any) -> Tensor:
    """numpy.dot: a scalar operand multiplies; otherwise a sum product over the last axis of
    a and the second-to-last axis of b (the only axis of a 1-D b), with shape
    ``a.shape[:-1] + b.shape[:-2] + b.shape[-1:]``.
    """
    a, b = promote(a, b)
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    if a.ndim == 1 or b.ndim <= 2:
        return matmul(a, b)  # the same as numpy.dot for these ranks
    # Each row of a against every matrix of b: batch dims a.shape[:-1] + b.shape[:-2].
    rows = expand_dims(a, tuple(range(a.ndim - 1, a.ndim + b.ndim - 2)))
    out = matmul(rows, b)
    return squeeze(out, -2)
