"""Pooling (`gc.nn.max_pool2d`, `avg_pool2d`, `global_avg_pool2d`) over `conv_patches` windows.

max_pool2d takes, per window, the element at the first maximum in row-major window order
(argmax), so its gradient goes to that one element, as `jax.lax.reduce_window`'s VJP
routes it (ties: the first in the window; overlapping windows add). Padding counts as
-inf. avg_pool2d divides by the number of input elements in each window (TensorFlow's
rule: padding is not counted; PyTorch's default `count_include_pad=True` differs).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..dtypes import bool_, is_float, shape_str
from ..errors import DTypeError
from ..ir.composite import composite
from ..ir.graph import Tensor
from . import elementwise as ew
from .conv import FORMATS, channels_back, channels_last, fail, parse_padding, spatial_tuple
from .core import constant, promote
from .reduce import argmax, mean
from .reduce import sum as reduce_sum
from .shape import one_hot, reshape
from .window import out_dims, patches

__all__ = ["avg_pool2d", "global_avg_pool2d", "max_pool2d"]


def _setup(x: Any, ksize: Any, strides: Any, padding: Any, data_format: str, fn: str):
    """(channels-last x, window, strides, pads, channels-first?) after checking the arguments."""
    if data_format not in FORMATS[2]:
        raise fail(fn, f"data_format must be NHWC or NCHW, got {data_format!r}")
    (x,) = promote(x)
    if not is_float(x.dtype):
        raise fail(fn, f"input must be floating point, got {x.dtype}", DTypeError)
    if x.ndim != 4:
        raise fail(fn, f"input must have rank 4 ({data_format}), got shape {shape_str(x.shape)}")
    first = data_format == "NCHW"
    xl = channels_last(x, 2, first)
    window = spatial_tuple(ksize, 2, "ksize", fn)
    steps = window if strides is None else spatial_tuple(strides, 2, "strides", fn)
    spatial = xl.shape[1:3]
    if any(n is None for n in spatial):
        raise fail(fn, f"the input's spatial dims must be known when the graph is built, got {shape_str(x.shape)}")
    pads = parse_padding(padding, spatial, window, steps, (1, 1), fn)
    if any(lo >= k or hi >= k for (lo, hi), k in zip(pads, window)):
        raise fail(fn, f"padding {pads} must be smaller than the window {window} (a window of padding only)")
    return xl, window, steps, pads, first


def _windows(xl: Tensor, window: tuple, steps: tuple, pads: tuple, pad_value: float) -> Tensor:
    """(N, OH, OW, KH*KW, C): every window's elements."""
    cols = patches(xl, window, steps, (1, 1), pads, pad_value)
    batch = -1 if xl.shape[0] is None else xl.shape[0]
    return reshape(cols, (batch, *cols.shape[1:3], math.prod(window), xl.shape[-1]))


@composite
def max_pool2d(x: Any, ksize: Any, strides: Any = None, padding: Any = "VALID", data_format: str = "NHWC") -> Tensor:
    """Maximum over each ksize window (strides default to ksize); the gradient goes to the first maximum."""
    xl, window, steps, pads, first = _setup(x, ksize, strides, padding, data_format, "max_pool2d")
    p = _windows(xl, window, steps, pads, -np.inf)
    chosen = one_hot(argmax(p, axis=3), math.prod(window), dtype=bool_, axis=3)
    return channels_back(reduce_sum(ew.where(chosen, p, 0), 3), 2, first)


@composite
def avg_pool2d(x: Any, ksize: Any, strides: Any = None, padding: Any = "VALID", data_format: str = "NHWC") -> Tensor:
    """Mean over each ksize window (strides default to ksize), padding not counted (as TensorFlow)."""
    xl, window, steps, pads, first = _setup(x, ksize, strides, padding, data_format, "avg_pool2d")
    total = reduce_sum(_windows(xl, window, steps, pads, 0.0), 3)
    attrs = {"window": window, "strides": steps, "dilation": (1, 1), "padding": pads}
    spatial = xl.shape[1:3]
    counts = [np.array([len([k for k in range(w) if 0 <= o * s + k - lo < n]) for o in range(m)])
              for n, m, w, s, (lo, _) in zip(spatial, out_dims(spatial, attrs), window, steps, pads)]
    count = np.multiply.outer(*counts)
    scale = 1.0 / float(count[0, 0]) if (count == count[0, 0]).all() else constant((1.0 / count)[:, :, None], xl.dtype)
    return channels_back(total * scale, 2, first)


@composite
def global_avg_pool2d(x: Any, data_format: str = "NHWC", keepdims: bool = False) -> Tensor:
    """Mean over the spatial dims: (N, C) (Keras' GlobalAveragePooling2D), or (N, 1, 1, C) with keepdims."""
    if data_format not in FORMATS[2]:
        raise fail("global_avg_pool2d", f"data_format must be NHWC or NCHW, got {data_format!r}")
    (x,) = promote(x)
    if x.ndim != 4:
        raise fail("global_avg_pool2d", f"input must have rank 4 ({data_format}), got shape {shape_str(x.shape)}")
    return mean(x, (2, 3) if data_format == "NCHW" else (1, 2), keepdims=keepdims)
