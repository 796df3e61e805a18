"""Convolutions (`gc.nn.conv1d`, `gc.nn.conv2d`, `gc.nn.conv2d_transpose`): im2col and one GEMM.

A convolution is ``patches(x) @ w``: the `conv_patches` windows of x (graphc.ops.window)
flattened to rows of K*C values, times the filter flattened to (K*C, O). Grouped
convolutions (``groups`` > 1) do one batched matmul per group, except depthwise ones (one
input channel per group), which are a sum over window offsets of shifted inputs times filter
rows, one fused kernel, measured much faster (docs/backend.md).
Gradients follow from the primitives: dL/dw = patches(x)ᵀ @ g (a convolution of x with g)
and dL/dx = col2im(g @ wᵀ) (the transposed convolution), so they are linear maps of the
same kinds and differentiate again to any order.

Layouts follow TensorFlow: NHWC inputs with HWIO filters, or NCHW inputs with OIHW filters
(NCHW is transposed to channels-last around the same computation); conv1d takes NWC/WIO or
NCW/OIW. Padding is "VALID", "SAME" (TF's rule: output = ceil(input / stride), the extra
row or column on the high side) or explicit (lo, hi) pairs per spatial dim.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Sequence
from typing import Any

from ..dtypes import is_float, shape_str
from ..errors import DTypeError, ShapeError, user_location
from ..ir.composite import composite
from ..ir.graph import Tensor
from .core import promote
from .linalg import matmul
from .shape import pad, reshape, transpose
from .window import out_dims, patches, patches_t

__all__ = ["conv1d", "conv2d", "conv2d_transpose", "conv_nd", "parse_padding", "spatial_tuple"]

FORMATS = {1: ("NWC", "NCW"), 2: ("NHWC", "NCHW")}


def fail(fn: str, msg: str, cls: type = ShapeError) -> Exception:
    return cls(f"{fn}: {msg}\n  at {user_location()}")


def spatial_tuple(value: Any, nsp: int, what: str, fn: str) -> tuple[int, ...]:
    """An int or a sequence of nsp ints (or TF's nsp + 2 with 1 at batch and channels), all >= 1."""
    vals = (value,) * nsp if isinstance(value, int) else tuple(value) if isinstance(value, Sequence) else None
    if vals is not None and len(vals) == nsp + 2 and vals[0] == vals[-1] == 1:
        vals = vals[1:-1]
    if vals is None or len(vals) != nsp or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                                                   for v in vals):
        raise fail(fn, f"{what} must be a positive int or {nsp} positive ints, got {value!r}")
    return vals


def parse_padding(padding: Any, spatial: tuple, window: tuple, strides: tuple, dilation: tuple,
                  fn: str) -> tuple[tuple[int, int], ...]:
    """(lo, hi) per spatial dim for "VALID", "SAME" (TF's rule) or explicit pairs."""
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "VALID":
            return ((0, 0),) * len(window)
        if mode == "SAME":
            pads = []
            for n, k, s, d in zip(spatial, window, strides, dilation):
                total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
                pads.append((total // 2, total - total // 2))
            return tuple(pads)
        raise fail(fn, f"padding must be 'VALID', 'SAME' or (lo, hi) pairs, got {padding!r}")
    try:
        pads = tuple((operator.index(lo), operator.index(hi)) for lo, hi in padding)  # 1.5: refused, not 1
    except (TypeError, ValueError):
        raise fail(fn, f"padding must be 'VALID', 'SAME' or (lo, hi) pairs, got {padding!r}") from None
    if len(pads) != len(window) or any(lo < 0 or hi < 0 for lo, hi in pads):
        raise fail(fn, f"padding needs {len(window)} non-negative (lo, hi) pairs, got {padding!r}")
    return pads


def channels_last(x: Tensor, nsp: int, first: bool) -> Tensor:
    return transpose(x, (0, *range(2, nsp + 2), 1)) if first else x


def channels_back(y: Tensor, nsp: int, first: bool) -> Tensor:
    return transpose(y, (0, nsp + 1, *range(1, nsp + 1))) if first else y


def _format(data_format: str, nsp: int, fn: str) -> bool:
    """True for channels-first."""
    if data_format not in FORMATS[nsp]:
        raise fail(fn, f"data_format must be {' or '.join(FORMATS[nsp])}, got {data_format!r}")
    return data_format == FORMATS[nsp][1]


def _operands(x: Any, w: Any, nsp: int, fn: str) -> tuple[Tensor, Tensor]:
    x, w = promote(x, w)
    if not is_float(x.dtype):
        raise fail(fn, f"input and filter must be floating point, got {x.dtype} and {w.dtype}", DTypeError)
    for name, t in (("input", x), ("filter", w)):
        if t.ndim != nsp + 2:
            raise fail(fn, f"{name} must have rank {nsp + 2}, got shape {shape_str(t.shape)} "
                           f"(input {shape_str(x.shape)}, filter {shape_str(w.shape)})")
    if any(d is None for d in w.shape):
        raise fail(fn, f"the filter shape must be known when the graph is built, got {shape_str(w.shape)}")
    return x, w


def _rows(x: Tensor, inner: int) -> Tensor:
    """x flattened to (rows, inner), rows possibly unknown until run time."""
    lead = x.shape[:-1] if x.shape[-1] == inner else None
    known = lead is not None and None not in lead
    return reshape(x, (math.prod(lead) if known else -1, inner))


def conv_nd(x: Tensor, w: Tensor, strides: tuple, pads: tuple, dilation: tuple, groups: int, fn: str) -> Tensor:
    """Channels-last convolution: x (N, *S, C), w (*K, C/groups, O) -> (N, *O, O)."""
    window = w.shape[:-2]
    nsp = len(window)
    c, cg, o = x.shape[-1], w.shape[-2], w.shape[-1]
    if c is None:
        raise fail(fn, f"the input's channel dim must be known when the graph is built, got {shape_str(x.shape)}")
    if groups < 1 or c % groups or o % groups or c // groups != cg:
        raise fail(fn, f"input {shape_str(x.shape)} has {c} channels, the filter {shape_str(w.shape)} takes {cg} "
                       f"per group and gives {o}; with groups={groups} both channel counts must divide by "
                       f"groups and the filter must take channels/groups")
    if groups == c > 1:  # depthwise (one input channel per group, any multiplier)
        return _depthwise(x, w, strides, pads, dilation)
    cols = patches(x, window, strides, dilation, pads)
    out_sp = cols.shape[1:1 + nsp]
    kp = math.prod(window)
    batch = -1 if x.shape[0] is None else x.shape[0]
    if groups == 1:
        y = matmul(_rows(cols, kp * c), reshape(w, (kp * c, o)))
        return reshape(y, (batch, *out_sp, o))
    og = o // groups
    m = -1 if batch == -1 else batch * math.prod(out_sp)
    rows = reshape(transpose(reshape(cols, (m, kp, groups, cg)), (2, 0, 1, 3)), (groups, m, kp * cg))
    wg = reshape(transpose(reshape(w, (kp, cg, groups, og)), (2, 0, 1, 3)), (groups, kp * cg, og))
    y = matmul(rows, wg)
    return reshape(transpose(y, (1, 0, 2)), (batch, *out_sp, o))


def _depthwise(x: Tensor, w: Tensor, strides: tuple, pads: tuple, dilation: tuple) -> Tensor:
    """Depthwise, groups = channels (output channel c*m + j reads input channel c only): the sum over
    window offsets of the shifted input times that offset's filter row, which fuses into one
    elementwise kernel (measured against im2col + GEMM in docs/backend.md)."""
    window, (c, o) = w.shape[:-2], (x.shape[-1], w.shape[-1])
    mult = o // c
    outs = out_dims(x.shape[1:-1], {"window": window, "strides": strides, "dilation": dilation, "padding": pads})
    xp = pad(x, ((0, 0), *pads, (0, 0))) if any(lo or hi for lo, hi in pads) else x
    y = None
    for ks in itertools.product(*(range(k) for k in window)):
        taps = tuple(slice(k * d, k * d + (n - 1) * s + 1, s) for k, d, n, s in zip(ks, dilation, outs, strides))
        xs, row = xp[(slice(None), *taps, slice(None))], w[(*ks, 0)]
        term = xs * row if mult == 1 else xs[..., None] * reshape(row, (c, mult))
        y = term if y is None else y + term
    return y if mult == 1 else reshape(y, (-1 if x.shape[0] is None else x.shape[0], *outs, o))


def _conv(x: Any, w: Any, strides: Any, padding: Any, dilations: Any, groups: int, data_format: str, nsp: int,
          fn: str) -> Tensor:
    first = _format(data_format, nsp, fn)
    x, w = _operands(x, w, nsp, fn)
    if first:
        w = transpose(w, (*range(2, nsp + 2), 1, 0))  # OI... -> ...IO
    xl = channels_last(x, nsp, first)
    strides = spatial_tuple(strides, nsp, "strides", fn)
    dilation = spatial_tuple(dilations, nsp, "dilations", fn)
    window = w.shape[:-2]
    spatial = xl.shape[1:-1]
    if any(n is None for n in spatial):
        raise fail(fn, f"the input's spatial dims must be known when the graph is built, got {shape_str(x.shape)}")
    pads = parse_padding(padding, spatial, window, strides, dilation, fn)
    if not isinstance(groups, int) or isinstance(groups, bool):
        raise fail(fn, f"groups must be an int, got {groups!r}")
    return channels_back(conv_nd(xl, w, strides, pads, dilation, groups, fn), nsp, first)


@composite
def conv2d(x: Any, w: Any, strides: Any = 1, padding: Any = "VALID", dilations: Any = 1, groups: int = 1,
           data_format: str = "NHWC") -> Tensor:
    """2-D convolution (cross-correlation, as TF/JAX), filters HWIO for NHWC or OIHW for NCHW.

    `strides` and `dilations` are an int or a pair; `padding` is "VALID", "SAME" or
    ((top, bottom), (left, right)); `groups` splits the channels into independent groups
    (depthwise: groups = input channels, filter (H, W, 1, channels * multiplier)).
    """
    return _conv(x, w, strides, padding, dilations, groups, data_format, 2, "conv2d")


@composite
def conv1d(x: Any, w: Any, strides: Any = 1, padding: Any = "VALID", dilations: Any = 1, groups: int = 1,
           data_format: str = "NWC") -> Tensor:
    """1-D convolution with conv2d's conventions: NWC input with WIO filter, or NCW with OIW."""
    return _conv(x, w, strides, padding, dilations, groups, data_format, 1, "conv1d")


@composite
def conv2d_transpose(x: Any, w: Any, output_shape: Any = None, strides: Any = 1, padding: Any = "VALID",
                     dilations: Any = 1, data_format: str = "NHWC") -> Tensor:
    """The transpose (gradient w.r.t. its input) of conv2d with filter w, as TF's conv2d_transpose.

    w is conv2d's filter for the opposite direction: (H, W, out_channels, in_channels) for
    NHWC (TF's layout), (in_channels, out_channels, H, W) for NCHW (PyTorch's
    ConvTranspose2d weight). `output_shape` gives the output's spatial dims (or the whole
    shape, TF-style); by default (in - 1) * stride + dilated window - padding, which is
    in * stride for "SAME". conv2d of the output shape with the same arguments must give
    the input's spatial shape.
    """
    fn, nsp = "conv2d_transpose", 2
    first = _format(data_format, nsp, fn)
    x, w = _operands(x, w, nsp, fn)
    if first:
        w = transpose(w, (2, 3, 1, 0))  # IOHW -> HWOI
    xl = channels_last(x, nsp, first)
    strides = spatial_tuple(strides, nsp, "strides", fn)
    dilation = spatial_tuple(dilations, nsp, "dilations", fn)
    window, cout, cin = w.shape[:-2], w.shape[-2], w.shape[-1]
    spatial = xl.shape[1:-1]
    if any(n is None for n in spatial):
        raise fail(fn, f"the input's spatial dims must be known when the graph is built, got {shape_str(x.shape)}")
    if xl.shape[-1] is not None and xl.shape[-1] != cin:
        raise fail(fn, f"input {shape_str(x.shape)} has {xl.shape[-1]} channels but the filter "
                       f"{shape_str(w.shape)} takes {cin}")
    target = _transpose_shape(output_shape, spatial, window, strides, dilation, padding, cout, first, fn)
    pads = parse_padding(padding, target, window, strides, dilation, fn)
    attrs = {"window": window, "strides": strides, "dilation": dilation, "padding": pads}
    if out_dims(target, attrs) != spatial:
        raise fail(fn, f"output_shape {target} does not give the input's spatial dims {spatial} under conv2d "
                       f"(it gives {out_dims(target, attrs)})")
    kp = math.prod(window)
    cols = matmul(_rows(xl, cin), transpose(reshape(w, (kp * cout, cin))))
    batch = -1 if xl.shape[0] is None else xl.shape[0]
    y = patches_t(reshape(cols, (batch, *spatial, *window, cout)), target, **attrs)
    return channels_back(y, nsp, first)


def _transpose_shape(output_shape: Any, spatial: tuple, window: tuple, strides: tuple, dilation: tuple,
                     padding: Any, cout: int, first: bool, fn: str) -> tuple[int, ...]:
    if output_shape is None:
        if isinstance(padding, str) and padding.upper() == "SAME":
            return tuple(n * s for n, s in zip(spatial, strides))
        pads = parse_padding(padding, spatial, window, strides, dilation, fn)  # explicit or VALID
        return tuple((n - 1) * s + (k - 1) * d + 1 - lo - hi
                     for n, s, k, d, (lo, hi) in zip(spatial, strides, window, dilation, pads))
    dims = tuple(output_shape)
    if len(dims) == 4:
        channels = dims[1] if first else dims[3]
        if channels != cout:
            raise fail(fn, f"output_shape {output_shape} has {channels} channels, the filter gives {cout}")
        dims = dims[2:] if first else dims[1:3]
    if len(dims) != 2 or not all(isinstance(d, int) and d >= 1 for d in dims):
        raise fail(fn, f"output_shape must be 2 spatial dims or a 4-d shape, got {output_shape!r}")
    return dims
