"""Sliding windows: the im2col primitive `conv_patches` and its adjoint `conv_patches_t` (col2im).

Both work on channels-last arrays with any number of spatial dims: x is (N, *S, C).
``conv_patches(x)`` is (N, *O, *K, C): for every output position o and window offset k
the element x[n, o*stride + k*dilation - pad_lo, c], or `pad_value` where that falls in
the padding. ``conv_patches_t(cols)`` is its transpose: each input position receives the
sum of the columns that read it (every window offset in row-major order). Convolution
(`graphc.ops.conv`) and pooling (`graphc.ops.pool`) are built on these two and a matmul
or a reduction, so their gradients are again patches, col2im and matmuls: linear maps
whose own derivatives are each other, so every order of derivative works.

Spatial dims must be known when the node is built; the batch and channel dims may be
None until run time. Both ops are index ops (`gather` forms), so the LLVM backend emits
them as loops (a view when no padding is read) with every load in bounds.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from ..dtypes import as_dim, int64, is_float, shape_str
from ..errors import DTypeError, ShapeError
from ..ir.graph import Tensor
from .registry import OpDef, register

__all__ = ["patches", "patches_t", "out_dims"]

ATTRS = {"window": "shape", "strides": "shape", "dilation": "shape", "padding": "index"}


def out_dim(n: int, k: int, stride: int, dilation: int, lo: int, hi: int) -> int:
    """Number of window positions along one spatial dim (may be < 1: the window does not fit)."""
    return (n + lo + hi - (k - 1) * dilation - 1) // stride + 1


def out_dims(spatial: tuple, attrs: dict) -> tuple[int, ...]:
    return tuple(out_dim(n, k, s, d, lo, hi) for n, k, s, d, (lo, hi) in
                 zip(spatial, attrs["window"], attrs["strides"], attrs["dilation"], attrs["padding"]))


def _canon(inputs: tuple, attrs: dict) -> dict:
    nsp = len(attrs["window"])
    for key in ("window", "strides", "dilation"):
        value = tuple(as_dim(v, key) for v in attrs[key])
        if len(value) != nsp or any(v < 1 for v in value):
            raise ShapeError(f"{key} must be {nsp} positive ints, got {attrs[key]!r}")
        attrs[key] = value
    pads = tuple((as_dim(lo, "padding"), as_dim(hi, "padding")) for lo, hi in attrs["padding"])
    if len(pads) != nsp or any(lo < 0 or hi < 0 for lo, hi in pads):
        raise ShapeError(f"padding must be {nsp} non-negative (lo, hi) pairs, got {attrs['padding']!r}")
    attrs["padding"] = pads
    return attrs


def _check_spatial(spatial: tuple, attrs: dict, what: str) -> tuple[int, ...]:
    if any(n is None for n in spatial):
        raise ShapeError(f"the spatial dims of {what} {shape_str(spatial)} must be known when the graph is built")
    outs = out_dims(spatial, attrs)
    for ax, (n, o, k, d, (lo, hi)) in enumerate(zip(spatial, outs, attrs["window"], attrs["dilation"],
                                                    attrs["padding"])):
        if o < 1:
            raise ShapeError(f"the window (size {k}, dilation {d}: spans {(k - 1) * d + 1}) is larger than the "
                             f"padded input along spatial axis {ax} ({n} + padding {lo}+{hi} = {n + lo + hi})")
    return outs


def _patches_type(inputs: tuple, attrs: dict):
    (x,) = inputs
    nsp = len(attrs["window"])
    if x.ndim != nsp + 2:
        raise ShapeError(f"input must have rank {nsp + 2} (batch, {nsp} spatial, channels), got {shape_str(x.shape)}")
    if not is_float(x.dtype):
        raise DTypeError(f"input must be floating point, got {x.dtype}")
    outs = _check_spatial(x.shape[1:-1], attrs, "the input")
    return (x.shape[0], *outs, *attrs["window"], x.shape[-1]), x.dtype


def _patches_t_type(inputs: tuple, attrs: dict):
    (cols,) = inputs
    spatial, window = attrs["in_shape"], attrs["window"]
    nsp = len(window)
    if len(spatial) != nsp:
        raise ShapeError(f"in_shape {spatial} has {len(spatial)} dims for {nsp} window dims")
    outs = _check_spatial(spatial, attrs, "in_shape")
    want = (cols.shape[0], *outs, *window, cols.shape[-1])
    if cols.ndim != len(want) or any(a is not None and a != b for a, b in zip(cols.shape[1:-1], want[1:-1])):
        raise ShapeError(f"columns of shape {shape_str(cols.shape)} do not match {shape_str(want)}")
    return (cols.shape[0], *spatial, cols.shape[-1]), cols.dtype


def _i(s: Any, v: int) -> Any:
    return s.const(int(v), int64)


def _patches_gather(s, idx, load, node):
    a, x = node.attrs, node.inputs[0]
    nsp = len(a["window"])
    outs, offs = idx[1:1 + nsp], idx[1 + nsp:1 + 2 * nsp]
    src, ok = [idx[0]], None
    for o, k, n, on, kn, st, d, (lo, _) in zip(outs, offs, x.shape[1:-1], node.shape[1:1 + nsp], a["window"],
                                               a["strides"], a["dilation"], a["padding"]):
        p = s.add(s.mul(o, _i(s, st)), s.mul(k, _i(s, d)))
        if lo:
            p = s.sub(p, _i(s, lo))
        checks = []
        if lo:
            checks.append(s.cmp("ge", p, _i(s, 0)))
        if (on - 1) * st + (kn - 1) * d - lo > n - 1:
            checks.append(s.cmp("lt", p, _i(s, n)))
        for c in checks:
            ok = c if ok is None else s.and_(ok, c)
        if checks:
            p = s.minimum(s.maximum(p, _i(s, 0)), _i(s, n - 1))
        src.append(p)
    value = load(0, (*src, idx[-1]))
    return value if ok is None else s.select(ok, value, s.const(a["pad_value"], node.dtype))


def _patches_t_gather(s, idx, load, node):
    a, cols = node.attrs, node.inputs[0]
    nsp = len(a["window"])
    outs = cols.shape[1:1 + nsp]
    zero, acc = s.const(0, node.dtype), None
    for ks in itertools.product(*(range(k) for k in a["window"])):
        src, ok, hit = [idx[0]], None, True
        for i, k, n, on, st, d, (lo, _) in zip(idx[1:1 + nsp], ks, a["in_shape"], outs, a["strides"],
                                               a["dilation"], a["padding"]):
            shift = lo - k * d  # input i is read by window position o when o * st = i + shift
            last = (on - 1) * st
            if shift + n - 1 < 0 or shift > last:
                hit = False  # this window offset never lands on the input
                break
            p = s.add(i, _i(s, shift)) if shift else i
            conds = []
            if shift < 0:
                conds.append(s.cmp("ge", p, _i(s, 0)))
            if n - 1 + shift > last:
                conds.append(s.cmp("le", p, _i(s, last)))
            o = p
            if st != 1:
                conds.append(s.cmp("eq", s.mod(p, _i(s, st)), _i(s, 0)))
                o = s.floordiv(p, _i(s, st))
            for c in conds:
                ok = c if ok is None else s.and_(ok, c)
            src.append(s.minimum(s.maximum(o, _i(s, 0)), _i(s, on - 1)) if conds else o)
        if not hit:
            continue
        value = load(0, (*src, *(_i(s, k) for k in ks), idx[-1]))
        if ok is not None:
            value = s.select(ok, value, zero)
        acc = value if acc is None else s.add(acc, value)
    return zero if acc is None else acc


def _tap_slices(spatial_out: tuple, ks: tuple, attrs: dict) -> tuple:
    """Slices of the padded input that window offset `ks` reads, one per spatial dim."""
    return tuple(slice(k * d, k * d + (o - 1) * st + 1, st)
                 for o, k, st, d in zip(spatial_out, ks, attrs["strides"], attrs["dilation"]))


def _patches_ref(x: np.ndarray, **attrs) -> np.ndarray:
    window = attrs["window"]
    nsp = len(window)
    xp = np.pad(x, ((0, 0), *attrs["padding"], (0, 0)), constant_values=attrs["pad_value"])
    outs = out_dims(x.shape[1:-1], attrs)
    out = np.empty((x.shape[0], *outs, *window, x.shape[-1]), x.dtype)
    for ks in itertools.product(*(range(k) for k in window)):
        out[(slice(None),) * (1 + nsp) + ks] = xp[(slice(None), *_tap_slices(outs, ks, attrs))]
    return out


def _patches_t_ref(cols: np.ndarray, **attrs) -> np.ndarray:
    window, spatial = attrs["window"], attrs["in_shape"]
    nsp = len(window)
    outs = cols.shape[1:1 + nsp]
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(spatial, attrs["padding"]))
    acc = np.zeros((cols.shape[0], *padded, cols.shape[-1]), cols.dtype)
    for ks in itertools.product(*(range(k) for k in window)):
        acc[(slice(None), *_tap_slices(outs, ks, attrs))] += cols[(slice(None),) * (1 + nsp) + ks]
    return acc[(slice(None), *(slice(lo, lo + n) for n, (lo, _) in zip(spatial, attrs["padding"])))].copy()


def _geometry(attrs: dict) -> dict:
    return {k: attrs[k] for k in ATTRS}


register(OpDef(
    "conv_patches", "index", _patches_type, canon=_canon, attrs={**ATTRS, "pad_value": "number"},
    ref=_patches_ref, gather=_patches_gather,
    vjp=lambda g, out, x, **a: (patches_t(g, x.shape[1:-1], **_geometry(a)),),
    jvp=lambda t, out, x, **a: patches(t[0], **_geometry(a)),
    doc="im2col: (N, *S, C) -> (N, *O, *K, C), the window of every output position (pad_value outside)"))

register(OpDef(
    "conv_patches_t", "index", _patches_t_type, canon=_canon, attrs={**ATTRS, "in_shape": "shape"},
    ref=_patches_t_ref, gather=_patches_t_gather,
    vjp=lambda g, out, cols, **a: (patches(g, **_geometry(a)),),
    jvp=lambda t, out, cols, **a: patches_t(t[0], a["in_shape"], **_geometry(a)),
    doc="col2im, the adjoint of conv_patches: (N, *O, *K, C) -> (N, *S, C), overlapping windows summed"))


def patches(x: Tensor, window: tuple, strides: tuple, dilation: tuple, padding: tuple,
            pad_value: float = 0.0) -> Tensor:
    """The conv_patches node of x (N, *S, C): (N, *O, *window, C)."""
    return x.graph.make("conv_patches", (x,), {"window": tuple(window), "strides": tuple(strides),
                                               "dilation": tuple(dilation), "padding": tuple(padding),
                                               "pad_value": float(pad_value)})


def patches_t(cols: Tensor, in_shape: tuple, window: tuple, strides: tuple, dilation: tuple,
              padding: tuple) -> Tensor:
    """The conv_patches_t (col2im) node: columns (N, *O, *window, C) summed back onto (N, *in_shape, C)."""
    return cols.graph.make("conv_patches_t", (cols,), {
        "window": tuple(window), "strides": tuple(strides), "dilation": tuple(dilation),
        "padding": tuple(padding), "in_shape": tuple(int(n) for n in in_shape)})
