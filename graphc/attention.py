"""`gc.nn.scaled_dot_product_attention` and `gc.nn.embedding` (re-exported by graphc/nn.py).

Composites of batched matmul (batch dims broadcast, numpy's rule), a masked softmax and
take; gradients come from the primitives' rules (take's VJP accumulates repeated ids).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .dtypes import bool_, is_float, is_int, shape_str
from .errors import DTypeError, ShapeError, user_location
from .ir.composite import composite
from .ir.graph import Tensor
from .ops import elementwise as ew
from .ops.core import as_tensor, constant, promote
from .ops.linalg import matmul
from .ops.reduce import max as reduce_max
from .ops.reduce import sum
from .ops.shape import matrix_transpose, take
from .ops.state import stop_gradient
from .regularize import dropout

__all__ = ["embedding", "scaled_dot_product_attention"]


def _describe(**tensors: Tensor) -> str:
    return ", ".join(f"{k}: {t.dtype}{shape_str(t.shape)}" for k, t in tensors.items())


@composite
def scaled_dot_product_attention(q: Any, k: Any, v: Any, mask: Any = None, causal: bool = False,
                                 scale: float | None = None, dropout_rate: float = 0.0,
                                 training: bool | Tensor = False, seed: int | None = None) -> Tensor:
    """softmax(q kᵀ * scale, masked) v for q (..., Lq, d), k (..., Lk, d), v (..., Lk, dv).

    Batch dims broadcast. `mask` is bool, broadcastable to (..., Lq, Lk), True where a query
    may attend (PyTorch's bool convention); ``causal=True`` also masks keys after the
    query's position (top-left aligned, query i sees keys 0..i). `scale` defaults to
    1/sqrt(d). The softmax subtracts the (gradient-stopped) row max over the kept scores
    and zeroes masked weights, so a fully masked row gives an output of 0 and finite
    gradients, never NaN (PyTorch returns NaN there, JAX the mean of v). ``dropout_rate``
    drops attention weights (`gc.nn.dropout`, PyTorch's ``dropout_p``) when `training`.
    """
    q, k, v = promote(q, k, v)
    if not is_float(q.dtype):
        raise DTypeError(f"scaled_dot_product_attention: q, k, v must be floating point "
                         f"({_describe(q=q, k=k, v=v)})\n  at {user_location()}")
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
        raise ShapeError(f"scaled_dot_product_attention: q, k, v need rank >= 2 (..., length, features); got "
                         f"{_describe(q=q, k=k, v=v)}\n  at {user_location()}")
    dims_ok = (q.shape[-1] is None or k.shape[-1] is None or q.shape[-1] == k.shape[-1]) and (
        k.shape[-2] is None or v.shape[-2] is None or k.shape[-2] == v.shape[-2])
    if not dims_ok:
        raise ShapeError(f"scaled_dot_product_attention: q and k need one feature size and k and v one length; "
                         f"got {_describe(q=q, k=k, v=v)}\n  at {user_location()}")
    d = q.shape[-1]
    if scale is None:
        if d is None:
            raise ShapeError(f"scaled_dot_product_attention: the feature size of q is unknown, pass scale= "
                             f"({_describe(q=q)})\n  at {user_location()}")
        scale = 1.0 / math.sqrt(d)
    scores = matmul(q, matrix_transpose(k)) * float(scale)
    keep = None
    if mask is not None:
        keep = as_tensor(mask)
        if keep.dtype != bool_:
            raise DTypeError(f"scaled_dot_product_attention: mask must be bool (True = attend), got "
                             f"{_describe(mask=keep, scores=scores)}\n  at {user_location()}")
    if causal:
        lq, lk = q.shape[-2], k.shape[-2]
        if lq is None or lk is None:
            raise ShapeError(f"scaled_dot_product_attention: causal=True needs known lengths, got "
                             f"{_describe(q=q, k=k)}\n  at {user_location()}")
        tri = constant(np.tril(np.ones((lq, lk), bool)), graph=q.graph)
        keep = tri if keep is None else ew.logical_and(keep, tri)
    if keep is None:
        shifted = scores - stop_gradient(reduce_max(scores, -1, keepdims=True))
        e = ew.exp(shifted)
        weights = e / sum(e, -1, keepdims=True)
    else:
        low = float(np.finfo(scores.dtype).min)
        kept = ew.where(keep, scores, low)
        e = ew.where(keep, ew.exp(kept - stop_gradient(reduce_max(kept, -1, keepdims=True))), 0.0)
        total = sum(e, -1, keepdims=True)
        weights = e / ew.where(ew.greater(total, 0.0), total, 1.0)
    if dropout_rate:
        weights = dropout(weights, dropout_rate, training, seed)
    return matmul(weights, v)


@composite
def embedding(table: Any, ids: Any) -> Tensor:
    """Rows of `table` (vocab, features) at integer `ids` of any shape: shape ids.shape + (features,).

    tf.nn.embedding_lookup's argument order. The gradient w.r.t. the table adds the
    cotangents of repeated ids (take's VJP). An id outside [0, vocab) is an error on the
    reference backend; compiled code clamps it into range (as `gc.take`).
    """
    (t,) = promote(table)
    ind = as_tensor(ids)
    if t.ndim != 2:
        raise ShapeError(f"embedding: the table must be 2-D (vocab, features), got {_describe(table=t, ids=ind)}"
                         f"\n  at {user_location()}")
    if not is_int(ind.dtype):
        raise DTypeError(f"embedding: ids must be integers, got {_describe(table=t, ids=ind)}\n  at "
                         f"{user_location()}")
    return take(t, ind, axis=0)
