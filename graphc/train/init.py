"""Initializers: functions returning numpy arrays for a shape and dtype.

Use them as variable initial values, e.g. ``gc.Variable(gc.init.he_normal((64, 128), seed=1))``.
Random initializers draw float64 values from ``np.random.Generator(np.random.PCG64(seed))``
and cast them to `dtype`, so one seed gives the same bytes on every machine (for a given
numpy version). ``seed=None`` draws fresh OS entropy (not reproducible).

Fan-in/fan-out follow the Keras/PyTorch convention: a 2-D shape is (fan_in, fan_out); for
more dims the leading dims form the receptive field, e.g. (kh, kw, in, out) has
fan_in = kh*kw*in and fan_out = kh*kw*out. Glorot and He draws are untruncated (PyTorch's
``xavier_*_`` / ``kaiming_*_`` with the default gains 1 and sqrt(2)).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..dtypes import as_dtype, as_shape, is_float

__all__ = ["constant", "fans", "glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "normal", "ones",
           "uniform", "zeros"]

ShapeLike = int | tuple[int, ...] | list[int]


def _shape(shape: ShapeLike) -> tuple[int, ...]:
    dims = as_shape(shape, "initializer shape")
    if any(d < 0 for d in dims):
        raise ValueError(f"initializer shape {dims} has a negative dim")
    return dims


def _rng(seed: int | None) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seed))


def _float_dtype(dtype: Any) -> np.dtype:
    dt = as_dtype(dtype)
    if not is_float(dt):
        raise ValueError(f"random initializers produce floats, not {dt}")
    return dt


def zeros(shape: ShapeLike, dtype: Any = np.float32) -> np.ndarray:
    """An array of zeros."""
    return np.zeros(_shape(shape), dtype=as_dtype(dtype))


def ones(shape: ShapeLike, dtype: Any = np.float32) -> np.ndarray:
    """An array of ones."""
    return np.ones(_shape(shape), dtype=as_dtype(dtype))


def constant(value: Any, shape: ShapeLike, dtype: Any = np.float32) -> np.ndarray:
    """`value` (a scalar or an array broadcastable to `shape`) filled into `shape`."""
    return np.array(np.broadcast_to(np.asarray(value), _shape(shape)), dtype=as_dtype(dtype))


def normal(shape: ShapeLike, mean: float = 0.0, stddev: float = 1.0, seed: int | None = None,
           dtype: Any = np.float32) -> np.ndarray:
    """Draws from N(mean, stddev**2)."""
    dt = _float_dtype(dtype)
    draw = _rng(seed).standard_normal(_shape(shape), dtype=np.float64)
    return (mean + stddev * draw).astype(dt)


def uniform(shape: ShapeLike, low: float = -0.05, high: float = 0.05, seed: int | None = None,
            dtype: Any = np.float32) -> np.ndarray:
    """Draws from U[low, high) (Keras's default range)."""
    if not high > low:
        raise ValueError(f"uniform needs low < high, got [{low}, {high})")
    dt = _float_dtype(dtype)
    draw = _rng(seed).random(_shape(shape), dtype=np.float64)
    return (low + (high - low) * draw).astype(dt)


def fans(shape: ShapeLike) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight shape (see the module docstring)."""
    dims = _shape(shape)
    if len(dims) == 0:
        return 1, 1
    if len(dims) == 1:
        return dims[0], dims[0]
    receptive = math.prod(dims[:-2])
    return dims[-2] * receptive, dims[-1] * receptive


def glorot_uniform(shape: ShapeLike, seed: int | None = None, dtype: Any = np.float32) -> np.ndarray:
    """U[-a, a) with a = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010)."""
    fan_in, fan_out = fans(shape)
    limit = math.sqrt(6.0 / max(1, fan_in + fan_out))
    return uniform(shape, -limit, limit, seed=seed, dtype=dtype)


def glorot_normal(shape: ShapeLike, seed: int | None = None, dtype: Any = np.float32) -> np.ndarray:
    """N(0, s**2) with s = sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(shape)
    return normal(shape, 0.0, math.sqrt(2.0 / max(1, fan_in + fan_out)), seed=seed, dtype=dtype)


def he_normal(shape: ShapeLike, seed: int | None = None, dtype: Any = np.float32) -> np.ndarray:
    """N(0, s**2) with s = sqrt(2 / fan_in) (He et al. 2015, for ReLU layers)."""
    fan_in, _ = fans(shape)
    return normal(shape, 0.0, math.sqrt(2.0 / max(1, fan_in)), seed=seed, dtype=dtype)


def he_uniform(shape: ShapeLike, seed: int | None = None, dtype: Any = np.float32) -> np.ndarray:
    """U[-a, a) with a = sqrt(6 / fan_in)."""
    fan_in, _ = fans(shape)
    limit = math.sqrt(6.0 / max(1, fan_in))
    return uniform(shape, -limit, limit, seed=seed, dtype=dtype)
