"""`gc.nn.layer_norm`, `gc.nn.rms_norm`: row normalizations as composites (re-exported by graphc/nn.py).

Both are built from primitives (mean, subtract, rsqrt, ...), so VJP, JVP and fusion come
for free. layer_norm's variance is the two-pass mean((x - mean)**2): no cancellation for
rows with a large mean (the one-pass E[x**2] - E[x]**2 loses every digit there).
"""

from __future__ import annotations

from typing import Any

from .dtypes import is_float, normalize_axes, shape_str
from .errors import DTypeError, GraphcError, user_location
from .ir.composite import composite
from .ir.graph import Tensor
from .ops import elementwise as ew
from .ops.core import as_tensor
from .ops.reduce import mean

__all__ = ["layer_norm", "rms_norm"]


def _normalized(fn: str, x: Any, axis: Any, eps: float) -> tuple[Tensor, tuple[int, ...]]:
    t = as_tensor(x)
    if t.dtype is None or not is_float(t.dtype):
        raise DTypeError(f"{fn}: x must be floating point, got {t.dtype}{shape_str(t.shape)}\n  at {user_location()}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0:
        raise GraphcError(f"{fn}: eps must be a number >= 0, got {eps!r} (x: {t.dtype}{shape_str(t.shape)})\n"
                          f"  at {user_location()}")
    return t, normalize_axes(axis, t.ndim)


def _affine(y: Tensor, scale: Any, offset: Any) -> Tensor:
    if scale is not None:
        y = y * scale
    if offset is not None:
        y = y + offset
    return y


@composite
def layer_norm(x: Any, axis: Any = -1, eps: float = 1e-5, scale: Any = None, offset: Any = None) -> Tensor:
    """(x - mean) / sqrt(var + eps) over `axis` (an int or tuple), then ``* scale + offset`` if given
    (they broadcast against x, e.g. shape (d,) for axis=-1)."""
    t, axes = _normalized("layer_norm", x, axis, eps)
    centered = t - mean(t, axes, keepdims=True)
    var = mean(centered * centered, axes, keepdims=True)
    return _affine(centered * ew.rsqrt(var + eps), scale, offset)


@composite
def rms_norm(x: Any, axis: Any = -1, eps: float = 1e-6, scale: Any = None) -> Tensor:
    """x / sqrt(mean(x**2) + eps) over `axis`, then ``* scale`` if given (Zhang & Sennrich 2019)."""
    t, axes = _normalized("rms_norm", x, axis, eps)
    return _affine(t * ew.rsqrt(mean(t * t, axes, keepdims=True) + eps), scale, None)
