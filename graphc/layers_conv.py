"""Layer objects for CNNs (`gc.layers.Conv2D`, `gc.layers.BatchNorm`) and `gc.nn.batch_norm`.

A layer object creates its variables on its first call and reuses them on every later
call (shared weights, as Keras/Flax/Haiku users expect). Batch normalization keeps
moving averages of the batch statistics in two non-trainable variables; a training call
(``training=True`` or a bool placeholder fed True) normalizes with the batch's own mean
and variance and builds the assignments that update the moving averages, an inference
call normalizes with the moving averages. Those assignments are collected per graph
(`update_ops`, TensorFlow 1's UPDATE_OPS collection): run them with the train op, e.g.
``gc.group(opt.minimize(loss), *gc.nn.update_ops())``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from .dtypes import bool_, is_float, shape_str
from .errors import DTypeError, GraphcError, ShapeError, user_location
from .ir.graph import Graph, Tensor, get_default_graph
from .ops import elementwise as ew
from .ops.conv import conv2d
from .ops.core import Variable, as_tensor
from .ops.reduce import mean
from .ops.shape import reshape
from .ops.state import assign
from .train import init

__all__ = ["BatchNorm", "Conv2D", "batch_norm", "update_ops"]

_UPDATES: weakref.WeakKeyDictionary[Graph, list[Tensor]] = weakref.WeakKeyDictionary()


def update_ops(graph: Graph | None = None) -> list[Tensor]:
    """The moving-average assignments that training-mode batch norm calls built in `graph`."""
    return list(_UPDATES.get(graph or get_default_graph(), ()))


def _fail(cls: type, msg: str) -> GraphcError:
    return cls(f"{msg}\n  at {user_location()}")


def _training_flag(training: Any, fn: str) -> bool | Tensor:
    if isinstance(training, (bool, np.bool_)):
        return bool(training)
    if isinstance(training, Tensor) and training.dtype == bool_ and training.ndim == 0:
        return training
    what = f"a {training.dtype} tensor of shape {shape_str(training.shape)}" if isinstance(training, Tensor) \
        else repr(training)
    raise _fail(DTypeError, f"{fn}: training must be a Python bool or a scalar bool tensor, got {what}")


class BatchNorm:
    """Batch normalization over every axis but `axis` (the channels), Keras' BatchNormalization.

    y = (x - mean) / sqrt(var + epsilon) * gamma + beta. Training calls use the batch's
    mean and (biased, two-pass: mean of squared deviations) variance and update
    moving = momentum * moving + (1 - momentum) * batch; inference calls use the moving
    statistics. Variables: ``<name>/gamma``, ``beta`` (trainable), ``moving_mean``,
    ``moving_variance`` (not trainable), created on the first call in x's dtype.
    """

    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3, center: bool = True,
                 scale: bool = True, name: str | None = None) -> None:
        if not 0.0 <= momentum <= 1.0 or epsilon <= 0.0:
            raise _fail(ShapeError, f"BatchNorm: momentum must be in [0, 1] and epsilon > 0, got {momentum}, {epsilon}")
        self.axis, self.momentum, self.epsilon = axis, float(momentum), float(epsilon)
        self.center, self.scale, self.name = center, scale, name
        self.variables: dict[str, Tensor] = {}
        self.updates: list[Tensor] = []

    def _build(self, x: Tensor, axis: int) -> None:
        channels = x.shape[axis]
        if channels is None:
            raise _fail(ShapeError, f"BatchNorm: the channel axis {axis} of {shape_str(x.shape)} must be known")
        scope = x.graph.unique_name(self.name or "batch_norm")  # under the open gc.name_scope
        with x.graph.as_default(), x.graph.name_scope(scope + "/"):
            for key, value, trainable in (("gamma", init.ones, True), ("beta", init.zeros, True),
                                          ("moving_mean", init.zeros, False), ("moving_variance", init.ones, False)):
                self.variables[key] = Variable(value((channels,), dtype=x.dtype), name=key, trainable=trainable)

    def __call__(self, x: Any, training: Any) -> Tensor:
        x = as_tensor(x)
        flag = _training_flag(training, "batch_norm")
        if not is_float(x.dtype) or x.ndim < 2:
            raise _fail(ShapeError, f"batch_norm: needs a floating input of rank >= 2, got "
                                    f"{x.dtype}{shape_str(x.shape)}")
        if not -x.ndim <= self.axis < x.ndim:
            raise _fail(ShapeError, f"batch_norm: axis {self.axis} is out of range for shape {shape_str(x.shape)}")
        axis = self.axis % x.ndim
        if not self.variables:
            self._build(x, axis)
        v = self.variables
        if v["gamma"].dtype != x.dtype or v["gamma"].shape[0] != x.shape[axis]:
            raise _fail(ShapeError, f"batch_norm: built for {v['gamma'].shape[0]} channels of {v['gamma'].dtype}, "
                                    f"called on {x.dtype}{shape_str(x.shape)} (channel axis {axis})")
        axes = tuple(a for a in range(x.ndim) if a != axis)
        bshape = tuple(-1 if a == axis else 1 for a in range(x.ndim))

        def normalize(m: Tensor, var: Tensor) -> Tensor:
            y = (x - m) / ew.sqrt(var + self.epsilon)
            if self.scale:
                y = y * reshape(v["gamma"], bshape)
            return y + reshape(v["beta"], bshape) if self.center else y

        if flag is False:
            return normalize(reshape(v["moving_mean"], bshape), reshape(v["moving_variance"], bshape))
        m = mean(x, axes, keepdims=True)
        var = mean(ew.square(x - m), axes, keepdims=True)
        y = normalize(m, var)
        news = []
        for key, stat in (("moving_mean", m), ("moving_variance", var)):
            old = v[key]
            new = old * self.momentum + reshape(stat, (-1,)) * (1.0 - self.momentum)
            news.append(assign(old, new if flag is True else ew.where(flag, new, old)))
        self.updates.extend(news)
        _UPDATES.setdefault(x.graph, []).extend(news)
        if flag is True:
            return y
        return ew.where(flag, y, normalize(reshape(v["moving_mean"], bshape), reshape(v["moving_variance"], bshape)))


def batch_norm(x: Any, training: Any, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3,
               center: bool = True, scale: bool = True, name: str | None = None) -> Tensor:
    """Batch normalization with new variables (a one-call `BatchNorm`); see `BatchNorm` and `update_ops`."""
    return BatchNorm(axis, momentum, epsilon, center, scale, name)(x, training)


class Conv2D:
    """A 2-D convolution layer: activation(conv2d(x, kernel) + bias), Keras' Conv2D.

    The kernel (HWIO for NHWC, OIHW for NCHW; Glorot-uniform, drawn with `seed`, default
    the number of variables in the graph) and the bias (zeros) are created on the first
    call in x's dtype and shared by later calls.
    """

    def __init__(self, filters: int, kernel_size: Any, strides: Any = 1, padding: Any = "VALID",
                 dilations: Any = 1, groups: int = 1, data_format: str = "NHWC",
                 activation: Callable[[Tensor], Tensor] | None = None, use_bias: bool = True, name: str | None = None,
                 seed: int | None = None) -> None:
        if not isinstance(filters, int) or filters < 1:
            raise _fail(ShapeError, f"Conv2D: filters must be a positive int, got {filters!r}")
        self.filters = filters
        self.kernel_size = (kernel_size,) * 2 if isinstance(kernel_size, int) else tuple(kernel_size)
        self.strides, self.padding, self.dilations, self.groups = strides, padding, dilations, groups
        self.data_format, self.activation, self.use_bias = data_format, activation, use_bias
        self.name, self.seed = name, seed
        self.kernel: Tensor | None = None
        self.bias: Tensor | None = None

    def _build(self, x: Tensor) -> None:
        first = self.data_format == "NCHW"
        channels = x.shape[1 if first else -1] if x.ndim == 4 else None
        if channels is None or channels % self.groups:
            raise _fail(ShapeError, f"Conv2D: needs a rank-4 {self.data_format} input with known channels divisible "
                                    f"by groups={self.groups}, got {shape_str(x.shape)}")
        hwio = (*self.kernel_size, channels // self.groups, self.filters)
        seed = len(x.graph.variables) if self.seed is None else self.seed
        w = init.glorot_uniform(hwio, seed=seed, dtype=x.dtype)
        scope = x.graph.unique_name(self.name or "conv2d")  # under the open gc.name_scope
        with x.graph.as_default(), x.graph.name_scope(scope + "/"):
            self.kernel = Variable(np.ascontiguousarray(np.transpose(w, (3, 2, 0, 1))) if first else w, name="kernel")
            if self.use_bias:
                self.bias = Variable(init.zeros((self.filters,), dtype=x.dtype), name="bias")

    def __call__(self, x: Any) -> Tensor:
        x = as_tensor(x)
        if self.kernel is None:
            if not is_float(x.dtype):
                raise _fail(DTypeError, f"Conv2D: needs a floating-point input, got {x.dtype}")
            self._build(x)
        y = conv2d(x, self.kernel, self.strides, self.padding, self.dilations, self.groups, self.data_format)
        if self.bias is not None:
            y = y + (reshape(self.bias, (-1, 1, 1)) if self.data_format == "NCHW" else self.bias)
        return y if self.activation is None else self.activation(y)
