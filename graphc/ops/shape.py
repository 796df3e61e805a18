"""Shape ops: each output element is one input element read at a computed index."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..dtypes import broadcast_shapes, int64, is_static, normalize_axes, num_elements, shape_str
from ..errors import ShapeError
from ..ir.graph import Tensor
from .core import promote
from .registry import OpDef, register

__all__ = ["broadcast_to", "expand_dims", "reshape", "transpose"]


def linear_index(s: Any, idx: tuple, shape: tuple) -> Any:
    """Row-major linear offset of `idx` in `shape`, as an int64 scalar value."""
    acc = s.const(0, int64)
    for i, d in zip(idx, shape):
        acc = s.add(s.mul(acc, s.const(d, int64)), i)
    return acc


def unravel_index(s: Any, lin: Any, shape: tuple) -> tuple:
    """Inverse of linear_index."""
    out = []
    for d in reversed(shape):
        out.append(s.mod(lin, s.const(d, int64)))
        lin = s.floordiv(lin, s.const(d, int64))
    return tuple(reversed(out))


def broadcast_index(s: Any, idx: tuple, in_shape: tuple) -> tuple:
    """The index into an operand of shape in_shape that broadcasts to idx's shape."""
    lead = len(idx) - len(in_shape)
    return tuple(s.const(0, int64) if d == 1 else idx[lead + k] for k, d in enumerate(in_shape))


# --- broadcast_to / broadcast_like ---------------------------------------------------------

def _broadcast_to_type(inputs: tuple, attrs: dict):
    x, shape = inputs[0], attrs["shape"]
    if len(shape) < x.ndim or broadcast_shapes(x.shape, shape) != tuple(shape):
        raise ShapeError(f"cannot broadcast {shape_str(x.shape)} to {shape_str(shape)}")
    return shape, x.dtype


def _broadcast_like_type(inputs: tuple, attrs: dict):
    return _broadcast_to_type(inputs[:1], {"shape": inputs[1].shape})


def _broadcast_gather(s, idx, load, node):
    return load(0, broadcast_index(s, idx, node.inputs[0].shape))


register(OpDef(
    "broadcast_to", "index", _broadcast_to_type,
    ref=lambda x, *, shape: np.broadcast_to(x, shape).copy(),
    gather=_broadcast_gather,
    vjp=lambda g, out, x, *, shape: (g,),  # autodiff sums g back to x's shape
    jvp=lambda t, out, x, *, shape: broadcast_to(t[0], shape),
    doc="x repeated along size-1 and new leading axes to `shape`"))

register(OpDef(
    "broadcast_like", "index", _broadcast_like_type, shape_only=(1,),
    ref=lambda x, like: np.broadcast_to(x, like.shape).copy(),
    gather=_broadcast_gather,
    vjp=lambda g, out, x, like: (g, None),
    jvp=lambda t, out, x, like: None if t[0] is None else broadcast_like(t[0], like),
    doc="x broadcast to the shape of `like` (whose data is not read)"))


def broadcast_to(x: Any, shape: Any) -> Tensor:
    """x broadcast to `shape` (numpy.broadcast_to)."""
    (t,) = promote(x)
    shape = (int(shape),) if np.isscalar(shape) else tuple(int(d) for d in shape)
    return t if t.shape == shape else t.graph.make("broadcast_to", (t,), {"shape": shape})


def broadcast_like(x: Tensor, like: Tensor) -> Tensor:
    """x broadcast to like's shape; a static broadcast_to when that shape is known."""
    if x.shape == like.shape:
        return x
    if is_static(like.shape):
        return broadcast_to(x, like.shape)
    return x.graph.make("broadcast_like", (x, like))


# --- reshape --------------------------------------------------------------------------------

def _reshape_type(inputs: tuple, attrs: dict):
    x, shape = inputs[0], attrs["shape"]
    if sum(d == -1 for d in shape) > 1 or any(d < -1 for d in shape):
        raise ShapeError(f"bad target shape {shape}: dims must be >= 0 with at most one -1")
    n = num_elements(x.shape)
    known = int(np.prod([d for d in shape if d != -1]))
    if -1 in shape:
        if n is None:
            return tuple(None if d == -1 else d for d in shape), x.dtype
        if known == 0 or n % known:
            raise ShapeError(f"cannot reshape {n} elements into {shape}")
        return tuple(n // known if d == -1 else d for d in shape), x.dtype
    if n is not None and n != known:
        raise ShapeError(f"cannot reshape {n} elements into {shape_str(shape)}")
    return shape, x.dtype


def _reshape_gather(s, idx, load, node):
    return load(0, unravel_index(s, linear_index(s, idx, node.shape), node.inputs[0].shape))


def _reshape_like_type(inputs: tuple, attrs: dict):
    return _reshape_type(inputs[:1], {"shape": tuple(-1 if d is None else d for d in inputs[1].shape)})


register(OpDef(
    "reshape", "index", _reshape_type,
    ref=lambda x, *, shape: np.reshape(x, shape).copy(),
    gather=_reshape_gather,
    vjp=lambda g, out, x, *, shape: (reshape_like(g, x),),
    jvp=lambda t, out, x, *, shape: reshape(t[0], shape),
    doc="x's elements in row-major order, in a new shape (one dim may be -1)"))

register(OpDef(
    "reshape_like", "index", _reshape_like_type, shape_only=(1,),
    ref=lambda x, like: np.reshape(x, like.shape).copy(),
    gather=_reshape_gather,
    vjp=lambda g, out, x, like: (reshape_like(g, x), None),
    jvp=lambda t, out, x, like: None if t[0] is None else reshape_like(t[0], like),
    doc="x reshaped to the shape of `like` (whose data is not read)"))


def reshape(x: Any, shape: Any) -> Tensor:
    """numpy.reshape; one dim may be -1."""
    (t,) = promote(x)
    shape = (int(shape),) if np.isscalar(shape) else tuple(int(d) for d in shape)
    return t if t.shape == shape else t.graph.make("reshape", (t,), {"shape": shape})


def reshape_like(x: Tensor, like: Tensor) -> Tensor:
    """x reshaped to like's shape; a static reshape when at most one dim is unknown."""
    if x.shape == like.shape and is_static(x.shape):
        return x
    if sum(d is None for d in like.shape) <= 1:
        return reshape(x, tuple(-1 if d is None else d for d in like.shape))
    return x.graph.make("reshape_like", (x, like))


# --- expand_dims --------------------------------------------------------------------------

def _canon_expand_axes(inputs: tuple, attrs: dict) -> dict:
    axis = attrs["axis"]
    axes = (axis,) if np.isscalar(axis) else tuple(axis)
    ndim = inputs[0].ndim + len(axes)
    attrs["axis"] = normalize_axes(axes, ndim)
    return attrs


def _expand_dims_type(inputs: tuple, attrs: dict):
    rest = iter(inputs[0].shape)
    ndim = inputs[0].ndim + len(attrs["axis"])
    return tuple(1 if i in attrs["axis"] else next(rest) for i in range(ndim)), inputs[0].dtype


register(OpDef(
    "expand_dims", "index", _expand_dims_type, canon=_canon_expand_axes,
    ref=lambda x, *, axis: np.expand_dims(x, axis).copy(),
    gather=lambda s, idx, load, node: load(0, tuple(i for k, i in enumerate(idx) if k not in node.attrs["axis"])),
    vjp=lambda g, out, x, *, axis: (reshape_like(g, x),),
    jvp=lambda t, out, x, *, axis: expand_dims(t[0], axis),
    doc="x with new size-1 axes inserted at `axis` (positions in the result)"))


def expand_dims(x: Any, axis: Any) -> Tensor:
    """numpy.expand_dims (axis an int or tuple, positions in the result)."""
    (t,) = promote(x)
    return t.graph.make("expand_dims", (t,), {"axis": axis})


def expand_reduced(g: Tensor, axes: tuple[int, ...], keepdims: bool) -> Tensor:
    """Re-insert reduced axes as size-1 dims (undo keepdims=False)."""
    if keepdims or not axes:
        return g
    return expand_dims(g, axes)


# --- transpose ------------------------------------------------------------------------------

def _canon_perm(inputs: tuple, attrs: dict) -> dict:
    ndim = inputs[0].ndim
    perm = attrs.get("perm")
    perm = tuple(reversed(range(ndim))) if perm is None else tuple(int(p) % max(ndim, 1) for p in perm)
    if sorted(perm) != list(range(ndim)):
        raise ShapeError(f"perm {attrs.get('perm')} is not a permutation of {ndim} axes")
    attrs["perm"] = perm
    return attrs


def _transpose_type(inputs: tuple, attrs: dict):
    return tuple(inputs[0].shape[p] for p in attrs["perm"]), inputs[0].dtype


def _transpose_gather(s, idx, load, node):
    src = [None] * len(idx)
    for out_axis, in_axis in enumerate(node.attrs["perm"]):
        src[in_axis] = idx[out_axis]
    return load(0, tuple(src))


register(OpDef(
    "transpose", "index", _transpose_type, canon=_canon_perm,
    ref=lambda x, *, perm: np.transpose(x, perm).copy(),
    gather=_transpose_gather,
    vjp=lambda g, out, x, *, perm: (transpose(g, tuple(np.argsort(perm))),),
    jvp=lambda t, out, x, *, perm: transpose(t[0], perm),
    doc="x with axes permuted (perm=None reverses them)"))


def transpose(x: Any, perm: Any = None) -> Tensor:
    """numpy.transpose."""
    (t,) = promote(x)
    return t.graph.make("transpose", (t,), {"perm": perm})


def matrix_transpose(x: Tensor) -> Tensor:
    """Swap the last two axes."""
    perm = list(range(x.ndim))
    perm[-2:] = perm[-1], perm[-2]
    return transpose(x, perm)
