"""`gc.layers`: layer objects that own their variables, and `gc.nn.dense` (one fresh layer per call).

A layer creates its variables on its first call (when it sees the input's feature size)
and reuses them on every later call, as Keras, Flax and Haiku users expect::

    proj = gc.layers.Dense(64, activation=gc.relu)
    a, b = proj(x1), proj(x2)        # one kernel, one bias

Each layer gets a unique name scope in its graph (``dense``, ``dense_1``, ...) that holds
its variables (``dense/kernel``) and the ops of every call. `Layer` is the base class:
a subclass implements ``build(*inputs)`` (create variables with `add_weight`) and
``call(*inputs, **kwargs)``; ``updates`` collects assignments a call makes (e.g. moving
averages), to run with the train op.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from .attention import embedding, scaled_dot_product_attention
from .dtypes import is_float, shape_str
from .errors import GraphcError, ShapeError, user_location
from .ir.graph import Graph, Tensor, get_default_graph
from .layers_conv import BatchNorm, Conv2D
from .normalization import layer_norm
from .ops.core import Variable, as_tensor
from .ops.linalg import matmul
from .ops.shape import reshape, transpose
from .regularize import dropout
from .train import init

__all__ = ["BatchNorm", "Conv2D", "Dense", "Dropout", "Embedding", "Layer", "LayerNorm", "MultiHeadAttention",
           "dense"]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Layer:
    """A callable that owns variables, created on the first call and shared by every call."""

    def __init__(self, name: str | None = None, seed: int | None = None):
        if name is not None and not isinstance(name, str):
            raise GraphcError(f"{type(self).__name__}: name must be a string, got {name!r}")
        self.name = name or _snake(type(self).__name__)
        self.seed = seed
        self.graph: Graph | None = None
        self.scope: str | None = None  # the unique name scope, e.g. "dense_1"
        self.variables: list[Tensor] = []
        self.updates: list[Tensor] = []

    @property
    def built(self) -> bool:
        return self.graph is not None

    @property
    def trainable_variables(self) -> list[Tensor]:
        return [v for v in self.variables if v.attrs["trainable"]]

    def __call__(self, *inputs: Any, **kwargs: Any) -> Any:
        tensors = [t for t in inputs if isinstance(t, Tensor)]
        graph = tensors[0].graph if tensors else get_default_graph()
        if self.graph is None:
            self.graph = graph
            self.scope = graph.unique_name(self.name)
            with graph.as_default(), graph.name_scope(self.scope + "/"):
                self.build(*inputs)
        elif graph is not self.graph:
            raise GraphcError(f"layer {self.scope} was built in another graph than its input's\n  at {user_location()}")
        with graph.as_default(), graph.name_scope(self.scope + "/"):
            return self.call(*inputs, **kwargs)

    def build(self, *inputs: Any) -> None:
        """Create the variables (`add_weight`), knowing the inputs; the base layer has none."""

    def call(self, *inputs: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def add_weight(self, name: str, value: np.ndarray, trainable: bool = True) -> Tensor:
        """A variable ``<scope>/<name>`` with initial `value`, recorded in `variables`."""
        var = Variable(value, name=name, trainable=trainable)
        self.variables.append(var)
        return var

    def weight_seed(self) -> int:
        """The seed of the next initializer: the layer's `seed` plus its variable count, else the
        number of variables in the graph (a script that builds the same model gets the same weights)."""
        assert self.graph is not None
        return (self.seed + len(self.variables)) if self.seed is not None else len(self.graph.variables)

    def _features(self, x: Tensor, axis: int = -1) -> int:
        if not isinstance(x, Tensor) or x.ndim < 1 or x.shape[axis] is None:
            got = f"{x.dtype}{shape_str(x.shape)}" if isinstance(x, Tensor) else repr(x)
            raise ShapeError(f"{type(self).__name__}: needs an input whose feature dim (axis {axis}) is known, "
                             f"got {got}\n  at {user_location()}")
        if x.dtype is None or not is_float(x.dtype):
            raise ShapeError(f"{type(self).__name__}: needs a floating-point input, got {x.dtype}"
                             f"{shape_str(x.shape)}\n  at {user_location()}")
        return int(x.shape[axis])


class Dense(Layer):
    """``activation(x @ kernel + bias)``: kernel (features, units) Glorot-uniform, bias zeros, in x's dtype."""

    def __init__(self, units: int, activation: Callable[[Tensor], Tensor] | None = None, use_bias: bool = True,
                 name: str | None = None, seed: int | None = None):
        super().__init__(name, seed)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ShapeError(f"Dense needs units >= 1, got {units!r}")
        self.units, self.activation, self.use_bias = int(units), activation, bool(use_bias)

    def build(self, x: Any) -> None:
        x = as_tensor(x)
        n = self._features(x)
        self.kernel = self.add_weight("kernel", init.glorot_uniform((n, self.units), seed=self.weight_seed(),
                                                                    dtype=x.dtype))
        self.bias = self.add_weight("bias", init.zeros((self.units,), dtype=x.dtype)) if self.use_bias else None

    def call(self, x: Any) -> Tensor:
        x = as_tensor(x)
        if self._features(x) != self.kernel.shape[0]:
            raise ShapeError(f"layer {self.scope}: built for {self.kernel.shape[0]} input features, called on "
                             f"{x.dtype}{shape_str(x.shape)}\n  at {user_location()}")
        y = matmul(x, self.kernel)
        if self.bias is not None:
            y = y + self.bias
        return y if self.activation is None else self.activation(y)


class LayerNorm(Layer):
    """`gc.nn.layer_norm` over the last axis with a learned scale (ones) and offset (zeros)."""

    def __init__(self, eps: float = 1e-5, name: str | None = None):
        super().__init__(name)
        self.eps = eps

    def build(self, x: Any) -> None:
        x = as_tensor(x)
        n = self._features(x)
        self.scale = self.add_weight("scale", init.ones((n,), dtype=x.dtype))
        self.offset = self.add_weight("offset", init.zeros((n,), dtype=x.dtype))

    def call(self, x: Any) -> Tensor:
        return layer_norm(x, -1, self.eps, self.scale, self.offset)


class Dropout(Layer):
    """`gc.nn.dropout` as a layer: ``Dropout(0.1)(x, training)``; fresh masks on every call and run."""

    def __init__(self, rate: float, name: str | None = None, seed: int | None = None):
        super().__init__(name, seed)
        self.rate = rate
        self.calls = 0

    def call(self, x: Any, training: bool | Tensor = True) -> Tensor:
        seed = None if self.seed is None else self.seed + self.calls  # each call its own mask
        self.calls += 1
        return dropout(x, self.rate, training, seed)


class Embedding(Layer):
    """A (vocab, features) table looked up by integer ids (`gc.nn.embedding`); normal(0, 1/sqrt(features))."""

    def __init__(self, vocab: int, features: int, dtype: Any = np.float32, name: str | None = None,
                 seed: int | None = None):
        super().__init__(name, seed)
        for what, v in (("vocab", vocab), ("features", features)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ShapeError(f"Embedding needs {what} >= 1, got {v!r}")
        self.vocab, self.features, self.dtype = int(vocab), int(features), np.dtype(dtype)

    def build(self, ids: Any) -> None:
        self.table = self.add_weight("table", init.normal((self.vocab, self.features), stddev=self.features ** -0.5,
                                                          seed=self.weight_seed(), dtype=self.dtype))

    def call(self, ids: Any) -> Tensor:
        return embedding(self.table, ids)


class MultiHeadAttention(Layer):
    """Keras-style multi-head attention: Dense projections of query/key/value into `num_heads` heads of
    `key_dim`, `gc.nn.scaled_dot_product_attention` per head, and an output Dense back to the
    query's feature size. Inputs are (batch, length, features); batch may be None. `dropout`
    drops attention weights in training calls, as Keras does."""

    def __init__(self, num_heads: int, key_dim: int, value_dim: int | None = None, dropout: float = 0.0,
                 use_bias: bool = True, name: str | None = None, seed: int | None = None):
        super().__init__(name, seed)
        for what, v in (("num_heads", num_heads), ("key_dim", key_dim)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ShapeError(f"MultiHeadAttention needs {what} >= 1, got {v!r}")
        self.num_heads, self.key_dim = int(num_heads), int(key_dim)
        self.value_dim = int(value_dim or key_dim)
        self.rate = dropout
        base = None if seed is None else seed * 8
        h = self.num_heads
        self.query_dense = Dense(h * self.key_dim, use_bias=use_bias, name="query", seed=base)
        self.key_dense = Dense(h * self.key_dim, use_bias=use_bias, name="key", seed=None if base is None else base + 2)
        self.value_dense = Dense(h * self.value_dim, use_bias=use_bias, name="value",
                                 seed=None if base is None else base + 4)
        self.output_dense: Dense | None = None
        self._use_bias = use_bias

    def build(self, query: Any, value: Any = None, key: Any = None) -> None:
        q = as_tensor(query)
        self.output_dense = Dense(self._features(q), use_bias=self._use_bias, name="output",
                                  seed=None if self.seed is None else self.seed * 8 + 6)

    def _heads(self, x: Tensor, size: int) -> Tensor:
        """(batch, length, heads * size) -> (batch, heads, length, size)."""
        if x.ndim != 3 or x.shape[1] is None:
            raise ShapeError(f"layer {self.scope}: inputs must be (batch, length, features) with a known length, "
                             f"got {x.dtype}{shape_str(x.shape)}\n  at {user_location()}")
        return transpose(reshape(x, (-1, x.shape[1], self.num_heads, size)), (0, 2, 1, 3))

    def call(self, query: Any, value: Any = None, key: Any = None, mask: Any = None, causal: bool = False,
             training: bool | Tensor = False) -> Tensor:
        value = query if value is None else value
        key = value if key is None else key
        q = self._heads(self.query_dense(query), self.key_dim)
        k = self._heads(self.key_dense(key), self.key_dim)
        v = self._heads(self.value_dense(value), self.value_dim)
        out = scaled_dot_product_attention(q, k, v, mask=mask, causal=causal, dropout_rate=self.rate,
                                           training=training)
        out = transpose(out, (0, 2, 1, 3))
        out = reshape(out, (-1, out.shape[1], self.num_heads * self.value_dim))
        assert self.output_dense is not None
        return self.output_dense(out)

    @property
    def sublayers(self) -> list[Layer]:
        return [d for d in (self.query_dense, self.key_dense, self.value_dense, self.output_dense) if d is not None]

    @property
    def trainable_variables(self) -> list[Tensor]:
        return [v for layer in self.sublayers for v in layer.trainable_variables]


def dense(x: Tensor, units: int, activation: Callable[[Tensor], Tensor] | None = None, name: str | None = None,
          seed: int | None = None) -> Tensor:
    """A fully connected layer with new variables: ``gc.layers.Dense(units, activation, name=name, seed=seed)(x)``.

    W has shape (x.shape[-1], units) with Glorot-uniform values drawn with `seed` and b is
    zeros, both in x's dtype. ``seed=None`` uses the number of variables already in the
    graph, so a script that builds the same model gets the same weights on every run.
    The variables are named ``<name>/kernel`` and ``<name>/bias`` (name defaults to "dense",
    made unique and put under the open `gc.name_scope`), as are the ops it builds. Use a
    `gc.layers.Dense` object to share the variables between calls.
    """
    x = as_tensor(x)
    if x.ndim < 1 or x.shape[-1] is None:
        raise ShapeError(f"dense needs an input whose last dim is known, got shape {x.shape}")
    if x.dtype is None or x.dtype.kind != "f":
        raise ShapeError(f"dense needs a floating-point input, got {x.dtype}")
    if isinstance(units, bool) or int(units) < 1:
        raise ShapeError(f"dense needs units >= 1, got {units}")
    return Dense(int(units), activation, name=name, seed=seed)(x)

