"""Gradient clipping by norm, with TensorFlow's semantics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..dtypes import is_float, result_dtype
from ..errors import DTypeError, GraphcError
from ..ir.graph import Tensor
from ..ops import elementwise as ew
from ..ops.core import as_tensor, constant
from ..ops.reduce import sum as reduce_sum

__all__ = ["clip_by_norm", "clip_by_global_norm", "global_norm"]


def clip_by_norm(t: Any, clip_norm: Any, axes: Any = None) -> Tensor:
    """t scaled so that its L2 norm over `axes` (default: all) is at most clip_norm.

    Where the norm exceeds clip_norm the result is ``t * clip_norm / norm``; otherwise t
    is unchanged. A zero t stays zero (no division by zero, in value or gradient).
    """
    t = as_tensor(t)
    if not is_float(t.dtype):
        raise DTypeError(f"clip_by_norm: needs a floating tensor, got {t.dtype}")
    clip = as_tensor(clip_norm, dtype=t.dtype, graph=t.graph)
    l2sum = reduce_sum(t * t, axis=axes, keepdims=True)
    positive = ew.greater(l2sum, 0)
    l2norm = ew.where(positive, ew.sqrt(ew.where(positive, l2sum, 1)), l2sum)
    return (t * clip) / ew.maximum(l2norm, clip)


def global_norm(tensors: Sequence[Any]) -> Tensor:
    """sqrt of the sum of squares of every entry of every (non-None) tensor."""
    present = [as_tensor(t) for t in tensors if t is not None]
    if not present:
        raise GraphcError("global_norm: no tensors given")
    dtype = result_dtype(*(t.dtype for t in present))
    if not is_float(dtype):
        raise DTypeError(f"global_norm: needs floating tensors, got {', '.join(str(t.dtype) for t in present)}")
    squares = [ew.cast(reduce_sum(t * t), dtype) for t in present]
    total = squares[0]
    for s in squares[1:]:
        total = total + s
    return ew.sqrt(total)


def clip_by_global_norm(tensors: Sequence[Any], clip_norm: Any,
                        use_norm: Any = None) -> tuple[list[Tensor | None], Tensor]:
    """Scale every tensor by clip_norm / max(global_norm, clip_norm); return (clipped, global_norm).

    None entries pass through. If the global norm is inf or NaN every entry becomes NaN
    (as in TensorFlow), so a blown-up step is visible rather than silently clipped.
    """
    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
        raise GraphcError("clip_by_global_norm: tensors must be a list or tuple")
    norm = global_norm(tensors) if use_norm is None else as_tensor(use_norm)
    clip = as_tensor(clip_norm, dtype=norm.dtype, graph=norm.graph)
    scale = clip * ew.minimum(1.0 / norm, 1.0 / clip)
    finite = ew.less(ew.abs(norm), np.inf)
    scale = ew.where(finite, scale, constant(np.nan, dtype=norm.dtype, graph=norm.graph))
    clipped = [None if t is None else as_tensor(t) * ew.cast(scale, as_tensor(t).dtype) for t in tensors]
    return clipped, norm
